"""The Slack adapter against the fake Slack (tests/fake_slack.py), with the real slack_sdk.

One fake Slack and one bot for the module: the bot runs in its own thread and event loop,
as `chatbot run` would, and each test acts as a person (or a bot, or a relay) posting
events, and reads what the bot posted through the fake. The first tests prove the
fake's own strictness with a raw websocket client: each fails if that strictness goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bot_thread import BotThread
from fake_slack import BOT_ID, BOT_USER, FakeSlack
from helpers import chat_test_access

from chatbot.lab import planted_secrets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ALICE, SAM, STRANGER = "U0ALICE01", "U0SAM0001", "U0STRANGE"
ALICE_DM, SAM_DM, OTHERS_DM = "D0ALICE01", "D0SAM0001", "D0OTHERS1"
NETOPS, RANDOM = "C0NETOPS1", "C0OTHER01"
LOBBY = "C0LOBBY01"  # a public channel the bot has not joined
RELAY = "B0RELAY01"  # matterbridge's bot id on Slack


def is_ack(text: str) -> bool:
    """The "working on it (job …)" / "queued (job …)" notice, after any slash header."""
    last = text.rsplit("\n", 1)[-1]
    return last.startswith("working on it") or last.startswith("queued (job")


def make_fake(**kw: Any) -> FakeSlack:
    fake = FakeSlack(**kw)
    fake.add_user(ALICE, "alice", im=ALICE_DM)
    fake.add_user(SAM, "sam", im=SAM_DM)
    fake.add_user(STRANGER, "stranger")
    fake.add_channel(OTHERS_DM, STRANGER, kind="im", member=False, user=STRANGER)  # alice and stranger
    fake.add_channel(LOBBY, "lobby", member=False)
    return fake


def bot_config(fake: FakeSlack, workdir: Path, **slack: Any) -> dict[str, Any]:
    return {
        "bot": {"database": f"sqlite:///{workdir}/bot.sqlite"},
        "limits": {"device_timeout": 5, "connect_timeout": 3},
        "slack": {"base_url": fake.base_url, "app_token": fake.app_token, "bot_token": fake.bot_token,
                  "slash_command": "/netbot", "progress_after": 1.0, "attachment_lines": 40,
                  "ping_interval": 2.0, "allowed_channels": [NETOPS, OTHERS_DM, LOBBY], **slack},
        "identities": {"alice": ["slack:" + ALICE]},
        "bridges": {"relay": {"type": "matterbridge", "platform": "slack", "accounts": [RELAY]}},
        "access": chat_test_access("relayed:matrix:*"),
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    # message.channels too: `!` commands without a mention, and relays, reach the bot;
    # a mention then arrives twice (app_mention and message), which must run once.
    with make_fake(subscriptions=("app_mention", "message.im", "message.channels")) as running:
        yield running


@pytest.fixture(scope="module")
def running_bot(fake: FakeSlack, lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotThread]:
    bot = BotThread(bot_config(fake, tmp_path_factory.mktemp("slackbot")), lab, "slack").start()
    yield bot
    bot.stop()


def final(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bot's answers as a user sees them now: a "working on it" not yet edited is not one."""
    return [m for m in messages if not is_ack(m["text"]) or m["files"]]


def ask(fake: FakeSlack, user: str, channel: str, text: str, *, thread_ts: str | None = None,
        parts: int = 1) -> tuple[str, list[dict[str, Any]]]:
    ts = fake.user_says(user, channel, text, thread_ts)
    root = thread_ts or ts
    replies = fake.wait_for(lambda: (r := final(fake.replies_to(channel, root))) and len(r) >= parts and r,
                            f"the answer to {text!r}")
    return ts, replies


def settle(fake: FakeSlack, bot: BotThread) -> None:
    """Every envelope sent so far is acknowledged and handled: what was going to
    happen, happened (checked twice, a little apart, so nothing is between the two)."""
    def quiet() -> bool:
        return all(e["acked_at"] is not None for e in fake.envelopes()) and bot.adapter.in_flight == 0
    for _ in range(2):
        fake.wait_for(quiet, "the bot to finish")
        time.sleep(0.1)
    assert quiet()


