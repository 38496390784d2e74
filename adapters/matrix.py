"""Matrix adapter on matrix-nio: outbound /sync only, end-to-end encryption, threads.

Exactly once across restarts: the sync position lives in the bot's database and is saved
after each batch is taken on; every command event is claimed in the database before it
runs, so a replayed batch never runs a command twice. After a restart or a long
disconnect, commands that arrived while the bot was away are answered if they are
younger than `catch_up_max_age` by the homeserver's own clock (`unsigned.age`); bridged
events may carry a back-dated `origin_server_ts`, so that is never used to judge age.
A sync returns only the last few events of a room (its timeline is then `limited`):
the rest is paged back with /messages down to the stored position, and that backlog is
answered oldest first, one command after another.

A room is direct only when it was created as one (`is_direct` on the bot's invite) and
holds just the bot and that person. Such rooms are written into the bot's own `m.direct`
account data, as Element does, so the decision survives a restart; membership is
checked on every message, so a third person joining ends it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nio import (
    Api,
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinError,
    LoginResponse,
    MegolmEvent,
    MessageDirection,
    RoomMessageNotice,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.bridges import BridgeResolver
from adapters.common import Reconnector
from adapters.matrix_store import KeyStore
from chatbot.bot import Bot
from chatbot.config import ConfigError
from chatbot.errors import UserError
from chatbot.inbox import Inbox, answer_with_progress
from chatbot.message import Message, Reply
from chatbot.render import render_html, render_text, split_attachments
from chatbot.results import Result
from chatbot.secrets import resolve_secret
from chatbot.state import ChatState

log = logging.getLogger(__name__)

PLATFORM = "matrix"
GAP_PAGE = 100  # events per /messages page when filling a limited timeline
NO_MENTIONS: dict[str, Any] = {}  # m.mentions of everything the bot sends: an echoed @room notifies no one


class MatrixConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # password[_env|_file], access_token[_env|_file]

    homeserver: str
    user_id: str
    device_name: str = "netbot"
    store_dir: Path = Path("var/matrix-store")
    allowed_inviters: list[str] = Field(default_factory=list)  # user id patterns: "@*:corp.example"
    allowed_rooms: list[str] = Field(default_factory=list)  # room id patterns
    attachment_lines: int = Field(default=40, ge=1)
    progress_after: float = Field(default=2.0, ge=0)
    progress_every: float = Field(default=10.0, gt=0)  # seconds between progress edits
    catch_up_max_age: float = Field(default=600.0, ge=0)  # seconds
    answer_edits: bool = False
    sync_timeout: float = Field(default=30.0, gt=0)

    def secret(self, name: str) -> str | None:
        return resolve_secret(dict(self.model_extra or {}), name, "matrix")


def load_matrix_config(raw: dict[str, Any]) -> MatrixConfig:
    try:
        cfg = MatrixConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"[matrix] {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    secret_keys = {f"{s}{x}" for s in ("password", "access_token") for x in ("", "_env", "_file")}
    unknown = set(cfg.model_extra or {}) - secret_keys
    if unknown:
        raise ConfigError(f"[matrix] unknown setting {sorted(unknown)[0]}")
    return cfg


def new_client(cfg: MatrixConfig) -> AsyncClient:
    """The bot's nio client: encryption on, its keys in `store_dir` (a `KeyStore`, which
    touches the database only when keys or encrypted rooms change, not on every sync)."""
    return AsyncClient(
        cfg.homeserver, cfg.user_id, store_path=str(cfg.store_dir),
        config=AsyncClientConfig(store_sync_tokens=False, encryption_enabled=True, store=KeyStore,
                                 max_timeouts=1, request_timeout=cfg.sync_timeout + 30),
    )


@dataclass
class Incoming:
    room_id: str
    event_id: str
    sender: str
    body: str
    thread_root: str | None
    mentioned: bool
    age_ms: int | None


class MatrixAdapter:
    def __init__(self, bot: Bot, cfg: MatrixConfig, state: ChatState, bridges: BridgeResolver) -> None:
        self.bot = bot
        self.cfg = cfg
        self.state = state
        self.bridges = bridges
        self.position_key = f"{PLATFORM}:{cfg.user_id}"
        cfg.store_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.store_dir, 0o700)  # encryption keys and the access token live here
        self.client = new_client(cfg)
        self.inbox = Inbox(bot, state, PLATFORM)
        self._connection = Reconnector(PLATFORM, log, FatalMatrixError)
        self._position: str | None = None  # the sync token, as stored
        self._allowed_rooms: set[str] = set()
        self._direct: dict[str, list[str]] = {}  # the bot's m.direct: person -> their direct rooms
        self._logged_in = False
        self._catching_up = False  # what the next sync brings was sent while the bot was away
        self.display_name = cfg.user_id.split(":")[0].lstrip("@")
        self.synced = asyncio.Event()  # pulsed after every successful sync
        self.ready = asyncio.Event()  # set once the first sync went through
        bot.add_notifier(PLATFORM, self.post_alert)

    # --- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        # Read once, then kept in memory: the loop must not block on the database per sync.
        self._position = await asyncio.to_thread(self.state.get, self.position_key)
        self._catching_up = self._position is not None
        await self._connection.run(self._sync_step, failed="sync failed ({}); retrying in {:.0f} s",
                                   on_failure=self._after_failure)

    async def _sync_step(self) -> None:
        if not self._logged_in:
            await self.login()
            self._direct = await self._read_direct_rooms()
            self._logged_in = True
        await self._sync_once(self._catching_up)
        self._catching_up = False

    def _after_failure(self) -> None:
        self._catching_up = self._position is not None  # what arrives next was sent while we were away

    async def stop(self) -> None:
        """Stop syncing, let answers in progress finish, then close the session."""
        await self._connection.stop()
        await self.inbox.drain()
        await self.client.close()

    async def login(self) -> None:
        session_file = self.cfg.store_dir / "session.json"
        if session_file.exists():
            saved = json.loads(session_file.read_text())
            if saved.get("user_id") == self.cfg.user_id:
                self.client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
                await self._check_token()
                return
        token = self.cfg.secret("access_token")
        if token:
            self.client.access_token = token
            who = await self.client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise FatalMatrixError(f"matrix: the access token was refused: {getattr(who, 'message', who)}")
            self.client.restore_login(who.user_id, who.device_id or "", token)
        else:
            password = self.cfg.secret("password")
            if not password:
                raise FatalMatrixError("[matrix] needs password, password_env, password_file or an access token")
            resp = await self.client.login(password, device_name=self.cfg.device_name)
            if not isinstance(resp, LoginResponse):
                raise FatalMatrixError(f"matrix: login as {self.cfg.user_id} failed: {getattr(resp, 'message', resp)}")
        session_file.touch(mode=0o600)
        session_file.write_text(json.dumps({"user_id": self.client.user_id, "device_id": self.client.device_id,
                                            "access_token": self.client.access_token}))
        log.info("matrix: logged in as %s (device %s)", self.client.user_id, self.client.device_id)

    async def _check_token(self) -> None:
        who = await self.client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise FatalMatrixError(f"matrix: the saved session was refused ({getattr(who, 'message', who)}); "
                                   f"delete {self.cfg.store_dir / 'session.json'} to log in again")

    # --- sync ---------------------------------------------------------------------
    async def _sync_once(self, catching_up: bool) -> None:
        since = self._position
        # full_state on the first sync of this process: room state (members, encryption)
        # is not kept between runs, only the position.
        first = self.client.next_batch is None
        resp = await self.client.sync(timeout=0 if first else int(self.cfg.sync_timeout * 1000),
                                      since=since, full_state=first)
        if not isinstance(resp, SyncResponse):
            status = getattr(resp, "status_code", "")
            if status == "M_UNKNOWN_TOKEN":
                raise FatalMatrixError("matrix: the homeserver no longer accepts the bot's token")
            raise ConnectionError(f"sync error {status}: {getattr(resp, 'message', resp)}")
        for room_id, info in resp.rooms.invite.items():
            await self._on_invite(room_id, info.invite_state)
        if since is not None:  # the very first sync is the backlog: never answer it
            for room_id, info in resp.rooms.join.items():
                events = info.timeline.events
                backlog = info.timeline.limited and info.timeline.prev_batch is not None
                if backlog:  # only the last few events came: fetch the ones in between
                    events = await self._gap(room_id, info.timeline.prev_batch, since) + events
                taken = []
                for event in events:
                    incoming = self._incoming(room_id, event)
                    msg = await self._take(incoming, catching_up or backlog) if incoming is not None else None
                    if msg is not None:
                        taken.append(msg)
                # A backlog is answered in the order it was written (a monitor added, then
                # paused); live commands run side by side.
                if backlog and taken:
                    self.inbox.spawn(self._answer_in_order(taken))
                else:
                    for msg in taken:
                        self.inbox.spawn(self._answer(msg))
        await self._keys_maintenance()
        self.state.put(self.position_key, resp.next_batch)  # queued, written behind: no thread hop
        self._position = resp.next_batch
        self.ready.set()
        self.synced.set()
        self.synced.clear()

    async def _gap(self, room_id: str, prev_batch: str, since: str) -> list[Any]:
        """The events a limited timeline left out, oldest first: paged back from the
        timeline's start to the stored position, and no further back than
        `catch_up_max_age`. nio decrypts what it has keys for on the way."""
        newest_first: list[Any] = []
        token: str | None = prev_batch
        max_age_ms = self.cfg.catch_up_max_age * 1000
        while token is not None:
            resp = await self.client.room_messages(room_id, start=token, end=since, direction=MessageDirection.back,
                                                   limit=GAP_PAGE,
                                                   message_filter={"types": ["m.room.message", "m.room.encrypted"]})
            if not isinstance(resp, RoomMessagesResponse):
                raise ConnectionError(f"fetching missed events of {room_id} failed: {getattr(resp, 'message', resp)}")
            for event in resp.chunk:
                age = (event.source.get("unsigned") or {}).get("age")
                if isinstance(age, int) and age > max_age_ms:
                    log.info("matrix: %s: events before %s are older than catch_up_max_age; not fetched",
                             room_id, event.event_id)
                    return newest_first[::-1]
                newest_first.append(event)
            token = resp.end if resp.chunk and resp.end != token else None
        if newest_first:
            log.info("matrix: %s: fetched %d events a limited sync left out", room_id, len(newest_first))
        return newest_first[::-1]

    async def _keys_maintenance(self) -> None:
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())

    # --- invites --------------------------------------------------------------------
    async def _on_invite(self, room_id: str, invite_state: list[Any]) -> None:
        for event in invite_state:
            # every member event of the invited room arrives here: only ours is the invite
            if not (isinstance(event, InviteMemberEvent) and event.state_key == self.client.user_id
                    and event.membership == "invite"):
                continue
            inviter = event.sender
            if await self._room_allowed(room_id) or _matches(inviter, self.cfg.allowed_inviters):
                resp = await self.client.join(room_id)
                if isinstance(resp, JoinError):
                    log.warning("matrix: joining %s failed: %s", room_id, resp.message)
                    await self.client.room_leave(room_id)  # no half-joined rooms
                    return
                await asyncio.to_thread(self.state.remember, f"matrix-room:{room_id}", inviter)
                self._allowed_rooms.add(room_id)
                direct = event.content.get("is_direct") is True
                if direct:
                    await self._remember_direct(room_id, inviter)
                log.info("matrix: joined %s, invited by %s%s", room_id, inviter, " (a direct chat)" if direct else "")
            else:
                log.info("matrix: declined the invite to %s from %s (not an allowed inviter)", room_id, inviter)
                await self.client.room_leave(room_id)
            return

    # --- direct rooms ------------------------------------------------------------------
    def _m_direct_path(self) -> str:
        return Api._build_path(["user", self.client.user_id, "account_data", "m.direct"])

    async def _read_direct_rooms(self) -> dict[str, list[str]]:
        resp = await self.client.send("GET", self._m_direct_path(),
                                      headers={"Authorization": f"Bearer {self.client.access_token}"})
        async with resp:
            if resp.status == 404:  # no direct chats yet
                return {}
            if resp.status != 200:
                raise ConnectionError(f"reading the bot's m.direct failed: HTTP {resp.status}")
            content = await resp.json()
        return {person: [r for r in rooms if isinstance(r, str)] for person, rooms in content.items()
                if isinstance(rooms, list)} if isinstance(content, dict) else {}

    async def _remember_direct(self, room_id: str, person: str) -> None:
        """Record a direct chat in the bot's m.direct, as Element does: other clients of
        the account agree, and the decision survives a restart."""
        rooms = self._direct.setdefault(person, [])
        if room_id in rooms:
            return
        rooms.append(room_id)
        resp = await self.client.send("PUT", self._m_direct_path(), json.dumps(self._direct),
                                      headers={"Authorization": f"Bearer {self.client.access_token}",
                                               "Content-Type": "application/json"})
        async with resp:
            if resp.status != 200:  # still direct until a restart; say so rather than fail the join
                log.warning("matrix: could not record %s as a direct chat (HTTP %s)", room_id, resp.status)

    def _is_direct(self, room_id: str, sender: str) -> bool:
        """Direct: created as a direct chat with `sender`, and holding just the two of us."""
        if room_id not in self._direct.get(sender, ()):
            return False
        room = self.client.rooms.get(room_id)
        return room is not None and set(room.users) == {self.client.user_id, sender}

    async def _room_allowed(self, room_id: str) -> bool:
        if room_id in self._allowed_rooms or _matches(room_id, self.cfg.allowed_rooms):
            return True
        # joined on an allowed invite, perhaps before a restart: the database remembers
        if await asyncio.to_thread(self.state.get, f"matrix-room:{room_id}") is not None:
            self._allowed_rooms.add(room_id)
            return True
        return False

    # --- incoming messages --------------------------------------------------------
    def _incoming(self, room_id: str, event: Any) -> Incoming | None:
        if isinstance(event, MegolmEvent):
            log.warning("matrix: cannot decrypt %s in %s (no room key yet)", event.event_id, room_id)
            return None
        if not isinstance(event, RoomMessageText) or isinstance(event, RoomMessageNotice):
            return None  # notices are what bots send; other bots must not trigger us
        if event.sender == self.client.user_id:
            return None
        content = event.source.get("content", {})
        relation = content.get("m.relates_to") or {}
        body = event.body
        if relation.get("rel_type") == "m.replace":
            if not self.cfg.answer_edits:
                return None
            body = (content.get("m.new_content") or {}).get("body", "")
        elif "m.in_reply_to" in relation:
            body = strip_reply_fallback(body)  # the quoted message is never a command
        if not body.strip():
            return None
        thread_root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
        # A reply mentions the author of what it replies to (Element puts them in m.mentions):
        # "thanks" under the bot's answer is chatter, so in a reply only a typed name counts.
        mentioned = "m.in_reply_to" not in relation and \
            self.client.user_id in ((content.get("m.mentions") or {}).get("user_ids") or [])
        body, named = self._strip_mention(body)
        age = (event.source.get("unsigned") or {}).get("age")
        return Incoming(room_id, event.event_id, event.sender, body, thread_root, mentioned or named,
                        age if isinstance(age, int) else None)

    def _strip_mention(self, body: str) -> tuple[str, bool]:
        text = body.lstrip()
        for name in (self.client.user_id, self.display_name):
            for sep in (":", ",", " "):
                if text.lower().startswith((name + sep).lower()):
                    return text[len(name) + 1:].lstrip(), True
        return body, False

    async def _take(self, incoming: Incoming, catching_up: bool) -> Message | None:
        """The message, claimed, if it is a command to answer."""
        if not await self._room_allowed(incoming.room_id):
            return None

        def young_enough() -> bool:
            if catching_up and incoming.age_ms is not None and incoming.age_ms > self.cfg.catch_up_max_age * 1000:
                log.info("matrix: not answering %s from %s: sent %.0f s ago, while the bot was away",
                         incoming.event_id, incoming.sender, incoming.age_ms / 1000)
                return False
            return True
        room = self.client.rooms.get(incoming.room_id)
        resolved = self.bridges.resolve(PLATFORM, incoming.sender, incoming.body,
                                        room.user_name(incoming.sender) or "" if room else "")
        msg = Message(platform=PLATFORM, room=incoming.room_id, sender=resolved.identity, text=resolved.text,
                      direct=self._is_direct(incoming.room_id, incoming.sender), mentions_bot=incoming.mentioned,
                      thread=incoming.thread_root, message_id=incoming.event_id)
        # A replayed sync batch finds the claim and skips it.
        return msg if await self.inbox.take(msg, admit=young_enough) else None

    async def _answer_in_order(self, messages: list[Message]) -> None:
        for msg in messages:
            await self._answer(msg)

    # --- answering ----------------------------------------------------------------
    async def _answer(self, msg: Message) -> None:
        await answer_with_progress(
            self.bot, msg, self.cfg.progress_after,
            acknowledge=lambda: self._send(msg, self._content(msg, self.bot.progress_text(msg.message_id), None)),
            deliver=lambda reply, ack_id: self._deliver(msg, reply, ack_id),
            update=lambda ack_id, text: self._update(msg, ack_id, text),
            progress_every=self.cfg.progress_every,
        )

    async def _deliver(self, msg: Message, reply: Reply, ack_id: str | None) -> None:
        inline, files = split_attachments(reply.result, self.cfg.attachment_lines)
        prefix = f"{reply.mention}: " if reply.mention else ""
        content = self._content(msg, prefix + render_text(inline), render_html(inline), prefix)
        await self._send(msg, content if ack_id is None else self._edit(ack_id, content))
        for attachment in files:
            await self._send_file(msg, attachment.filename, attachment.text)

    async def _update(self, msg: Message, ack_id: str, text: str) -> None:
        """Edit the acknowledgement `ack_id` into the job's progress `text`."""
        await self._send(msg, self._edit(ack_id, self._content(msg, text, None)))

    @staticmethod
    def _edit(event_id: str, content: dict[str, Any]) -> dict[str, Any]:
        """An m.replace edit of `event_id` into `content` (relations stay the original's)."""
        new = {k: v for k, v in content.items() if k != "m.relates_to"}
        return dict(new, body="* " + new["body"],
                    **{"m.new_content": new, "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}})

    def _content(self, msg: Message, body: str, html: str | None, html_prefix: str = "") -> dict[str, Any]:
        content: dict[str, Any] = {"msgtype": "m.notice", "body": body}
        if html is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = _escape(html_prefix) + html
        content["m.relates_to"] = self._relation(msg)
        return content

    @staticmethod
    def _relation(msg: Message) -> dict[str, Any]:
        reply_to = {"event_id": msg.message_id}
        if msg.thread:
            return {"rel_type": "m.thread", "event_id": msg.thread, "is_falling_back": False,
                    "m.in_reply_to": reply_to}
        return {"m.in_reply_to": reply_to}

    async def _send(self, msg: Message, content: dict[str, Any]) -> str:
        return await self._room_send(msg.room, content, "send")

    async def _room_send(self, room_id: str, content: dict[str, Any], what: str) -> str:
        """Send a message event; it and its edited form mention no one."""
        content = dict(content, **{"m.mentions": NO_MENTIONS})
        if "m.new_content" in content:
            content["m.new_content"] = dict(content["m.new_content"], **{"m.mentions": NO_MENTIONS})
        resp = await self.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True)
        if not isinstance(resp, RoomSendResponse):
            raise ConnectionError(f"{what} failed: {getattr(resp, 'message', resp)}")
        return resp.event_id

    async def post_alert(self, room_id: str, result: Result) -> None:
        """A monitor alert: a notice in the room, not a reply to anything."""
        content = {"msgtype": "m.notice", "body": render_text(result), "format": "org.matrix.custom.html",
                   "formatted_body": render_html(result)}
        await self._room_send(room_id, content, f"alert to {room_id}")

    async def _send_file(self, msg: Message, filename: str, text: str) -> None:
        data = text.encode()
        room = self.client.rooms.get(msg.room)
        encrypted = bool(room and room.encrypted)
        resp, keys = await self.client.upload(io.BytesIO(data), content_type="text/plain", filename=filename,
                                              encrypt=encrypted, filesize=len(data))
        if not isinstance(resp, UploadResponse):
            raise ConnectionError(f"upload failed: {getattr(resp, 'message', resp)}")
        content: dict[str, Any] = {"msgtype": "m.file", "body": filename, "filename": filename,
                                   "info": {"mimetype": "text/plain", "size": len(data)},
                                   "m.relates_to": self._relation(msg)}
        if encrypted and keys:
            content["file"] = dict(keys, url=resp.content_uri)
        else:
            content["url"] = resp.content_uri
        await self._send(msg, content)


class FatalMatrixError(UserError):
    """Retrying would not help (bad credentials, revoked token): stop and say why."""


def strip_reply_fallback(body: str) -> str:
    """A reply's own text, without the quote of the message it answers that clients put
    in front (`> ` lines, then a blank line)."""
    lines = body.split("\n")
    quoted = 0
    while quoted < len(lines) and lines[quoted].startswith(">"):
        quoted += 1
    if quoted == 0:
        return body
    if quoted < len(lines) and not lines[quoted].strip():
        quoted += 1
    return "\n".join(lines[quoted:])


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _escape(text: str) -> str:
    import html

    return html.escape(text)

