"""A faithful, strict fake of the parts of Slack a Socket Mode bot touches.

No Slack server can run here, so the tests talk to this one: an aiohttp server on
127.0.0.1 (ephemeral port) in its own thread and event loop, as a real peer would be.

Web API (`/api/<method>`), with Slack's shapes: HTTP 200 and ``{"ok": false, "error":
...}`` for every refusal, ``Content-Type: application/json; charset=utf-8``; arguments
from the query string, a form body or (for POST) a JSON body, as the SDK sends them;
the token from ``Authorization: Bearer`` or a form field (never the query string, never
a JSON field: Slack refuses both for apps of today). ``not_authed`` without a token,
``invalid_auth`` for an unknown one, ``not_allowed_token_type`` for the wrong kind (the
app-level token opens connections and does nothing else; the bot token cannot open
them). Methods: auth.test, apps.connections.open, chat.postMessage, chat.update,
conversations.info, files.getUploadURLExternal, the upload URL, files.completeUploadExternal,
and a slash command's response_url.

Socket Mode (`/link/?ticket=...`): a ticket from apps.connections.open is good for one
connection; `hello` is the first frame; envelopes ``{"envelope_id", "type", "payload",
"accepts_response_payload", "retry_attempt", "retry_reason"}`` follow. An events_api
envelope not acknowledged (``{"envelope_id": ...}`` from the client) within
`ack_deadline` is delivered again, under a new envelope id, with retry_attempt + 1 and
retry_reason "timeout" (up to `max_retries`), as Slack does; a slash command that is not
acknowledged in time is not retried: the user saw "operation_timeout" (`slash_timeouts`).
With no socket open, Slack does not queue: a slash command fails for the user at once
("/netbot failed with the error dispatch_failed", `slash_failures`), and an event waits
for the Events API retry schedule ("nearly immediately, after 1 minute, after 5
minutes": the first, immediate try finds no socket either), so it comes back after
`no_socket_retry` seconds as retry_attempt + 1 (https://api.slack.com/apis/connections/
socket-mode, "Using Socket Mode" / "Retries"; https://api.slack.com/apis/connections/
events-api#retries). An envelope goes to a connection that is open and has not sent its
close frame, preferring one not told to reconnect.
`send_disconnect(reason)` sends ``{"type": "disconnect", "reason": ...}`` (Slack's
reasons: `warning` and `refresh_requested`, reconnect; `link_disabled`, Socket Mode was
turned off for the app: do not; `too_many_websockets`, which the fake sends by itself to
a connection beyond `max_connections`, Slack's 10 per app: slack_sdk's
socket_mode/aiohttp comment on closing the old session first, and node-slack-sdk issue
#1654), routes new envelopes elsewhere while another connection is open, and closes it
after `disconnect_grace`. `close_reply_delay` holds the fake's reply to a client's close
frame that long (a slow edge: RFC 6455 section 7.1.1 only asks the peer to answer "as
soon as practical", and aiohttp's client waits 10 s for it by default).
`drop()` cuts the TCP connection without a close frame; `fail_next_handshakes(n)` makes
the next n websocket handshakes fail with 503 after spending their ticket.

Rate limits (https://api.slack.com/docs/rate-limits): an over-limit call answers HTTP 429
with ``Retry-After`` (whole seconds) and ``{"ok": false, "error": "ratelimited"}``;
chat.postMessage has its own limit of about one message per second per channel
(`post_interval`, "short bursts" aside: none here, to be strict), and `throttle()` makes
a method refuse everything for a while, as Slack does to an app that kept pushing.
`app_rate_limited()` sends the Events API's ``{"type": "app_rate_limited",
"minute_rate_limited": ...}`` callback (over 30,000 events an hour per workspace).

Scopes (https://api.slack.com/methods/chat.postMessage, /methods/files.completeUploadExternal,
/scopes/chat:write.public): every method checks the bot's scopes (`scopes`) and refuses
with ``missing_scope``, ``needed`` and ``provided``; chat.postMessage into a public
channel the bot has not joined works with chat:write.public, while sharing a file there
is refused with ``not_in_channel``. A message with a file attached carries subtype
``file_share`` and ``files`` (`user_says(..., files=[...])`), in its app_mention event too.

Tokens: `revoke()` makes a token answer ``token_revoked`` (an unknown one ``invalid_auth``)
on every method, while the socket stays up, as Slack does when the app is uninstalled
or its token revoked (https://api.slack.com/methods/auth.revoke, "tokens_revoked").

Slack also echoes what the bot posts as events where the app subscribes to them (the
bot's own messages in a DM come back as `message.im` events): the fake does the same,
so an adapter that does not ignore itself answers itself.

The test side (call from any thread): `post_event`, `user_says`, `slash`,
`slash_at_next_close`, `app_rate_limited`, `messages_in`, `send_disconnect`, `drop`,
`revoke`, `throttle`, `set_scopes`, `set_member`, `wait_for`, and counters (`calls`,
`auth_failures`, `connections`, `hellos`, `acks`, `deliveries`, `redeliveries`,
`slash_timeouts`, `slash_failures`, `close_frames`, `rate_limited`, `rejected_tickets`,
`protocol_errors`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

TEAM = "T0FAKE001"
APP_ID = "A0APP0001"
BOT_USER = "U0BOT0001"
BOT_ID = "B0BOT0001"
BOT_NAME = "netbot"
JSON_TYPE = "application/json"

BOT_METHODS = {"auth.test", "chat.postMessage", "chat.update", "conversations.info",
               "files.getUploadURLExternal", "files.completeUploadExternal"}
APP_METHODS = {"apps.connections.open"}
DEFAULT_SCOPES = ("app_mentions:read", "channels:history", "chat:write", "commands", "files:write", "im:history",
                  "im:read", "channels:read", "groups:read")
# the scope each bot method needs (conversations.info: any of the *:read ones, by the channel's kind)
METHOD_SCOPES = {"chat.postMessage": "chat:write", "chat.update": "chat:write",
                 "files.getUploadURLExternal": "files:write", "files.completeUploadExternal": "files:write"}
INFO_SCOPES = {"channel": "channels:read", "group": "groups:read", "im": "im:read", "mpim": "mpim:read"}


@dataclass
class Channel:
    id: str
    name: str
    kind: str = "channel"  # channel (public), group (private), im, mpim
    member: bool = True  # the bot is in it
    user: str | None = None  # an IM's other party

    @property
    def channel_type(self) -> str:
        return self.kind


@dataclass
class Posted:
    """A message in a channel: a user's, or one the bot posted, edited or shared a file with."""

    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    bot_id: str | None = None
    edits: list[str] = field(default_factory=list)  # earlier texts, oldest first
    files: list[dict[str, Any]] = field(default_factory=list)  # id, name, title, content
    ephemeral: bool = False  # a response_url / ack answer only the asker sees
    via: str = "chat.postMessage"

    def view(self) -> dict[str, Any]:
        return {"channel": self.channel, "ts": self.ts, "text": self.text, "user": self.user,
                "thread_ts": self.thread_ts, "bot_id": self.bot_id, "edits": list(self.edits),
                "files": [dict(f) for f in self.files], "ephemeral": self.ephemeral, "via": self.via}


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int = 0
    retry_reason: str = ""
    sent_at: float | None = None
    acked_at: float | None = None
    ack_payload: dict[str, Any] | None = None
    connection: int | None = None

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {"envelope_id": self.envelope_id, "type": self.type, "payload": self.payload,
                               "accepts_response_payload": self.accepts_response_payload}
        if self.type == "events_api":
            out["retry_attempt"] = self.retry_attempt
            out["retry_reason"] = self.retry_reason
        return out