# --- the fake's strictness, with a raw client -----------------------------------------------
async def _open(fake: FakeSlack, session: aiohttp.ClientSession) -> tuple[str, aiohttp.ClientWebSocketResponse]:
    async with session.post(fake.base_url + "apps.connections.open",
                            headers={"Authorization": f"Bearer {fake.app_token}"}) as resp:
        url = (await resp.json())["url"]
    return url, await session.ws_connect(url)


def test_fake_sends_hello_first_and_redelivers_unacked_envelopes() -> None:
    with make_fake(ack_deadline=0.4) as fake:
        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                _, ws = await _open(fake, session)
                first = json.loads((await ws.receive(timeout=5)).data)
                assert first["type"] == "hello" and first["num_connections"] == 1
                assert first["connection_info"]["app_id"]
                sent = fake.post_event({"type": "app_mention", "user": ALICE, "channel": NETOPS,
                                        "text": f"<@{BOT_USER}> help"})
                env = json.loads((await ws.receive(timeout=5)).data)
                assert env["type"] == "events_api" and env["retry_attempt"] == 0
                assert env["payload"]["event_id"] == sent["event_id"]
                # not acked: Slack delivers it again, marked as a retry
                again = json.loads((await ws.receive(timeout=5)).data)
                assert again["payload"]["event_id"] == sent["event_id"]
                assert (again["retry_attempt"], again["retry_reason"]) == (1, "timeout")
                await ws.send_str(json.dumps({"envelope_id": again["envelope_id"]}))
                with pytest.raises(asyncio.TimeoutError):
                    await ws.receive(timeout=1.0)  # acked: no third delivery
                await ws.close()
        asyncio.run(scenario())
        assert fake.redeliveries == 1 and fake.protocol_errors == []


def test_fake_fails_slash_commands_without_a_socket_and_retries_events_later() -> None:
    with make_fake(no_socket_retry=0.5) as fake:
        fake.slash("/netbot", "help", ALICE, NETOPS)
        sent = fake.post_event({"type": "app_mention", "user": ALICE, "channel": NETOPS,
                                "text": f"<@{BOT_USER}> help"})
        assert fake.slash_failures == 1 and fake.envelopes() == []  # failed at once, nothing queued

        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                _, ws = await _open(fake, session)
                assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
                again = json.loads((await ws.receive(timeout=5)).data)  # the event, later, as a retry
                assert again["payload"]["event_id"] == sent["event_id"] and again["retry_attempt"] == 1
                await ws.send_str(json.dumps({"envelope_id": again["envelope_id"]}))
                with pytest.raises(asyncio.TimeoutError):
                    await ws.receive(timeout=1.0)  # the slash command never comes
                await ws.close()
        asyncio.run(scenario())
        assert [e["type"] for e in fake.envelopes()] == ["events_api"]


def test_fake_refuses_bad_tokens_as_slack_does() -> None:
    with make_fake() as fake:
        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                async def call(method: str, token: str | None) -> tuple[int, str, dict[str, Any]]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with session.post(fake.base_url + method, headers=headers) as resp:
                        return resp.status, resp.headers["Content-Type"], await resp.json()
                status, ctype, body = await call("auth.test", "xoxb-not-a-real-token")
                assert (status, ctype, body) == (200, "application/json; charset=utf-8",
                                                 {"ok": False, "error": "invalid_auth"})
                assert (await call("auth.test", None))[2] == {"ok": False, "error": "not_authed"}
                assert (await call("apps.connections.open", "xapp-1-forged"))[2]["error"] == "invalid_auth"
                assert (await call("apps.connections.open", fake.bot_token))[2]["error"] == "not_allowed_token_type"
                assert (await call("chat.postMessage", fake.app_token))[2]["error"] == "not_allowed_token_type"
                async with session.post(fake.base_url + "auth.test", params={"token": fake.bot_token}) as resp:
                    assert (await resp.json())["error"] == "not_authed"  # never a token in the query string
                assert (await call("auth.test", fake.bot_token))[2]["user_id"] == BOT_USER
        asyncio.run(scenario())


