"""A fake Mattermost server: the part of API v4 and of its websocket that the adapter and
mattermostautodriver use, as strict as the real server or stricter.

No Mattermost server can run here, so this stands in for one. What it copies from the
real one (server 9/10, `api4/` and `app/platform/web_conn.go`), because clients depend on it:
- every JSON answer has `Content-Type: application/json` exactly, as the server sends it;
  a reverse proxy may rewrite that (`proxy_json_content_type`, e.g.
  "application/json; charset=utf-8"); errors are AppError objects
  `{"id", "message", "detailed_error", "request_id", "status_code"}`;
- rate limiting (`app/ratelimit.go`, throttled's GCRA; `rate_limit`): a refused request
  gets 429 with a text/plain body "limit exceeded" and Retry-After and X-RateLimit-Reset
  in whole seconds; every answer carries X-RateLimit-Limit/-Remaining/-Reset;
- REST calls need `Authorization: Bearer <token>`; a missing or unknown token is 401
  `api.context.session_expired.app_error`;
- the websocket delivers nothing until the client has sent an `authentication_challenge`
  with a valid token: other actions before that get a FAIL reply; a bad token closes the
  connection without a word (the real server drops the TCP connection);
- after authentication the server sends a `hello` event (seq 0) and `{"status": "OK",
  "seq_reply": N}`; here the hello comes first, the less convenient order for a client;
  every event carries the connection's own `seq`, counting up from 0;
- the JSON `ping` action is answered `{"status": "OK", "seq_reply": N, "data": {"text":
  "pong", ...}}` (`wsapi/system.go`); protocol pings are answered by the read pump alone;
- a revoked token does not close the socket (`web_conn.go` IsAuthenticated, `web_hub.go`
  invalidateUser): events silently stop and every request, the ping included, gets a FAIL
  `api.web_socket_router.not_authenticated.app_error` (status_code 401) reply;
- each socket has a send queue of 256 (`sendQueueSize`); when it is full the hub closes
  the socket (`closeAndRemoveConn`): what was queued is written, then a close frame, and
  the events that did not fit are lost (`send_queue_size`, `post_burst`);
- `posted` / `post_edited` events carry the post as a JSON *string* in `data.post`;
  `posted` has `channel_type`, `channel_name`, `sender_name` ("@username", or the
  webhook's `override_username`), `team_id` ("" for direct and group channels) and,
  when someone was mentioned, `mentions` as a JSON string list of user ids (in a direct
  channel the other member always is; @channel, @all and @here mention every member);
- posts: the author must be a channel member (403); a reply's `root_id` must be a root
  post of the same channel (400); at most 5 files, each uploaded by the author into that
  channel and not yet attached (the real server drops the others silently: here 400);
  messages longer than 16383 characters are refused (400); only the author may patch,
  and only with the edit_post permission (403, `cannot_edit`), and not after
  PostEditTimeLimit seconds (400 `api.post.update_post.permissions_time_limit.app_error`,
  `post_edit_time_limit`; `api4/post.go` postPatchChecks);
  a bot's posts get `props.from_bot = "true"`; webhook posts `from_webhook = "true"` and
  `override_username`, and the user id of whoever created the webhook;
- files: `POST /api/v4/files` multipart, part name `files`, `channel_id` in the query or
  the form, 201 `{"file_infos": [...], "client_ids": []}`; refused when attachments are
  disabled (`file_attachments`: 403 `api.file.attachments.disabled.app_error` in today's
  uploadFileStream, 501 in older servers), without the upload_file permission (403,
  `cannot_upload`) or above MaxFileSize (413 `too_large_detailed`, `max_file_size`);
- events reach only the sockets authenticated at that moment: nothing is kept for a
  client that is away (a reconnecting client must ask REST what it missed);
- an edit keeps the old version as a post of its own (store `SqlPostStore.Update`): a new
  id, `original_id` = the edited post, `delete_at` = `update_at` = the time of the edit, the
  old `create_at`; the edited post gets `edit_at` = `update_at` = that time, and the
  channel's `last_post_at` moves. A reply moves its root's `update_at` (`SaveMultiple`).
  A delete sets `delete_at` = `update_at` on the post, and on its replies if it is a root;
- `GET /api/v4/channels/{id}/posts?since=<ms>` is the server's `GetPostsSince`
  (`server/channels/api4/post.go` getPostsForChannel -> `app/post.go` GetPostsSince ->
  `store/sqlstore/post_store.go` GetPostsSince): the channel's posts whose `update_at` is
  after `since`, deleted posts and edit-history copies included, at most 1000 of them
  picked in no particular order (the query's LIMIT has no ORDER BY); `order` lists their
  ids newest first by `create_at`; `posts` also holds the roots of the replies among them,
  which are in `order` only if they changed themselves; not paged, no cursor ids. Without
  `since`: `page`/`per_page` of undeleted posts, newest first. `before`/`after`: 501 here;
- `GET /api/v4/users/me/teams/{team_id}/channels`: the user's channels of that team and
  its direct and group channels (team id ""), by display name; `GET /api/v4/users/me/channels`:
  those of every team; `POST /api/v4/users/ids`: the users with those ids.

Test API (callable from any thread): `add_team`, `add_user`, `create_token`,
`revoke_token`, `expire_at_websocket`, `add_channel`, `direct_channel`, `post_as`, `post_as_webhook`,
`edit_as`, `delete_as`, `rebroadcast`, `drop_connections`, `refuse_websockets`, `set_clock`, `restart`,
`rate_limit`, `mute_websockets`, `post_burst`, and read-backs `came_back_early`, `posts_in`, `thread`, `file_text`, `edits_of`, `stats`, `authenticated`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import secrets
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

MAX_POST_CHARS = 16383  # the server's MaxPostSize on current schemas
POSTS_SINCE_LIMIT = 1000  # GetPostsSince's LIMIT
MAX_FILES_PER_POST = 5
SERVER_VERSION = "10.11.0.0.fake"


def new_id() -> str:
    """26 lower-case base32 characters, like Mattermost's model.NewId()."""
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")


