"""Mattermost adapter: REST through mattermostautodriver, events from the API v4 websocket.

The bot is a Mattermost account (a bot account is best) with a personal access token. It
opens only outbound connections: REST calls, and the websocket on which it sends an
`authentication_challenge` and then receives `hello` and `posted` events. It answers in
the thread of the command (a command at channel level gets its answer in a thread under
it), with Markdown; long output comes as an uploaded file, in a post after the text; a
command still running after `progress_after` seconds gets "working on it…", which is
edited into the answer.

What a real server refuses, and what the bot does then: an edit (PostEditTimeLimit, no
edit_post permission) - the answer comes as a new post under "working on it"; an upload
(attachments disabled, too large, no upload_file permission) - the text has gone first,
and the file comes as a post saying why, with as much of its text as fits; a 429 - the
request waits as long as the server says, again if need be, but an answer waits at most
the command timeout in all, and one that still cannot be posted is logged and audited.

Staying connected: when its token is revoked, the server neither closes the socket nor
says a word; events just stop. So the bot sends the `ping` action every `ping_interval`
seconds: a refused or unanswered ping sends it to REST to check its token (refused: it
stops, with one line), else it reconnects and catches up (below).

Who is who: a sender is `mattermost:<user id>` (the 26-character id, which unlike the
username cannot be changed by its owner); `[identities]`, grants and a matterbridge
relay's `accounts` use that form. Posts the bot ignores: its own, other bots'
(`props.from_bot`) unless the bot is a configured matterbridge relay account, incoming
webhook posts (`props.from_webhook`: anyone holding the hook URL can post one, under any
`override_username`, so they prove nothing and are never commands), system messages and
edits.

Exactly once: every command post is claimed in the database before it runs, so a
duplicate delivery never runs a command twice.

Catching up: the websocket delivers only what happens while it is connected, and
Mattermost keeps no sync position for a client. So the bot remembers, per channel, the
last post it saw there (in the database, written every few seconds and at a stop), and
after each (re)connection asks REST for every allowed channel's posts since then
(`GET /channels/{id}/posts?since=`), oldest first, through the same checks and claims as
live posts; what the websocket also delivers meanwhile is caught by the claims. Only
posts younger than `catch_up_max_age` are looked at (by the bot's clock against the
server's `create_at`: keep both clocks in sync), which also keeps the answer under the
server's cap of 1000 posts. A post counts by what it is when the bot first sees it: an
edit of a post seen before is not a command, while a post written and edited while the
bot was away is taken as it now reads. The very first run catches nothing up.

Why not the driver's own websocket client: it retries forever with a fixed delay on any
error (a revoked token included), and verifies TLS only against the system store, so a
private CA (`ca_file`) cannot work. This module speaks the same protocol on aiohttp, one
connection at a time, and owns the backoff.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from mattermostautodriver import AsyncTypedDriver
from mattermostautodriver.exceptions import (
    ContentTooLarge,
    FeatureDisabled,
    InvalidOrMissingParameters,
    MattermostError,
    NoAccessTokenProvided,
    NotEnoughPermissions,
    ResourceNotFound,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.bridges import BridgeResolver
from adapters.common import Reconnector, short_error
from adapters.mattermost_http import MattermostHttp, wait_for_rate_limits
from chatbot.bot import Bot
from chatbot.config import ConfigError
from chatbot.errors import UserError
from chatbot.inbox import Inbox, answer_with_progress
from chatbot.message import Message, Reply
from chatbot.render import Attachment, code_block, escape_markdown, render_markdown, split_attachments
from chatbot.results import Note, Result
from chatbot.secrets import SecretError, resolve_secret
from chatbot.state import ChatState

log = logging.getLogger(__name__)

PLATFORM = "mattermost"
AUTH_TIMEOUT = 15.0  # seconds for the websocket to say hello after the challenge
HEARTBEAT = 30.0  # websocket ping interval; a peer that misses a pong is gone
MAX_POST_CHARS = 16383  # the server's limit for one post's message
MAX_FILES_PER_POST = 5
TOKEN_KEYS = {f"token{x}" for x in ("", "_env", "_file")}
POSITION_SAVE_EVERY = 5.0  # seconds; a position saved late only means a few posts are looked at again
POSTS_SINCE_CAP = 1000  # the server returns at most this many posts for one `since` query


class MattermostConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # token, token_env or token_file

    url: str  # https://chat.corp.example (http:// only on a trusted network)
    team: str | None = None  # team name or id: channels of other teams are ignored
    allowed_channels: list[str] = Field(default_factory=list)  # channel id or name patterns; empty = any
    ca_file: Path | None = None  # a private CA to verify the server with
    verify_tls: bool = True
    attachment_lines: int = Field(default=40, ge=1)
    progress_after: float = Field(default=2.0, ge=0)
    reconnect_max: float = Field(default=60.0, ge=1)  # seconds: the longest wait between reconnects
    ping_interval: float = Field(default=30.0, gt=0)  # seconds between websocket `ping` actions
    catch_up_max_age: float = Field(default=600.0, ge=0)  # seconds: missed posts this young are answered; 0 = none
    request_timeout: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("give the server's address, e.g. https://chat.corp.example")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("a server under a sub-path is not supported; give https://host[:port]")
        try:
            _ = parts.port  # urlsplit validates the port only when it is read
        except ValueError:
            raise ValueError("the port is not a number") from None
        return value.rstrip("/")

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (443 if self.scheme == "https" else 80)

    def token(self) -> str | None:
        return resolve_secret(dict(self.model_extra or {}), "token", PLATFORM)


def load_mattermost_config(raw: dict[str, Any]) -> MattermostConfig:
    try:
        cfg = MattermostConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"[mattermost] {'.'.join(map(str, first['loc']))}: {msg}") from None
    extra = set(cfg.model_extra or {})
    unknown = extra - TOKEN_KEYS
    if unknown:
        raise ConfigError(f"[mattermost] unknown setting {sorted(unknown)[0]}")
    given = sorted(k for k in extra & TOKEN_KEYS if (cfg.model_extra or {}).get(k))
    if not given:
        raise ConfigError("[mattermost] needs token_file, token_env or token (the bot's personal access token)")
    if len(given) > 1:
        raise ConfigError(f"[mattermost] sets {' and '.join(given)}: give only one")
    if cfg.ca_file is not None:
        if not cfg.verify_tls:
            raise ConfigError("[mattermost] ca_file and verify_tls = false contradict each other: give one")
        if not cfg.ca_file.expanduser().is_file():
            raise ConfigError(f"[mattermost] ca_file: {cfg.ca_file} is not a readable file")
    return cfg


class FatalMattermostError(UserError):
    """Retrying would not help (token refused, not in the team): stop and say why."""


@dataclass(frozen=True)
class Position:
    """The last post seen in a channel, by the server's clock."""
    create_at: int
    post_id: str

    def precedes(self, post: dict[str, Any]) -> bool:
        """Whether `post` came after this one (a post of the same millisecond may have)."""
        create_at = _int(post.get("create_at"))
        return create_at > self.create_at or (create_at == self.create_at and post.get("id") != self.post_id)

    def dump(self) -> str:
        return json.dumps({"create_at": self.create_at, "post_id": self.post_id})

    @classmethod
    def load(cls, text: str | None) -> Position | None:
        try:
            raw = json.loads(text) if text else None
            return cls(int(raw["create_at"]), str(raw["post_id"])) if isinstance(raw, dict) else None
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class ChannelInfo:
    """What the live path needs to know of a post's channel (a `posted` event carries it)."""
    id: str
    name: str
    type: str  # O open, P private, D direct, G group
    team_id: str