def test_fake_tickets_are_single_use() -> None:
    with make_fake() as fake:
        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                url, ws = await _open(fake, session)
                assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(url)
                assert refused.value.status == 401
                await ws.close()
        asyncio.run(scenario())
        assert fake.rejected_tickets == 1 and fake.connections == 1


# --- the adapter -----------------------------------------------------------------------------
def test_config_errors_are_one_line(tmp_path: Path) -> None:
    from adapters.slack import load_slack_config
    from chatbot.config import ConfigError

    good = {"app_token_env": "APP", "bot_token_file": "/run/secrets/bot"}
    assert load_slack_config(dict(good)).base_url == "https://slack.com/api/"
    for raw, needle in [({"bot_token": "xoxb-1"}, "needs app_token"),
                        (dict(good, app_token="xapp-1"), "give only one"),
                        (dict(good, slash_command="netbot"), "slash_command"),
                        (dict(good, progress_after=-1), "progress_after"),
                        (dict(good, sign_secret="x"), "unknown setting sign_secret")]:
        with pytest.raises(ConfigError, match=needle) as err:
            load_slack_config(raw)
        assert "\n" not in str(err.value)


def test_render_mrkdwn_and_incoming_text() -> None:
    from adapters.slack import plain_text
    from chatbot.render import render_mrkdwn
    from chatbot.results import Note, Result, Status, Table, TextBlock

    text = render_mrkdwn(Result(Status.FAILED, "r1 <down> & out", [
        Table(["device", "state"], [["r1", "a<b"]]), TextBlock("x ``` y", "output"), Note("see & go")]))
    assert text.startswith("*[failed] r1 &lt;down&gt; &amp; out*")
    assert "```\ndevice  state\n------  -----\nr1      a&lt;b\n```" in text
    assert "_output_\n```\nx `\u200b`` y\n```" in text and text.endswith("see &amp; go")
    assert plain_text("show run <http://r1.corp|r1.corp> | include a&amp;b &lt;x&gt;") == \
        "show run r1.corp | include a&b <x>"
    assert plain_text("<@U1> in <#C1|netops> <!here>") == "<@U1> in #netops @here"


def test_help_by_mention_in_thread(running_bot: BotThread, fake: FakeSlack) -> None:
    ts, [reply, *_] = ask(fake, ALICE, NETOPS, f"<@{BOT_USER}> help")
    assert reply["thread_ts"] == ts  # a thread on the command
    assert reply["text"].startswith("Commands you can run here:") and "```" in reply["text"]
    assert reply["bot_id"] == BOT_ID and not reply["files"]
    settle(fake, running_bot)
    # the app_mention and the message event of the one message: answered once
    assert [m["ts"] for m in fake.replies_to(NETOPS, ts)] == [reply["ts"]]


def test_ping_in_an_existing_thread(running_bot: BotThread, fake: FakeSlack) -> None:
    root = fake.user_says(SAM, NETOPS, "thread about r1")
    _, [reply] = ask(fake, SAM, NETOPS, f"<@{BOT_USER}>: ping 10.0.0.1 from r1", thread_ts=root)
    assert reply["thread_ts"] == root
    assert "10.0.0.1 is reachable (5/5) from r1" in reply["text"]