def _now_ms() -> int:
    return int(time.time() * 1000)


_ID = re.compile(r"^[a-z0-9]{26}$")
_MENTION = re.compile(r"@([a-z0-9][a-z0-9._-]*)", re.IGNORECASE)
_GROUP_MENTION = re.compile(r"@(channel|all|here)\b", re.IGNORECASE)


@dataclass
class Team:
    id: str
    name: str


@dataclass
class User:
    id: str
    username: str
    is_bot: bool = False

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "create_at": 0, "update_at": 0, "delete_at": 0, "username": self.username,
                "auth_data": "", "auth_service": "", "email": f"{self.username}@example.invalid",
                "nickname": "", "first_name": "", "last_name": "", "position": "",
                "roles": "system_user", "locale": "en", "is_bot": self.is_bot}


@dataclass
class Channel:
    id: str
    name: str
    type: str  # O open, P private, D direct, G group
    team_id: str
    members: set[str] = field(default_factory=set)
    last_post_at: int = 0  # moved by every new post and every edit, as Channels.LastPostAt is

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "create_at": 0, "update_at": 0, "delete_at": 0, "team_id": self.team_id,
                "type": self.type, "display_name": self.name, "name": self.name, "header": "", "purpose": "",
                "last_post_at": self.last_post_at, "last_root_post_at": self.last_post_at}


@dataclass
class StoredFile:
    id: str
    user_id: str
    channel_id: str
    name: str
    data: bytes
    mime_type: str
    post_id: str = ""

    def info(self) -> dict[str, Any]:
        ext = self.name.rsplit(".", 1)[1] if "." in self.name else ""
        return {"id": self.id, "user_id": self.user_id, "post_id": self.post_id, "channel_id": self.channel_id,
                "create_at": 0, "update_at": 0, "delete_at": 0, "name": self.name, "extension": ext,
                "size": len(self.data), "mime_type": self.mime_type, "width": 0, "height": 0,
                "has_preview_image": False, "mini_preview": None, "remote_id": "", "archived": False}


SEND_QUEUE_SIZE = 256  # web_conn.go sendQueueSize


