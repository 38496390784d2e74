"""The Matrix adapter against a real Synapse on loopback, driven by a human nio client.

One homeserver and one lab for the module; the bot runs in its own thread and event
loop, as `chatbot run` would, and each test talks to it as alice, bob, a Slack puppet
of the bridge's application service, or the matterbridge relay account.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from bot_thread import BotThread
from helpers import chat_test_access
from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, RoomSendResponse
from synapse_server import SynapseServer

from chatbot.lab import Fault, planted_secrets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BRIDGE = {
    "id": "slack",
    "sender_localpart": "slackbot",
    "namespaces": {"users": [{"exclusive": True, "regex": "@slack_.*:localhost"}]},
}
PASSWORD = "pw-for-tests-only"
WAIT = 40.0


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse"), appservices=[BRIDGE])
    with server:
        for name in ("netbot", "netbot2", "netbot3", "netbot4", "netbot5", "alice", "bob", "carol", "relaybot"):
            server.register(name, PASSWORD)
        yield server


def bot_config(synapse: SynapseServer, workdir: Path, user: str = "@netbot:localhost") -> dict[str, Any]:
    access = chat_test_access("relayed:slack:*")
    # "admins in direct messages only", in small: bob may traceroute in a direct chat alone
    access["roles"]["direct-only"] = {"commands": ["traceroute"]}
    access["grants"].append({"who": ["matrix:@bob:localhost"], "where": ["direct"], "roles": ["direct-only"]})
    return {
        "bot": {"database": f"sqlite:///{workdir}/bot.sqlite"},
        "limits": {"device_timeout": 5, "connect_timeout": 3, "monitor_min_interval": 1},
        "matrix": {
            "homeserver": synapse.base_url, "user_id": user, "password": PASSWORD,
            "store_dir": str(workdir / "store"), "allowed_inviters": ["@alice:localhost", "@bob:localhost"],
            "progress_after": 1.0, "progress_every": 0.5, "attachment_lines": 40, "sync_timeout": 5,
        },
        "identities": {"alice": ["matrix:@alice:localhost", "slack:U0456EFGH"]},
        "bridges": {
            "slack": {"type": "mautrix-slack", "homeserver": "localhost"},
            "relay": {"type": "matterbridge", "platform": "matrix", "accounts": ["@relaybot:localhost"]},
        },
        "access": access,
    }


@pytest.fixture(scope="module")
def bot_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bot")


@pytest.fixture(scope="module")
def running_bot(synapse: SynapseServer, lab: Any, bot_workdir: Path) -> Iterator[BotThread]:
    bot = BotThread(bot_config(synapse, bot_workdir), lab, "matrix").start()
    yield bot
    bot.stop()


class Human:
    """A person's Matrix client (nio, with end-to-end encryption)."""

    def __init__(self, synapse: SynapseServer, user: str, store: Path, bot: str = "@netbot:localhost") -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.synapse = synapse
        self.bot = bot
        # No encryption here: nio's key store binds its models process-wide, and the bot's
        # encrypted client runs in this process (see matrix_e2e_human.py for that case).
        self.client = AsyncClient(synapse.base_url, f"@{user}:localhost",
                                  config=AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False))
        self.events: list[Any] = []

    async def __aenter__(self) -> Human:
        await self.client.login(PASSWORD, device_name="test")
        await self.sync(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.close()

    async def sync(self, timeout_ms: int = 500) -> None:
        # A timeline limit far above any test's burst: the test must see every answer.
        resp = await self.client.sync(timeout=timeout_ms, since=self.client.next_batch,
                                      sync_filter={"room": {"timeline": {"limit": 1000}}})
        for info in resp.rooms.join.values():
            self.events.extend(info.timeline.events)

    async def wait_for(self, found: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            await self.sync()
        raise AssertionError(f"timed out waiting for {what}")

    async def room_with_bot(self, encrypted: bool = False, public: bool = False, direct: bool = False) -> str:
        initial = [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] \
            if encrypted else []
        resp = await self.client.room_create(invite=[self.bot], initial_state=initial, is_direct=direct)
        assert isinstance(resp, RoomCreateResponse), resp
        room = resp.room_id
        if public:
            await self.client.room_put_state(room, "m.room.join_rules", {"join_rule": "public"})
        await self.wait_for(lambda: self._joined(room, self.bot), "the bot to join")
        return room

    def _joined(self, room: str, user: str) -> bool:
        r = self.client.rooms.get(room)
        return bool(r and user in r.users)

    async def say(self, room: str, text: str, thread: str | None = None, *, reply_to: Any = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if thread:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread}
        if reply_to is not None:  # with the quote fallback many clients still send
            quoted = "\n".join(f"> {line}" for line in f"<{reply_to.sender}> {body(reply_to)}".split("\n"))
            content["body"] = f"{quoted}\n\n{text}" if text else f"{quoted}\n\n"
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = (f"<mx-reply><blockquote>In reply to {reply_to.sender}<br>"
                                         f"{body(reply_to)}</blockquote></mx-reply>{text}")
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to.event_id}}
            content["m.mentions"] = {"user_ids": [reply_to.sender]}  # as Element does for a reply
        resp = await self.client.room_send(room, "m.room.message", content, ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    def replies_to(self, event_id: str) -> list[Any]:
        """Bot events replying to `event_id`: notices, files, and edits of those."""
        direct = [e for e in self.events if e.sender == self.bot
                  and _rel(e).get("m.in_reply_to", {}).get("event_id") == event_id]
        ids = {e.event_id for e in direct}
        edits = [e for e in self.events if e.sender == self.bot
                 and _rel(e).get("rel_type") == "m.replace" and _rel(e).get("event_id") in ids]
        return direct + edits

    async def ask(self, room: str, text: str, thread: str | None = None, *, parts: int = 1) -> list[Any]:
        event_id = await self.say(room, text, thread)
        return await self.wait_for(lambda: (r := self.replies_to(event_id)) and len(_final(r)) >= parts and r,
                                   f"the answer to {text!r}")


def _rel(event: Any) -> dict[str, Any]:
    return (event.source.get("content") or {}).get("m.relates_to") or {}


def _final(replies: list[Any]) -> list[Any]:
    """The answer as the user sees it: edits replace the acknowledgement they edit."""
    edited = {_rel(e)["event_id"]: e for e in replies if _rel(e).get("rel_type") == "m.replace"}
    out = []
    for e in replies:
        if _rel(e).get("rel_type") == "m.replace":
            continue
        if e.event_id in edited:
            if not _is_ack(edited[e.event_id]):  # a progress edit is not the answer yet
                out.append(edited[e.event_id])
        elif not _is_ack(e):
            out.append(e)
    return out


def _is_ack(event: Any) -> bool:
    text = body(event)
    return text.startswith("working on it") or text.startswith("queued (job")


def body(event: Any) -> str:
    content = event.source.get("content") or {}
    return (content.get("m.new_content") or content).get("body", "")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_help_ping_and_reply_shape(running_bot: BotThread, synapse: SynapseServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice:
            room = await alice.room_with_bot()
            [help_reply] = _final(await alice.ask(room, "!help"))
            content = help_reply.source["content"]
            assert content["msgtype"] == "m.notice"
            assert content["m.mentions"] == {}  # an echoed @room or user id notifies no one
            assert "Commands you can run here" in content["body"]
            assert content["format"] == "org.matrix.custom.html" and "<pre><code>" in content["formatted_body"]
            [ping] = _final(await alice.ask(room, "!ping 10.0.0.1 from r1"))
            assert "10.0.0.1 is reachable (5/5) from r1" in body(ping)
    run(scenario())


def test_show_run_long_output_is_a_file(running_bot: BotThread, synapse: SynapseServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice:
            room = await alice.room_with_bot()
            replies = _final(await alice.ask(room, "!show run r1", parts=2))
            notice = next(e for e in replies if e.source["content"].get("msgtype") == "m.notice")
            file_event = next(e for e in replies if e.source["content"].get("msgtype") == "m.file")
            assert "attached as r1-running-config.txt" in body(notice)
            assert "hostname r1" not in body(notice)  # the config itself went into the file
            assert notice.source["content"]["m.mentions"] == {} and file_event.source["content"]["m.mentions"] == {}
            url = file_event.source["content"]["url"]
            server, media_id = url.removeprefix("mxc://").split("/")
            # Synapse 1.163 serves media only to authenticated clients
            got = requests.get(f"{synapse.base_url}/_matrix/client/v1/media/download/{server}/{media_id}",
                               headers={"Authorization": f"Bearer {alice.client.access_token}"}, timeout=10)
            assert got.status_code == 200
            text = got.text
            assert "hostname r1" in text and "<redacted>" in text
            assert [s for s in planted_secrets("r1") if s in text] == []
    run(scenario())


def test_threaded_command_answered_in_thread(running_bot: BotThread, synapse: SynapseServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice:
            room = await alice.room_with_bot()
            root = await alice.say(room, "thread about r1")
            [reply] = _final(await alice.ask(room, "!show version r1", thread=root))
            rel = reply.source["content"]["m.relates_to"]
            assert rel["rel_type"] == "m.thread" and rel["event_id"] == root
            assert "show version on r1" in body(reply)
    run(scenario())


def test_slow_command_gets_working_on_it_then_edit(running_bot: BotThread, synapse: SynapseServer,
                                                     lab: Any, tmp_path: Path) -> None:
    lab.set_delay("r3", 2.0)
    try:
        async def scenario() -> None:
            async with Human(synapse, "alice", tmp_path / "alice") as alice:
                room = await alice.room_with_bot()
                replies = await alice.ask(room, "!show version r3")
                replies = await alice.wait_for(
                    lambda: any(_rel(e).get("rel_type") == "m.replace" for e in alice.replies_to(_cmd(replies)))
                    and alice.replies_to(_cmd(replies)), "the edit")
                ack = next(e for e in replies if _is_ack(e))
                assert body(ack).startswith("working on it (job ")
                edit = next(e for e in replies if _rel(e).get("rel_type") == "m.replace")
                assert _rel(edit)["event_id"] == ack.event_id
                assert ack.source["content"]["m.mentions"] == {}
                edited = edit.source["content"]
                assert edited["m.mentions"] == {} and edited["m.new_content"]["m.mentions"] == {}
                assert "show version on r3" in body(edit)
        run(scenario())
    finally:
        lab.set_delay("r3", 0.01)


def _cmd(replies: list[Any]) -> str:
    return next(_rel(e)["m.in_reply_to"]["event_id"] for e in replies if "m.in_reply_to" in _rel(e))


def test_encrypted_room(running_bot: BotThread, synapse: SynapseServer, tmp_path: Path) -> None:
    script = Path(__file__).parent / "matrix_e2e_human.py"
    proc = subprocess.run([sys.executable, str(script), synapse.base_url, "@alice:localhost", PASSWORD,
                           str(tmp_path), "@netbot:localhost", "!ping 10.0.0.1 from r2 count 2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["room_encrypted"] is True
    assert answer["decrypted"] is True  # it arrived encrypted (nio decrypted it)...
    assert "10.0.0.1 is reachable (2/2) from r2" in answer["body"]  # ...and alice could decrypt it


def test_bridge_puppet_and_relay_identities(running_bot: BotThread, synapse: SynapseServer, tmp_path: Path) -> None:
    as_token = synapse.appservices[0]["as_token"]

    def as_call(method: str, path: str, user: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{synapse.base_url}/_matrix/client/v3{path}", params={"user_id": user},
                                headers={"Authorization": f"Bearer {as_token}"}, timeout=10, **kw)

    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice, \
                Human(synapse, "relaybot", tmp_path / "relay") as relay, Human(synapse, "bob", tmp_path / "bob") as bob:
            room = await alice.room_with_bot(public=True)
            puppets = {"@slack_t0001-u0456efgh:localhost": "slack_t0001-u0456efgh",  # alice on Slack
                       "@slack_t0001-u0999sam:localhost": "slack_t0001-u0999sam"}
            for user, local in puppets.items():
                requests.post(f"{synapse.base_url}/_matrix/client/v3/register",
                              json={"type": "m.login.application_service", "username": local},
                              headers={"Authorization": f"Bearer {as_token}"}, timeout=10)
                assert as_call("POST", f"/join/{room}", user, json={}).status_code == 200
            for human in (relay, bob):
                await human.client.join(room)
                await human.wait_for(lambda h=human: room in h.client.rooms, "the join")

            def puppet_says(user: str, text: str) -> str:
                resp = as_call("PUT", f"/rooms/{room}/send/m.room.message/{time.time_ns()}", user,
                               json={"msgtype": "m.text", "body": text})
                assert resp.status_code == 200, resp.text
                return resp.json()["event_id"]

            alice_slack = puppet_says("@slack_t0001-u0456efgh:localhost", "!whoami")
            [who] = _final(await alice.wait_for(lambda: alice.replies_to(alice_slack), "whoami"))
            assert body(who).startswith("You are alice via slack")
            sam = puppet_says("@slack_t0001-u0999sam:localhost", "!show run r1")
            [denied] = _final(await alice.wait_for(lambda: alice.replies_to(sam), "the denial"))
            assert "[denied] show run: you may not run this command here" in body(denied)
            alice_run = puppet_says("@slack_t0001-u0456efgh:localhost", "!show version r1")
            [ok] = _final(await alice.wait_for(lambda: alice.replies_to(alice_run), "the puppet's answer"))
            assert "show version on r1" in body(ok)

            relayed = await relay.say(room, "[slack] <carol> !show version r1")
            [relay_reply] = _final(await alice.wait_for(lambda: alice.replies_to(relayed), "the relay answer"))
            assert body(relay_reply).startswith("carol: [denied] show version")  # weak identity: ping only
            relayed_ping = await relay.say(room, "[slack] <carol> !ping 10.0.0.1 from r1 count 1")
            [pong] = _final(await alice.wait_for(lambda: alice.replies_to(relayed_ping), "the relayed ping"))
            assert body(pong).startswith("carol: 10.0.0.1 is reachable")

            spoof = await bob.say(room, "[slack] <carol> !show version r1")  # plain text from bob
            marker = await bob.say(room, "!whoami")
            await alice.wait_for(lambda: alice.replies_to(marker), "bob's whoami")
            assert alice.replies_to(spoof) == []
    run(scenario())


def test_ignores_notices_edits_and_own_messages(running_bot: BotThread, synapse: SynapseServer,
                                                tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice:
            room = await alice.room_with_bot()
            notice = (await alice.client.room_send(room, "m.room.message", {"msgtype": "m.notice",
                                                                            "body": "!help"})).event_id
            original = await alice.say(room, "hello")
            edit = (await alice.client.room_send(room, "m.room.message", {
                "msgtype": "m.text", "body": "* !help", "m.new_content": {"msgtype": "m.text", "body": "!help"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original}})).event_id
            marker = await alice.say(room, "!whoami")
            await alice.wait_for(lambda: alice.replies_to(marker), "the marker's answer")
            assert alice.replies_to(notice) == [] and alice.replies_to(edit) == []
            bot_msgs = [e for e in alice.events if e.sender == "@netbot:localhost"
                        and e.source.get("type") == "m.room.message"]
            assert all(getattr(e, "source", {}).get("content", {}).get("msgtype") in ("m.notice", "m.file")
                       or _rel(e).get("rel_type") == "m.replace" for e in bot_msgs)
    run(scenario())


def test_invites_from_strangers_are_declined(running_bot: BotThread, synapse: SynapseServer, tmp_path: Path) -> None:
    synapse.register("stranger", PASSWORD)

    async def scenario() -> None:
        async with Human(synapse, "stranger", tmp_path / "stranger") as stranger:
            resp = await stranger.client.room_create(invite=["@netbot:localhost"])
            room = resp.room_id
            def declined() -> bool:
                r = stranger.client.rooms.get(room)
                left = [e for e in stranger.events if e.source.get("type") == "m.room.member"
                        and e.source.get("state_key") == "@netbot:localhost"
                        and e.source["content"].get("membership") == "leave"]
                return bool(r and left and "@netbot:localhost" not in r.users)
            await stranger.wait_for(declined, "the invite to be declined")
    run(scenario())


def test_restarts_answer_missed_commands_exactly_once(synapse: SynapseServer, lab: Any, tmp_path: Path) -> None:
    # A bot account of its own: the module's running bot must not answer these rooms.
    workdir = tmp_path / "bot"
    workdir.mkdir()
    config = bot_config(synapse, workdir, user="@netbot2:localhost")
    bot = BotThread(config, lab, "matrix").start()

    async def scenario() -> None:
        nonlocal bot
        async with Human(synapse, "bob", tmp_path / "bob", bot="@netbot2:localhost") as bob:
            room = await bob.room_with_bot()
            before = await bob.say(room, "!whoami")
            await bob.wait_for(lambda: bob.replies_to(before), "the first answer")
            bot.stop()
            missed = await bob.say(room, "!show version r2")  # sent while the bot is down
            bot = BotThread(config, lab, "matrix").start()
            await bob.wait_for(lambda: bob.replies_to(missed), "the missed command's answer")
            # the homeserver restarts under the running bot: it reconnects, answers once
            synapse.restart()
            after = await bob.say(room, "!help")
            await bob.wait_for(lambda: bob.replies_to(after), "an answer after the homeserver restart",
                               timeout=90)
            marker = await bob.say(room, "!whoami")
            await bob.wait_for(lambda: bob.replies_to(marker), "the marker's answer")
            for event_id in (before, missed, after):
                assert len(_final(bob.replies_to(event_id))) == 1, event_id
    try:
        run(scenario())
    finally:
        bot.stop()


def test_commands_older_than_the_catch_up_age_are_not_run(synapse: SynapseServer, lab: Any, tmp_path: Path) -> None:
    workdir = tmp_path / "bot"
    workdir.mkdir()
    config = bot_config(synapse, workdir, user="@netbot3:localhost")
    config["matrix"]["catch_up_max_age"] = 1
    bot = BotThread(config, lab, "matrix").start()

    async def scenario() -> None:
        nonlocal bot
        async with Human(synapse, "bob", tmp_path / "bob", bot="@netbot3:localhost") as bob:
            room = await bob.room_with_bot()
            bot.stop()
            stale = await bob.say(room, "!show version r1")

            def server_age_ms() -> int:  # the homeserver's own clock, as the bot will judge it
                got = requests.get(f"{synapse.base_url}/_matrix/client/v3/rooms/{room}/event/{stale}",
                                   headers={"Authorization": f"Bearer {bob.client.access_token}"}, timeout=10)
                return int(got.json()["unsigned"]["age"])

            await bob.wait_for(lambda: server_age_ms() > 1500, "the command to grow older than the limit")
            bot = BotThread(config, lab, "matrix").start()
            marker = await bob.say(room, "!whoami")
            await bob.wait_for(lambda: bob.replies_to(marker), "the marker's answer")
            assert bob.replies_to(stale) == []
    try:
        run(scenario())
    finally:
        bot.stop()


def test_monitor_alerts_reach_the_room(running_bot: BotThread, synapse: SynapseServer, lab: Any,
                                       tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice:
            room = await alice.room_with_bot()
            [added] = _final(await alice.ask(room, "!monitor add ssh r11 every 1s after 2"))
            assert "monitor " in body(added) and "alerts to matrix:" + room in body(added)
            lab.set_fault("r11", Fault.DOWN)
            alert = await alice.wait_for(lambda: next((e for e in alice.events if e.sender == "@netbot:localhost"
                                                       and "1 down" in body(e)), None), "the alert")
            assert "r11" in body(alert) and "connection refused" in body(alert)
            assert alert.source["content"]["msgtype"] == "m.notice"
            assert alert.source["content"]["m.mentions"] == {}
            mid = body(added).split()[1]
            [removed] = _final(await alice.ask(room, f"!monitor remove {mid}"))
            assert "removed" in body(removed)
    try:
        run(scenario())
    finally:
        lab.set_fault("r11", None)


def test_long_job_over_many_devices_reports_progress(running_bot: BotThread, synapse: SynapseServer, lab: Any,
                                                     tmp_path: Path) -> None:
    delays = {"r5": 0.5, "r6": 2.5, "r7": 4.0}
    for name, delay in delays.items():
        lab.set_delay(name, delay)
    try:
        async def scenario() -> None:
            async with Human(synapse, "alice", tmp_path / "alice") as alice:
                room = await alice.room_with_bot()
                event_id = await alice.say(room, "!show version r5,r6,r7")
                await alice.wait_for(lambda: _final(alice.replies_to(event_id)), "the answer")
                edits = [body(e) for e in alice.replies_to(event_id) if _rel(e).get("rel_type") == "m.replace"]
                progress = [t for t in edits if "devices done" in t]
                assert progress, edits  # at least one progress edit before the answer
                assert any("/3 devices done" in t for t in progress)
                assert "show version on 3 devices: 3 ok" in edits[-1]
        run(scenario())
    finally:
        for name in delays:
            lab.set_delay(name, 0.01)


def test_direct_only_in_rooms_created_as_direct(running_bot: BotThread, synapse: SynapseServer,
                                                tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "bob", tmp_path / "bob") as bob, Human(synapse, "carol", tmp_path / "carol") as carol:
            # bob and the bot alone, in a room not created as a direct chat: an ordinary room
            ordinary = await bob.room_with_bot()
            chatter = await bob.say(ordinary, "morning, anyone seen the r1 alarm?")
            [who] = _final(await bob.ask(ordinary, "!whoami"))
            assert "(direct)" not in body(who) and "traceroute" not in body(who)
            [denied] = _final(await bob.ask(ordinary, "!traceroute 10.0.0.1 from r1"))
            assert "[denied] traceroute" in body(denied)
            assert bob.replies_to(chatter) == []

            direct = await bob.room_with_bot(direct=True)
            [who] = _final(await bob.ask(direct, "whoami"))  # no prefix needed
            assert "(direct)" in body(who) and "traceroute" in body(who)

            await bob.client.room_invite(direct, "@carol:localhost")
            await carol.wait_for(lambda: direct in carol.client.invited_rooms, "carol's invite")
            await carol.client.join(direct)
            await bob.wait_for(lambda: bob._joined(direct, "@carol:localhost"), "carol to join")
            chatter = await bob.say(direct, "carol, meet the bot")
            [who] = _final(await bob.ask(direct, "!whoami"))
            assert "(direct)" not in body(who) and "traceroute" not in body(who)
            assert bob.replies_to(chatter) == []
    run(scenario())


def test_reply_fallback_is_never_part_of_the_command(running_bot: BotThread, synapse: SynapseServer,
                                                     tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Human(synapse, "alice", tmp_path / "alice") as alice:
            room = await alice.room_with_bot()
            original = await alice.say(room, "!show version r1")
            await alice.wait_for(lambda: _final(alice.replies_to(original)), "the first answer")
            quoted = next(e for e in alice.events if e.event_id == original)
            replied = await alice.say(room, "!whoami", reply_to=quoted)
            [who] = _final(await alice.wait_for(lambda: alice.replies_to(replied), "the reply's answer"))
            assert body(who).startswith("You are alice"), body(who)
            quote_only = await alice.say(room, "", reply_to=quoted)
            marker = await alice.say(room, "!whoami")
            await alice.wait_for(lambda: alice.replies_to(marker), "the marker's answer")
            # Replying "thanks" to the bot's answer mentions the bot (m.mentions), yet is chatter.
            answer = _final(alice.replies_to(original))[0]
            thanks = await alice.say(room, "thanks, that helped", reply_to=answer)
            marker = await alice.say(room, "!whoami")
            await alice.wait_for(lambda: alice.replies_to(marker), "the second marker's answer")
            assert alice.replies_to(quote_only) == []
            assert alice.replies_to(thanks) == []
            assert len(_final(alice.replies_to(original))) == 1
    run(scenario())


def test_strip_reply_fallback() -> None:
    from adapters.matrix import strip_reply_fallback

    assert strip_reply_fallback("> <@a:hs> !show run r1\n> second line\n\n!whoami") == "!whoami"
    assert strip_reply_fallback("> <@a:hs> !show run r1\n\n") == ""
    assert strip_reply_fallback("!ping r1") == "!ping r1"
    assert strip_reply_fallback("> <@a:hs> quoted\n!ping r1") == "!ping r1"


def test_fifty_commands_sent_while_down_are_answered_once_oldest_first(synapse: SynapseServer, lab: Any,
                                                                         tmp_path: Path) -> None:
    workdir = tmp_path / "bot"
    workdir.mkdir()
    config = bot_config(synapse, workdir, user="@netbot4:localhost")
    config["limits"]["commands_per_minute"] = 1000  # fifty from one person, above the default limit
    bot = BotThread(config, lab, "matrix").start()

    async def scenario() -> None:
        nonlocal bot
        async with Human(synapse, "bob", tmp_path / "bob", bot="@netbot4:localhost") as bob:
            room = await bob.room_with_bot()
            direct = await bob.room_with_bot(direct=True)
            bot.stop()
            # Far more than the ten or so events a sync returns per room, with chatter between.
            commands = []
            for n in range(1, 51):
                commands.append(await bob.say(room, f"!ping 10.0.0.{n} from r1 count 1"))
                if n % 7 == 0:
                    await bob.say(room, "chatter while the bot is away")
            in_direct = await bob.say(direct, "whoami")
            bot = BotThread(config, lab, "matrix").start()
            started = time.monotonic()
            await bob.wait_for(lambda: all(_final(bob.replies_to(c)) for c in commands), "fifty answers")
            print(f"fifty missed commands answered {time.monotonic() - started:.1f} s after the restart")
            [who] = _final(await bob.wait_for(lambda: bob.replies_to(in_direct), "the direct chat's answer"))
            assert "(direct)" in body(who)  # still a direct chat after the restart
            marker = await bob.say(room, "!whoami")
            await bob.wait_for(lambda: bob.replies_to(marker), "the marker's answer")
            for n, command in enumerate(commands, 1):
                [answer] = _final(bob.replies_to(command))
                assert f"10.0.0.{n} " in body(answer), body(answer)
            answered = [_rel(e)["m.in_reply_to"]["event_id"] for e in bob.events
                        if e.sender == "@netbot4:localhost" and _rel(e).get("m.in_reply_to", {}).get("event_id")
                        in commands]
            assert answered == commands  # oldest first, each once
    try:
        run(scenario())
    finally:
        bot.stop()


def test_encrypted_commands_sent_while_down_are_decrypted_and_answered(synapse: SynapseServer, lab: Any,
                                                                       tmp_path: Path) -> None:
    workdir = tmp_path / "bot"
    workdir.mkdir()
    config = bot_config(synapse, workdir, user="@netbot5:localhost")
    config["limits"]["commands_per_minute"] = 1000
    config["matrix"]["progress_after"] = 30  # one answer per command, no acknowledgement first
    bot = BotThread(config, lab, "matrix").start()
    script = Path(__file__).parent / "matrix_e2e_human.py"
    count = 15  # more than one sync returns
    errors = (tmp_path / "human.err").open("w")
    human = subprocess.Popen([sys.executable, str(script), synapse.base_url, "@alice:localhost", PASSWORD,
                              str(tmp_path), "@netbot5:localhost", f"--backlog {count}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             stderr=errors)
    assert human.stdin is not None and human.stdout is not None

    def tell(word: str) -> dict[str, Any]:
        assert human.stdin is not None and human.stdout is not None
        if word:
            human.stdin.write(word + "\n")
            human.stdin.flush()
        line = human.stdout.readline()
        assert line, f"the encrypted client stopped (exit {human.wait(10)}): " \
                     f"{(tmp_path / 'human.err').read_text()[-1000:]}"
        return json.loads(line)

    try:
        tell("")  # the room exists and the bot joined it
        bot.stop()
        sent = tell("send")["sent"]
        bot = BotThread(config, lab, "matrix").start()
        answers = tell("collect")["answers"]
        assert [event_id for event_id, _ in answers] == sent  # each once, oldest first
        for n, (_, text) in enumerate(answers, 1):
            assert f"10.0.0.{n} " in text, text
        assert human.wait(30) == 0
    finally:
        if human.poll() is None:
            human.kill()
            human.wait(10)
        errors.close()
        bot.stop()