def test_dm_without_prefix_show_run_is_a_redacted_file(running_bot: BotThread, fake: FakeSlack) -> None:
    ts, replies = ask(fake, ALICE, ALICE_DM, "show run r1", parts=2)
    text = next(m for m in replies if not m["files"])
    shared = next(m for m in replies if m["files"])
    assert "attached as r1-running-config.txt" in text["text"] and "hostname r1" not in text["text"]
    assert shared["thread_ts"] == ts and shared["via"] == "files.completeUploadExternal"
    [file] = shared["files"]
    assert file["name"] == "r1-running-config.txt"
    content = file["content"]
    assert "hostname r1" in content and "<redacted>" in content
    assert [s for s in planted_secrets("r1") if s in content] == []
    # a person who is not an admin gets a denial, in a DM too
    _, [denied] = ask(fake, SAM, SAM_DM, "!show run r1")
    assert denied["text"].startswith("*[denied] show run:")


def test_slash_command_acked_at_once_answered_later(running_bot: BotThread, fake: FakeSlack, lab: Any) -> None:
    lab.set_delay("r3", 4)  # the command takes longer than Slack's 3 seconds
    try:
        before = len(fake.messages_in(NETOPS))
        started = time.monotonic()
        sent = fake.slash("/netbot", "show version r3", ALICE, NETOPS)
        delay = fake.wait_for(lambda: fake.ack_delay(sent["envelope_id"]), "the ack")
        assert delay < 3, delay  # Slack's limit (here it is milliseconds, unless the machine is overloaded)
        answer = fake.wait_for(lambda: [m for m in fake.messages_in(NETOPS)[before:]
                                        if not is_ack(m["text"]) and m["edits"]], "the edited answer", timeout=30)
        took = time.monotonic() - started
    finally:
        lab.set_delay("r3", 0.01)
    [msg] = answer
    assert took > 3 > delay, (took, delay)  # the command really outlived the ack deadline; the ack did not
    # "working on it (job …)", then chat.update
    assert len(msg["edits"]) == 1 and msg["edits"][0].startswith(f"<@{ALICE}> `/netbot show version r3`\n")
    assert is_ack(msg["edits"][0]) and "(job " in msg["edits"][0]
    assert msg["text"].startswith(f"<@{ALICE}> `/netbot show version r3`\n")
    assert "show version on r3" in msg["text"] and msg["thread_ts"] is None
    assert fake.slash_timeouts == 0
    assert [e for e in fake.envelopes() if e["envelope_id"] == sent["envelope_id"]][0]["ack_payload"] is None


def test_slash_command_where_the_bot_cannot_post_answers_privately(running_bot: BotThread,
                                                                   fake: FakeSlack) -> None:
    fake.slash("/netbot", "ping 10.0.0.1 from r2 count 1", ALICE, OTHERS_DM)  # a DM between two people
    [reply] = fake.wait_for(lambda: [m for m in fake.messages_in(OTHERS_DM) if "is reachable" in m["text"]],
                            "the private answer")
    assert reply["via"] == "response_url" and reply["ephemeral"] and reply["user"] == ALICE
    assert "10.0.0.1 is reachable (1/1) from r2" in reply["text"]
    # not the bot's DM with alice: no "direct" rights there (the admin grant is not direct-only,
    # so check through whoami)
    fake.slash("/netbot", "whoami", ALICE, OTHERS_DM)
    who = fake.wait_for(lambda: [m for m in fake.messages_in(OTHERS_DM) if "You are alice" in m["text"]], "whoami")
    assert "(direct)" not in who[0]["text"]
    fake.slash("/netbot", "whoami", ALICE, ALICE_DM)
    who = fake.wait_for(lambda: [m for m in fake.messages_in(ALICE_DM) if "You are alice" in m["text"]], "whoami")
    assert "(direct)" in who[0]["text"]