class MattermostAdapter:
    def __init__(self, bot: Bot, cfg: MattermostConfig, state: ChatState, bridges: BridgeResolver) -> None:
        self.bot = bot
        self.cfg = cfg
        self.state = state
        self.bridges = bridges
        if not cfg.verify_tls and cfg.scheme == "https":
            log.warning("mattermost: verify_tls = false: the server's certificate is not checked; "
                        "anyone on the path can read the bot's token (use ca_file for a private CA)")
        self._ssl = tls_context(cfg)
        self.driver = AsyncTypedDriver({
            "scheme": cfg.scheme, "url": cfg.host, "port": cfg.port,
            "verify": self._ssl if self._ssl is not None else True,
            "request_timeout": cfg.request_timeout,
            "max_retries": 1,  # a 502-504 is retried once; longer trouble is the reconnect loop's
            "rate_limit_wait": bot.runner.command_timeout,  # a 429 is waited out, but not forever
        }, client_cls=MattermostHttp)
        self.user_id = ""
        self.username = ""
        self.team_id: str | None = None
        self.ready = asyncio.Event()  # set while the websocket is authenticated (tests wait on it)
        self._token: str | None = None
        self.inbox = Inbox(bot, state, PLATFORM)
        self._connection = Reconnector(PLATFORM, log, FatalMattermostError, most=cfg.reconnect_max)
        self._relays = bridges.relay_accounts(PLATFORM)
        self._ran_before: bool | None = None  # whether the database knows an earlier run of this account
        self._positions: dict[str, Position] = {}  # channel id -> last post seen there
        self._read_positions: set[str] = set()  # channels whose stored position was read
        self._unsaved: set[str] = set()
        self._saving = asyncio.Lock()
        self._save_soon: asyncio.Task[None] | None = None
        self._saved_at = 0.0
        self._uneditable: set[str] = set()  # acknowledgements the server refused to edit

    # --- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        await self._connection.run(self._connect_once)

    async def stop(self) -> None:
        """Stop listening, let answers in progress finish, then close the HTTP client."""
        await self._connection.stop()
        await self.inbox.drain()
        if self._save_soon is not None:
            self._save_soon.cancel()
            await asyncio.gather(self._save_soon, return_exceptions=True)
        await self._save_positions()
        await self.driver.close()

    async def login(self) -> None:
        """Who the bot is (GET /users/me); a refused token is fatal, not a reason to retry."""
        if self._token is None:
            try:
                token = self.cfg.token()
            except SecretError as err:
                raise FatalMattermostError(str(err)) from None
            if not token:
                raise FatalMattermostError("[mattermost] needs token, token_env or token_file")
            self._token = token
            self.driver.client.token = token
        try:
            me = await self.driver.users.get_user("me")
        except NoAccessTokenProvided as err:
            raise FatalMattermostError(f"mattermost: {self.cfg.host} refused the bot's token ({err}); "
                                       "check [mattermost] token_file, or make a new personal access token") from None
        if not isinstance(me, dict) or not isinstance(me.get("id"), str):
            raise ConnectionError(f"unexpected answer to GET /api/v4/users/me: {str(me)[:100]}")
        if not self.user_id:
            log.info("mattermost: logged in to %s as @%s (%s)%s", self.cfg.url, me.get("username"), me["id"],
                     "" if me.get("is_bot") else "; a bot account is better than a user account")
        self.user_id, self.username = me["id"], str(me.get("username") or "")
        self.driver.client.userid = self.user_id
        if self.cfg.team and self.team_id is None:
            teams = await self.driver.teams.get_teams_for_user("me")
            found = [t["id"] for t in teams if self.cfg.team in (t.get("name"), t.get("id"))]
            if not found:
                raise FatalMattermostError(f"mattermost: the bot is not a member of team '{self.cfg.team}'")
            self.team_id = found[0]

    # --- the websocket --------------------------------------------------------------
    async def _connect_once(self) -> str:
        """One connection: log in, authenticate the websocket, take events until it closes
        or stops answering. Returns why it ended, once it got as far as `hello` (the next
        reconnect then starts with a short wait)."""
        try:
            return await self._connection_lifetime()
        finally:
            self.ready.clear()

    async def _connection_lifetime(self) -> str:
        await self.login()
        scheme = "wss" if self.cfg.scheme == "https" else "ws"
        url = f"{scheme}://{self.cfg.host}:{self.cfg.port}/api/v4/websocket"
        timeout = aiohttp.ClientTimeout(total=None, connect=self.cfg.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.ws_connect(url, ssl=self._ssl if self._ssl is not None else True,
                                          heartbeat=HEARTBEAT) as ws:
                await ws.send_str(json.dumps({"seq": 1, "action": "authentication_challenge",
                                              "data": {"token": self._token}}))
                try:
                    await asyncio.wait_for(self._until_hello(ws), AUTH_TIMEOUT)
                except _SocketClosed:
                    # The server closes the socket, without a word, on a bad token: ask REST
                    # whether the token still holds (a 401 there is fatal).
                    await self.login()
                    raise ConnectionError("the websocket closed during authentication") from None
                except TimeoutError:
                    raise ConnectionError(f"no hello from the websocket within {AUTH_TIMEOUT:.0f} s") from None
                log.info("mattermost: listening as @%s", self.username)
                # After hello: what is posted from now on comes on the socket (held until
                # the catch-up is done), what came before comes from REST; a post in both
                # is claimed once.
                await self._catch_up()
                self.ready.set()
                return await self._listen(ws)

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Events until the socket closes, with a `ping` action every `ping_interval`.

        A revoked token does not close the socket: the server keeps it open and simply
        stops sending events (`web_conn.go` IsAuthenticated), and protocol pings still get
        their pongs. Only a request shows it: the ping action is refused
        (not_authenticated) or, when the server's hub is stuck, not answered at all. Either
        way the token is checked over REST (refused: fatal, one line), and if it holds,
        the bot reconnects, and the catch-up brings what the silence hid."""
        loop = asyncio.get_running_loop()
        interval = self.cfg.ping_interval
        seq = 1  # the challenge was 1
        pending: tuple[int, float] | None = None  # the ping awaiting its reply, and until when
        next_ping = loop.time() + interval
        while True:
            due = pending[1] if pending is not None else next_ping
            now = loop.time()
            if now >= due:
                if pending is not None:
                    await self.login()  # a refused token ends it here
                    return f"the websocket did not answer a ping within {interval:g} s"
                seq += 1
                await ws.send_str(json.dumps({"seq": seq, "action": "ping"}))
                pending, next_ping = (seq, now + interval), now + interval
                continue
            try:
                frame = await asyncio.wait_for(self._receive(ws), due - now)
            except TimeoutError:
                continue
            except _SocketClosed:
                return "the server closed the connection"
            if pending is not None and frame.get("seq_reply") == pending[0]:
                if frame.get("status") != "OK":
                    await self.login()
                    return f"the websocket refused a ping ({_error_id(frame)}) though the token holds"
                pending = None
                continue
            await self._on_frame(frame)

    async def _until_hello(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            frame = await self._receive(ws)
            if frame.get("event") == "hello":
                log.debug("mattermost: hello from server %s", (frame.get("data") or {}).get("server_version"))
                return
            if frame.get("seq_reply") == 1 and frame.get("status") != "OK":
                raise ConnectionError(f"websocket authentication failed: {frame.get('error')}")
            # the OK reply may come before or after the hello; events cannot come before it

    @staticmethod
    async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
                raise _SocketClosed()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                log.warning("mattermost: a websocket frame that is not JSON: %.100r", msg.data)
                continue
            if isinstance(frame, dict):
                return frame

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("status") == "FAIL":
            log.warning("mattermost: the websocket refused a request: %s", frame.get("error"))
        elif frame.get("event") == "posted":
            try:
                await self._on_posted(frame.get("data") or {})
            except Exception:  # one odd post must not cut the connection
                log.exception("mattermost: could not take a posted event")

    # --- incoming posts ------------------------------------------------------------
    async def _on_posted(self, data: dict[str, Any]) -> None:
        raw = data.get("post")
        post = json.loads(raw) if isinstance(raw, str) else None  # a JSON string inside the event
        if not isinstance(post, dict) or not post.get("id"):
            log.warning("mattermost: a posted event without a post: %.200r", data)
            return
        channel = ChannelInfo(str(post.get("channel_id") or ""), str(data.get("channel_name") or ""),
                              str(data.get("channel_type") or ""), str(data.get("team_id") or ""))
        await self._take_post(post, channel, str(data.get("sender_name") or "").lstrip("@"),
                              _json_list(data.get("mentions")))

    async def _take_post(self, post: dict[str, Any], channel: ChannelInfo, sender_name: str, mentions: list[str],
                         caught_up: bool = False) -> None:
        """One post, live or caught up: the checks, the claim, the answer; then it is the
        channel's last post seen."""
        if not self._channel_allowed(channel.id, channel.name, channel.type, channel.team_id):
            return
        await self._judge(post, channel, sender_name, mentions, caught_up)
        self._note_position(channel.id, post)

    async def _judge(self, post: dict[str, Any], channel: ChannelInfo, sender_name: str, mentions: list[str],
                     caught_up: bool) -> None:
        user_id = str(post.get("user_id") or "")
        props = post.get("props") or {}
        if post.get("type") or user_id == self.user_id:
            return  # system messages (joins, header changes) and our own posts
        if props.get("from_webhook") == "true":
            log.debug("mattermost: ignoring webhook post %s (a webhook proves no identity)", post["id"])
            return
        relay = user_id in self._relays
        if props.get("from_bot") == "true" and not relay:
            return  # other bots must not trigger us; a configured relay may be a bot account
        resolved = self.bridges.resolve(PLATFORM, user_id, str(post.get("message") or ""), display_name=sender_name)
        text, named = self._strip_mention(resolved.text)
        msg = Message(platform=PLATFORM, room=channel.id, sender=resolved.identity, text=text,
                      direct=channel.type == "D", mentions_bot=named or self._mentioned(mentions, text),
                      thread=str(post.get("root_id") or "") or None, message_id=str(post["id"]))

        def young_enough() -> bool:
            age = time.time() - _int(post.get("create_at")) / 1000
            if caught_up and age > self.cfg.catch_up_max_age:
                log.info("mattermost: not answering %s from %s in %s: posted %.0f s ago, while the bot was away "
                         "(catch_up_max_age = %.0f s)", post["id"], resolved.identity.user, _channel_label(channel),
                         age, self.cfg.catch_up_max_age)
                return False
            return True
        # A duplicate delivery (the websocket and the catch-up both) finds the claim.
        if await self.inbox.take(msg, admit=young_enough):
            self.inbox.spawn(self._answer(msg))

    # --- catching up ------------------------------------------------------------------
    async def _catch_up(self) -> None:
        """What was posted while the websocket was away: per allowed channel, the posts
        since the last one seen there (at most `catch_up_max_age` back), oldest first."""
        if self._ran_before is None:
            marker = f"{PLATFORM}:{self.user_id}"
            self._ran_before = await asyncio.to_thread(self.state.get, marker) is not None
            if not self._ran_before:
                await asyncio.to_thread(self.state.remember, marker, _utc_text(time.time()))
                log.info("mattermost: first run as @%s here: posts made before now are not looked at", self.username)
                return
        if self.cfg.catch_up_max_age <= 0:
            return
        try:
            channels = await self._my_channels()
        except Exception as err:  # the server went away again, or refuses the list
            log.warning("mattermost: could not list the bot's channels (%s): posts made while it was away "
                        "are not answered", short_error(err))
            return
        await self._read_stored_positions([c.id for c, _ in channels])
        window_start = int((time.time() - self.cfg.catch_up_max_age) * 1000)
        missed: list[tuple[dict[str, Any], ChannelInfo]] = []
        for channel, last_post_at in channels:
            position = self._positions.get(channel.id)
            since = window_start if position is None else max(position.create_at - 1, window_start)
            if position is not None and position.create_at < window_start and last_post_at > position.create_at:
                # something changed there since the bot last looked, perhaps before the window
                log.info("mattermost: %s: the last post the bot saw there is from %s; posts older than "
                         "catch_up_max_age (%.0f s) are not answered", _channel_label(channel),
                         _utc_text(position.create_at / 1000), self.cfg.catch_up_max_age)
            if last_post_at <= since:
                continue  # nothing posted or edited there since
            try:
                posts = await self._posts_since(channel, since)
            except Exception as err:  # one channel's trouble must not keep the others waiting
                log.warning("mattermost: could not catch up %s (%s): posts made there while the bot was away "
                            "are not answered", _channel_label(channel), short_error(err))
                continue
            # Edits of older posts, and roots whose thread moved, come back too: not new.
            missed += [(p, channel) for p in posts if _int(p.get("create_at")) > since and not p.get("delete_at")
                       and (position is None or position.precedes(p))]
        missed.sort(key=lambda item: (_int(item[0].get("create_at")), str(item[0].get("id"))))
        names = await self._usernames({str(p.get("user_id") or "") for p, _ in missed})
        for post, channel in missed:
            # The server's mention list comes only with the event: the name in the text decides.
            await self._take_post(post, channel, names.get(str(post.get("user_id") or ""), ""), [self.user_id],
                                  caught_up=True)
        if missed:
            log.info("mattermost: looked at %d posts made while the bot was away", len(missed))
        await self._save_positions()

    async def _my_channels(self) -> list[tuple[ChannelInfo, int]]:
        """The allowed channels the bot is in, each with the time of its last post."""
        if self.team_id is not None:  # that team's channels, and direct and group channels
            raw = await self.driver.channels.get_channels_for_team_for_user("me", self.team_id)
        else:
            raw = await self.driver.channels.get_channels_for_user("me")
        if not isinstance(raw, list):
            raise ConnectionError(f"unexpected answer to the channel list: {str(raw)[:100]}")
        channels = [(ChannelInfo(str(c.get("id") or ""), str(c.get("name") or ""), str(c.get("type") or ""),
                                 str(c.get("team_id") or "")), _int(c.get("last_post_at")))
                    for c in raw if isinstance(c, dict)]
        return [(c, at) for c, at in channels if c.id and self._channel_allowed(c.id, c.name, c.type, c.team_id)]

    async def _posts_since(self, channel: ChannelInfo, since: int) -> list[dict[str, Any]]:
        """The posts of `channel` created, edited or deleted after `since` (ms)."""
        resp = await self.driver.posts.get_posts_for_channel(channel.id, since=since)
        if not isinstance(resp, dict) or not isinstance(resp.get("order"), list) \
                or not isinstance(resp.get("posts"), dict):
            raise ConnectionError(f"unexpected answer to GET posts?since=: {str(resp)[:100]}")
        order, posts = resp["order"], resp["posts"]
        if len(order) >= POSTS_SINCE_CAP:
            log.warning("mattermost: %s: %d posts changed there within catch_up_max_age, as many as the server "
                        "returns at once: some may be missed", _channel_label(channel), len(order))
        # `posts` also holds the roots of replies, for context: only `order` changed
        return [posts[i] for i in order if isinstance(posts.get(i), dict) and posts[i].get("id")]

    async def _usernames(self, user_ids: set[str]) -> dict[str, str]:
        """Who posted what is being caught up (a relay's own posts are answered by name)."""
        user_ids.discard("")
        if not user_ids:
            return {}
        try:
            users = await self.driver.users.get_users_by_ids(sorted(user_ids))
        except Exception as err:  # only names in answers depend on it
            log.warning("mattermost: could not look up the senders' names: %s", short_error(err))
            return {}
        return {str(u["id"]): str(u.get("username") or "") for u in users if isinstance(u, dict) and u.get("id")} \
            if isinstance(users, list) else {}

    # --- the last post seen per channel ----------------------------------------------
    def _position_key(self, channel_id: str) -> str:
        return f"{PLATFORM}:{self.user_id}:{channel_id}"

    async def _read_stored_positions(self, channel_ids: list[str]) -> None:
        """Once per channel and process; from then on memory is ahead of the database."""
        todo = [c for c in channel_ids if c not in self._read_positions]
        if not todo:
            return
        stored = await asyncio.to_thread(lambda: {c: self.state.get(self._position_key(c)) for c in todo})
        for channel_id, text in stored.items():
            position = Position.load(text)
            if position is not None and channel_id not in self._positions:
                self._positions[channel_id] = position
        self._read_positions.update(todo)

    def _note_position(self, channel_id: str, post: dict[str, Any]) -> None:
        current = self._positions.get(channel_id)
        if current is not None and not current.precedes(post):
            return  # a duplicate delivery, or an older post
        self._positions[channel_id] = Position(_int(post.get("create_at")), str(post["id"]))
        self._unsaved.add(channel_id)
        if self._save_soon is None or self._save_soon.done():
            self._save_soon = asyncio.create_task(self._save_later())

    async def _save_later(self) -> None:
        """Positions are written at most every few seconds, not once per post."""
        await asyncio.sleep(max(0.0, self._saved_at + POSITION_SAVE_EVERY - time.monotonic()))
        await asyncio.shield(self._save_positions())  # a stop waits for a write under way

    def _put_positions(self, positions: dict[str, str]) -> None:
        for channel, position in positions.items():
            self.state.put(self._position_key(channel), position)

    async def _save_positions(self) -> None:
        async with self._saving:
            if not self._unsaved:
                return
            todo = {c: self._positions[c].dump() for c in self._unsaved}
            self._unsaved.clear()
            self._saved_at = time.monotonic()
            try:
                await asyncio.to_thread(self._put_positions, todo)
            except Exception as err:  # the database is away: try again with the next save
                self._unsaved.update(todo)
                log.warning("mattermost: could not save the channel positions: %s", short_error(err))

    def _channel_allowed(self, channel_id: str, name: str, channel_type: str, team_id: str) -> bool:
        if channel_type == "D":
            return True  # direct messages: the access policy's `direct` decides what runs there
        if self.team_id is not None and channel_type in ("O", "P") and team_id != self.team_id:
            return False
        if not self.cfg.allowed_channels:
            return True
        return any(fnmatch.fnmatchcase(channel_id, p) or (name and fnmatch.fnmatchcase(name, p))
                   for p in self.cfg.allowed_channels)

    def _mentioned(self, mentions: list[str], text: str) -> bool:
        """Named in the text, as the server confirms. `data.mentions` alone also lists
        everyone an @channel or @here reached: an announcement is not a command."""
        return (self.user_id in mentions and bool(self.username)
                and re.search(rf"@{re.escape(self.username)}(?![\w.-])", text, re.IGNORECASE) is not None)

    def _strip_mention(self, text: str) -> tuple[str, bool]:
        if self.username:
            m = re.match(rf"\s*@{re.escape(self.username)}(?:[:,]\s*|\s+|$)", text, re.IGNORECASE)
            if m:
                return text[m.end():], True
        return text, False

    # --- answering ------------------------------------------------------------------
    async def _answer(self, msg: Message) -> None:
        root = msg.thread or msg.message_id or ""  # a thread's replies all hang off its root post
        await answer_with_progress(
            self.bot, msg, self.cfg.progress_after,
            acknowledge=lambda: self._create_post(msg.room, root,
                                                  escape_markdown(self.bot.progress_text(msg.message_id))),
            deliver=lambda reply, ack_id: self._deliver(msg.room, root, reply, ack_id),
            update=self._progress,
        )

    async def _progress(self, ack_id: str, text: str) -> None:
        """A progress edit is not worth waiting for a rate limit, nor retrying once refused."""
        if ack_id in self._uneditable:
            return
        with wait_for_rate_limits(0):
            try:
                await self.driver.posts.patch_post(ack_id, message=escape_markdown(text))
            except (InvalidOrMissingParameters, NotEnoughPermissions, ResourceNotFound):
                self._uneditable.add(ack_id)
                raise

    async def _deliver(self, channel_id: str, root: str, reply: Reply, ack_id: str | None) -> None:
        """The text first, then the files: a refused upload costs only that file, which
        then comes as a shortened text. Waiting out rate limits is bounded by the command
        timeout; what still cannot be posted is reported by the caller."""
        with wait_for_rate_limits(self.bot.runner.command_timeout):
            try:
                inline, files = split_attachments(reply.result, self.cfg.attachment_lines)
                prefix = f"{escape_markdown(reply.mention)}: " if reply.mention else ""
                text = prefix + render_markdown(inline)
                if len(text) > MAX_POST_CHARS:
                    files.append(Attachment("answer.md", text, "the answer"))
                    text = prefix + render_markdown(Result(inline.status, inline.summary, [
                        Note("the answer is too long for one post: attached as answer.md")]))
                await self._post_answer(channel_id, root, text, ack_id)
                if files:
                    await self._send_files(channel_id, root, files)
            finally:
                if ack_id is not None:
                    self._uneditable.discard(ack_id)

    async def _post_answer(self, channel_id: str, root: str, text: str, ack_id: str | None) -> None:
        """The acknowledgement becomes the answer; where the server refuses the edit
        (PostEditTimeLimit: 400, no edit_post permission: 403, the post deleted: 404), the
        answer comes as a new post in the thread, under the acknowledgement."""
        if ack_id is not None and ack_id not in self._uneditable:
            try:
                await self.driver.posts.patch_post(ack_id, message=text)
                return
            except (InvalidOrMissingParameters, NotEnoughPermissions, ResourceNotFound) as err:
                log.info("mattermost: the server refused to edit %s (%s): the answer comes as a new post",
                         ack_id, short_error(err))
        await self._create_post(channel_id, root, text)

    async def _send_files(self, channel_id: str, root: str, files: list[Attachment]) -> None:
        uploaded: list[tuple[str, str]] = []
        refused: list[tuple[Attachment, str]] = []
        for i, attachment in enumerate(files):
            try:
                uploaded.append((attachment.filename, await self._upload(channel_id, attachment)))
            except (FeatureDisabled, NotEnoughPermissions, ContentTooLarge) as err:
                why = _upload_refusal(err)
                log.info("mattermost: could not attach %s (%s): sending a shortened text instead",
                         attachment.filename, short_error(err))
                if isinstance(err, ContentTooLarge):
                    refused.append((attachment, why))
                else:  # the next would be refused alike
                    refused += [(a, why) for a in files[i:]]
                    break
        for i in range(0, len(uploaded), MAX_FILES_PER_POST):
            chunk = uploaded[i:i + MAX_FILES_PER_POST]
            await self._create_post(channel_id, root, escape_markdown(", ".join(n for n, _ in chunk)),
                                    [file_id for _, file_id in chunk])
        for attachment, why in refused:
            await self._create_post(channel_id, root, shortened_file_post(attachment, why))

    async def _create_post(self, channel_id: str, root: str, message: str, file_ids: list[str] | None = None) -> str:
        post = await self.driver.posts.create_post(channel_id, message, root_id=root or None,
                                                   file_ids=file_ids or None)
        return str(post["id"])

    async def _upload(self, channel_id: str, attachment: Attachment) -> str:
        resp = await self.driver.files.upload_file(
            files=(attachment.filename, attachment.text.encode(), "text/plain"), channel_id=channel_id)
        return str(resp["file_infos"][0]["id"])


def _upload_refusal(err: MattermostError) -> str:
    """Why an upload was refused, for the people who asked (by the error, not its text)."""
    if isinstance(err, FeatureDisabled) or err.error_id == "api.file.attachments.disabled.app_error":
        return "the server does not take attachments"
    if isinstance(err, ContentTooLarge):
        return "it is larger than the server takes"
    return "the bot may not upload files here"


def shortened_file_post(attachment: Attachment, why: str) -> str:
    """A file that could not be attached, as much of it as fits in one post."""
    lines = attachment.text.rstrip("\n").split("\n")

    def post(count: int) -> str:
        shown = "all its" if count == len(lines) else f"its first {count} of"
        head = escape_markdown(f"could not attach {attachment.filename} ({why}); {shown} {len(lines)} lines:")
        return head + "\n" + code_block("\n".join(lines[:count]))
    low, high = 0, len(lines)  # the most lines that fit
    while low < high:
        mid = (low + high + 1) // 2
        if len(post(mid)) <= MAX_POST_CHARS:
            low = mid
        else:
            high = mid - 1
    return post(low)


class _SocketClosed(Exception):
    pass


def tls_context(cfg: MattermostConfig) -> ssl.SSLContext | None:
    """The TLS context for REST and the websocket alike: the system store, or only the
    private CA in `ca_file`, or no verification at all when `verify_tls = false`."""
    if cfg.scheme != "https":
        return None
    if cfg.ca_file is not None:
        return ssl.create_default_context(cafile=str(cfg.ca_file.expanduser()))
    ctx = ssl.create_default_context()
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _utc_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _channel_label(channel: ChannelInfo) -> str:
    return "a direct channel" if channel.type == "D" else f"~{channel.name or channel.id}"


def _error_id(frame: dict[str, Any]) -> str:
    error = frame.get("error")
    return str(error.get("id") or "no reason given") if isinstance(error, dict) else "no reason given"


def _json_list(value: Any) -> list[str]:
    """`data.mentions` is a JSON string holding a list of user ids (absent when none)."""
    if not isinstance(value, str):
        return []
    try:
        items = json.loads(value)
    except ValueError:
        return []
    return [str(i) for i in items] if isinstance(items, list) else []