@dataclass
class Connection:
    number: int
    ws: web.WebSocketResponse
    transport: Any
    retiring: bool = False
    closing: bool = False  # the client sent its close frame


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    completed: bool = False


class FakeSlack:
    def __init__(self, *, ack_deadline: float = 3.0, max_retries: int = 3, disconnect_grace: float = 0.5,
                 subscriptions: tuple[str, ...] = ("app_mention", "message.im"), no_socket_retry: float = 60.0,
                 close_reply_delay: float = 0.0, max_connections: int = 10, post_interval: float = 1.0,
                 scopes: tuple[str, ...] = DEFAULT_SCOPES) -> None:
        self.ack_deadline = ack_deadline
        self.max_retries = max_retries
        self.disconnect_grace = disconnect_grace
        self.no_socket_retry = no_socket_retry
        self.close_reply_delay = close_reply_delay
        self.max_connections = max_connections
        self.post_interval = post_interval
        self.scopes = set(scopes)
        self.slash_failures = 0  # slash commands sent while no socket was open
        self.close_frames = 0  # close frames the clients sent
        self.rate_limited: Counter[str] = Counter()  # method -> 429 answers
        self._last_post: dict[str, float] = {}  # channel -> monotonic time of the last chat.postMessage
        self._throttled: dict[str, tuple[float, int]] = {}  # method -> (until, Retry-After)
        self._at_close: list[Callable[[], Any]] = []  # run when a client's close frame arrives
        self.subscriptions = set(subscriptions)
        self.bot_token = "xoxb-1001-2002-" + secrets.token_hex(12)
        self.app_token = f"xapp-1-{APP_ID}-3003-" + secrets.token_hex(16)
        self.revoked: set[str] = set()  # tokens Slack no longer knows: invalid_auth
        self._sending: set[asyncio.Task[None]] = set()  # frames on their way: kept until sent
        self.refused: dict[str, str] = {}  # token -> the error it now gets (revoke())
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, str] = {BOT_USER: BOT_NAME}
        self.history: dict[str, list[Posted]] = {}
        # counters and records, for the tests
        self.calls: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()  # method -> refused tokens (not_authed, invalid_auth, wrong type)
        self.connections = 0
        self.hellos = 0
        self.rejected_tickets = 0
        self.fail_handshakes = 0  # the next N websocket handshakes fail after taking their ticket
        self.deliveries: list[Envelope] = []  # every envelope sent, retries included
        self.acks: list[str] = []  # envelope ids, in the order the acks came
        self.redeliveries = 0
        self.slash_timeouts = 0
        self.protocol_errors: list[str] = []
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._open: list[Connection] = []
        self._uploads: dict[str, Upload] = {}
        self._responses: dict[str, dict[str, Any]] = {}  # response_url id -> {channel, user, uses, expires}
        self._clock = itertools.count(1)
        self._ids = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.add_channel("C0NETOPS1", "netops")
        self.add_channel("C0OTHER01", "random")

    # --- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        self._thread = threading.Thread(target=self._serve, name="fake-slack", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake Slack did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._started.set()
        self.loop.run_forever()
        self.loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/commands/{team}/{rid}/{secret}", self._response_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        for conn in list(self._open):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the fake's loop (all state lives there) and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            value = fn()
            return await value if asyncio.iscoroutine(value) else value
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # --- the workspace -----------------------------------------------------------------
    def add_channel(self, channel_id: str, name: str, kind: str = "channel", member: bool = True,
                    user: str | None = None) -> Channel:
        channel = Channel(channel_id, name, kind, member, user)
        self.channels[channel_id] = channel
        self.history.setdefault(channel_id, [])
        return channel

    def add_user(self, user_id: str, name: str, *, im: str | None = None) -> None:
        """A person; with `im`, the id of their direct conversation with the bot."""
        self.users[user_id] = name
        if im:
            self.add_channel(im, user_id, kind="im", user=user_id)

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._clock):06d}"

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):07d}{secrets.token_hex(2).upper()}"

    # --- test API: what people do ---------------------------------------------------------
    def post_event(self, event: dict[str, Any], *, duplicate: bool = False) -> dict[str, Any]:
        """Deliver one Events API event (a message, app_mention...) in an events_api
        envelope. A message without `ts` gets one and is recorded in its channel.
        `duplicate` delivers it a second time (retry_attempt 1) even if the first was
        acknowledged, as Slack does when an ack is lost. Returns event_id, ts, envelope_id."""
        return self._call(lambda: self._post_event(dict(event), duplicate))

    def _post_event(self, event: dict[str, Any], duplicate: bool) -> dict[str, Any]:
        if event.get("type") in ("message", "app_mention") and "ts" not in event:
            event["ts"] = self._ts()
            channel = event.get("channel", "")
            if channel in self.history and "subtype" not in event:
                self.history[channel].append(Posted(channel, event["ts"], event.get("text", ""),
                                                    event.get("user", ""), event.get("thread_ts"),
                                                    event.get("bot_id")))
        event.setdefault("event_ts", event.get("ts", self._ts()))
        payload = {
            "token": "verification-token-unused-in-socket-mode", "team_id": TEAM, "api_app_id": APP_ID,
            "event": event, "type": "event_callback", "event_id": self._id("Ev"), "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT_USER, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False, "event_context": "4-" + secrets.token_hex(8),
        }
        env = Envelope(self._envelope_id(), "events_api", payload, False)
        self._send(env)
        if duplicate:
            self._send(Envelope(self._envelope_id(), "events_api", payload, False, 1, "timeout"))
        return {"event_id": payload["event_id"], "ts": event.get("ts"), "envelope_id": env.envelope_id}

    def user_says(self, user: str, channel: str, text: str, thread_ts: str | None = None,
                  files: list[str] | None = None) -> str:
        """A person posts `text`: the events Slack sends for it under the app's
        subscriptions (app_mention when the bot is mentioned in a channel; message.im in
        the bot's DMs; message.channels/groups if subscribed). With `files` (names), the
        message has files attached: subtype file_share and a `files` list, as Slack sends
        it. Returns the message ts."""
        return self._call(lambda: self._user_says(user, channel, text, thread_ts, files))

    def _user_says(self, user: str, channel_id: str, text: str, thread_ts: str | None,
                   files: list[str] | None = None) -> str:
        channel = self.channels[channel_id]
        ts = self._ts()
        self.history[channel_id].append(Posted(channel_id, ts, text, user, thread_ts))
        base: dict[str, Any] = {"user": user, "text": text, "ts": ts, "channel": channel_id, "team": TEAM,
                                "client_msg_id": secrets.token_hex(8)}
        if thread_ts:
            base["thread_ts"] = thread_ts
        if files:
            base.update(subtype="file_share", upload=False, display_as_bot=False, files=[
                {"id": self._id("F"), "name": name, "title": name, "mimetype": "text/plain", "filetype": "text",
                 "user": user, "mode": "hosted", "size": 100} for name in files])
        if channel.kind in ("channel", "group") and f"<@{BOT_USER}>" in text and "app_mention" in self.subscriptions:
            self._post_event(dict(base, type="app_mention"), False)
        if f"message.{channel.kind}s" in self.subscriptions or f"message.{channel.kind}" in self.subscriptions:
            self._post_event(dict(base, type="message", channel_type=channel.kind), False)
        return ts

    def slash(self, command: str, text: str, user: str, channel: str) -> dict[str, Any]:
        """A person runs `/command text` in `channel`: a slash_commands envelope.
        Returns envelope_id, trigger_id and response_url."""
        return self._call(lambda: self._slash(command, text, user, channel))

    def _slash(self, command: str, text: str, user: str, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        name = {"im": "directmessage", "mpim": "mpdm", "group": "privategroup"}.get(
            channel.kind if channel else "", channel.name if channel else "unknown")
        rid, secret = self._id("R"), secrets.token_hex(12)
        self._responses[rid] = {"channel": channel_id, "user": user, "uses": 0, "expires": time.time() + 1800,
                                "secret": secret}
        payload = {
            "token": "verification-token-unused-in-socket-mode", "team_id": TEAM, "team_domain": "fake",
            "channel_id": channel_id, "channel_name": name, "user_id": user, "user_name": self.users.get(user, user),
            "command": command, "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
            "response_url": f"http://127.0.0.1:{self.port}/commands/{TEAM}/{rid}/{secret}",
            "trigger_id": f"{next(self._ids)}.{secrets.token_hex(6)}",
        }
        env = Envelope(self._envelope_id(), "slash_commands", payload, True)
        self._send(env)
        return {"envelope_id": env.envelope_id, "trigger_id": payload["trigger_id"],
                "response_url": payload["response_url"]}

    def app_rate_limited(self) -> None:
        """Slack tells the app it is dropping its events for this minute (Events API:
        https://api.slack.com/apis/connections/events-api#rate-limiting), in an
        events_api envelope as Socket Mode carries every event callback."""
        def send() -> None:
            minute = int(time.time()) // 60 * 60
            self._send(Envelope(self._envelope_id(), "events_api", {
                "token": "verification-token-unused-in-socket-mode", "type": "app_rate_limited", "team_id": TEAM,
                "minute_rate_limited": minute, "api_app_id": APP_ID}, False))
        self._call(send)

    def throttle(self, method: str, seconds: float, retry_after: int) -> None:
        """`method` answers 429 with Retry-After `retry_after` for the next `seconds`."""
        self._call(lambda: self._throttled.__setitem__(method, (time.monotonic() + seconds, retry_after)))

    def set_scopes(self, *scopes: str) -> None:
        self._call(lambda: setattr(self, "scopes", set(scopes)))

    def slash_at_next_close(self, command: str, text: str, user: str, channel: str) -> None:
        """A person runs a slash command the moment the bot's next close frame arrives
        (while it closes a socket): it reaches the bot only if another one is open."""
        self._call(lambda: self._at_close.append(lambda: self._slash(command, text, user, channel)))

    def _envelope_id(self) -> str:
        return f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"

    # --- test API: what Slack does ----------------------------------------------------------
    def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every open connection to reconnect, then close them after `disconnect_grace`."""
        self._call(lambda: self._send_disconnect(reason))

    async def _send_disconnect(self, reason: str) -> None:
        for conn in list(self._open):
            if conn.retiring:
                continue
            conn.retiring = True
            await conn.ws.send_str(json.dumps({"type": "disconnect", "reason": reason,
                                               "debug_info": {"host": "applink-fake-1"}}))
            assert self.loop is not None
            self.loop.call_later(self.disconnect_grace, lambda c=conn: asyncio.ensure_future(c.ws.close()))

    def drop(self) -> None:
        """Cut every socket at the TCP level: no close frame, as when a network path dies."""
        self._call(self._drop)

    def _drop(self) -> None:
        for conn in list(self._open):
            conn.retiring = True
            conn.transport.abort()

    def fail_next_handshakes(self, count: int) -> None:
        self._call(lambda: setattr(self, "fail_handshakes", count))

    def revoke(self, token: str, error: str = "token_revoked") -> None:
        """The token is revoked (or the app uninstalled): every call with it gets `error`."""
        self._call(lambda: self.refused.__setitem__(token, error))

    def set_member(self, channel: str, member: bool) -> None:
        self._call(lambda: setattr(self.channels[channel], "member", member))

    # --- test API: what happened -----------------------------------------------------------
    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        """What the bot posted in `channel`: messages (with their edits), files it shared
        (with their content), and ephemeral answers, oldest first."""
        return self._call(lambda: [p.view() for p in self.history.get(channel, [])
                                   if p.user == BOT_USER or p.ephemeral])

    def replies_to(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The bot's messages in the thread of `ts`."""
        return [m for m in self.messages_in(channel) if m["thread_ts"] == ts]

    def envelopes(self) -> list[dict[str, Any]]:
        return self._call(lambda: [dict(e.frame(), sent_at=e.sent_at, acked_at=e.acked_at,
                                        ack_payload=e.ack_payload) for e in self.deliveries])

    def ack_delay(self, envelope_id: str) -> float | None:
        """Seconds between sending an envelope and its ack; None if not (yet) acked."""
        def delay() -> float | None:
            env = next((e for e in self.deliveries if e.envelope_id == envelope_id), None)
            if env is None or env.sent_at is None or env.acked_at is None:
                return None
            return env.acked_at - env.sent_at
        return self._call(delay)

    def open_connections(self) -> int:
        return self._call(lambda: len([c for c in self._open if not c.retiring]))

    @staticmethod
    def wait_for(found: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    # --- Socket Mode ------------------------------------------------------------------------
    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if self._tickets.get(ticket) is not False:  # unknown, or used before
            self.rejected_tickets += 1
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets[ticket] = True
        if self.fail_handshakes > 0:  # e.g. an edge server restarting: the ticket is spent all the same
            self.fail_handshakes -= 1
            return web.Response(status=503, text="upstream unavailable")
        ws = web.WebSocketResponse(autoping=True, autoclose=False)  # the close reply is ours to time
        transport = request.transport
        await ws.prepare(request)
        self.connections += 1
        conn = Connection(self.connections, ws, transport)
        crowded = len([c for c in self._open if not c.closing]) >= self.max_connections
        if crowded:
            conn.retiring = True  # nothing is routed to it
        self._open.append(conn)
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": len([c for c in self._open if not c.retiring]),
            "debug_info": {"host": "applink-fake-1", "build_number": 118, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID}}))
        self.hellos += 1
        if crowded:
            await ws.send_str(json.dumps({"type": "disconnect", "reason": "too_many_websockets",
                                          "debug_info": {"host": "applink-fake-1"}}))
            assert self.loop is not None
            self.loop.call_later(self.disconnect_grace, lambda: asyncio.ensure_future(ws.close()))
        try:
            while True:
                frame = await ws.receive()
                if frame.type == WSMsgType.TEXT:
                    self._on_client_frame(frame.data)
                elif frame.type == WSMsgType.CLOSE:  # the client's close frame: nothing more goes to it
                    conn.closing = True
                    self.close_frames += 1
                    actions, self._at_close = self._at_close, []
                    for action in actions:
                        action()
                    await asyncio.sleep(self.close_reply_delay)
                    await ws.close()
                    break
                elif frame.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            conn.closing = True
            if conn in self._open:
                self._open.remove(conn)
        return ws

    def _on_client_frame(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.protocol_errors.append(f"not JSON: {data[:80]}")
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        env = next((e for e in self.deliveries if e.envelope_id == envelope_id), None)
        if env is None:
            self.protocol_errors.append(f"ack of an unknown envelope: {data[:80]}")
            return
        if env.acked_at is not None:
            self.protocol_errors.append(f"second ack of {envelope_id}")
            return
        env.acked_at = time.monotonic()
        env.ack_payload = message.get("payload")
        self.acks.append(envelope_id)
        if env.type == "slash_commands" and env.ack_payload and env.ack_payload.get("text"):
            # the immediate answer to a slash command: only the asker sees it
            channel = env.payload["channel_id"]
            self.history.setdefault(channel, []).append(Posted(channel, self._ts(), env.ack_payload["text"],
                                                               env.payload["user_id"], ephemeral=True, via="ack"))

    def _send(self, env: Envelope) -> None:
        usable = [c for c in self._open if not c.closing and not c.ws.closed]
        live = [c for c in usable if not c.retiring] or usable
        if not live:
            if env.type == "slash_commands":
                self.slash_failures += 1  # the user sees "dispatch_failed" at once; nothing is queued
            elif env.type == "events_api" and env.retry_attempt < self.max_retries:
                assert self.loop is not None
                self.loop.call_later(self.no_socket_retry, self._send, Envelope(
                    self._envelope_id(), env.type, env.payload, env.accepts_response_payload,
                    env.retry_attempt + 1, "timeout"))
            return
        conn = live[-1]
        env.sent_at = time.monotonic()
        env.connection = conn.number
        self.deliveries.append(env)
        sending = asyncio.ensure_future(self._send_frame(conn, env))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)
        assert self.loop is not None
        self.loop.call_later(self.ack_deadline, self._check_ack, env)

    async def _send_frame(self, conn: Connection, env: Envelope) -> None:
        try:
            await conn.ws.send_str(json.dumps(env.frame()))
        except (ConnectionError, RuntimeError):
            pass  # the deadline check delivers it again

    def _check_ack(self, env: Envelope) -> None:
        if env.acked_at is not None:
            return
        if env.type == "slash_commands":
            self.slash_timeouts += 1  # the user saw "/netbot failed with the error operation_timeout"
            return
        if env.retry_attempt >= self.max_retries:
            return
        self.redeliveries += 1
        self._send(Envelope(self._envelope_id(), env.type, env.payload, env.accepts_response_payload,
                            env.retry_attempt + 1, "timeout"))

    # --- Web API ----------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls[method] += 1
        args: dict[str, Any] = {}
        for key, value in request.query.items():
            if key != "token":  # tokens in query strings are refused for apps of today
                args[key] = value
        token = None
        if request.method == "POST" and request.body_exists:
            if request.content_type == JSON_TYPE:
                try:
                    body = await request.json()
                except ValueError:
                    return _api_reply({"ok": False, "error": "invalid_json"})
                if not isinstance(body, dict):
                    return _api_reply({"ok": False, "error": "invalid_json"})
                args.update({k: v for k, v in body.items() if k != "token"})
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                token = form.get("token")
                args.update({k: v for k, v in form.items() if k != "token"})
            else:
                return _api_reply({"ok": False, "error": "invalid_form_data"})
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer "):].strip()
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _api_reply({"ok": False, "error": "unknown_method", "req_method": method})
        if not token:
            self.auth_failures[method] += 1
            return _api_reply({"ok": False, "error": "not_authed"})
        kind = "bot" if token == self.bot_token else "app" if token == self.app_token else None
        if kind is None or token in self.revoked or token in self.refused:
            self.auth_failures[method] += 1
            return _api_reply({"ok": False, "error": self.refused.get(token, "invalid_auth")})
        if (method in APP_METHODS) != (kind == "app"):
            self.auth_failures[method] += 1
            return _api_reply({"ok": False, "error": "not_allowed_token_type"})
        needed = METHOD_SCOPES.get(method)
        if method == "conversations.info":
            channel = self.channels.get(str(args.get("channel") or ""))
            needed = INFO_SCOPES.get(channel.kind) if channel else None
        if needed and needed not in self.scopes:
            return _api_reply({"ok": False, "error": "missing_scope", "needed": needed,
                               "provided": ",".join(sorted(self.scopes))})
        retry_after = self._rate_limit(method, args)
        if retry_after:
            self.rate_limited[method] += 1
            return _api_reply({"ok": False, "error": "ratelimited"}, status=429,
                              headers={"Retry-After": str(retry_after)})
        return _api_reply(await handler(args))

    def _rate_limit(self, method: str, args: dict[str, Any]) -> int:
        """Seconds to wait (Retry-After), or 0 when the call may go through."""
        now = time.monotonic()
        until, retry_after = self._throttled.get(method, (0.0, 0))
        if now < until:
            return retry_after
        if method == "chat.postMessage":
            channel = str(args.get("channel") or "")
            last = self._last_post.get(channel)
            if last is not None and now - last < self.post_interval:
                return max(1, math.ceil(self.post_interval - (now - last)))
            self._last_post[channel] = now
        return 0

    async def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake-team.slack.com/", "team": "Fake Team", "user": BOT_NAME,
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}

    async def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(16)
        self._tickets[ticket] = False
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"}

    def _writable(self, channel_id: Any, *, public_ok: bool = False) -> tuple[Channel | None, str | None]:
        """The channel if the bot may post in it; `public_ok`: chat.postMessage, which
        chat:write.public lets into public channels the bot has not joined."""
        channel = self.channels.get(str(channel_id or ""))
        if channel is None:
            return None, "channel_not_found"
        if public_ok and channel.kind == "channel" and "chat:write.public" in self.scopes:
            return channel, None
        if not channel.member:
            # a DM the bot is not part of does not exist as far as the bot can tell
            return None, "channel_not_found" if channel.kind == "im" else "not_in_channel"
        return channel, None

    async def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, error = self._writable(args.get("channel"), public_ok=True)
        if channel is None:
            return {"ok": False, "error": error}
        text = args.get("text")
        if not text and not args.get("blocks") and not args.get("attachments"):
            return {"ok": False, "error": "no_text"}
        if len(str(text)) > 40000:
            return {"ok": False, "error": "msg_too_long"}
        thread_ts = args.get("thread_ts") or None
        posted = Posted(channel.id, self._ts(), str(text), BOT_USER, thread_ts, BOT_ID)
        self.history[channel.id].append(posted)
        message = self._bot_message(posted)
        self._echo(channel, dict(message, channel=channel.id, channel_type=channel.kind))
        return {"ok": True, "channel": channel.id, "ts": posted.ts, "message": message}

    def _bot_message(self, posted: Posted) -> dict[str, Any]:
        message = {"type": "message", "text": posted.text, "user": BOT_USER, "bot_id": BOT_ID, "app_id": APP_ID,
                   "ts": posted.ts, "team": TEAM,
                   "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": TEAM}}
        if posted.thread_ts:
            message["thread_ts"] = posted.thread_ts
        return message

    def _echo(self, channel: Channel, event: dict[str, Any]) -> None:
        """Slack sends the bot's own posts to it too, where it subscribes to them."""
        if f"message.{channel.kind}" in self.subscriptions or f"message.{channel.kind}s" in self.subscriptions:
            self._post_event(event, False)

    async def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, error = self._writable(args.get("channel"), public_ok=True)
        if channel is None:
            return {"ok": False, "error": error}
        ts = str(args.get("ts") or "")
        posted = next((p for p in self.history[channel.id] if p.ts == ts and not p.ephemeral), None)
        if posted is None:
            return {"ok": False, "error": "message_not_found"}
        if posted.user != BOT_USER:
            return {"ok": False, "error": "cant_update_message"}
        text = args.get("text")
        if not text and not args.get("blocks") and not args.get("attachments"):
            return {"ok": False, "error": "no_text"}
        posted.edits.append(posted.text)
        posted.text = str(text)
        message = self._bot_message(posted)
        self._echo(channel, {"type": "message", "subtype": "message_changed", "hidden": True, "channel": channel.id,
                             "channel_type": channel.kind, "ts": self._ts(), "message": dict(message, edited={
                                 "user": BOT_USER, "ts": self._ts()})})
        return {"ok": True, "channel": channel.id, "ts": ts, "text": posted.text, "message": message}

    async def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(str(args.get("channel") or ""))
        if channel is None or (channel.kind == "im" and not channel.member):
            return {"ok": False, "error": "channel_not_found"}
        info: dict[str, Any] = {"id": channel.id, "created": 1700000000, "is_archived": False,
                                "is_channel": channel.kind == "channel", "is_group": channel.kind == "group",
                                "is_im": channel.kind == "im", "is_mpim": channel.kind == "mpim",
                                "is_private": channel.kind != "channel"}
        if channel.kind == "im":
            info["user"] = channel.user
        else:
            info.update(name=channel.name, is_member=channel.member)
        return {"ok": True, "channel": info}

    async def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length") or 0)
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if not filename or length <= 0:
            return {"ok": False, "error": "missing_argument"}
        file_id = self._id("F")
        self._uploads[file_id] = Upload(file_id, filename, length)
        return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/v1/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self._uploads.get(request.match_info["file_id"])
        if upload is None or upload.content is not None:
            return web.Response(status=404, text="upload URL unknown or already used", content_type="text/plain")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = next(iter(form.values()), None)
            data = part.file.read() if hasattr(part, "file") else str(part or "").encode()
        else:
            data = await request.read()
        if len(data) != upload.length:
            return web.Response(status=400, text=f"length {len(data)} differs from the {upload.length} announced",
                                content_type="text/plain")
        upload.content = data
        return web.Response(status=200, text=f"OK - {len(data)}", content_type="text/plain")

    async def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            files = json.loads(args["files"]) if isinstance(args.get("files"), str) else args.get("files")
        except (KeyError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        uploads = []
        for item in files:
            upload = self._uploads.get(str((item or {}).get("id")))
            if upload is None or upload.content is None or upload.completed:
                return {"ok": False, "error": "file_not_found"}
            uploads.append((upload, item.get("title") or upload.filename))
        channel_id = args.get("channel_id") or None
        thread_ts = args.get("thread_ts") or None
        if channel_id is not None:
            channel, error = self._writable(channel_id)
            if channel is None:
                return {"ok": False, "error": error}
        out = []
        for upload, title in uploads:
            upload.completed = True
            out.append({"id": upload.file_id, "name": upload.filename, "title": title, "mimetype": "text/plain",
                        "filetype": "text", "size": upload.length, "user": BOT_USER})
        if channel_id is not None:
            posted = Posted(str(channel_id), self._ts(), str(args.get("initial_comment") or ""), BOT_USER, thread_ts,
                            BOT_ID, files=[{"id": u.file_id, "name": u.filename, "title": t,
                                            "content": (u.content or b"").decode("utf-8", "replace")}
                                           for u, t in uploads], via="files.completeUploadExternal")
            self.history[str(channel_id)].append(posted)
        return {"ok": True, "files": out}

    async def _response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        entry = self._responses.get(rid)
        if entry is None or entry["secret"] != request.match_info["secret"]:
            return web.Response(status=404, text="no_service", content_type="text/plain")
        if entry["uses"] >= 5 or time.time() > entry["expires"]:
            return web.Response(status=404, text="expired_url", content_type="text/plain")
        if request.content_type != JSON_TYPE:
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text", content_type="text/plain")
        entry["uses"] += 1
        channel = entry["channel"]
        ephemeral = body.get("response_type", "ephemeral") != "in_channel"
        self.history.setdefault(channel, []).append(Posted(
            channel, self._ts(), str(body.get("text") or ""), entry["user"] if ephemeral else BOT_USER,
            ephemeral=ephemeral, via="response_url"))
        return web.Response(status=200, text="ok", content_type="text/plain")


def _api_reply(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=JSON_TYPE, charset="utf-8",
                        headers=headers)