def test_channels_not_allowed_are_ignored(running_bot: BotThread, fake: FakeSlack) -> None:
    ignored = fake.user_says(ALICE, RANDOM, f"<@{BOT_USER}> help")
    fake.slash("/netbot", "help", ALICE, RANDOM)
    [refusal] = fake.wait_for(lambda: [m for m in fake.messages_in(RANDOM) if m["ephemeral"]], "the refusal")
    assert refusal["text"] == "netbot does not answer in this channel." and refusal["user"] == ALICE
    settle(fake, running_bot)
    assert fake.replies_to(RANDOM, ignored) == [] and len(fake.messages_in(RANDOM)) == 1
    # a direct conversation is not a channel: allowed_channels does not apply (grants do)
    _, [reply] = ask(fake, SAM, SAM_DM, "whoami")
    assert reply["text"].startswith("You are slack:" + SAM)


def test_bots_self_and_relays(running_bot: BotThread, fake: FakeSlack) -> None:
    other_bot = fake.post_event({"type": "message", "subtype": "bot_message", "bot_id": "B0OTHER01",
                                 "username": "deploybot", "text": "!help", "channel": NETOPS,
                                 "channel_type": "channel"})
    with_bot_id = fake.post_event({"type": "message", "user": "U0APPUSER", "bot_id": "B0OTHER02",
                                   "text": "!help", "channel": NETOPS, "channel_type": "channel"})
    itself = fake.post_event({"type": "message", "user": BOT_USER, "text": "!help", "channel": NETOPS,
                              "channel_type": "channel"})
    edit = fake.post_event({"type": "message", "subtype": "message_changed", "channel": NETOPS,
                            "channel_type": "channel", "message": {"user": ALICE, "text": "!help"}})
    spoof = fake.post_event({"type": "message", "user": SAM, "text": "[matrix] <alice> !show run r1",
                             "channel": NETOPS, "channel_type": "channel"})
    # the configured relay: a weak identity, answered by name, only what relayed: grants allow
    relayed = fake.post_event({"type": "message", "subtype": "bot_message", "bot_id": RELAY,
                               "username": "matterbridge", "text": "[matrix] <carol> !ping 10.0.0.1 from r1 count 1",
                               "channel": NETOPS, "channel_type": "channel"})
    [pong] = fake.wait_for(lambda: fake.replies_to(NETOPS, relayed["ts"]), "the relayed ping")
    assert pong["text"].startswith("carol: 10.0.0.1 is reachable")
    denied = fake.post_event({"type": "message", "subtype": "bot_message", "bot_id": RELAY,
                              "username": "[matrix] <carol>", "text": "!show version r1",  # nick in the username
                              "channel": NETOPS, "channel_type": "channel"})
    [no] = fake.wait_for(lambda: fake.replies_to(NETOPS, denied["ts"]), "the relayed denial")
    assert no["text"].startswith("*carol: [denied] show version")
    _, [marker] = ask(fake, SAM, NETOPS, "!whoami")
    settle(fake, running_bot)
    for ignored in (other_bot, with_bot_id, itself, edit, spoof):
        assert fake.replies_to(NETOPS, ignored["ts"]) == [], ignored
    # and the bot's own posts, echoed back by Slack in DMs, never got an answer either
    for dm in (ALICE_DM, SAM_DM):
        own = {m["ts"] for m in fake.messages_in(dm)}
        assert not [m for m in fake.messages_in(dm) if m["thread_ts"] in own]


def test_redelivered_envelope_is_answered_once(running_bot: BotThread, fake: FakeSlack) -> None:
    sent = fake.post_event({"type": "message", "user": SAM, "text": "!ping 10.0.0.2 from r2 count 1",
                            "channel": NETOPS, "channel_type": "channel"}, duplicate=True)
    fake.wait_for(lambda: fake.replies_to(NETOPS, sent["ts"]), "the answer")
    _, _ = ask(fake, SAM, NETOPS, "!whoami")  # later than anything the duplicate could cause
    settle(fake, running_bot)
    assert len(fake.replies_to(NETOPS, sent["ts"])) == 1
    copies = [e for e in fake.envelopes() if e["payload"].get("event_id") == sent["event_id"]]
    assert [e["retry_attempt"] for e in copies] == [0, 1] and all(e["acked_at"] for e in copies)
    assert fake.redeliveries == 0  # every envelope of the module was acked within the deadline


