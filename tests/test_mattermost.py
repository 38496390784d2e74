"""The Mattermost adapter against the fake server (tests/fake_mattermost.py), through the
real mattermostautodriver; and the fake's own strictness, each rule proven by a test that
fails without it.

One fake server and one bot for the module; the bot runs in its own thread and event
loop, as `chatbot run` would. People post through the fake's test API (what their client
would do); the bot's answers are read back from the fake's store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from bot_thread import BotThread
from fake_mattermost import MAX_POST_CHARS, ApiError, Channel, FakeMattermost, User
from fake_mattermost_tls import private_ca
from helpers import chat_test_access
from sqlalchemy import create_engine, text

from chatbot.config import ConfigError
from chatbot.lab import planted_secrets
from chatbot.results import Note, Result, Status, Table, TextBlock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WAIT = 20.0
def is_ack(text: str) -> bool:
    """The "working on it (job …)" / "queued (job …)" notice (Markdown-escaped)."""
    plain = text.replace("\\", "")
    return plain.startswith("working on it") or plain.startswith("queued (job")


@dataclass
class World:
    fake: FakeMattermost
    alice: User
    bob: User
    bot: User
    relay: User  # matterbridge, posting as a bot account with its token
    otherbot: User
    netops: Channel
    random: Channel  # the bot is a member, but it is not in allowed_channels
    elsewhere: Channel  # another team's channel
    dm: Channel
    token: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with FakeMattermost() as fake:
        corp, other = fake.add_team("corp"), fake.add_team("other")
        alice = fake.add_user("alice", teams=(corp, other))
        bob = fake.add_user("bob", teams=(corp,))
        bot = fake.add_user("netbot", bot=True, teams=(corp, other))
        relay = fake.add_user("matterbridge", bot=True, teams=(corp,))
        otherbot = fake.add_user("otherbot", bot=True, teams=(corp,))
        everyone = [alice, bob, bot, relay, otherbot]
        yield World(fake, alice, bob, bot, relay, otherbot,
                    netops=fake.add_channel("netops", everyone, corp),
                    random=fake.add_channel("random", everyone, corp),
                    elsewhere=fake.add_channel("netops", [alice, bot], other),
                    dm=fake.direct_channel(alice, bot), token=fake.create_token(bot))


def bot_config(world: World, workdir: Path, token: str, **mattermost: Any) -> dict[str, Any]:
    return {
        "bot": {"database": f"sqlite:///{workdir}/bot.sqlite"},
        "limits": {"device_timeout": 5, "connect_timeout": 3},
        "mattermost": {"url": world.fake.url, "token": token, "team": "corp", "allowed_channels": ["netops"],
                       "progress_after": 0.5, "attachment_lines": 40, **mattermost},
        "identities": {"alice": [f"mattermost:{world.alice.id}"]},
        "bridges": {"relay": {"type": "matterbridge", "platform": "mattermost", "accounts": [world.relay.id]}},
        "access": chat_test_access("relayed:slack:*"),
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mattermost-bot")


@pytest.fixture(scope="module")
def running_bot(world: World, lab: Any, workdir: Path) -> Iterator[BotThread]:
    bot = BotThread(bot_config(world, workdir, world.token), lab, "mattermost").start()
    yield bot
    bot.stop()


def wait_for(found: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def answers(world: World, command: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's posts answering `command` (edits applied), oldest first."""
    root = command["root_id"] or command["id"]
    return [p for p in world.fake.thread(root, by=world.bot) if p["create_at"] >= command["create_at"]]