@dataclass(eq=False)
class _Conn:
    """One websocket, as `app/platform/web_conn.go` WebConn and the hub in `web_hub.go` see it.

    Everything for the client (events and replies alike) goes through one send queue of
    `queue_size` (sendQueueSize, 256) that a writer drains (writePump). When the queue is
    full the hub does not wait: `closeAndRemoveConn` closes it, the writer sends what was
    queued and then a close frame, and the event that did not fit is lost.

    The session: `token` is cleared once the session it names is gone (`IsAuthenticated`
    re-reads a session whose cache was invalidated, as a revocation does, and on failure
    clears the token). The socket stays open; `ShouldSendEvent` is false from then on, so
    events silently stop, and every request but the challenge gets a FAIL
    `api.web_socket_router.not_authenticated.app_error` reply (`websocket_router.go`).
    """
    ws: web.WebSocketResponse
    request: web.Request
    queue_size: int = SEND_QUEUE_SIZE
    user: User | None = None
    token: str = ""
    seq: int = 0
    muted: bool = False  # the hub is stuck: nothing reaches the writer (protocol pongs still do)
    closing: bool = False
    outbox: deque[tuple[str, dict[str, Any]]] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def event(self, name: str, data: dict[str, Any], channel_id: str = "") -> None:
        msg = {"event": name, "data": data,
               "broadcast": {"omit_users": None, "user_id": self.user.id if name == "hello" and self.user else "",
                             "channel_id": channel_id, "team_id": "", "connection_id": "",
                             "omit_connection_id": ""}}
        self._enqueue("event", msg)

    def reply(self, body: dict[str, Any]) -> None:
        self._enqueue("reply", body)

    def _enqueue(self, kind: str, msg: dict[str, Any]) -> None:
        if self.closing or self.muted or self.ws.closed:
            return
        if len(self.outbox) >= self.queue_size:
            self.closing = True  # web_hub.go: "webhub.broadcast: cannot send, closing websocket for user"
        else:
            self.outbox.append((kind, msg))
        self.wakeup.set()

    async def pump(self) -> None:
        """writePump: events get the connection's sequence number as they are written."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.outbox:
                kind, msg = self.outbox.popleft()
                if kind == "event":
                    msg = dict(msg, seq=self.seq)
                    self.seq += 1
                try:
                    await self.ws.send_str(json.dumps(msg))
                except ConnectionError:
                    return
            if self.closing:
                await self.ws.close()
                return

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a crash or a network cut does."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


@dataclass
class _Gcra:
    """The server's rate limiter (`app/ratelimit.go`, throttled's GCRARateLimiter with
    RateQuota{PerSec, MaxBurst}): a request is allowed when the theoretical arrival time,
    moved on by one emission interval, is within the burst tolerance of now."""
    per_sec: float
    max_burst: int
    tat: float = 0.0  # theoretical arrival time, time.monotonic()
    early: int = 0  # requests that came back before the Retry-After they were given
    not_before: float = 0.0

    def check(self, now: float) -> tuple[bool, dict[str, str]]:
        emission = 1.0 / self.per_sec
        tolerance = emission * (self.max_burst + 1)
        new_tat = max(self.tat, now) + emission
        diff = now - (new_tat - tolerance)
        headers = {"X-RateLimit-Limit": str(self.max_burst + 1)}
        if diff < 0:  # limited
            if now < self.not_before:
                self.early += 1
            retry_after, reset_after = -diff, self.tat - now
            self.not_before = now + retry_after
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(math.ceil(reset_after)),
                            "Retry-After": str(math.ceil(retry_after))})
            return False, headers
        self.tat = new_tat
        ttl = new_tat - now
        next_allowed = tolerance - ttl
        headers["X-RateLimit-Remaining"] = str(int(next_allowed / emission)) if next_allowed > -emission else "0"
        headers["X-RateLimit-Reset"] = str(math.ceil(ttl))
        return True, headers


class ApiError(Exception):
    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_id, self.message = status, error_id, message


def _json(data: Any, status: int = 200) -> web.Response:
    # Not web.json_response: that says "application/json; charset=utf-8", and the driver
    # compares the header with "application/json" exactly, as the real server sends it.
    resp = web.Response(body=json.dumps(data).encode(), status=status)
    resp.headers["Content-Type"] = "application/json"
    return resp


class FakeMattermost:
    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.ssl_context = ssl_context
        self.teams: dict[str, Team] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, str] = {}  # token -> user id
        self.channels: dict[str, Channel] = {}
        self.team_members: dict[str, set[str]] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self.edits: dict[str, list[str]] = {}
        self.files: dict[str, StoredFile] = {}
        # users_me, users_me_401, ws_connects, ws_auth, ws_auth_failed, posts_since, ws_refused
        self.stats: Counter[str] = Counter()
        self.posts_since_limit = POSTS_SINCE_LIMIT
        self.clock_offset_ms = 0  # the server's clock against the real one (tests move it)
        self.refusing_websockets = False  # a proxy answering 503 while the server restarts
        # called on the server's loop as a `since` query arrives, before it is answered
        self.before_posts_since: Callable[[], Any] | None = None
        self._conns: set[_Conn] = set()
        self._expiring: set[str] = set()
        self.send_queue_size = SEND_QUEUE_SIZE
        # ServiceSettings.PostEditTimeLimit: seconds after creation a post's message may be
        # changed; -1 (the default) = always
        self.post_edit_time_limit = -1
        self.cannot_edit: set[str] = set()  # user ids whose role lacks edit_post
        # FileSettings: EnableFileAttachments, MaxFileSize (default 100 MiB); the status a
        # disabled upload gets: 403 in uploadFileStream today, 501 in older servers
        self.file_attachments = True
        self.attachments_disabled_status = 403
        self.max_file_size = 104857600
        self.cannot_upload: set[str] = set()  # user ids whose role lacks upload_file
        self._rate_limits: dict[str, _Gcra] = {}  # user id -> its tokens' limiter (VaryByUser)
        # A reverse proxy in front that rewrites the JSON media type (None: the server's own)
        self.proxy_json_content_type: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle --------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def start(self) -> FakeMattermost:
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-mattermost", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake Mattermost server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeMattermost:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._front, self._errors])
        app.router.add_get("/api/v4/system/ping", self._ping)
        app.router.add_get("/api/v4/websocket", self._websocket)
        app.router.add_get("/api/v4/users/me/teams", self._my_teams)
        app.router.add_post("/api/v4/users/ids", self._users_by_ids)
        app.router.add_get("/api/v4/users/{user_id}", self._get_user)
        app.router.add_get("/api/v4/users/{user_id}/teams/{team_id}/channels", self._my_channels)
        app.router.add_get("/api/v4/users/{user_id}/channels", self._my_channels)
        app.router.add_get("/api/v4/channels/{channel_id}", self._get_channel)
        app.router.add_get("/api/v4/channels/{channel_id}/posts", self._channel_posts)
        app.router.add_post("/api/v4/posts", self._create_post)
        app.router.add_get("/api/v4/posts/{post_id}", self._get_post)
        app.router.add_delete("/api/v4/posts/{post_id}", self._delete_post)
        app.router.add_put("/api/v4/posts/{post_id}/patch", self._patch_post)
        app.router.add_post("/api/v4/files", self._upload)
        app.router.add_get("/api/v4/files/{file_id}", self._get_file)
        app.router.add_get("/api/v4/files/{file_id}/info", self._file_info)
        self._runner = web.AppRunner(app, shutdown_timeout=1, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()
        if self._runner is not None:
            await self._runner.cleanup()

    def restart(self) -> None:
        """Stop listening, drop every connection, and listen again on the same port with
        the same data, as a server restart does."""
        async def again() -> None:
            await self._shutdown()
            await self._serve()
        self._call(again)

    def drop_connections(self, user: User | None = None) -> None:
        """Cut every websocket, or `user`'s (no close frame); the server keeps running."""
        async def drop() -> None:
            for conn in list(self._conns):
                if user is None or conn.user is user:
                    conn.abort()
        self._call(drop)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (a coroutine function or a plain one) on the server's loop and wait."""
        assert self._loop is not None

        async def wrapper() -> Any:
            value = fn()
            return await value if asyncio.iscoroutine(value) else value
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def now_ms(self) -> int:
        return _now_ms() + self.clock_offset_ms

    def set_clock(self, offset_seconds: float) -> None:
        """The server's clock from now on reads this far from the real one."""
        self._call(lambda: setattr(self, "clock_offset_ms", int(offset_seconds * 1000)))

    def refuse_websockets(self, refusing: bool) -> None:
        """While refusing, websocket upgrades get 503 (REST still works)."""
        self._call(lambda: setattr(self, "refusing_websockets", refusing))

    def rate_limit(self, user: User, per_sec: float | None, max_burst: int = 0) -> None:
        """RateLimitSettings (Enable, PerSec, MaxBurst, VaryByUser) for `user`'s tokens, its
        bucket empty as just after a burst; None lifts the limit."""
        def apply() -> None:
            if per_sec is None:
                self._rate_limits.pop(user.id, None)
            else:
                self._rate_limits[user.id] = _Gcra(per_sec, max_burst,
                                                   tat=time.monotonic() + (max_burst + 1) / per_sec)
        self._call(apply)

    def came_back_early(self, user: User) -> int:
        """How often `user` asked again before the Retry-After it had been given."""
        return self._call(lambda: self._rate_limits[user.id].early if user.id in self._rate_limits else 0)

    def mute_websockets(self, user: User, muted: bool = True) -> None:
        """`user`'s open sockets stay open and answer protocol pings (the read pump does that),
        but nothing else reaches them: no event, no reply (a stuck hub: `Hub.SendMessage`
        and `Broadcast` wait on the hub's channels)."""
        def apply() -> None:
            for conn in self._conns:
                if conn.user is user:
                    conn.muted = muted
        self._call(apply)

    def post_burst(self, user: User, channel: Channel, messages: list[str]) -> list[dict[str, Any]]:
        """Several posts at once, faster than any socket is written (one turn of the loop)."""
        async def burst() -> list[dict[str, Any]]:
            return [await self._post(user, channel, m, "", {}, []) for m in messages]
        return self._call(burst)

    # --- test API: setting up -------------------------------------------------------------
    # Every change runs on the server's loop, so no handler sees a half-made change.
    def add_team(self, name: str) -> Team:
        team = Team(new_id(), name)

        def add() -> Team:
            self.teams[team.id] = team
            self.team_members[team.id] = set()
            return team
        return self._call(add)

    def add_user(self, username: str, bot: bool = False, teams: tuple[Team, ...] = ()) -> User:
        user = User(new_id(), username, bot)

        def add() -> User:
            self.users[user.id] = user
            for team in teams:
                self.team_members[team.id].add(user.id)
            return user
        return self._call(add)

    def create_token(self, user: User) -> str:
        token = new_id()
        self._call(lambda: self.tokens.__setitem__(token, user.id))
        return token

    def revoke_token(self, token: str) -> None:
        self._call(lambda: self.tokens.pop(token, None))

    def expire_at_websocket(self, token: str) -> None:
        """The token stops working at its next websocket authentication (a session revoked
        between a client's REST check and its websocket challenge)."""
        self._call(lambda: self._expiring.add(token))

    def add_channel(self, name: str, members: list[User], team: Team, type: str = "O") -> Channel:
        assert type in ("O", "P")
        channel = Channel(new_id(), name, type, team.id, {u.id for u in members})
        return self._call(lambda: self.channels.setdefault(channel.id, channel))

    def direct_channel(self, a: User, b: User) -> Channel:
        name = "__".join(sorted((a.id, b.id)))

        def find_or_add() -> Channel:
            for channel in self.channels.values():
                if channel.name == name:
                    return channel
            channel = Channel(new_id(), name, "D", "", {a.id, b.id})
            self.channels[channel.id] = channel
            return channel
        return self._call(find_or_add)

    def group_channel(self, members: list[User]) -> Channel:
        channel = Channel(new_id(), "".join(sorted(u.id for u in members))[:64], "G", "", {u.id for u in members})
        return self._call(lambda: self.channels.setdefault(channel.id, channel))

    # --- test API: talking ----------------------------------------------------------------------
    def post_as(self, user: User, channel: Channel, message: str, root_id: str | None = None,
                props: dict[str, Any] | None = None) -> dict[str, Any]:
        """`user` posts, as through the API (a bot's post gets from_bot); every member's
        authenticated websocket is told."""
        return self._call(lambda: self._post(user, channel, message, root_id or "", dict(props or {}), []))

    def post_as_webhook(self, creator: User, channel: Channel, message: str, username: str,
                        props: dict[str, Any] | None = None) -> dict[str, Any]:
        """An incoming webhook post: anyone holding the hook URL can send one."""
        extra = dict(props or {}, from_webhook="true", override_username=username)
        return self._call(lambda: self._post(creator, channel, message, "", extra, [], webhook=True))

    def edit_as(self, user: User, post_id: str, message: str) -> dict[str, Any]:
        """`user` edits their post (as `PUT /posts/{id}/patch`)."""
        async def edit() -> dict[str, Any]:
            post = self.posts[post_id]
            if post["user_id"] != user.id:
                raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
            return await self._edit(post, message)
        return self._call(edit)

    def delete_as(self, user: User, post_id: str) -> None:
        """`user` deletes their post (as `DELETE /posts/{id}`)."""
        async def delete() -> None:
            post = self.posts[post_id]
            if post["user_id"] != user.id:
                raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
            await self._delete(post)
        self._call(delete)

    def rebroadcast(self, post_id: str) -> None:
        """Deliver a stored post's `posted` event once more (a duplicate delivery)."""
        self._call(lambda: self._broadcast_posted(self.posts[post_id], self.posts[post_id].get("props", {})
                                                  .get("from_webhook") == "true"))

    # --- test API: reading back -----------------------------------------------------------------
    # What a person sees: deleted posts and edit-history copies are left out.
    def posts_in(self, channel: Channel, by: User | None = None) -> list[dict[str, Any]]:
        return self._call(lambda: [p for p in self.posts.values() if p["channel_id"] == channel.id
                                   and not p["delete_at"] and (by is None or p["user_id"] == by.id)])

    def thread(self, root_id: str, by: User | None = None) -> list[dict[str, Any]]:
        """The replies in a thread, oldest first (edits applied)."""
        return self._call(lambda: [p for p in self.posts.values() if p["root_id"] == root_id
                                   and not p["delete_at"] and (by is None or p["user_id"] == by.id)])

    def file_text(self, file_id: str) -> str:
        return self.files[file_id].data.decode()

    def file(self, file_id: str) -> StoredFile:
        return self.files[file_id]

    def edits_of(self, post_id: str) -> list[str]:
        """Each message a post was patched to, in order."""
        return list(self.edits.get(post_id, []))

    def authenticated(self, user: User) -> int:
        """How many authenticated websockets `user` has open."""
        return self._call(lambda: sum(1 for c in self._conns if c.user is user and not c.ws.closed
                                      and self._session_valid(c)))

    # --- REST ---------------------------------------------------------------------------------------
    @web.middleware
    async def _front(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """What stands before the API: the rate limiter (`app/ratelimit.go` RateLimitHandler
        wraps the whole router; every answer carries X-RateLimit-Limit, -Remaining and -Reset,
        a refusal also Retry-After, all in whole seconds, and `http.Error`'s plain-text body
        "limit exceeded"), then perhaps a reverse proxy that rewrites the JSON media type."""
        limiter = self._limiter_for(request)
        headers: dict[str, str] = {}
        if limiter is not None:
            allowed, headers = limiter.check(time.monotonic())
            if not allowed:
                self.stats["rate_limited"] += 1
                return web.Response(status=429, text="limit exceeded\n", content_type="text/plain", charset="utf-8",
                                    headers={**headers, "X-Content-Type-Options": "nosniff"})
        resp = await handler(request)
        if not isinstance(resp, web.WebSocketResponse):
            resp.headers.update(headers)
            if self.proxy_json_content_type and resp.headers.get("Content-Type") == "application/json":
                resp.headers["Content-Type"] = self.proxy_json_content_type
        return resp

    def _limiter_for(self, request: web.Request) -> _Gcra | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user_id = self.tokens.get(token) if scheme.lower() == "bearer" else None
        return self._rate_limits.get(user_id) if user_id else None

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        request_id = new_id()
        try:
            resp = await handler(request)
        except ApiError as err:
            resp = _json({"id": err.error_id, "message": err.message, "detailed_error": "",
                          "request_id": request_id, "status_code": err.status}, err.status)
        except web.HTTPNotFound:
            resp = _json({"id": "api.context.404.app_error", "message": "Sorry, we could not find the page.",
                          "detailed_error": "There doesn't appear to be an api call for the url='"
                                            f"{request.path}'.", "request_id": request_id, "status_code": 404}, 404)
        except web.HTTPMethodNotAllowed:
            resp = _json({"id": "api.context.405.app_error", "message": "Method not allowed.", "detailed_error": "",
                          "request_id": request_id, "status_code": 405}, 405)
        if not isinstance(resp, web.WebSocketResponse):
            resp.headers["X-Request-Id"] = request_id
            resp.headers["X-Version-Id"] = SERVER_VERSION
        return resp

    def _session(self, request: web.Request) -> User:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user_id = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if user_id is None:
            raise ApiError(401, "api.context.session_expired.app_error",
                           "Invalid or expired session, please login again.")
        return self.users[user_id]

    @staticmethod
    def _id_param(request: web.Request, name: str) -> str:
        value = request.match_info[name]
        if not _ID.match(value):
            raise ApiError(400, "api.context.invalid_url_param.app_error",
                           f"Invalid or missing {name} parameter in request URL.")
        return value

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "api.context.invalid_body_param.app_error",
                           "Invalid or missing body in request body.")
        return body

    def _member_channel(self, user: User, channel_id: Any) -> Channel:
        channel = self.channels.get(channel_id) if isinstance(channel_id, str) else None
        if channel is None or user.id not in channel.members:
            raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        return channel

    async def _ping(self, request: web.Request) -> web.Response:
        return _json({"status": "OK"})

    async def _get_user(self, request: web.Request) -> web.Response:
        if request.match_info["user_id"] == "me":
            self.stats["users_me"] += 1
            try:
                return _json(self._session(request).json())
            except ApiError:
                self.stats["users_me_401"] += 1
                raise
        self._session(request)
        user = self.users.get(self._id_param(request, "user_id"))
        if user is None:
            raise ApiError(404, "app.user.missing_account.const", "Unable to find the user.")
        return _json(user.json())

    async def _my_teams(self, request: web.Request) -> web.Response:
        me = self._session(request)
        return _json([{"id": t.id, "name": t.name, "display_name": t.name, "type": "O"}
                      for t in self.teams.values() if me.id in self.team_members[t.id]])

    async def _users_by_ids(self, request: web.Request) -> web.Response:
        self._session(request)
        try:
            ids = json.loads(await request.read())
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not ids:
            raise ApiError(400, "api.context.invalid_body_param.app_error",
                           "Invalid or missing user_ids in request body.")
        return _json([self.users[i].json() for i in ids if isinstance(i, str) and i in self.users])

    async def _my_channels(self, request: web.Request) -> web.Response:
        me = self._session(request)
        if request.match_info["user_id"] not in ("me", me.id):
            raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        team_id = request.match_info.get("team_id")
        if team_id is not None:
            team_id = self._id_param(request, "team_id")
            if me.id not in self.team_members.get(team_id, set()):
                raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        mine = [c for c in self.channels.values() if me.id in c.members
                and (team_id is None or c.team_id in (team_id, ""))]
        return _json([c.json() for c in sorted(mine, key=lambda c: c.name)])

    async def _channel_posts(self, request: web.Request) -> web.Response:
        me = self._session(request)
        channel = self._member_channel(me, self._id_param(request, "channel_id"))
        query = request.query
        if query.get("before") or query.get("after"):
            raise ApiError(501, "fake.not_implemented", "before and after are not implemented in the fake")
        try:
            since = int(query.get("since") or 0)
            page, per_page = int(query.get("page") or 0), min(int(query.get("per_page") or 60), 200)
        except ValueError:
            raise ApiError(400, "api.context.invalid_url_param.app_error",
                           "Invalid or missing since parameter in request URL.") from None
        in_channel = [p for p in self.posts.values() if p["channel_id"] == channel.id]
        if since > 0:
            self.stats["posts_since"] += 1
            if self.before_posts_since is not None:
                done = self.before_posts_since()
                if asyncio.iscoroutine(done):
                    await done
            # LIMIT without ORDER BY: which posts a capped answer keeps is up to the database
            changed = [p for p in in_channel if p["update_at"] > since][:self.posts_since_limit]
            roots = [self.posts[p["root_id"]] for p in changed if p["root_id"]]
            order = [p["id"] for p in sorted(changed, key=lambda p: p["create_at"], reverse=True)]
            listed = sorted({p["id"]: p for p in changed + roots}.values(), key=lambda p: p["create_at"],
                            reverse=True)
        else:
            live = sorted((p for p in in_channel if not p["delete_at"]), key=lambda p: p["create_at"], reverse=True)
            shown = live[page * per_page:(page + 1) * per_page]
            order = [p["id"] for p in shown]
            listed = shown + [self.posts[p["root_id"]] for p in shown if p["root_id"]]
        return _json({"order": order, "posts": {p["id"]: p for p in listed}, "next_post_id": "",
                      "prev_post_id": "", "has_next": False, "first_inaccessible_post_time": 0})

    async def _get_channel(self, request: web.Request) -> web.Response:
        me = self._session(request)
        return _json(self._member_channel(me, self._id_param(request, "channel_id")).json())

    async def _create_post(self, request: web.Request) -> web.Response:
        me = self._session(request)
        body = await self._body(request)
        channel = self._member_channel(me, body.get("channel_id"))
        props = body.get("props") or {}
        if not isinstance(props, dict):
            raise ApiError(400, "api.context.invalid_body_param.app_error", "Invalid or missing post in request body.")
        for forged in ("from_webhook", "from_bot", "override_username"):
            props.pop(forged, None)
        post = await self._post(me, channel, body.get("message", ""), body.get("root_id") or "", props,
                                body.get("file_ids") or [])
        return _json(post, 201)

    async def _get_post(self, request: web.Request) -> web.Response:
        me = self._session(request)
        post = self.posts.get(self._id_param(request, "post_id"))
        if post is None or post["delete_at"]:
            raise ApiError(404, "app.post.get.app_error", "Unable to get the post.")
        self._member_channel(me, post["channel_id"])
        return _json(post)

    async def _patch_post(self, request: web.Request) -> web.Response:
        me = self._session(request)
        post = self.posts.get(self._id_param(request, "post_id"))
        if post is None or post["delete_at"]:
            raise ApiError(404, "app.post.get.app_error", "Unable to get the post.")
        body = await self._body(request)
        # api4/post.go postPatchChecks: the edit permission first (edit_others_posts is
        # not modelled), then PostEditTimeLimit for a patch that carries a message
        if post["user_id"] != me.id or me.id in self.cannot_edit:
            raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        limit = self.post_edit_time_limit
        if limit != -1 and self.now_ms() > post["create_at"] + limit * 1000 and "message" in body:
            raise ApiError(400, "api.post.update_post.permissions_time_limit.app_error",
                           f"Post edit is only allowed for {limit} seconds. Please ask your System Administrator "
                           "for details.")
        return _json(await self._edit(post, body.get("message", post["message"])))

    async def _delete_post(self, request: web.Request) -> web.Response:
        me = self._session(request)
        post = self.posts.get(self._id_param(request, "post_id"))
        if post is None or post["delete_at"]:
            raise ApiError(404, "app.post.get.app_error", "Unable to get the post.")
        if post["user_id"] != me.id:
            raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        await self._delete(post)
        return _json({"status": "OK"})

    async def _upload(self, request: web.Request) -> web.Response:
        """api4/file.go uploadFileStream: attachments disabled first (403, or 501 on older
        servers), then the upload_file permission on the channel (403), then the size
        (`app/file.go` UploadFileX: 413 `too_large_detailed` above FileSettings.MaxFileSize)."""
        me = self._session(request)
        if not self.file_attachments:
            raise ApiError(self.attachments_disabled_status, "api.file.attachments.disabled.app_error",
                           "File attachments have been disabled on this server.")
        if not request.content_type.startswith("multipart/form-data"):
            raise ApiError(400, "api.file.upload_file.incorrect_number_of_files.app_error",
                           "Unable to upload files. Incorrect number of files specified.")
        channel_id = request.query.get("channel_id")
        uploads: list[tuple[str, bytes, str]] = []
        client_ids: list[str] = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "channel_id":  # type: ignore[union-attr]
                channel_id = channel_id or (await part.text())  # type: ignore[union-attr]
            elif part.name == "client_ids":  # type: ignore[union-attr]
                client_ids.append(await part.text())  # type: ignore[union-attr]
            elif part.name == "files" and part.filename:  # type: ignore[union-attr]
                data = await part.read()  # type: ignore[union-attr]
                uploads.append((part.filename, bytes(data),  # type: ignore[union-attr]
                                part.headers.get("Content-Type", "application/octet-stream")))  # type: ignore[union-attr]
        if not uploads:
            raise ApiError(400, "api.file.upload_file.incorrect_number_of_files.app_error",
                           "Unable to upload files. Incorrect number of files specified.")
        channel = self._member_channel(me, channel_id)
        if me.id in self.cannot_upload:
            raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        for name, data, _ in uploads:
            if len(data) > self.max_file_size:
                raise ApiError(413, "api.file.upload_file.too_large_detailed.app_error",
                               f"Unable to upload file {name}. {len(data)} bytes exceeds the maximum allowed "
                               f"{self.max_file_size} bytes.")
        infos = []
        for name, data, mime in uploads:
            stored = StoredFile(new_id(), me.id, channel.id, name, data, mime.split(";")[0])
            self.files[stored.id] = stored
            infos.append(stored.info())
        return _json({"file_infos": infos, "client_ids": client_ids}, 201)

    def _readable_file(self, request: web.Request) -> StoredFile:
        me = self._session(request)
        stored = self.files.get(self._id_param(request, "file_id"))
        if stored is None:
            raise ApiError(404, "app.file_info.get.app_error", "Unable to get the file info.")
        self._member_channel(me, stored.channel_id)
        return stored

    async def _get_file(self, request: web.Request) -> web.Response:
        stored = self._readable_file(request)
        return web.Response(body=stored.data, content_type=stored.mime_type,
                            headers={"Content-Disposition": f'attachment;filename="{stored.name}"'})

    async def _file_info(self, request: web.Request) -> web.Response:
        return _json(self._readable_file(request).info())

    # --- posting ----------------------------------------------------------------------------------
    @staticmethod
    def _check_message(message: Any) -> None:
        if not isinstance(message, str) or len(message) > MAX_POST_CHARS:
            raise ApiError(400, "model.post.is_valid.message_length.app_error",
                           f"Post Message property is longer than the maximum permitted length of "
                           f"{MAX_POST_CHARS} characters.")

    async def _edit(self, post: dict[str, Any], message: Any) -> dict[str, Any]:
        self._check_message(message)
        now = self.now_ms()
        history = dict(post, id=new_id(), original_id=post["id"], delete_at=now, update_at=now)
        self.posts[history["id"]] = history
        post["message"] = message
        self.edits.setdefault(post["id"], []).append(message)
        post["edit_at"] = post["update_at"] = now
        channel = self.channels[post["channel_id"]]
        channel.last_post_at = max(channel.last_post_at, now)
        for conn in self._listeners(channel):
            conn.event("post_edited", {"post": json.dumps(post)}, post["channel_id"])
        return post

    async def _delete(self, post: dict[str, Any]) -> None:
        now = self.now_ms()
        for p in self.posts.values():
            if p is post or (not post["root_id"] and p["root_id"] == post["id"] and not p["delete_at"]):
                p["delete_at"] = p["update_at"] = now
        for conn in self._listeners(self.channels[post["channel_id"]]):
            conn.event("post_deleted", {"post": json.dumps(post)}, post["channel_id"])

    async def _post(self, user: User, channel: Channel, message: str, root_id: str, props: dict[str, Any],
                    file_ids: list[Any], webhook: bool = False) -> dict[str, Any]:
        if user.id not in channel.members:
            raise ApiError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
        self._check_message(message)
        if root_id:
            root = self.posts.get(root_id)
            if root is None or root["root_id"] or root["delete_at"]:
                raise ApiError(400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter.")
            if root["channel_id"] != channel.id:
                raise ApiError(400, "api.post.create_post.channel_root_id.app_error",
                               "Invalid ChannelId for RootId parameter.")
        if not isinstance(file_ids, list) or len(file_ids) > MAX_FILES_PER_POST:
            raise ApiError(400, "model.post.is_valid.file_ids.app_error", "Invalid file ids.")
        files = [self.files.get(f) if isinstance(f, str) else None for f in file_ids]
        if any(f is None or f.user_id != user.id or f.channel_id != channel.id or f.post_id for f in files):
            raise ApiError(400, "api.post.create_post.file_ids.app_error", "Invalid file ids.")
        if user.is_bot and not webhook:
            props["from_bot"] = "true"
        now = self.now_ms()
        post: dict[str, Any] = {
            "id": new_id(), "create_at": now, "update_at": now, "edit_at": 0, "delete_at": 0, "is_pinned": False,
            "user_id": user.id, "channel_id": channel.id, "root_id": root_id, "original_id": "",
            "message": message, "type": "", "props": props, "hashtags": "", "pending_post_id": "",
            "reply_count": 0, "last_reply_at": 0, "participants": None, "metadata": {},
        }
        if files:
            post["file_ids"] = [f.id for f in files]  # type: ignore[union-attr]
            for f in files:
                f.post_id = post["id"]  # type: ignore[union-attr]
            post["metadata"]["files"] = [f.info() for f in files]  # type: ignore[union-attr]
        if root_id:
            self.posts[root_id]["reply_count"] += 1
            self.posts[root_id]["update_at"] = now
        self.posts[post["id"]] = post
        channel.last_post_at = max(channel.last_post_at, now)
        await self._broadcast_posted(post, webhook)
        return post

    def _listeners(self, channel: Channel) -> list[_Conn]:
        return [c for c in self._conns if self._session_valid(c) and c.user is not None
                and c.user.id in channel.members]

    def _session_valid(self, conn: _Conn) -> bool:
        """web_conn.go IsAuthenticated: a session that is gone clears the connection's
        token for good (a token that comes back later does not revive the socket)."""
        if conn.user is None or not conn.token:
            return False
        if self.tokens.get(conn.token) != conn.user.id:
            conn.token = ""
            return False
        return True

    async def _broadcast_posted(self, post: dict[str, Any], webhook: bool) -> None:
        channel = self.channels[post["channel_id"]]
        sender = self.users[post["user_id"]]
        mentioned = {u.id for u in self.users.values() if u.id in channel.members and u.id != sender.id
                     and any(m.lower().rstrip(".") == u.username for m in _MENTION.findall(post["message"]))}
        if channel.type == "D":
            mentioned |= channel.members - {sender.id}
        elif _GROUP_MENTION.search(post["message"]):  # @channel, @all, @here reach every member
            mentioned |= channel.members - {sender.id}
        override = post["props"].get("override_username")
        sender_name = override if webhook and override and channel.type != "D" else f"@{sender.username}"
        data: dict[str, Any] = {
            "channel_display_name": channel.name, "channel_name": channel.name, "channel_type": channel.type,
            "post": json.dumps(post), "sender_name": sender_name, "set_online": not webhook,
            "team_id": channel.team_id,
        }
        if mentioned:
            data["mentions"] = json.dumps(sorted(mentioned))
        for conn in self._listeners(channel):
            conn.event("posted", data, channel.id)

    # --- the websocket ----------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.refusing_websockets:
            self.stats["ws_refused"] += 1
            raise ApiError(503, "fake.websocket_refused", "Service unavailable.")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request, queue_size=self.send_queue_size)
        self._conns.add(conn)
        self.stats["ws_connects"] += 1
        writer = asyncio.create_task(conn.pump())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    break  # the real server gives up on a connection that sends garbage
                if not isinstance(req, dict):
                    break
                seq = req.get("seq")
                if req.get("action") == "authentication_challenge":
                    if conn.user is not None:
                        continue  # already authenticated: the real server ignores it
                    self.stats["ws_auth"] += 1
                    token = (req.get("data") or {}).get("token")
                    if token in self._expiring:
                        self._expiring.discard(token)
                        self.tokens.pop(token, None)
                    user_id = self.tokens.get(token) if isinstance(token, str) else None
                    if user_id is None:
                        self.stats["ws_auth_failed"] += 1
                        conn.abort()
                        break
                    conn.user, conn.token = self.users[user_id], token
                    conn.event("hello", {"connection_id": new_id(), "server_version": SERVER_VERSION})
                    conn.reply({"status": "OK", "seq_reply": seq})
                elif not self._session_valid(conn):
                    self.stats["ws_not_authenticated"] += 1
                    conn.reply({"status": "FAIL", "seq_reply": seq, "error": {
                        "id": "api.web_socket_router.not_authenticated.app_error",
                        "message": "No websocket authentication found. Please log in again.",
                        "detailed_error": "", "request_id": "", "status_code": 401}})
                elif req.get("action") == "ping":  # wsapi/system.go ping
                    self.stats["ws_pings"] += 1
                    conn.reply({"status": "OK", "seq_reply": seq,
                                "data": {"text": "pong", "version": SERVER_VERSION, "server_time": self.now_ms(),
                                         "node_id": ""}})
                else:
                    conn.reply({"status": "FAIL", "seq_reply": seq, "error": {
                        "id": "api.web_socket_router.bad_action.app_error", "message": "Invalid websocket action.",
                        "detailed_error": "", "request_id": "", "status_code": 501}})
        finally:
            self._conns.discard(conn)
            writer.cancel()
        return ws