def _reconnects(fake: FakeSlack, running_bot: BotThread, cut: str, caplog: pytest.LogCaptureFixture) -> None:
    hellos = fake.hellos
    with caplog.at_level("INFO", logger="adapters.slack"):
        if cut == "drop":
            # and the first handshake after it fails having spent its ticket: the next
            # attempt needs a fresh one (slack_sdk alone retries the spent URL forever)
            fake.fail_next_handshakes(1)
        fake.send_disconnect(cut) if cut in ("refresh_requested", "warning") else fake.drop()
        fake.wait_for(lambda: fake.hellos > hellos and fake.open_connections() == 1, "a new connection", timeout=15)
        ts, replies = ask(fake, ALICE, NETOPS, f"<@{BOT_USER}> ping 10.0.0.3 from r1 count 1")
    settle(fake, running_bot)
    assert len(fake.replies_to(NETOPS, ts)) == 1 and "is reachable" in replies[0]["text"]
    assert fake.hellos == hellos + 1  # one reconnection, not a storm
    logged = caplog.text
    assert "new session" in logged
    if cut != "drop":
        assert f"reconnect ({cut})" in logged
    else:
        assert "connecting failed" in logged and fake.rejected_tickets == 0


@pytest.mark.parametrize("reason", ["refresh_requested", "warning"])
def test_disconnect_envelope_reconnects(running_bot: BotThread, fake: FakeSlack,
                                        caplog: pytest.LogCaptureFixture, reason: str) -> None:
    _reconnects(fake, running_bot, reason, caplog)


def test_dropped_socket_reconnects(running_bot: BotThread, fake: FakeSlack,
                                   caplog: pytest.LogCaptureFixture) -> None:
    _reconnects(fake, running_bot, "drop", caplog)


@pytest.mark.parametrize("which", ["bot", "app", "swapped", "revoked"])
def test_bad_token_is_fatal_at_once(lab: Any, tmp_path: Path, which: str) -> None:
    from adapters.slack import FatalSlackError

    with make_fake() as fake:
        tokens = {"bot": {"bot_token": "xoxb-revoked-long-ago"}, "app": {"app_token": "xapp-1-A0-forged"},
                  "swapped": {"bot_token": fake.app_token, "app_token": fake.bot_token}, "revoked": {}}[which]
        bot = BotThread(bot_config(fake, tmp_path, **tokens), lab, "slack")
        bot.start(wait_ready=which == "revoked")
        if which == "revoked":  # revoked while running: the reconnection Slack asks for is refused
            fake.revoke(fake.app_token)
            fake.send_disconnect()
        assert bot.finished.wait(30), "the adapter kept trying"
        assert isinstance(bot.error, FatalSlackError), bot.error
        if which != "revoked":
            took = bot.run_ended - bot.run_started
            assert took < 5, took  # one refused call, no backoff
        # The bot's thread has ended, and its event loop with it: nothing retries in the background.
        if which == "revoked":
            assert "app-level token was refused (token_revoked)" in str(bot.error)
            assert fake.auth_failures == {"apps.connections.open": 1} and fake.connections == 1
        elif which == "bot":
            assert "bot token was refused (invalid_auth)" in str(bot.error)
            assert fake.auth_failures == {"auth.test": 1} and fake.calls["apps.connections.open"] == 0
        elif which == "app":
            assert "app-level token was refused (invalid_auth)" in str(bot.error)
            assert fake.auth_failures == {"apps.connections.open": 1} and fake.connections == 0
        else:
            assert "app_token must be an app-level token" in str(bot.error)
            assert sum(fake.calls.values()) == 0


# --- issue 10: what the real Slack does that the fake used to spare the bot ----------------
def _answers(fake: FakeSlack, channel: str, needle: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages_in(channel) if needle in m["text"]]