def ask(world: World, user: User, channel: Channel, message: str, root_id: str | None = None,
        parts: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    command = world.fake.post_as(user, channel, message, root_id=root_id)
    got = wait_for(lambda: (r := answers(world, command)) and len(r) >= parts
                   and all(not is_ack(p["message"]) for p in r) and r, f"the answer to {message!r}")
    return command, got


def claimed(workdir: Path, post_id: str) -> bool:
    engine = create_engine(f"sqlite:///{workdir}/bot.sqlite")
    with engine.connect() as conn:
        row = conn.execute(text("select 1 from chat_taken_messages where platform = 'mattermost' "
                                "and message_id = :id"), {"id": post_id}).first()
    engine.dispose()
    return row is not None


# --- the adapter ---------------------------------------------------------------------------
def test_help_ping_mention_and_direct_message(running_bot: BotThread, world: World) -> None:
    command, [help_reply] = ask(world, world.alice, world.netops, "!help")
    assert help_reply["root_id"] == command["id"]  # a channel-level command: answered in a thread under it
    assert help_reply["channel_id"] == world.netops.id
    assert help_reply["message"].startswith("Commands you can run here:")
    assert "\n```\nusage" in help_reply["message"]  # the table as a code block
    assert help_reply["props"].get("from_bot") == "true"
    _, [ping] = ask(world, world.alice, world.netops, "!ping 10.0.0.1 from r1")
    assert "10.0.0.1 is reachable (5/5) from r1" in ping["message"]
    _, [who] = ask(world, world.bob, world.netops, "@netbot whoami")
    assert who["message"].startswith(f"You are mattermost:{world.bob.id}")
    _, [direct] = ask(world, world.alice, world.dm, "ping 10.0.0.1 from r2 count 1")  # no prefix needed
    assert "10.0.0.1 is reachable (1/1) from r2" in direct["message"]


def test_show_run_long_output_is_an_uploaded_file(running_bot: BotThread, world: World) -> None:
    _, [reply, files] = ask(world, world.alice, world.netops, "!show run r1", parts=2)
    assert "attached as r1-running-config.txt" in reply["message"]
    assert "hostname r1" not in reply["message"]  # the config itself went into the file
    assert "file_ids" not in reply  # the text first, the files after it
    assert files["message"] == "r1-running-config.txt"
    [file_id] = files["file_ids"]
    stored = world.fake.file(file_id)
    assert stored.name == "r1-running-config.txt" and stored.mime_type == "text/plain"
    content = world.fake.file_text(file_id)
    assert "hostname r1" in content and "<redacted>" in content
    assert [s for s in planted_secrets("r1") if s in content] == []


def test_command_in_a_thread_is_answered_in_that_thread(running_bot: BotThread, world: World) -> None:
    root = world.fake.post_as(world.alice, world.netops, "thread about r1")
    command, [reply] = ask(world, world.bob, world.netops, "!show version r1", root_id=root["id"])
    assert reply["root_id"] == root["id"] != command["id"]
    assert "show version on r1" in reply["message"]


def test_relay_bots_webhooks_and_other_channels(running_bot: BotThread, world: World, workdir: Path) -> None:
    fake = world.fake
    _, [pong] = ask(world, world.relay, world.netops, "[slack] <carol> !ping 10.0.0.1 from r1 count 1")
    assert pong["message"].startswith("carol: 10.0.0.1 is reachable")  # addressed to the relayed nick
    _, [denied] = ask(world, world.relay, world.netops, "[slack] <carol> !show version r1")
    assert denied["message"].startswith("carol: **\\[denied\\] show version")  # a weak identity: ping only
    ignored = [
        fake.post_as(world.otherbot, world.netops, "!help"),  # another bot
        fake.post_as_webhook(world.alice, world.netops, "!help", username="alice"),  # anyone with the hook URL
        fake.post_as_webhook(world.relay, world.netops, "[slack] <carol> !ping 10.0.0.1", username="matterbridge",
                             props={"matterbridge_1f2e": True}),  # the relay, but through a webhook
        fake.post_as(world.bob, world.netops, "[slack] <carol> !ping 10.0.0.1"),  # a prefix proves nothing
        fake.post_as(world.alice, world.random, "!help"),  # not in allowed_channels
        fake.post_as(world.alice, world.elsewhere, "!help"),  # same channel name, other team
        fake.post_as(world.alice, world.netops, "the core is fine today"),  # chatter
        fake.post_as(world.alice, world.netops, "@channel maintenance tonight"),  # mentions the bot too
    ]
    ask(world, world.alice, world.netops, "!help")  # events are taken in order: the ones above are done
    for post in ignored:
        assert answers(world, post) == [], post["message"]
        assert not claimed(workdir, post["id"]), post["message"]
    bob_says = ignored[3]
    assert fake.thread(bob_says["id"]) == []


def test_slow_command_gets_working_on_it_then_the_edit(running_bot: BotThread, world: World, lab: Any) -> None:
    lab.set_delay("r3", 2.0)
    try:
        command = world.fake.post_as(world.alice, world.netops, "!show version r3")
        [ack] = wait_for(lambda: answers(world, command), "the acknowledgement")
        assert world.fake.edits_of(ack["id"]) == []
        edited = wait_for(lambda: world.fake.edits_of(ack["id"]), "the edit")
        assert len(edited) == 1 and "show version on r3" in edited[0]
        [final] = answers(world, command)  # the same post, now the answer
        assert final["id"] == ack["id"] and final["edit_at"] > 0 and final["message"] == edited[0]
    finally:
        lab.set_delay("r3", 0.01)


def test_answer_too_long_for_one_post_goes_into_a_file(running_bot: BotThread, world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adapters.mattermost.MAX_POST_CHARS", 300)
    _, [reply, files] = ask(world, world.alice, world.netops, "!help", parts=2)
    assert "too long for one post: attached as answer.md" in reply["message"]
    assert "usage" in world.fake.file_text(files["file_ids"][0])


def test_dropped_connection_reconnects_and_answers_once(running_bot: BotThread, world: World) -> None:
    fake = world.fake
    auths = fake.stats["ws_auth"]
    fake.drop_connections()
    wait_for(lambda: fake.stats["ws_auth"] > auths and fake.authenticated(world.bot) == 1
             and running_bot.is_ready(), "the bot to reconnect")
    command, [reply] = ask(world, world.alice, world.netops, "!whoami")
    assert reply["message"].startswith("You are alice")
    fake.rebroadcast(command["id"])  # the same event delivered twice: the claim holds
    # Events are taken in order, and this one needs a device while whoami does not: when
    # it is answered, an answer to the duplicate would long have been posted.
    _, [marker] = ask(world, world.alice, world.netops, "!show version r2")
    assert "show version on r2" in marker["message"]
    assert len(answers(world, command)) == 1
    assert fake.authenticated(world.bot) == 1


def test_server_restart(running_bot: BotThread, world: World) -> None:
    fake = world.fake
    auths = fake.stats["ws_auth"]
    fake.restart()
    wait_for(lambda: fake.stats["ws_auth"] > auths and running_bot.is_ready(), "the bot to reconnect")
    command, [reply] = ask(world, world.bob, world.netops, "!ping 10.0.0.1 from r3 count 1")
    assert "reachable (1/1) from r3" in reply["message"]
    assert fake.authenticated(world.bot) == 1


def test_bad_token_stops_at_once(world: World, lab: Any, tmp_path: Path) -> None:
    from adapters.mattermost import FatalMattermostError

    before = dict(world.fake.stats)
    started = time.monotonic()
    with pytest.raises(FatalMattermostError, match="refused the bot's token"):
        BotThread(bot_config(world, tmp_path, world.token[:-1] + "x"), lab, "mattermost").start()
    assert time.monotonic() - started < 10
    assert world.fake.stats["users_me_401"] - before.get("users_me_401", 0) == 1
    assert world.fake.stats["ws_auth"] == before.get("ws_auth", 0)  # never tried the websocket


def test_not_in_the_team_is_fatal(world: World, lab: Any, tmp_path: Path) -> None:
    from adapters.mattermost import FatalMattermostError

    with pytest.raises(FatalMattermostError, match="not a member of team 'nope'"):
        BotThread(bot_config(world, tmp_path, world.token, team="nope"), lab, "mattermost").start()


def test_token_revoked_while_connected_is_fatal(world: World, lab: Any, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from adapters.mattermost import FatalMattermostError

    fake = world.fake
    bot2 = fake.add_user("netbot2", bot=True, teams=(next(iter(fake.teams.values())),))
    token = fake.create_token(bot2)
    thread = BotThread(bot_config(world, tmp_path, token), lab, "mattermost").start()
    before = dict(fake.stats)
    fake.expire_at_websocket(token)  # the next websocket challenge fails, and the token with it
    fake.drop_connections(bot2)
    thread.thread.join(WAIT)
    assert not thread.thread.is_alive()
    assert isinstance(thread.error, FatalMattermostError)
    assert fake.stats["ws_auth_failed"] - before.get("ws_auth_failed", 0) == 1  # one try, no loop
    assert fake.stats["users_me_401"] - before.get("users_me_401", 0) == 1
    # the closed websocket sent the bot to REST at once, which said 401: no second wait
    assert "closed during authentication" not in caplog.text
    assert caplog.text.count("reconnecting in") == 1  # the drop itself


def test_tls_with_a_private_ca(world: World, lab: Any, tmp_path: Path) -> None:
    from adapters.mattermost import MattermostConfig, tls_context

    ca_file, server_ctx = private_ca(tmp_path)
    with FakeMattermost(ssl_context=server_ctx) as tls:
        team = tls.add_team("corp")
        # a user account, not a bot account: its posts carry no from_bot, so only the
        # own-post check keeps it from answering itself in a direct channel
        alice, bot = tls.add_user("alice", teams=(team,)), tls.add_user("netbot", teams=(team,))
        dm = tls.direct_channel(alice, bot)
        config = bot_config(world, tmp_path, tls.create_token(bot), url=tls.url, ca_file=str(ca_file))
        thread = BotThread(config, lab, "mattermost").start()  # REST and wss, verified against the private CA
        try:
            for message in ("whoami", "help"):
                command = tls.post_as(alice, dm, message)
                wait_for(lambda: tls.thread(command["id"], by=bot), f"the answer to {message} over TLS")
            first = tls.thread(tls.posts_in(dm, by=alice)[0]["id"], by=bot)[0]
            assert first["message"].startswith(f"You are mattermost:{alice.id}") and "from_bot" not in first["props"]
            assert len(tls.posts_in(dm, by=bot)) == 2  # it did not answer its own answers
        finally:
            thread.stop()
        # without the CA, the system store does not know the server: refused before any request
        system_store = tls_context(MattermostConfig(url=tls.url))
        assert system_store is not None
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(tls.url + "/api/v4/system/ping", verify=system_store)


def test_config_errors() -> None:
    from adapters.mattermost import load_mattermost_config

    ok = load_mattermost_config({"url": "https://chat.corp.example/", "token_env": "MM_TOKEN"})
    assert (ok.scheme, ok.host, ok.port, ok.url) == ("https", "chat.corp.example", 443, "https://chat.corp.example")
    assert load_mattermost_config({"url": "http://127.0.0.1:8065", "token": "t"}).port == 8065
    for raw, message in [
        ({"url": "chat.corp.example", "token": "t"}, "[mattermost] url: give the server's address"),
        ({"url": "https://corp.example/mattermost", "token": "t"}, "sub-path is not supported"),
        ({"url": "https://c.example"}, "[mattermost] needs token_file, token_env or token"),
        ({"url": "https://c.example", "token": "t", "token_file": "/x"}, "sets token and token_file"),
        ({"url": "https://c.example", "token": "t", "tokn": "t"}, "[mattermost] unknown setting tokn"),
        ({"url": "https://c.example", "token": "t", "ca_file": "/nonexistent.pem"}, "is not a readable file"),
        ({"url": "https://c.example", "token": "t", "ca_file": "/etc/hostname", "verify_tls": False},
         "contradict"),
        ({"url": "https://c.example", "token": "t", "progress_after": -1}, "[mattermost] progress_after"),
        ({"url": "https://c.example", "token": "t", "catch_up_max_age": -1}, "[mattermost] catch_up_max_age"),
        ({"url": "https://c.example", "token": "t", "ping_interval": 0}, "[mattermost] ping_interval"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_mattermost_config(raw)
        assert message in str(err.value) and "\n" not in str(err.value), raw


def test_render_markdown() -> None:
    from chatbot.render import ZWSP, render_markdown

    out = render_markdown(Result(Status.DENIED, "show run: @channel may not [x](y) *run*", [
        Note("hi @here"), Table(["a", "b"], [["1", "@all"]]), TextBlock("banner ```\n````` x", "r1 config")]))
    head, note, table, title, block = out.split("\n\n")
    assert head == f"**\\[denied\\] show run: @{ZWSP}channel may not \\[x\\](y) \\*run\\***"
    assert note == f"hi @{ZWSP}here"
    assert table.startswith("```\na  b\n") and f"@{ZWSP}all" in table
    assert title == "*r1 config*"
    assert block == "``````\nbanner ```\n````` x\n``````"  # a fence longer than any run inside
    assert render_markdown(Result(Status.OK, "fine")) == "fine"


# --- what a real server refuses: edits, uploads ---------------------------------------------------
def test_edit_refused_the_answer_comes_as_a_new_post(running_bot: BotThread, world: World, lab: Any) -> None:
    fake = world.fake
    lab.set_delay("r3", 1.5)
    try:
        for refuse, how in ((lambda: setattr(fake, "post_edit_time_limit", 0), "PostEditTimeLimit (400)"),
                            (lambda: fake.cannot_edit.add(world.bot.id), "no edit_post permission (403)")):
            refuse()
            command = fake.post_as(world.alice, world.netops, "!show version r3")
            [ack] = wait_for(lambda: answers(world, command), "the acknowledgement")
            assert is_ack(ack["message"]), how
            got = wait_for(lambda: (r := answers(world, command)) and len(r) == 2 and r, f"the answer, {how}")
            assert got[0]["id"] == ack["id"] and fake.edits_of(ack["id"]) == [], how  # never edited
            assert "show version on r3" in got[1]["message"] and got[1]["root_id"] == command["id"], how
            fake.post_edit_time_limit = -1
            fake.cannot_edit.clear()
    finally:
        fake.post_edit_time_limit = -1
        fake.cannot_edit.clear()
        lab.set_delay("r3", 0.01)


@pytest.mark.parametrize("refusal", ["disabled-403", "disabled-501", "no-permission", "too-large"])
def test_upload_refused_the_text_comes_first_then_a_shortened_file(running_bot: BotThread, world: World,
                                                                   refusal: str) -> None:
    fake = world.fake
    try:
        if refusal.startswith("disabled"):
            fake.file_attachments, fake.attachments_disabled_status = False, int(refusal[-3:])
        elif refusal == "no-permission":
            fake.cannot_upload.add(world.bot.id)
        else:
            fake.max_file_size = 100
        _, [reply, instead] = ask(world, world.alice, world.netops, "!show run r1", parts=2)
    finally:
        fake.file_attachments, fake.attachments_disabled_status, fake.max_file_size = True, 403, 104857600
        fake.cannot_upload.clear()
    assert "attached as r1-running-config.txt" in reply["message"]  # the answer itself got through
    assert "file_ids" not in instead
    head, _, block = instead["message"].partition("\n")
    assert "could not attach r1-running-config.txt" in head, head
    reason = {"disabled-403": "the server does not take attachments",
              "disabled-501": "the server does not take attachments",
              "no-permission": "the bot may not upload files here", "too-large": "larger than the server takes"}[refusal]
    assert reason in head, head
    assert block.startswith("```\n") and "hostname r1" in block and "<redacted>" in block
    assert [s for s in planted_secrets("r1") if s in block] == []
    assert len(instead["message"]) <= MAX_POST_CHARS


def test_shortened_file_post_fits_one_post() -> None:
    from adapters.mattermost import shortened_file_post
    from chatbot.render import Attachment

    big = "\n".join(f"line {i} ``` @channel" for i in range(5000))
    post = shortened_file_post(Attachment("big.txt", big, "big"), "it is larger than the server takes")
    head, _, block = post.partition("\n")
    assert len(post) <= MAX_POST_CHARS and len(post) > MAX_POST_CHARS - 100  # as much as fits
    shown = block.count("\n") - 1
    assert head == f"could not attach big.txt (it is larger than the server takes); its first {shown} of 5000 lines:"
    assert block.startswith("````\nline 0 ") and "@channel" not in block  # fenced, mentions defused
    small = shortened_file_post(Attachment("s.txt", "a\nb\n", "s"), "why")
    assert small == "could not attach s.txt (why); all its 2 lines:\n```\na\nb\n```"


# --- catching up what was posted while the bot was away ------------------------------------------
# Each test has a bot account and a channel of its own, so the module's bot never sees them.
@dataclass
class Catcher:
    bot: User
    token: str
    channel: Channel


def new_catcher(world: World, name: str) -> Catcher:
    fake = world.fake
    corp = next(t for t in fake.teams.values() if t.name == "corp")
    bot = fake.add_user(name, bot=True, teams=(corp,))
    return Catcher(bot, fake.create_token(bot), fake.add_channel(name, [world.alice, world.bob, bot], corp))


def catcher_bot(world: World, lab: Any, workdir: Path, catcher: Catcher, **mattermost: Any) -> BotThread:
    config = bot_config(world, workdir, catcher.token, allowed_channels=[catcher.channel.name], **mattermost)
    config["limits"]["commands_per_minute"] = 500  # one person's 50 commands are not a flood here
    return BotThread(config, lab, "mattermost")


def answers_by(world: World, bot: User, command: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in world.fake.thread(command["id"], by=bot) if p["create_at"] >= command["create_at"]]


def claims_in_order(workdir: Path) -> list[str]:
    engine = create_engine(f"sqlite:///{workdir}/bot.sqlite")
    with engine.connect() as conn:
        rows = conn.execute(text("select message_id from chat_taken_messages where platform = 'mattermost' "
                                 "order by rowid")).all()
    engine.dispose()
    return [r[0] for r in rows]


def wait_answered(world: World, bot: User, commands: list[dict[str, Any]]) -> None:
    """Until each command has its answer (a "working on it" has become the answer)."""
    def done(command: dict[str, Any]) -> bool:
        got = answers_by(world, bot, command)
        return bool(got) and not any(is_ack(p["message"]) for p in got)
    wait_for(lambda: all(done(c) for c in commands), f"answers to {len(commands)} commands", timeout=60)


def test_posts_made_while_stopped_are_answered_once_oldest_first(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "catchbot1")
    before_any_run = fake.post_as(world.alice, me.channel, "!whoami")
    first = catcher_bot(world, lab, tmp_path, me).start()
    live = fake.post_as(world.alice, me.channel, "!whoami")
    wait_answered(world, me.bot, [live])
    first.stop()
    missed: list[dict[str, Any]] = []
    for i in range(50):  # one millisecond apart: posts of the same millisecond have no order
        wait_for(lambda: not missed or fake.now_ms() > missed[-1]["create_at"], "the server's clock to move on")
        who = (world.alice, world.bob)[i % 2]
        missed.append(fake.post_as(who, me.channel, f"!ping 10.0.0.{i + 1} from r1 count 1"))
    assert not any(answers_by(world, me.bot, c) for c in missed)  # no socket, no event
    second = catcher_bot(world, lab, tmp_path, me).start()
    try:
        wait_answered(world, me.bot, missed)
        for i, command in enumerate(missed):
            [reply] = answers_by(world, me.bot, command)
            assert f"10.0.0.{i + 1} is reachable (1/1) from r1" in reply["message"]
        assert claims_in_order(tmp_path) == [live["id"]] + [c["id"] for c in missed]  # taken oldest first
        assert len(answers_by(world, me.bot, live)) == 1
        assert answers_by(world, me.bot, before_any_run) == []  # the first run catches nothing up
    finally:
        second.stop()


def test_socket_dropped_then_posts_are_answered_after_reconnect(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "catchbot2")
    thread = catcher_bot(world, lab, tmp_path, me).start()
    try:
        fake.refuse_websockets(True)
        refused = fake.stats["ws_refused"]
        fake.drop_connections(me.bot)
        wait_for(lambda: fake.stats["ws_refused"] > refused, "the bot to try again and be refused")
        assert fake.authenticated(me.bot) == 0
        direct = fake.direct_channel(world.alice, me.bot)
        missed = [fake.post_as(world.alice, me.channel, "!whoami"), fake.post_as(world.bob, me.channel, "!help"),
                  fake.post_as(world.alice, direct, "whoami")]
        during: list[dict[str, Any]] = []

        async def post_during_catch_up() -> None:  # the socket is up: it gets the post, and so may REST
            fake.before_posts_since = None
            during.append(await fake._post(world.bob, me.channel, "!whoami", "", {}, []))
        fake.before_posts_since = post_during_catch_up
        fake.refuse_websockets(False)
        wait_answered(world, me.bot, missed)
        assert answers_by(world, me.bot, missed[0])[0]["message"].startswith("You are alice")
        assert answers_by(world, me.bot, missed[2])[0]["message"].startswith("You are alice")  # a direct message
        fake.rebroadcast(missed[0]["id"])  # the socket brings it after all: the claim holds
        marker = fake.post_as(world.alice, me.channel, "!show version r2")
        wait_answered(world, me.bot, [marker] + during)
        assert [len(answers_by(world, me.bot, c)) for c in missed + during] == [1, 1, 1, 1]
        assert fake.authenticated(me.bot) == 1
    finally:
        fake.before_posts_since = None
        fake.refuse_websockets(False)
        thread.stop()


def test_posts_older_than_catch_up_max_age_are_not_answered(world: World, lab: Any, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    fake, me = world.fake, new_catcher(world, "catchbot3")
    fake.set_clock(-1200)  # what happens now, the server stamps 20 minutes back
    try:
        first = catcher_bot(world, lab, tmp_path, me, catch_up_max_age=600).start()
        live = fake.post_as(world.alice, me.channel, "!whoami")
        wait_answered(world, me.bot, [live])
        first.stop()
        stale = [fake.post_as(world.alice, me.channel, "!whoami"), fake.post_as(world.bob, me.channel, "!help")]
    finally:
        fake.set_clock(0)  # 20 minutes later
    fresh = fake.post_as(world.bob, me.channel, "!whoami")
    caplog.set_level(logging.INFO, logger="adapters.mattermost")
    second = catcher_bot(world, lab, tmp_path, me, catch_up_max_age=600).start()
    try:
        wait_answered(world, me.bot, [fresh])
        marker = fake.post_as(world.alice, me.channel, "!show version r1")  # taken after everything before it
        wait_answered(world, me.bot, [marker])
        assert [answers_by(world, me.bot, c) for c in stale] == [[], []]
        assert not any(claimed(tmp_path, c["id"]) for c in stale)
        # what the operator sees: one line for the channel (the people who asked see nothing)
        assert f"~{me.channel.name}: the last post the bot saw there is from" in caplog.text
        assert "posts older than catch_up_max_age (600 s) are not answered" in caplog.text
    finally:
        second.stop()


def test_restarts_edits_and_deletes_never_run_a_command_twice(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "catchbot4")
    catcher_bot(world, lab, tmp_path, me).start().stop()  # the first run: nothing to catch up
    old = fake.post_as(world.alice, me.channel, "!whoami")
    thread = catcher_bot(world, lab, tmp_path, me).start()
    wait_answered(world, me.bot, [old])
    chatter = fake.post_as(world.bob, me.channel, "hello")
    wait_answered(world, me.bot, [fake.post_as(world.alice, me.channel, "!whoami")])  # posts are taken in order
    thread.stop()
    fake.edit_as(world.alice, old["id"], "!help")  # an edit of a post the bot has seen: not a command
    fake.edit_as(world.bob, chatter["id"], "!whoami")  # nor is chatter edited into a command later
    fake.post_as(world.bob, me.channel, "that worked", root_id=old["id"])  # moves the root's update_at
    gone = fake.post_as(world.alice, me.channel, "!ping 10.0.0.9 from r1")
    fake.delete_as(world.alice, gone["id"])
    retyped = fake.post_as(world.bob, me.channel, "!pnig 10.0.0.1 from r1 count 1")
    fake.edit_as(world.bob, retyped["id"], "!ping 10.0.0.1 from r1 count 1")  # written and fixed while away
    for _ in range(2):  # restart twice
        thread = catcher_bot(world, lab, tmp_path, me).start()
        try:
            marker = fake.post_as(world.alice, me.channel, "!show version r3")
            wait_answered(world, me.bot, [marker, retyped])
        finally:
            thread.stop()
    [fixed] = answers_by(world, me.bot, retyped)
    assert "10.0.0.1 is reachable (1/1) from r1" in fixed["message"]
    assert len(answers_by(world, me.bot, old)) == 1 and "You are alice" in answers_by(world, me.bot, old)[0]["message"]
    assert fake.thread(gone["id"], by=me.bot) == [] and not claimed(tmp_path, gone["id"])
    assert answers_by(world, me.bot, chatter) == [] and not claimed(tmp_path, chatter["id"])
    assert sorted(claims_in_order(tmp_path)) == sorted(
        [old["id"], retyped["id"]] + [p["id"] for p in fake.posts_in(me.channel, by=world.alice)
                                      if p["message"] in ("!show version r3", "!whoami") and p["id"] != old["id"]])


def test_catch_up_beyond_the_servers_cap_says_so(world: World, lab: Any, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake, me = world.fake, new_catcher(world, "catchbot5")
    catcher_bot(world, lab, tmp_path, me).start().stop()
    missed = [fake.post_as(world.alice, me.channel, "!whoami") for _ in range(5)]
    fake.posts_since_limit = 3  # the server's 1000, smaller
    monkeypatch.setattr("adapters.mattermost.POSTS_SINCE_CAP", 3)
    thread = catcher_bot(world, lab, tmp_path, me)
    try:
        thread.start()
        assert f"~{me.channel.name}: 3 posts changed there within catch_up_max_age, as many as the server " \
               "returns at once: some may be missed" in caplog.text
        wait_for(lambda: sum(bool(answers_by(world, me.bot, c)) for c in missed) == 3, "three answers")
    finally:
        fake.posts_since_limit = 1000
        thread.stop()


# --- a socket that goes quiet, rate limits, proxies ------------------------------------------------
def test_token_revoked_while_listening_stops_with_one_line(world: World, lab: Any, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from adapters.mattermost import FatalMattermostError

    fake, me = world.fake, new_catcher(world, "revokebot")
    thread = catcher_bot(world, lab, tmp_path, me, ping_interval=0.2).start()
    refusals = fake.stats["ws_not_authenticated"]
    fake.revoke_token(me.token)  # the socket stays open and goes silent
    thread.thread.join(WAIT)
    assert not thread.thread.is_alive(), "the bot went deaf"
    assert isinstance(thread.error, FatalMattermostError) and "refused the bot's token" in str(thread.error)
    assert "\n" not in str(thread.error)
    assert fake.stats["ws_not_authenticated"] > refusals  # it was the action ping that found out


def test_unanswered_ping_reconnects_and_catches_up(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "mutebot")
    thread = catcher_bot(world, lab, tmp_path, me, ping_interval=0.2).start()
    try:
        auths = fake.stats["ws_auth"]
        fake.mute_websockets(me.bot)  # open, answering protocol pings, delivering nothing
        command = fake.post_as(world.alice, me.channel, "!whoami")
        wait_answered(world, me.bot, [command])
        assert fake.stats["ws_auth"] > auths  # a new socket, and the catch-up brought the command
        [reply] = answers_by(world, me.bot, command)
        assert reply["message"].startswith("You are alice")
    finally:
        thread.stop()


def test_socket_closed_by_a_full_send_queue_loses_nothing(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "burstbot")
    fake.send_queue_size = 4  # the server's 256, smaller
    try:
        thread = catcher_bot(world, lab, tmp_path, me).start()
        auths = fake.stats["ws_auth"]
        burst = fake.post_burst(world.alice, me.channel, [f"!ping 10.0.0.{i} from r1 count 1" for i in range(1, 11)])
        wait_answered(world, me.bot, burst)
        assert fake.stats["ws_auth"] > auths  # the server closed the socket; the bot came back
        assert [len(answers_by(world, me.bot, c)) for c in burst] == [1] * 10
    finally:
        fake.send_queue_size = 256
        thread.stop()


def test_rate_limited_answer_waits_its_turn(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "slowbot")
    thread = catcher_bot(world, lab, tmp_path, me).start()
    try:
        limited = fake.stats["rate_limited"]
        fake.rate_limit(me.bot, per_sec=2)  # one request per 0.5 s, and none left right now
        command = fake.post_as(world.alice, me.channel, "!show run r2")
        got = wait_for(lambda: (r := answers_by(world, me.bot, command)) and len(r) == 2 and r, "text and file")
        assert "attached as r2-running-config.txt" in got[0]["message"] and got[1]["file_ids"]
        assert fake.stats["rate_limited"] > limited  # it was told to wait...
        assert fake.came_back_early(me.bot) == 0  # ...and it did
    finally:
        fake.rate_limit(me.bot, None)
        thread.stop()


def test_rate_limit_longer_than_the_command_timeout_is_reported_once(world: World, lab: Any, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    fake, me = world.fake, new_catcher(world, "waitbot")
    config = bot_config(world, tmp_path, me.token, allowed_channels=[me.channel.name])
    config["limits"]["command_timeout"] = 2
    thread = BotThread(config, lab, "mattermost").start()
    try:
        fake.rate_limit(me.bot, per_sec=0.2)  # Retry-After: 5 s
        command = fake.post_as(world.alice, me.channel, "!whoami")
        started = time.monotonic()
        wait_for(lambda: "could not deliver the answer" in caplog.text, "the delivery failure")
        assert time.monotonic() - started < 4  # not after waiting out the 5 s
        fake.rate_limit(me.bot, None)
        marker = fake.post_as(world.alice, me.channel, "!whoami")
        wait_answered(world, me.bot, [marker])
        assert answers_by(world, me.bot, command) == []
        assert caplog.text.count("could not deliver the answer") == 1
    finally:
        fake.rate_limit(me.bot, None)
        thread.stop()
    # A failed reply is audited behind the work: on disk once the bot has stopped.
    engine = create_engine(f"sqlite:///{tmp_path}/bot.sqlite")
    with engine.connect() as conn:
        rows = conn.execute(text("select outcome from audit_events where kind = 'reply_failure'")).all()
    engine.dispose()
    assert len(rows) == 1 and "TooManyRequests" in rows[0][0]


def test_proxy_json_content_type_with_charset(world: World, lab: Any, tmp_path: Path) -> None:
    fake, me = world.fake, new_catcher(world, "proxybot")
    catcher_bot(world, lab, tmp_path, me).start().stop()  # the first run: catch-up from now on
    missed = fake.post_as(world.alice, me.channel, "!whoami")
    fake.proxy_json_content_type = "application/json; charset=utf-8"
    try:
        thread = catcher_bot(world, lab, tmp_path, me).start()  # users/me, channel lists, posts?since
        try:
            live = fake.post_as(world.bob, me.channel, "!whoami")
            wait_answered(world, me.bot, [missed, live])
            assert answers_by(world, me.bot, live)[0]["message"].startswith("You are mattermost:")
        finally:
            thread.stop()
    finally:
        fake.proxy_json_content_type = None


# --- the fake's strictness: each rule fails a test when it is taken out -------------------------
def _auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_fake_rest_needs_a_valid_token_and_answers_json_exactly(world: World) -> None:
    url = world.fake.url + "/api/v4/users/me"
    good = httpx.get(url, headers=_auth_header(world.token))
    assert good.status_code == 200 and good.json()["id"] == world.bot.id
    assert good.headers["Content-Type"] == "application/json"  # the driver compares it exactly
    for headers in (_auth_header(world.token[:-1] + "x"), {}):
        bad = httpx.get(url, headers=headers)
        assert bad.status_code == 401 and bad.headers["Content-Type"] == "application/json"
        body = bad.json()
        assert body["id"] == "api.context.session_expired.app_error" and body["status_code"] == 401
        assert body["message"] == "Invalid or expired session, please login again." and body["request_id"]
    missing = httpx.get(world.fake.url + "/api/v4/nothing", headers=_auth_header(world.token))
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"


def test_fake_websocket_sends_nothing_before_authentication(world: World) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            url = world.fake.url + "/api/v4/websocket"
            async with session.ws_connect(url) as anonymous, session.ws_connect(url) as authed:
                await authed.send_json({"seq": 1, "action": "authentication_challenge",
                                        "data": {"token": world.fake.create_token(world.alice)}})
                hello = json.loads(await authed.receive_str(timeout=5))
                assert hello["event"] == "hello" and hello["seq"] == 0
                assert json.loads(await authed.receive_str(timeout=5)) == {"status": "OK", "seq_reply": 1}
                post = await asyncio.to_thread(world.fake.post_as, world.bob, world.netops, "hello all")
                event = json.loads(await authed.receive_str(timeout=5))
                assert event["event"] == "posted" and event["seq"] == 1
                # A request on the anonymous socket is answered after anything sent before
                # it: if the post had been delivered there, it would come first.
                await anonymous.send_json({"seq": 7, "action": "ping"})
                refusal = json.loads(await anonymous.receive_str(timeout=5))
                assert refusal["status"] == "FAIL" and refusal["seq_reply"] == 7
                assert refusal["error"]["id"] == "api.web_socket_router.not_authenticated.app_error"
                assert json.loads(event["data"]["post"])["id"] == post["id"]
    asyncio.run(scenario())


def test_fake_websocket_bad_token_closes_the_socket(world: World) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(world.fake.url + "/api/v4/websocket") as ws:
                await ws.send_json({"seq": 1, "action": "authentication_challenge",
                                    "data": {"token": world.token[:-1] + "x"}})
                msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
    asyncio.run(scenario())


def test_fake_posted_event_carries_the_post_as_a_json_string(world: World) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(world.fake.url + "/api/v4/websocket") as ws:
                await ws.send_json({"seq": 1, "action": "authentication_challenge",
                                    "data": {"token": world.fake.create_token(world.bob)}})
                hello = json.loads(await ws.receive_str(timeout=5))
                assert json.loads(await ws.receive_str(timeout=5)) == {"status": "OK", "seq_reply": 1}
                seqs = [hello["seq"]]
                fake = world.fake
                await asyncio.to_thread(fake.post_as, world.alice, world.netops, "hi @bob and @nobody")
                event = json.loads(await ws.receive_str(timeout=5))
                seqs.append(event["seq"])
                data = event["data"]
                assert isinstance(data["post"], str) and json.loads(data["post"])["message"] == "hi @bob and @nobody"
                assert isinstance(data["mentions"], str) and json.loads(data["mentions"]) == [world.bob.id]
                assert data["channel_type"] == "O" and data["sender_name"] == "@alice"
                assert data["team_id"] == world.netops.team_id != ""
                assert event["broadcast"]["channel_id"] == world.netops.id
                await asyncio.to_thread(fake.post_as, world.alice, world.netops, "@here lunch")
                everyone = json.loads(json.loads(await ws.receive_str(timeout=5))["data"]["mentions"])
                assert world.bob.id in everyone and world.bot.id in everyone and world.alice.id not in everyone
                await asyncio.to_thread(fake.post_as_webhook, world.alice, world.netops, "deploy done", "ci")
                hook = json.loads(await ws.receive_str(timeout=5))
                seqs.append(hook["seq"])
                assert hook["data"]["sender_name"] == "ci" and "mentions" not in hook["data"]
                hook_post = json.loads(hook["data"]["post"])
                assert hook_post["user_id"] == world.alice.id
                assert hook_post["props"] == {"from_webhook": "true", "override_username": "ci"}
                assert seqs == [0, 1, 3]
    asyncio.run(scenario())


def test_fake_direct_channel_mentions_the_other_member(world: World) -> None:
    fake = world.fake
    dm = fake.direct_channel(world.bob, world.otherbot)
    token = fake.create_token(world.otherbot)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(fake.url + "/api/v4/websocket") as ws:
                await ws.send_json({"seq": 1, "action": "authentication_challenge", "data": {"token": token}})
                frames = [json.loads(await ws.receive_str(timeout=5)) for _ in range(2)]  # hello and OK
                assert {f.get("event") or f.get("status") for f in frames} == {"hello", "OK"}
                await asyncio.to_thread(fake.post_as, world.bob, dm, "just text")
                event = json.loads(await ws.receive_str(timeout=5))
                assert event["data"]["channel_type"] == "D" and event["data"]["team_id"] == ""
                assert json.loads(event["data"]["mentions"]) == [world.otherbot.id]
    asyncio.run(scenario())


def test_fake_post_rules(world: World) -> None:
    fake, url = world.fake, world.fake.url + "/api/v4/posts"
    alice = _auth_header(fake.create_token(world.alice))
    bob = _auth_header(fake.create_token(world.bob))

    def create(headers: dict[str, str], **body: Any) -> httpx.Response:
        return httpx.post(url, headers=headers, json={"channel_id": world.netops.id, "message": "x", **body})

    root = create(alice).json()
    reply = create(alice, root_id=root["id"]).json()
    assert reply["root_id"] == root["id"]
    refused = create(alice, root_id=reply["id"])  # a reply is not a thread root
    assert refused.status_code == 400 and refused.json()["id"] == "api.post.create_post.root_id.app_error"
    other = httpx.post(url, headers=alice, json={"channel_id": world.elsewhere.id, "message": "x",
                                                  "root_id": root["id"]})
    assert other.status_code == 400 and other.json()["id"] == "api.post.create_post.channel_root_id.app_error"
    dm = httpx.post(url, headers=bob, json={"channel_id": world.dm.id, "message": "x"})  # not a member
    assert dm.status_code == 403
    with pytest.raises(ApiError):
        fake.post_as(world.bob, world.dm, "x")  # nor through the test API
    assert create(alice, message="y" * (MAX_POST_CHARS + 1)).status_code == 400
    forged = create(alice, props={"from_webhook": "true", "from_bot": "true", "override_username": "x"}).json()
    assert forged["props"] == {}
    assert create(_auth_header(world.token)).json()["props"] == {"from_bot": "true"}
    patched = httpx.put(f"{url}/{root['id']}/patch", headers=bob, json={"message": "mine now"})
    assert patched.status_code == 403  # only the author edits
    ok = httpx.put(f"{url}/{root['id']}/patch", headers=alice, json={"message": "edited"}).json()
    assert ok["message"] == "edited" and ok["edit_at"] > 0


def test_fake_file_rules(world: World) -> None:
    fake, base = world.fake, world.fake.url + "/api/v4"
    alice = _auth_header(fake.create_token(world.alice))
    bob = _auth_header(fake.create_token(world.bob))

    def upload(headers: dict[str, str], channel: Channel) -> httpx.Response:
        return httpx.post(f"{base}/files", headers=headers, data={"channel_id": channel.id},
                          files={"files": ("a.txt", b"hello", "text/plain")})

    resp = upload(alice, world.netops)
    assert resp.status_code == 201 and resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"file_infos", "client_ids"} and body["client_ids"] == []
    [info] = body["file_infos"]
    assert info["name"] == "a.txt" and info["size"] == 5 and info["post_id"] == ""
    assert upload(bob, world.dm).status_code == 403  # not a member of that channel
    wrong_part = httpx.post(f"{base}/files", headers=alice, data={"channel_id": world.netops.id},
                            files={"file": ("a.txt", b"x", "text/plain")})
    assert wrong_part.status_code == 400  # the part must be called "files"

    def post(headers: dict[str, str], channel: Channel, file_ids: list[str]) -> httpx.Response:
        return httpx.post(f"{base}/posts", headers=headers,
                          json={"channel_id": channel.id, "message": "f", "file_ids": file_ids})

    assert post(bob, world.netops, [info["id"]]).status_code == 400  # someone else's upload
    assert post(alice, world.random, [info["id"]]).status_code == 400  # uploaded into another channel
    six = [upload(alice, world.netops).json()["file_infos"][0]["id"] for _ in range(6)]
    assert post(alice, world.netops, six).status_code == 400  # at most 5 per post
    attached = post(alice, world.netops, [info["id"]]).json()
    assert attached["file_ids"] == [info["id"]] and attached["metadata"]["files"][0]["post_id"] == attached["id"]
    assert post(alice, world.netops, [info["id"]]).status_code == 400  # already attached


def test_fake_posts_since_is_the_servers_get_posts_since(world: World) -> None:
    fake, url = world.fake, world.fake.url + "/api/v4"
    alice = _auth_header(fake.create_token(world.alice))
    corp = next(t for t in fake.teams.values() if t.name == "corp")
    channel = fake.add_channel("sincetest", [world.alice, world.bob], corp)
    root0 = fake.post_as(world.alice, channel, "root0")
    reply0 = fake.post_as(world.bob, channel, "reply0", root_id=root0["id"])
    a, b, c = (fake.post_as(u, channel, m) for u, m in ((world.alice, "a"), (world.bob, "b"), (world.alice, "c")))
    since = fake.now_ms()
    wait_for(lambda: fake.now_ms() > since, "the server's clock to move on")
    reply = fake.post_as(world.bob, channel, "reply", root_id=a["id"])  # moves a's update_at
    fake.edit_as(world.bob, b["id"], "b2")
    fake.edit_as(world.bob, reply0["id"], "reply0 edited")  # a reply's edit leaves its root alone
    fake.delete_as(world.alice, c["id"])
    d = fake.post_as(world.alice, channel, "d")

    resp = httpx.get(f"{url}/channels/{channel.id}/posts", params={"since": since}, headers=alice)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    order, posts = body["order"], body["posts"]
    [history] = [p for p in posts.values() if p["original_id"] == b["id"]]
    [history0] = [p for p in posts.values() if p["original_id"] == reply0["id"]]
    assert set(order) == {a["id"], b["id"], history["id"], c["id"], reply["id"], reply0["id"], history0["id"],
                          d["id"]}
    stamps = [posts[i]["create_at"] for i in order]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] == d["create_at"]  # newest first
    assert root0["id"] in posts and root0["id"] not in order  # a reply's root, for context only
    assert history["message"] == "b" and history["delete_at"] > 0 and history["create_at"] == b["create_at"]
    assert posts[b["id"]]["message"] == "b2" and posts[b["id"]]["edit_at"] > since
    assert posts[c["id"]]["delete_at"] > 0 and posts[c["id"]]["message"] == "c"  # deleted, still listed
    assert posts[a["id"]]["update_at"] > since and posts[a["id"]]["edit_at"] == 0
    assert body["next_post_id"] == body["prev_post_id"] == ""
    fake.posts_since_limit = 2
    try:
        capped = httpx.get(f"{url}/channels/{channel.id}/posts", params={"since": since}, headers=alice).json()
        assert len(capped["order"]) == 2
    finally:
        fake.posts_since_limit = 1000
    page = httpx.get(f"{url}/channels/{channel.id}/posts", params={"per_page": 3}, headers=alice).json()
    assert len(page["order"]) == 3 and d["id"] in page["order"]  # the newest, without deleted posts
    assert not {c["id"], history["id"], history0["id"]} & set(page["order"])
    assert httpx.get(f"{url}/channels/{world.dm.id}/posts", params={"since": 1}, headers=alice).status_code == 200
    bob = _auth_header(fake.create_token(world.bob))
    assert httpx.get(f"{url}/channels/{world.dm.id}/posts", params={"since": 1}, headers=bob).status_code == 403

    listed = httpx.get(f"{url}/users/me/teams/{corp.id}/channels", headers=alice).json()
    names = [ch["name"] for ch in listed]
    assert names == sorted(names) and "sincetest" in names and world.dm.name in names
    assert world.elsewhere.id not in [ch["id"] for ch in listed]  # another team's channel
    assert next(ch for ch in listed if ch["id"] == channel.id)["last_post_at"] == d["create_at"]
    everywhere = httpx.get(f"{url}/users/me/channels", headers=alice).json()
    assert world.elsewhere.id in [ch["id"] for ch in everywhere]
    users = httpx.post(f"{url}/users/ids", headers=alice, json=[world.bob.id, "x" * 26]).json()
    assert [u["username"] for u in users] == ["bob"]


def test_fake_revoked_token_silences_the_socket_and_fails_the_ping(world: World) -> None:
    async def scenario() -> None:
        fake = world.fake
        token = fake.create_token(world.bob)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(fake.url + "/api/v4/websocket", autoping=True) as ws:
                await ws.send_json({"seq": 1, "action": "authentication_challenge", "data": {"token": token}})
                assert json.loads(await ws.receive_str(timeout=5))["event"] == "hello"
                assert json.loads(await ws.receive_str(timeout=5)) == {"status": "OK", "seq_reply": 1}
                await ws.send_json({"seq": 2, "action": "ping"})
                pong = json.loads(await ws.receive_str(timeout=5))
                assert pong["status"] == "OK" and pong["seq_reply"] == 2 and pong["data"]["text"] == "pong"
                await asyncio.to_thread(fake.revoke_token, token)
                await asyncio.to_thread(fake.post_as, world.alice, world.netops, "after the revocation")
                await ws.send_json({"seq": 3, "action": "ping"})
                # the post's event would come before the reply: there is none, and no close
                refusal = json.loads(await ws.receive_str(timeout=5))
                assert refusal["status"] == "FAIL" and refusal["seq_reply"] == 3
                assert refusal["error"]["id"] == "api.web_socket_router.not_authenticated.app_error"
                assert refusal["error"]["status_code"] == 401 and not ws.closed
                await asyncio.to_thread(fake.create_token, world.bob)  # a new token does not revive it
                assert await asyncio.to_thread(fake.authenticated, world.bob) == 0
    asyncio.run(scenario())


def test_fake_full_send_queue_closes_the_socket(world: World) -> None:
    async def scenario() -> None:
        fake = world.fake
        fake.send_queue_size = 3
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(fake.url + "/api/v4/websocket") as ws:
                    await ws.send_json({"seq": 1, "action": "authentication_challenge",
                                        "data": {"token": fake.create_token(world.bob)}})
                    assert json.loads(await ws.receive_str(timeout=5))["event"] == "hello"
                    assert json.loads(await ws.receive_str(timeout=5))["seq_reply"] == 1
                    posts = await asyncio.to_thread(fake.post_burst, world.alice, world.netops,
                                                    [f"burst {i}" for i in range(6)])
                    got = []
                    while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                        got.append(json.loads(json.loads(msg.data)["data"]["post"])["id"])
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                    assert got == [p["id"] for p in posts[:3]]  # what was queued, then the close
        finally:
            fake.send_queue_size = 256
    asyncio.run(scenario())


def test_fake_refuses_edits_uploads_and_floods_as_the_server_does(world: World) -> None:
    fake, url = world.fake, world.fake.url + "/api/v4"
    bob = _auth_header(fake.create_token(world.bob))
    post = httpx.post(f"{url}/posts", headers=bob, json={"channel_id": world.netops.id, "message": "x"}).json()
    fake.post_edit_time_limit = 0
    try:
        late = httpx.put(f"{url}/posts/{post['id']}/patch", headers=bob, json={"message": "y"})
        assert late.status_code == 400 and late.json()["id"] == "api.post.update_post.permissions_time_limit.app_error"
        assert httpx.put(f"{url}/posts/{post['id']}/patch", headers=bob, json={"is_pinned": True}).status_code == 200
        fake.post_edit_time_limit = -1
        fake.cannot_edit.add(world.bob.id)
        denied = httpx.put(f"{url}/posts/{post['id']}/patch", headers=bob, json={"message": "y"})
        assert denied.status_code == 403 and denied.json()["id"] == "api.context.permissions.app_error"
    finally:
        fake.post_edit_time_limit = -1
        fake.cannot_edit.clear()

    def upload() -> httpx.Response:
        return httpx.post(f"{url}/files", headers=bob, params={"channel_id": world.netops.id},
                          files={"files": ("a.txt", b"0123456789", "text/plain")})
    try:
        fake.file_attachments = False
        assert (upload().status_code, upload().json()["id"]) == (403, "api.file.attachments.disabled.app_error")
        fake.attachments_disabled_status = 501
        assert upload().status_code == 501
        fake.file_attachments = True
        fake.max_file_size = 9
        assert (upload().status_code, upload().json()["id"]) == (413, "api.file.upload_file.too_large_detailed.app_error")
        fake.max_file_size = 104857600
        fake.cannot_upload.add(world.bob.id)
        assert upload().status_code == 403
    finally:
        fake.file_attachments, fake.attachments_disabled_status, fake.max_file_size = True, 403, 104857600
        fake.cannot_upload.clear()
    assert upload().status_code == 201

    fake.rate_limit(world.bob, per_sec=1)
    try:
        refused = httpx.get(f"{url}/users/me", headers=bob)
        assert refused.status_code == 429 and refused.text == "limit exceeded\n"
        assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert refused.headers["Retry-After"] == "1" and refused.headers["X-RateLimit-Limit"] == "1"
        assert refused.headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Reset" in refused.headers
        assert httpx.get(f"{url}/users/me", headers=bob).status_code == 429
        assert fake.came_back_early(world.bob) == 1
        assert httpx.get(f"{url}/users/me", headers=_auth_header(world.token)).status_code == 200  # per token
    finally:
        fake.rate_limit(world.bob, None)
    fake.proxy_json_content_type = "application/json; charset=utf-8"
    try:
        assert httpx.get(f"{url}/users/me", headers=bob).headers["Content-Type"] == "application/json; charset=utf-8"
    finally:
        fake.proxy_json_content_type = None


def test_http_client_waits_out_429s_within_the_deadline() -> None:
    """Through a stub transport: a proxy may send only X-RateLimit-Reset, or no wait at all."""
    from mattermostautodriver import AsyncTypedDriver
    from mattermostautodriver.exceptions import TooManyRequests

    from adapters.mattermost_http import MattermostHttp, wait_for_rate_limits

    seen: list[tuple[float, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((time.monotonic(), request.url.path))
        if len(seen) % 2:  # every other request is refused, as plain text
            return httpx.Response(429, text="limit exceeded\n", headers={"X-RateLimit-Reset": "1"})
        body = {"file_infos": [{"id": "f" * 26}]} if request.url.path.endswith("/files") else {"id": "u" * 26}
        return httpx.Response(200, json=body, headers={"Content-Type": "application/json; charset=utf-8"})

    async def scenario() -> None:
        driver = AsyncTypedDriver({"scheme": "http", "url": "127.0.0.1", "port": 9, "rate_limit_wait": 5,
                                   "transport": httpx.MockTransport(answer)}, client_cls=MattermostHttp)
        try:
            assert (await driver.users.get_user("me"))["id"] == "u" * 26  # JSON despite the charset
            uploaded = await driver.files.upload_file(files=("a.txt", b"abc", "text/plain"), channel_id="c" * 26)
            assert uploaded["file_infos"][0]["id"] == "f" * 26  # an upload is sent again too
            assert [round(b[0] - a[0]) for a, b in zip(seen[::2], seen[1::2], strict=True)] == [1, 1]  # after the wait
            with wait_for_rate_limits(0.5):
                started = time.monotonic()
                with pytest.raises(TooManyRequests):
                    await driver.users.get_user("me")
                assert time.monotonic() - started < 0.5  # no wait begun that would end past the deadline
        finally:
            await driver.close()
    asyncio.run(scenario())
