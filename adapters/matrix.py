"""Matrix adapter on matrix-nio: outbound /sync only, end-to-end encryption, threads.

Exactly once across restarts: the sync position lives in the bot's database and is saved
after each batch is taken on; every command event is claimed in the database before it
runs, so a replayed batch never runs a command twice. After a restart, commands that
arrived while the bot was down are answered if they are younger than `catch_up_max_age`
by the homeserver's own clock (`unsigned.age`); bridged events may carry a back-dated
`origin_server_ts`, so that is never used to judge age.
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
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinError,
    LoginResponse,
    MegolmEvent,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.bridges import BridgeResolver
from adapters.common import answer_with_progress, pause_unless_stopped, short_error, wind_down
from chatbot.bot import Bot
from chatbot.config import ConfigError
from chatbot.errors import UserError
from chatbot.message import Message, Reply
from chatbot.render import render_html, render_text, split_attachments
from chatbot.results import Result
from chatbot.secrets import resolve_secret
from chatbot.state import ChatState

log = logging.getLogger(__name__)

PLATFORM = "matrix"
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0


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
    unknown = set(cfg.model_extra or {}) - {f"{s}{x}" for s in ("password", "access_token") for x in ("", "_env", "_file")}
    if unknown:
        raise ConfigError(f"[matrix] unknown setting {sorted(unknown)[0]}")
    return cfg


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
        self.client = AsyncClient(
            cfg.homeserver, cfg.user_id, store_path=str(cfg.store_dir),
            config=AsyncClientConfig(store_sync_tokens=False, encryption_enabled=True,
                                     max_timeouts=1, request_timeout=cfg.sync_timeout + 30),
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._current: asyncio.Task[None] | None = None  # the sync in flight
        self._position: str | None = None  # the sync token, as stored
        self._allowed_rooms: set[str] = set()
        self._stopping = asyncio.Event()
        self.display_name = cfg.user_id.split(":")[0].lstrip("@")
        self.synced = asyncio.Event()  # pulsed after every successful sync
        self.ready = asyncio.Event()  # set once the first sync went through
        bot.add_notifier(PLATFORM, self.post_alert)

    # --- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        # Read once, then kept in memory: the loop must not block on the database per sync.
        self._position = await asyncio.to_thread(self.state.get, self.position_key)
        catching_up = self._position is not None
        logged_in = False
        while not self._stopping.is_set():
            try:
                if not logged_in:
                    await self.login()
                    logged_in = True
                self._current = asyncio.create_task(self._sync_once(catching_up))
                await self._current
                catching_up = False
                backoff = BACKOFF_FIRST
            except FatalMatrixError:
                raise
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return  # stop() cut a long-poll short
                raise
            except Exception as err:  # homeserver down, restarting, network trouble
                log.warning("matrix: sync failed (%s); retrying in %.0f s", short_error(err), backoff)
                await pause_unless_stopped(self._stopping, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def stop(self) -> None:
        """Stop syncing, let answers in progress finish, then close the session."""
        self._stopping.set()
        await wind_down(self._current, self._tasks)
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
        first = since is None
        # full_state on the first sync of this process: room state (members, encryption)
        # is not kept between runs, only the position.
        resp = await self.client.sync(timeout=0 if self.client.next_batch is None else int(self.cfg.sync_timeout * 1000),
                                      since=since, full_state=self.client.next_batch is None)
        if not isinstance(resp, SyncResponse):
            status = getattr(resp, "status_code", "")
            if status == "M_UNKNOWN_TOKEN":
                raise FatalMatrixError("matrix: the homeserver no longer accepts the bot's token")
            raise ConnectionError(f"sync error {status}: {getattr(resp, 'message', resp)}")
        for room_id, info in resp.rooms.invite.items():
            await self._on_invite(room_id, info.invite_state)
        if not first:  # the very first sync is the backlog: never answer it
            for room_id, info in resp.rooms.join.items():
                if info.timeline.limited:
                    log.warning("matrix: %s had more new events than one sync returns; older ones are skipped", room_id)
                for event in info.timeline.events:
                    incoming = self._incoming(room_id, event)
                    if incoming is not None:
                        await self._take(incoming, catching_up)
        await self._keys_maintenance()
        await asyncio.to_thread(self.state.put, self.position_key, resp.next_batch)
        self._position = resp.next_batch
        self.ready.set()
        self.synced.set()
        self.synced.clear()

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
                await asyncio.to_thread(self.state.put, f"matrix-room:{room_id}", inviter)
                self._allowed_rooms.add(room_id)
                log.info("matrix: joined %s, invited by %s", room_id, inviter)
            else:
                log.info("matrix: declined the invite to %s from %s (not an allowed inviter)", room_id, inviter)
                await self.client.room_leave(room_id)
            return

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
        thread_root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
        mentioned = self.client.user_id in ((content.get("m.mentions") or {}).get("user_ids") or [])
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

    async def _take(self, incoming: Incoming, catching_up: bool) -> None:
        if not await self._room_allowed(incoming.room_id):
            return
        if catching_up and incoming.age_ms is not None and incoming.age_ms > self.cfg.catch_up_max_age * 1000:
            log.info("matrix: not answering %s from %s: sent %.0f s ago, while the bot was away",
                     incoming.event_id, incoming.sender, incoming.age_ms / 1000)
            return
        room = self.client.rooms.get(incoming.room_id)
        resolved = self.bridges.resolve(PLATFORM, incoming.sender, incoming.body,
                                        room.user_name(incoming.sender) or "" if room else "")
        msg = Message(platform=PLATFORM, room=incoming.room_id, sender=resolved.identity, text=resolved.text,
                      direct=bool(room and room.member_count == 2), mentions_bot=incoming.mentioned,
                      thread=incoming.thread_root, message_id=incoming.event_id)
        if self.bot.router.command_text(msg.text, direct=msg.direct, mentioned=msg.mentions_bot) is None:
            return  # room chatter
        # Claimed before it runs: a replayed sync batch finds the claim and skips it.
        if not await asyncio.to_thread(self.state.take, PLATFORM, incoming.event_id):
            return
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- answering ----------------------------------------------------------------
    async def _answer(self, msg: Message) -> None:
        await answer_with_progress(
            self.bot, msg, self.cfg.progress_after,
            acknowledge=lambda: self._send(msg, self._content(msg, self.bot.progress_text(msg.message_id), None)),
            deliver=lambda reply, ack_id: self._deliver(msg, reply, ack_id),
            update=lambda ack_id, text: self._send(msg, self._edit(ack_id, self._content(msg, text, None))),
            progress_every=self.cfg.progress_every,
        )

    async def _deliver(self, msg: Message, reply: Reply, ack_id: str | None) -> None:
        inline, files = split_attachments(reply.result, self.cfg.attachment_lines)
        prefix = f"{reply.mention}: " if reply.mention else ""
        content = self._content(msg, prefix + render_text(inline), render_html(inline), prefix)
        await self._send(msg, content if ack_id is None else self._edit(ack_id, content))
        for attachment in files:
            await self._send_file(msg, attachment.filename, attachment.text)

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
        resp = await self.client.room_send(msg.room, "m.room.message", content, ignore_unverified_devices=True)
        if not isinstance(resp, RoomSendResponse):
            raise ConnectionError(f"send failed: {getattr(resp, 'message', resp)}")
        return resp.event_id

    async def post_alert(self, room_id: str, result: Result) -> None:
        """A monitor alert: a notice in the room, not a reply to anything."""
        content = {"msgtype": "m.notice", "body": render_text(result), "format": "org.matrix.custom.html",
                   "formatted_body": render_html(result)}
        resp = await self.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True)
        if not isinstance(resp, RoomSendResponse):
            raise ConnectionError(f"alert to {room_id} failed: {getattr(resp, 'message', resp)}")

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


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _escape(text: str) -> str:
    import html

    return html.escape(text)