def test_reconnection_is_make_before_break(lab: Any, tmp_path: Path) -> None:
    # A slow close reply must not leave the bot without a socket: Slack fails a slash
    # command at once when none is open.
    with make_fake(close_reply_delay=5.0, disconnect_grace=10.0) as fake:
        bot = BotThread(bot_config(fake, tmp_path), lab, "slack").start()
        try:
            fake.slash_at_next_close("/netbot", "whoami", ALICE, NETOPS)
            started = time.monotonic()
            fake.send_disconnect()
            fake.wait_for(lambda: fake.close_frames >= 1, "the bot to close its old socket")
            fake.wait_for(lambda: _answers(fake, NETOPS, "You are alice"), "the answer", timeout=10)
            assert fake.slash_failures == 0
            assert time.monotonic() - started < 5  # not after the old socket's slow close
            assert fake.connections == 2
        finally:
            bot.stop()


def test_burst_of_answers_waits_for_rate_limits(running_bot: BotThread, fake: FakeSlack,
                                                caplog: pytest.LogCaptureFixture) -> None:
    # chat.postMessage: about one message per second per channel, then 429 + Retry-After
    limited = fake.rate_limited["chat.postMessage"]
    with caplog.at_level("WARNING"):
        sent = [fake.user_says(SAM, NETOPS, "!whoami") for _ in range(6)]
        for ts in sent:
            fake.wait_for(lambda ts=ts: fake.replies_to(NETOPS, ts), "every answer", timeout=30)
        settle(fake, running_bot)
    assert fake.rate_limited["chat.postMessage"] > limited  # Slack did refuse some
    assert all(len(fake.replies_to(NETOPS, ts)) == 1 for ts in sent)
    assert "could not deliver" not in caplog.text


