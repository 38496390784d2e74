"""Slack adapter on slack_sdk Socket Mode: one outbound websocket, no public endpoint.

Two tokens: the app-level token (xapp-, scope connections:write) opens the websocket
through apps.connections.open; the bot token (xoxb-) does everything else.

Protocol decisions:
- Every envelope is acknowledged at once, by its envelope_id, before anything else is
  looked at (Slack's 3-second rule); the answer follows through the Web API.
- Exactly once. Slack delivers an envelope again when its ack did not arrive in time
  (retry_attempt > 0, possibly under a new envelope id), and an ack can die with a dropped
  socket. So a message is claimed in the bot's database by `channel:ts` before it runs
  (one key for the `app_mention` and the `message` event of the same message), a slash
  command by its trigger_id. Socket Mode never replays what was sent while the bot was
  away, so there is no catch-up.
- Slash commands (`/netbot ping r1`) are answered with chat.postMessage in the channel,
  as a new message that names the asker and the command (nobody else saw the command),
  so the answer can be edited from "working on it…", carry its files in its thread and
  stay in the channel's history. Where the bot cannot post (not a member, or a DM
  between other people) the answer goes to the command's response_url as an ephemeral
  message, without files.
- Bots are ignored: the bot itself (its user id and bot id from auth.test; Slack echoes
  its posts back), any message with a bot_id or subtype bot_message, edits, joins and
  other subtypes. The one exception is a configured matterbridge relay
  (`[bridges.x] type = "matterbridge", platform = "slack", accounts = ["B…" or "U…"]`):
  its messages go through BridgeResolver, which reads the relayed nick from the text
  prefix (or, when matterbridge puts the nick in its username override, from that) and
  yields a weak identity that only `relayed:` grants match. An unconfigured relay's
  echoes, including commands already answered on the other side of the bridge, are
  ignored like any bot's.
- Identity: a Slack user is `slack:U…`, the same identity a mautrix-slack or
  matrix-appservice-slack puppet resolves to, so rights follow the person.
- Reconnection is slack_sdk's (it reconnects on `disconnect` envelopes, on a closed
  socket, and on stale pings), with these changes in `_SocketModeClient`: the new
  connection is opened before the old one is closed (make-before-break: Slack fails a
  slash command at once while no socket is open, and a slow close reply would hold the
  SDK's close-then-open for up to 10 s), and the old one gets CLOSE_TIMEOUT for its
  close reply; each attempt takes a fresh ticket (a wss URL is single-use; the SDK would
  retry a used one forever); failures back off with one log line instead of a traceback
  every ping interval; a refused app token and a `disconnect` with reason
  `link_disabled` (Socket Mode turned off) stop the adapter (FatalSlackError) instead of
  retrying forever; `too_many_websockets` (more than Slack's 10 connections for the app:
  another copy of the bot?) reconnects only after a growing backoff.
- Web API refusals while the socket stays up: a revoked or invalid bot token
  (`token_revoked`, `invalid_auth`...) stops the adapter with one line; `missing_scope`
  logs the scope to add (Slack's `needed`); `ratelimited` (HTTP 429) is retried after
  Slack's Retry-After while the total wait stays within the command timeout, then the
  answer is reported failed once. An `app_rate_limited` envelope (Slack holding back the
  app's events for a minute) is logged.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.bridges import BridgeResolver, Resolved
from adapters.common import Backoff, short_error
from chatbot.bot import Bot
from chatbot.config import ConfigError
from chatbot.errors import UserError
from chatbot.inbox import Inbox, answer_with_progress
from chatbot.message import Message, Reply
from chatbot.render import Attachment, escape_mrkdwn, render_mrkdwn, render_text, split_attachments
from chatbot.results import Note, Result
from chatbot.secrets import resolve_secret
from chatbot.state import ChatState

log = logging.getLogger(__name__)
sdk_log = logging.getLogger(__name__ + ".socket_mode")

PLATFORM = "slack"
SECRETS = ("app_token", "bot_token")
CLOSE_TIMEOUT = 1.0  # seconds an old socket gets for its close reply (aiohttp would wait 10)
# Errors no retry can fix: the token is wrong, revoked, of the wrong kind, or lacks a scope.
FATAL_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                "not_allowed_token_type", "missing_scope", "no_permission", "team_access_not_granted"}
# The bot token no longer works at all (revoked, app uninstalled, account gone): every
# answer would fail, so the adapter stops. Other FATAL_ERRORS concern one call.
TOKEN_GONE = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
              "team_access_not_granted"}
NOT_POSTABLE = {"not_in_channel", "channel_not_found", "is_archived"}
MAX_TEXT = 12000  # longer answers go out as a file (Slack cuts messages at 40,000 characters, and folds long ones)
EPHEMERAL = "ephemeral"  # the "ts" of an answer that went to a response_url
# a person's message (with a file attached: file_share); edits, joins... are not commands
USER_SUBTYPES = {None, "thread_broadcast", "file_share"}


class FatalSlackError(UserError):
    """Retrying would not help (a refused or wrong token): stop and say why."""


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # app_token[_env|_file], bot_token[_env|_file]

    base_url: str = "https://slack.com/api/"
    slash_command: str | None = None  # e.g. "/netbot"; None = whatever slash command the app is sent
    allowed_channels: list[str] = Field(default_factory=list)  # channel id patterns; empty = any the bot is in
    attachment_lines: int = Field(default=40, ge=1)
    progress_after: float = Field(default=2.0, ge=0)
    ping_interval: float = Field(default=5.0, gt=0)  # websocket ping; a dead socket is noticed within ~2x this

    @field_validator("base_url")
    @classmethod
    def _slash_at_end(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("slash_command")
    @classmethod
    def _slash(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"/[a-z0-9_-]{1,31}", value):
            raise ValueError("must look like /netbot (lower case, at most 32 characters)")
        return value

    def secret(self, name: str) -> str | None:
        return resolve_secret(dict(self.model_extra or {}), name, "slack")

    def tokens(self) -> tuple[str, str]:
        """(app-level token, bot token), resolved and checked for their kind; no network."""
        app, bot = self.secret("app_token"), self.secret("bot_token")
        if not app or not bot:
            raise FatalSlackError("[slack] needs app_token and bot_token (or their _env / _file forms)")
        if not app.startswith("xapp-"):
            raise FatalSlackError("[slack] app_token must be an app-level token (xapp-…, scope connections:write)")
        if not bot.startswith("xoxb-"):
            raise FatalSlackError("[slack] bot_token must be a bot token (xoxb-…)")
        return app, bot


def load_slack_config(raw: dict[str, Any]) -> SlackConfig:
    try:
        cfg = SlackConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "slack"
        raise ConfigError(f"[slack] {where}: {first['msg'].removeprefix('Value error, ')}") from None
    extra = dict(cfg.model_extra or {})
    known = {f"{s}{x}" for s in SECRETS for x in ("", "_env", "_file")}
    unknown = set(extra) - known
    if unknown:
        raise ConfigError(f"[slack] unknown setting {sorted(unknown)[0]}")
    for name in SECRETS:
        given = [k for k in (name, f"{name}_env", f"{name}_file") if extra.get(k)]
        if not given:
            raise ConfigError(f"[slack] needs {name}, {name}_env or {name}_file")
        if len(given) > 1:
            raise ConfigError(f"[slack] sets {' and '.join(given)}: give only one")
    return cfg


@dataclass(frozen=True)
class Target:
    """Where an answer goes."""

    channel: str
    thread_ts: str | None  # None: a new top-level message (slash commands)
    header: str = ""  # above the answer: who ran which slash command
    response_url: str | None = None  # fallback where the bot cannot post


class SlackAdapter:
    def __init__(self, bot: Bot, cfg: SlackConfig, state: ChatState, bridges: BridgeResolver) -> None:
        self.bot = bot
        self.cfg = cfg
        self.state = state
        self.bridges = bridges
        self.relay_accounts = set(bridges.relay_accounts(PLATFORM))
        self.web: AsyncWebClient | None = None
        self.socket: _SocketModeClient | None = None
        self.user_id: str | None = None
        self.bot_id: str | None = None
        self.team_id: str | None = None
        self.ready = asyncio.Event()  # set at the first `hello`
        self._stopping = asyncio.Event()
        self._fatal: FatalSlackError | None = None
        self._fatal_event = asyncio.Event()
        self.inbox = Inbox(bot, state, PLATFORM)
        self._im_user: dict[str, str | None] = {}  # channel -> the person of the bot's DM, None if not one

    @property
    def in_flight(self) -> int:
        """Envelopes being handled or answered right now."""
        return self.inbox.in_flight

    # --- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        app_token, bot_token = self.cfg.tokens()
        self.web = _WebClient(token=bot_token, base_url=self.cfg.base_url, logger=sdk_log)
        # chat.postMessage allows about one message per second and channel: a burst of
        # answers waits for Slack's Retry-After instead of failing, within the command timeout
        self.web.retry_handlers.append(_RateLimitRetry(self.bot.context.config.limits.command_timeout))
        backoff = Backoff(self._stopping)
        while not self._stopping.is_set():  # Slack unreachable: retry; token refused: stop
            try:
                await self._whoami()
                break
            except FatalSlackError:
                raise
            except Exception as err:
                log.warning("slack: auth.test failed (%s); retrying in %.0f s", short_error(err), backoff.seconds)
                await backoff.pause()
        if self._stopping.is_set():
            return
        self.web.on_refused = self._on_refused
        self.socket = _SocketModeClient(app_token, logger=sdk_log, web_client=self.web,
                                        ping_interval=self.cfg.ping_interval, on_fatal=self._on_fatal)
        self.socket.socket_mode_request_listeners.append(self._on_request)
        self.socket.on_message_listeners.append(self._on_frame)
        async with self.socket.connect_operation_lock:
            await self.socket.connect()  # until connected, stopped, or the app token is refused
        stop = asyncio.create_task(self._stopping.wait())
        fatal = asyncio.create_task(self._fatal_event.wait())
        await asyncio.wait([stop, fatal], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        fatal.cancel()
        if self._fatal is not None:
            await self.socket.close()
            raise self._fatal

    async def stop(self) -> None:
        """Stop listening (unacked envelopes go to another connection or come back after a
        restart, and are claimed then), let answers in progress finish."""
        self._stopping.set()
        if self.socket is not None and not self.socket.closed:
            await self.socket.close()
        await self.inbox.drain()

    async def _whoami(self) -> None:
        assert self.web is not None
        try:
            resp = await self.web.auth_test()
        except SlackApiError as err:
            code = err.response.get("error", "")
            if code in FATAL_ERRORS:
                raise FatalSlackError(f"slack: the bot token was refused ({code})") from None
            raise
        self.user_id, self.bot_id, self.team_id = resp.get("user_id"), resp.get("bot_id"), resp.get("team_id")
        log.info("slack: bot token of %s (%s, bot %s) in team %s", resp.get("user"), self.user_id, self.bot_id,
                 self.team_id)

    def _on_refused(self, method: str, err: SlackApiError) -> None:
        """Every Web API refusal once the bot runs: the ones that concern the whole bot
        get their line here (the failed answer is reported where it happens)."""
        code = err.response.get("error", "")
        if method == "apps.connections.open":
            return  # the app-level token's call: _SocketModeClient says what went wrong
        if code in TOKEN_GONE:
            self._on_fatal(FatalSlackError(f"slack: the bot token was refused ({code}) by {method}: "
                                           "it was revoked or the app was removed; stopping"))
        elif code == "missing_scope":
            needed = err.response.get("needed") or "?"
            log.error("slack: %s needs the scope %s, which the bot token lacks: add it under OAuth & Permissions "
                      "and reinstall the app", method, needed)

    def _on_fatal(self, err: FatalSlackError) -> None:
        if self._fatal is None:
            log.error("%s", err)
            self._fatal = err
            self._fatal_event.set()

    # --- the socket -----------------------------------------------------------------
    async def _on_frame(self, frame: WSMessage) -> None:
        """Every text frame, before the SDK dispatches it: `hello` and `disconnect`
        (which the SDK handles without telling its listeners)."""
        data = frame.data if isinstance(frame.data, str) else ""
        if '"type"' not in data[:200]:
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "hello":
            log.info("slack: connected (%s connection(s) open for this app)", message.get("num_connections"))
            self.ready.set()
        elif kind == "disconnect" and message.get("reason") not in ("link_disabled", "too_many_websockets"):
            log.info("slack: Slack asks the bot to reconnect (%s); reconnecting", message.get("reason"))

    async def _on_request(self, client: Any, req: SocketModeRequest) -> None:
        if self._stopping.is_set():
            return  # not acked: Slack gives it to the next connection (or the restarted bot)
        # The ack comes first and alone: Slack retries (events) or fails the command for
        # the user (slash commands) when it is not there within 3 seconds.
        try:
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        except Exception as err:  # the socket died: Slack delivers it again, the claim dedupes
            log.warning("slack: could not acknowledge envelope %s: %s", req.envelope_id, short_error(err))
        if req.retry_attempt:
            log.info("slack: envelope %s is a redelivery (attempt %s, %s)", req.envelope_id, req.retry_attempt,
                     req.retry_reason or "no reason given")
        if req.type == "events_api" and req.payload.get("type") == "app_rate_limited":
            # more than 30,000 events an hour for this app in this team: Slack drops them
            # for the minute; commands in that minute are not seen
            log.warning("slack: Slack is holding back this app's events in team %s for a minute "
                        "(app_rate_limited): commands sent then are lost", req.payload.get("team_id"))
        elif req.type == "events_api":
            self.inbox.spawn(self._on_event(req.payload))
        elif req.type == "slash_commands":
            self.inbox.spawn(self._on_slash(req.payload, req.envelope_id))
        else:
            log.debug("slack: ignoring a %s envelope", req.type)

    # --- incoming -------------------------------------------------------------------
    async def _on_event(self, payload: dict[str, Any]) -> None:
        event = payload.get("event") or {}
        kind = event.get("type")
        if kind not in ("app_mention", "message"):
            return
        channel, ts = event.get("channel"), event.get("ts")
        account = self._sender(event)
        if not channel or not ts or account is None:
            return
        direct = event.get("channel_type") == "im"
        resolved = self._resolve(account, event)
        text, named = self._strip_mention(resolved.text)
        msg = Message(platform=PLATFORM, room=channel, sender=resolved.identity, text=text, direct=direct,
                      mentions_bot=named or kind == "app_mention" or f"<@{self.user_id}>" in text,
                      thread=event.get("thread_ts"), message_id=ts)

        def allowed() -> bool:
            if direct or _matches(channel, self.cfg.allowed_channels):
                return True
            log.info("slack: not answering %s in %s: not in allowed_channels", account, channel)
            return False
        # A redelivered envelope, or the app_mention and message events of one message,
        # find the claim (by channel and ts) and stop here.
        if await self.inbox.take(msg, key=f"{channel}:{ts}", admit=allowed):
            await self._answer(msg, Target(channel, event.get("thread_ts") or ts))

    def _sender(self, event: dict[str, Any]) -> str | None:
        """The account a message event speaks for, or None when it is not to be read."""
        user, bot_id, subtype = event.get("user"), event.get("bot_id"), event.get("subtype")
        if (user and user == self.user_id) or (bot_id and bot_id == self.bot_id):
            return None  # ourselves (Slack echoes the bot's posts)
        relay = next((a for a in (user, bot_id) if a and a in self.relay_accounts), None)
        if relay is not None:
            return relay if subtype in USER_SUBTYPES | {"bot_message"} else None
        if bot_id or subtype == "bot_message" or subtype not in USER_SUBTYPES:
            return None  # other bots, unconfigured relays' echoes, edits, joins...
        return user or None

    def _resolve(self, account: str, event: dict[str, Any]) -> Resolved:
        text = plain_text(event.get("text") or "")
        resolved = self.bridges.resolve(PLATFORM, account, text)
        username = event.get("username")
        if account in self.relay_accounts and username and resolved.identity.user == f"{PLATFORM}:{account}":
            # matterbridge's default on Slack: the nick format goes into the username override
            by_name = self.bridges.resolve(PLATFORM, account, username.rstrip() + " " + text)
            if by_name.identity.user != resolved.identity.user:
                return by_name
        return resolved

    def _strip_mention(self, text: str) -> tuple[str, bool]:
        m = re.match(rf"\s*<@{re.escape(self.user_id or '-')}(?:\|[^>]*)?>[:,]?\s*", text)
        if m:
            return text[m.end():], True
        return text, False

    async def _on_slash(self, payload: dict[str, Any], envelope_id: str) -> None:
        command, channel, user = payload.get("command", ""), payload.get("channel_id", ""), payload.get("user_id", "")
        if self.cfg.slash_command and command != self.cfg.slash_command:
            log.info("slack: ignoring %s (slash_command is %s)", command, self.cfg.slash_command)
            return
        if not channel or not user:
            return
        # every slash command is for us: claimed at once, by its trigger
        if not await self.inbox.claim(f"slash:{payload.get('trigger_id') or envelope_id}"):
            return
        text = plain_text(payload.get("text") or "").strip() or "help"
        response_url = payload.get("response_url") or None
        direct = payload.get("channel_name") == "directmessage" and await self._im_user_of(channel) == user
        if not direct and not _matches(channel, self.cfg.allowed_channels):
            await self._respond(response_url, f"{self.bot.context.config.bot.name} does not answer in this channel.")
            return
        resolved = self.bridges.resolve(PLATFORM, user, text, payload.get("user_name") or "")
        msg = Message(platform=PLATFORM, room=channel, sender=resolved.identity, text=resolved.text, direct=direct,
                      mentions_bot=True, message_id=payload.get("trigger_id") or envelope_id)
        header = f"<@{user}> `{escape_mrkdwn(command + ' ' + text).replace('`', chr(0x2032))}`"
        await self._answer(msg, Target(channel, None, header, response_url))

    async def _im_user_of(self, channel: str) -> str | None:
        """The person of the bot's own DM `channel`, or None (a DM between others is
        not a direct conversation with the bot)."""
        if channel not in self._im_user:
            assert self.web is not None
            try:
                info = (await self.web.conversations_info(channel=channel)).get("channel") or {}
                self._im_user[channel] = info.get("user") if info.get("is_im") else None
            except SlackApiError as err:
                if err.response.get("error") not in ("channel_not_found",):
                    log.warning("slack: conversations.info %s: %s", channel, err.response.get("error"))
                    return None  # not cached: may work next time
                self._im_user[channel] = None
        return self._im_user[channel]

    # --- answering ------------------------------------------------------------------
    async def _answer(self, msg: Message, target: Target) -> None:
        await answer_with_progress(
            self.bot, msg, self.cfg.progress_after,
            acknowledge=lambda: self._post(target, escape_mrkdwn(self.bot.progress_text(msg.message_id))),
            deliver=lambda reply, ack: self._deliver(target, reply, ack),
            update=lambda ack, text: self._progress(target, ack, text),
        )

    async def _progress(self, target: Target, ack_ts: str, text: str) -> None:
        if ack_ts != EPHEMERAL and self.web is not None:  # an ephemeral note cannot be edited
            text = self._with_header(target, escape_mrkdwn(text))
            await self.web.chat_update(channel=target.channel, ts=ack_ts, text=text)

    async def _deliver(self, target: Target, reply: Reply, ack_ts: str | None) -> None:
        assert self.web is not None
        inline, files = split_attachments(reply.result, self.cfg.attachment_lines)
        prefix = f"{reply.mention}: " if reply.mention else ""
        body = render_mrkdwn(inline, prefix)
        if len(body) + len(target.header) > MAX_TEXT:
            files.insert(0, Attachment("answer.txt", render_text(inline), "the whole answer"))
            body = render_mrkdwn(Result(inline.status, inline.summary,
                                        [Note("The answer is too long for one message: attached as answer.txt.")]),
                                 prefix)
        if ack_ts == EPHEMERAL:
            ts = await self._post(target, body, ephemeral_only=True)
        elif ack_ts is None:
            ts = await self._post(target, body)
        else:
            await self.web.chat_update(channel=target.channel, ts=ack_ts, text=self._with_header(target, body))
            ts = ack_ts
        if ts == EPHEMERAL:
            if files:
                await self._respond(target.response_url, "(" + ", ".join(a.filename for a in files) + " not sent: "
                                    "invite the bot to this channel to get files.)")
            return
        for number, attachment in enumerate(files):
            try:
                await self.web.files_upload_v2(channel=target.channel, thread_ts=target.thread_ts or ts,
                                               content=attachment.text, filename=attachment.filename,
                                               title=attachment.title)
            except SlackApiError as err:
                if err.response.get("error") not in NOT_POSTABLE:
                    raise
                # chat:write.public let the text into a public channel the bot has not
                # joined; files need membership. The answer is there, the files are not.
                names = ", ".join(a.filename for a in files[number:])
                log.info("slack: cannot share files in %s (%s)", target.channel, err.response.get("error"))
                await self.web.chat_postMessage(channel=target.channel, thread_ts=target.thread_ts or ts,
                                                text=escape_mrkdwn(f"({names} not sent: invite the bot to this channel "
                                                             "to get files.)"))
                return

    async def _post(self, target: Target, body: str, *, ephemeral_only: bool = False) -> str:
        """Post in the channel (the message's ts), or to the response_url where the bot
        cannot post (EPHEMERAL)."""
        assert self.web is not None
        if not ephemeral_only:
            try:
                resp = await self.web.chat_postMessage(channel=target.channel, text=self._with_header(target, body),
                                                       thread_ts=target.thread_ts, unfurl_links=False,
                                                       unfurl_media=False)
                return str(resp["ts"])
            except SlackApiError as err:
                if not (target.response_url and err.response.get("error") in NOT_POSTABLE):
                    raise
                log.info("slack: cannot post in %s (%s); answering %s privately", target.channel,
                         err.response.get("error"), target.header or "the command")
        await self._respond(target.response_url, body)
        return EPHEMERAL

    async def _respond(self, response_url: str | None, text: str) -> None:
        if not response_url:
            return
        resp = await AsyncWebhookClient(response_url, logger=sdk_log).send(text=text, response_type="ephemeral")
        if resp.status_code != 200:
            raise ConnectionError(f"response_url answered {resp.status_code}: {resp.body[:100]}")

    @staticmethod
    def _with_header(target: Target, body: str) -> str:
        return f"{target.header}\n{body}" if target.header else body


class _WebClient(AsyncWebClient):
    """slack_sdk's Web API client, telling the adapter of every refusal (all methods,
    files_upload_v2's steps included, go through api_call)."""

    on_refused: Callable[[str, SlackApiError], None] | None = None

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as err:
            if self.on_refused is not None:
                self.on_refused(api_method, err)
            raise


class _RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """HTTP 429: wait what Slack's Retry-After says and try again, as slack_sdk's handler
    does, for as long as the call's total wait stays within `budget` seconds (the command
    timeout) instead of a fixed number of tries; past it, the "ratelimited" error goes
    up and the answer is reported failed once."""

    def __init__(self, budget: float) -> None:
        super().__init__(max_retry_count=1_000_000)  # the budget decides
        self.budget = budget

    @staticmethod
    def _retry_after(response: HttpResponse) -> float:
        for name, values in response.headers.items():
            if name.lower() == "retry-after" and values:
                try:
                    return max(float(values[0]), 0.0)
                except ValueError:
                    break
        return 1.0

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        waited = float((state.custom_values or {}).get("waited", 0.0))
        return waited + self._retry_after(response) <= self.budget

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        if response is None:
            raise error  # type: ignore[misc]
        wait = self._retry_after(response) + random.random() / 4  # a little spread, as the SDK does
        values = dict(state.custom_values or {})
        values["waited"] = float(values.get("waited", 0.0)) + wait
        state.custom_values = values
        state.next_attempt_requested = True
        await asyncio.sleep(wait)
        state.increment_current_attempt()


class _SocketModeClient(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client, changed where it would loop or stall:

    - the new connection is opened before the old one is closed, and the old one's close
      reply is awaited for CLOSE_TIMEOUT at most, in the background;
    - `disconnect` with reason link_disabled is fatal; too_many_websockets backs off;
    - every connection attempt takes a fresh ticket from apps.connections.open (a wss URL
      is single-use; the SDK retries the same URL forever when the websocket handshake
      fails);
    - failed attempts back off exponentially with one warning line each;
    - a refused app token (invalid_auth, revoked...) is fatal: the client closes and the
      adapter raises FatalSlackError, instead of retrying every ping interval forever.
    The SDK's receive loop, ping/pong monitor and listener dispatch are used as they are.
    """

    def __init__(self, app_token: str, *, on_fatal: Any, **kw: Any) -> None:
        super().__init__(app_token, **kw)
        self._on_fatal = on_fatal
        self._closing = asyncio.Event()
        self._retiring: set[asyncio.Future[None]] = set()
        self._crowded = Backoff(self._closing)  # the wait after too_many_websockets

    async def issue_new_wss_url(self) -> str:
        try:
            return await super().issue_new_wss_url()
        except SlackApiError as err:
            code = err.response.get("error", "")
            if code in FATAL_ERRORS:
                self.closed = True  # stops the SDK's loops: no retry can fix this
                self._closing.set()
                needed = f": it needs the scope {err.response.get('needed')}" if err.response.get("needed") else ""
                self._on_fatal(FatalSlackError(f"slack: the app-level token was refused ({code}){needed}"))
            raise

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        try:
            await asyncio.wait_for(self.connect_operation_lock.acquire(), timeout=5)
        except TimeoutError:
            return  # another reconnection is under way
        try:
            if not self.closed and (force or not await self.is_connected()):
                self.wss_uri = None
                await self.connect()
        finally:
            self.connect_operation_lock.release()

    async def connect(self) -> None:
        """Open a new connection, make it the current one, then close the old one:
        make-before-break, so no slash command finds the bot without a socket."""
        backoff = Backoff(self._closing)
        while not self.closed:
            try:
                if self.aiohttp_client_session.closed:
                    self.aiohttp_client_session = aiohttp.ClientSession()
                url = self.wss_uri or await self.issue_new_wss_url()
                self.wss_uri = None  # a ticket is good for one connection
                session = await self.aiohttp_client_session.ws_connect(
                    url, autoping=False, heartbeat=self.ping_interval, proxy=self.proxy,
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                    ssl=self.web_client.ssl if self.web_client.ssl is not None else True)
            except Exception as err:
                if self.closed:
                    return
                self.logger.warning("slack: connecting failed (%s); retrying in %.0f s", short_error(err),
                                    backoff.seconds)
                await backoff.pause()
                continue
            old = self.current_session
            self.current_session = session
            self.stale = False
            self.last_ping_pong_time = None  # the old session's pongs say nothing about this one
            self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
            self.logger.info("slack: new session %s established", self.build_session_id(session))
            await session.ping(f"sdk-ping-pong:{time.time()}".encode())
            # As the SDK does, and in its order: the monitor and the receiver may be the
            # very task running this, so nothing is awaited after they are cancelled.
            if self.current_session_monitor is not None:
                self.current_session_monitor.cancel()
            self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
            if self.message_receiver is not None:
                self.message_receiver.cancel()
            self.message_receiver = asyncio.ensure_future(self.receive_messages())
            if old is not None and not old.closed:
                # closed only now that its receiver is cancelled: its close cannot start a
                # reconnection of its own; in the background, so a slow close holds nothing
                closing = asyncio.ensure_future(self._retire(old))
                self._retiring.add(closing)
                closing.add_done_callback(self._retiring.discard)
            return

    async def _retire(self, old: aiohttp.ClientWebSocketResponse) -> None:
        """Close a replaced session; its close reply gets CLOSE_TIMEOUT (set at ws_connect)."""
        try:
            await old.close()
            self.logger.info("slack: closed the old session %s", self.build_session_id(old))
        except Exception as err:
            self.logger.warning("slack: closing the old session failed: %s", short_error(err))

    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        """`disconnect` envelopes the SDK would answer with an immediate reconnection."""
        reason = message.get("reason") if message.get("type") == "disconnect" else None
        if reason == "link_disabled":
            # Socket Mode was turned off for the app: a new ticket would be refused or
            # never connect; reconnecting forever helps nobody
            self.closed = True
            self._closing.set()
            self._on_fatal(FatalSlackError("slack: Slack turned off Socket Mode for this app (disconnect: "
                                           "link_disabled): turn it on in the app's settings and restart"))
            return
        if reason == "too_many_websockets":
            # Slack allows 10 connections per app; this one is refused. Reconnecting at
            # once would only add to the crowd.
            self.logger.warning("slack: Slack refuses this connection: too many open for this app "
                                "(too_many_websockets; is another copy of the bot running with this app "
                                "token?); reconnecting in %.0f s", self._crowded.seconds)
            self.auto_reconnect_enabled = False  # its close must not reconnect at once
            await self._crowded.pause()
            self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        elif reason is not None:
            self._crowded.reset()
        await super().run_message_listeners(message, raw_message)

    async def close(self) -> None:
        self._closing.set()
        await super().close()


# Slack's control sequences: <@U…>, <#C…|name>, <!here>, <scheme:…|label>. Anything else
# in angle brackets was not typed by a person (Slack escapes those) but posted by a bot
# such as a relay ("[matrix] <carol> ..."): left as it is.
_LINK = re.compile(r"<([@#!][^<>|]*|[A-Za-z][A-Za-z0-9+.-]*:[^<>|]*)(?:\|([^<>]*))?>")


def plain_text(text: str) -> str:
    """What the person typed, from Slack's wire format: links as their label or URL
    (`show run <http://r1.corp|r1.corp>` -> `show run r1.corp`), channels as #name,
    specials as @here, user mentions kept (the bot's own is stripped later), then the
    &amp; &lt; &gt; escapes undone."""
    def one(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith("@"):
            return m.group(0)
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return label or target.removeprefix("mailto:")
    text = _LINK.sub(one, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _matches(value: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)