def test_rate_limit_past_the_command_timeout_is_reported_once(running_bot: BotThread, fake: FakeSlack,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    limited = fake.rate_limited["chat.postMessage"]
    fake.throttle("chat.postMessage", 3.0, retry_after=600)  # longer than the command timeout (120 s)
    with caplog.at_level("WARNING"):
        fake.user_says(SAM, NETOPS, "!whoami")
        fake.wait_for(lambda: "could not deliver" in caplog.text, "the failure line", timeout=10)
        settle(fake, running_bot)
    assert fake.rate_limited["chat.postMessage"] == limited + 1  # no retry it could not wait for
    failures = [r for r in caplog.records if "could not deliver" in r.getMessage()]
    assert len(failures) == 1 and "ratelimited" in failures[0].getMessage()


def test_app_rate_limited_is_logged(running_bot: BotThread, fake: FakeSlack,
                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="adapters.slack"):
        fake.app_rate_limited()
        fake.wait_for(lambda: "app_rate_limited" in caplog.text, "the warning")
    settle(fake, running_bot)


@pytest.mark.parametrize("error", ["token_revoked", "invalid_auth"])
def test_bot_token_revoked_while_running_stops_with_one_line(lab: Any, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture, error: str) -> None:
    from adapters.slack import FatalSlackError

    with make_fake() as fake:
        bot = BotThread(bot_config(fake, tmp_path), lab, "slack").start()
        with caplog.at_level("ERROR", logger="adapters.slack"):
            fake.revoke(fake.bot_token, error)  # the socket (app token) stays up
            fake.user_says(ALICE, ALICE_DM, "whoami")
            assert bot.finished.wait(15), "the adapter went on without a working token"
        assert isinstance(bot.error, FatalSlackError), bot.error
        assert f"bot token was refused ({error})" in str(bot.error)
        assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [str(bot.error)]


def test_link_disabled_stops_instead_of_reconnecting(lab: Any, tmp_path: Path) -> None:
    from adapters.slack import FatalSlackError

    with make_fake() as fake:
        bot = BotThread(bot_config(fake, tmp_path), lab, "slack").start()
        fake.send_disconnect("link_disabled")
        assert bot.finished.wait(15), "the adapter kept reconnecting"
        assert isinstance(bot.error, FatalSlackError) and "link_disabled" in str(bot.error), bot.error
        assert fake.connections == 1 and fake.calls["apps.connections.open"] == 1


def test_too_many_websockets_backs_off(lab: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with make_fake(max_connections=1, disconnect_grace=0.2) as fake:
        async def squat(release: asyncio.Event) -> None:  # another copy of the bot holds the one slot
            async with aiohttp.ClientSession() as session:
                _, ws = await _open(fake, session)
                await ws.receive(timeout=5)
                await release.wait()
                await ws.close()
        loop = asyncio.new_event_loop()
        release = asyncio.Event()
        import threading
        squatter = threading.Thread(target=lambda: loop.run_until_complete(squat(release)), daemon=True)
        squatter.start()
        fake.wait_for(lambda: fake.open_connections() == 1, "the other connection")
        with caplog.at_level("WARNING", logger="adapters.slack"):
            bot = BotThread(bot_config(fake, tmp_path), lab, "slack").start()
            try:
                def refusals() -> list[logging.LogRecord]:
                    return [r for r in caplog.records if "too_many_websockets" in r.getMessage()]
                first, second = fake.wait_for(lambda: len(refusals()) >= 2 and refusals()[:2], "two refusals")
                assert second.created - first.created >= 0.9  # it waited before trying again
                assert fake.connections <= 4, fake.connections  # the other one, and the bot's few tries
                loop.call_soon_threadsafe(release.set)
                squatter.join(10)
                fake.wait_for(lambda: fake.open_connections() == 1, "the bot's connection", timeout=15)
                _, [reply] = ask(fake, ALICE, ALICE_DM, "whoami")
                assert reply["text"].startswith("You are alice")
            finally:
                bot.stop()


def test_missing_scope_names_the_scope(running_bot: BotThread, fake: FakeSlack,
                                       caplog: pytest.LogCaptureFixture) -> None:
    scopes = set(fake.scopes)
    fake.set_scopes(*(scopes - {"files:write"}))
    try:
        with caplog.at_level("ERROR", logger="adapters.slack"):
            ts = fake.user_says(ALICE, ALICE_DM, "show run r1")
            fake.wait_for(lambda: "needs the scope files:write" in caplog.text, "the scope line")
            settle(fake, running_bot)
    finally:
        fake.set_scopes(*scopes)
    assert "add it under OAuth & Permissions" in caplog.text
    [text] = final(fake.replies_to(ALICE_DM, ts))  # the answer's text got through
    assert "r1-running-config.txt" in text["text"]


def test_public_channel_not_joined_gets_the_text_and_a_note(running_bot: BotThread, fake: FakeSlack,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    scopes = set(fake.scopes)
    fake.set_scopes(*scopes, "chat:write.public")
    try:
        with caplog.at_level("WARNING"):
            fake.slash("/netbot", "show run r1", ALICE, LOBBY)
            [answer] = fake.wait_for(lambda: _answers(fake, LOBBY, "attached as r1-running-config.txt"),
                                     "the answer")
            [note] = fake.wait_for(lambda: fake.replies_to(LOBBY, answer["ts"]), "the note")
            settle(fake, running_bot)
    finally:
        fake.set_scopes(*scopes)
    assert not answer["ephemeral"] and answer["via"] == "chat.postMessage"
    assert note["text"] == "(r1-running-config.txt not sent: invite the bot to this channel to get files.)"
    assert "could not deliver" not in caplog.text


def test_message_with_a_file_that_mentions_the_bot_is_a_command(running_bot: BotThread,
                                                                 fake: FakeSlack) -> None:
    ts = fake.user_says(ALICE, NETOPS, f"<@{BOT_USER}> whoami", files=["notes.txt"])
    [reply] = fake.wait_for(lambda: final(fake.replies_to(NETOPS, ts)), "the answer")
    assert reply["text"].startswith("You are alice")
    settle(fake, running_bot)
    assert len(fake.replies_to(NETOPS, ts)) == 1
