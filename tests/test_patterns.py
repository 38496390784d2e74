"""User patterns (RE2, bounded text), show run filters and interfaces, monitor limits,
help for command families, and replies free of Python reprs. No network: the sample
inventory, and monitors that are defined but never run against a device."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from chatbot.audit import make_engine
from chatbot.bot import Bot
from chatbot.config import Config, ConfigError, parse_config
from chatbot.errors import ArgumentError
from chatbot.message import Identity, Message
from chatbot.monitoring import MonitorService, monitors_table
from chatbot.patterns import MAX_MATCH_CHARS, bounded, compile_pattern
from chatbot.plugins import load_check_kinds
from chatbot.results import Result, Status, Table
from chatbot.testing import ask, sample_bot
from tasks._config_filters import LineFilter, interface_section

CATASTROPHIC = "(.*.*)*Z"  # from the issue: Python's re backtracks on it for ages

CONFIG = """\
hostname r1
!
key chain EIGRP-KEYS
 key 1
  key-string <redacted>
!
interface Loopback0
 description Router-ID
 ip address 10.0.0.1 255.255.255.255
!
interface GigabitEthernet1
 description OOB management
 ip address 127.0.1.1 255.255.255.0
!
interface GigabitEthernet2
 description Uplink A (OSPF)
 ip ospf authentication-key <redacted>
!
interface Port-channel10
 description bundle
!
router ospf 1
 router-id 10.0.0.1
 passive-interface Loopback0
!
end"""


# --- patterns -------------------------------------------------------------------------

@pytest.mark.timeout(20)
def test_the_catastrophic_pattern_matches_in_linear_time() -> None:
    pattern = compile_pattern(CATASTROPHIC)
    line = "10.1.0.0/24 is directly connected, GigabitEthernet2 " * 3
    text = (line + "\n") * 20_000  # 3 MB of route-table lines without a Z
    assert not pattern.search(text)
    assert pattern.search("no Z here" * 10 + "Z")


@pytest.mark.parametrize("text, reason", [
    (r"(a)\1", "invalid escape sequence"),
    ("(?=up)", "invalid perl operator"),
    ("(?<!x)y", "invalid perl operator"),
    ("(unclosed", "missing )"),
    ("((a{100}){100}){100}", "invalid repetition size"),
    ("x" * 200, "at most 128 characters"),
])
def test_patterns_re2_refuses_get_one_clear_line(text: str, reason: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        compile_pattern(text)
    message = str(caught.value)
    assert reason in message and "\n" not in message
    assert "b'" not in message  # RE2's bytes message, decoded


def test_the_matched_text_is_bounded_at_a_line_end() -> None:
    text = ("a" * 99 + "\n") * (MAX_MATCH_CHARS // 100 + 10) + "needle"
    head = bounded(text)
    assert len(head) <= MAX_MATCH_CHARS and head.endswith("a")
    assert not compile_pattern("needle").search(text)  # beyond the bound: not searched
    assert compile_pattern("needle").search("short text with a needle")


# --- show run: filters after redaction, interfaces -------------------------------------

@pytest.mark.parametrize("kind, pattern, expected", [
    ("include", "description", [" description Router-ID", " description OOB management",
                                " description Uplink A (OSPF)", " description bundle"]),
    ("section", "^interface Gi", ["interface GigabitEthernet1", " description OOB management",
                                  " ip address 127.0.1.1 255.255.255.0", "interface GigabitEthernet2",
                                  " description Uplink A (OSPF)", " ip ospf authentication-key <redacted>"]),
    ("section", "key chain", ["key chain EIGRP-KEYS", " key 1", "  key-string <redacted>"]),
    ("begin", "^router", ["router ospf 1", " router-id 10.0.0.1", " passive-interface Loopback0", "!", "end"]),
    ("count", "^interface", ["Number of lines which match regexp = 4"]),
])
def test_config_filters(kind: str, pattern: str, expected: list[str]) -> None:
    assert LineFilter(kind, compile_pattern(pattern)).apply(CONFIG).splitlines() == expected


def test_exclude_and_a_catastrophic_filter() -> None:
    kept = LineFilter("exclude", compile_pattern("^ |^!")).apply(CONFIG).splitlines()
    assert kept[:2] == ["hostname r1", "key chain EIGRP-KEYS"]
    assert LineFilter("include", compile_pattern(CATASTROPHIC)).apply(CONFIG * 200) == ""


@pytest.mark.parametrize("typed, first_line", [
    ("Gi1", "interface GigabitEthernet1"), ("gi2", "interface GigabitEthernet2"),
    ("GigabitEthernet1", "interface GigabitEthernet1"), ("lo0", "interface Loopback0"),
    ("po10", "interface Port-channel10"),
])
def test_interface_section_takes_ios_abbreviations(typed: str, first_line: str) -> None:
    block = interface_section(CONFIG, typed).splitlines()
    assert block[0] == first_line and all(line.startswith(" ") for line in block[1:]) and len(block) > 1


def test_an_unknown_interface_names_the_known_ones() -> None:
    with pytest.raises(ArgumentError, match="no interface 'Gi9' in the config; there are Loopback0, GigabitEthernet1"):
        interface_section(CONFIG, "Gi9")


@pytest.mark.parametrize("text, reason", [
    ("show run interface Gi1", "which device?"),
    ("show run r1 | include (a)\\1", "is not a pattern this bot accepts"),
    ("show run r1 | redirect tftp://x", "'| redirect' is not an allowed filter"),
    ("show run r1 | include", "'| include' needs a pattern"),
    ("show run r1 | include a | include b", "only one | filter"),
    ("show run r1 r2", "unexpected 'r2'"),
    ("show run r1 interface", "which interface?"),
    ("show run r1 int gi1;reload", "is not an interface name"),
])
def test_show_run_rejections_are_one_line(text: str, reason: str) -> None:
    result = ask(sample_bot(), "!" + text).result
    assert result.status is Status.INVALID and reason in result.summary, result.summary


def test_a_filter_pattern_may_hold_alternation() -> None:
    bot = sample_bot()
    request = bot.router.parse("show run r1 | include bgp|ospf", bot.context).args["request"]
    assert str(request.filter) == "| include bgp|ospf"
    assert request.filter.apply(CONFIG).splitlines() == [" ip ospf authentication-key <redacted>", "router ospf 1"]


@pytest.mark.parametrize("text", ["show run r1 interface Gi1", "sh run int gi1 r1", "show run interface Gi1 on r1",
                                  "sh run r1 int gi 1", "show run r1 | include hostname"])
def test_show_run_forms_parse_to_one_device(text: str) -> None:
    bot = sample_bot()
    inv = bot.router.parse(text, bot.context)
    assert inv.command.name == "show run" and inv.devices == ["r1"]  # the policy sees the device
    request = inv.args["request"]
    assert request.interface in (None, "Gi1", "gi1") and (request.filter is None) == ("|" not in text)


def test_show_run_filters_need_the_right_to_the_device() -> None:
    config = Config.model_validate({"limits": {"commands_per_minute": 1_000_000}, "access": {
        "roles": {"hq": {"commands": ["show.run"], "devices": ["r1"]}},
        "grants": [{"who": ["*"], "where": ["*"], "roles": ["hq"]}]}})
    result = ask(sample_bot(config), "!show run int gi1 sw10 | include x").result
    assert result.status is Status.DENIED


# --- monitors: limits, duplicates, paging, descriptions ---------------------------------

def monitor_bot(tmp_path: Path, **limits: Any) -> Bot:
    config = Config.model_validate({"limits": {"commands_per_minute": 1_000_000, **limits}})
    bot = sample_bot(config)
    bot.monitors = MonitorService(bot.context, make_engine(f"sqlite:///{tmp_path / 'bot.sqlite'}"),
                                  load_check_kinds(), bot.runner.executor,
                                  max_per_person=config.limits.monitors_per_person,
                                  max_total=config.limits.monitors_total)
    bot.monitors.first_run_now = False  # these monitors are never run against a device
    return bot


async def say(bot: Bot, text: str, who: str = "tester") -> Result:
    msg = Message(platform="console", room="console", sender=Identity.native("console", who), text=text, direct=True)
    reply = await bot.handle(msg)
    assert reply is not None
    return reply.result


def in_service(bot: Bot, scenario: Any) -> None:
    async def run() -> None:
        await bot.start()
        try:
            await scenario()
        finally:
            await bot.stop()
    asyncio.run(run())


def test_duplicates_are_refused_with_the_twin(tmp_path: Path) -> None:
    bot = monitor_bot(tmp_path)

    async def scenario() -> None:
        first = await say(bot, "!monitor add ssh r1 every 1h")
        assert first.status is Status.OK, first.summary
        twin = first.summary.split()[1]
        again = await say(bot, "!monitor add ssh r1 every 1h", who="someone-else")
        assert again.status is Status.INVALID and again.summary == f"monitor add: already watched by monitor {twin}"
        for different in ("!monitor add ssh r1 every 2h", "!monitor add ssh r2 every 1h",
                          "!monitor add ssh r1 every 1h to console:other", "!monitor add ping r1 every 1h"):
            assert (await say(bot, different)).status is Status.OK, different

    in_service(bot, scenario)


def test_monitors_per_person_and_in_total(tmp_path: Path) -> None:
    bot = monitor_bot(tmp_path, monitors_per_person=2, monitors_total=3)

    async def scenario() -> None:
        assert (await say(bot, "!monitor add ssh r1 every 1h")).status is Status.OK
        assert (await say(bot, "!monitor add ssh r2 every 1h")).status is Status.OK
        third = await say(bot, "!monitor add ssh r3 every 1h")
        assert third.status is Status.INVALID
        assert third.summary == ("monitor add: you already have 2 monitors, the limit per person "
                                 "([limits] monitors_per_person); remove one first")
        assert (await say(bot, "!monitor add ssh r3 every 1h", who="other")).status is Status.OK
        full = await say(bot, "!monitor add ssh sw10 every 1h", who="third")
        assert full.status is Status.INVALID and "the bot already runs 3 monitors" in full.summary
        assert len(bot.monitors.all()) == 3  # refused monitors changed nothing

    in_service(bot, scenario)


def test_static_monitors_over_the_total_are_a_config_error() -> None:
    monitors = [{"kind": "ssh", "targets": f"r{i}", "room": "console:ops"} for i in (1, 2, 3)]
    with pytest.raises(ConfigError) as caught:
        parse_config({"limits": {"monitors_total": 2}, "monitor": monitors}, source="bot.toml")
    assert str(caught.value) == "bot.toml: 3 [[monitor]] entries, more than [limits] monitors_total = 2"


def test_monitor_list_is_paged(tmp_path: Path) -> None:
    bot = monitor_bot(tmp_path, monitors_per_person=100)

    async def scenario() -> None:
        for minutes in range(1, 46):
            assert (await say(bot, f"!monitor add ssh r1 every {minutes}m")).status is Status.OK
        first = await say(bot, "!monitor list")
        assert first.summary == "45 monitors, page 1/3; !monitor list page 2 for more"
        assert isinstance(first.parts[0], Table) and len(first.parts[0].rows) == 20
        last = await say(bot, "!monitor list page 3")
        assert last.summary == "45 monitors, page 3/3" and len(last.parts[0].rows) == 5
        seen = {r[0] for p in (1, 2, 3) for r in (await say(bot, f"!monitor list page {p}")).parts[0].rows}
        assert len(seen) == 45
        beyond = await say(bot, "!monitor list page 4")
        assert beyond.status is Status.INVALID and beyond.summary == "there are only 3 pages of monitors"

    in_service(bot, scenario)


def test_descriptions_and_lists_carry_no_python_reprs(tmp_path: Path) -> None:
    bot = monitor_bot(tmp_path)

    async def scenario() -> None:
        added = [await say(bot, text) for text in (
            "!monitor add ping r1,r2 every 1h after 1",
            "!monitor add show r1 command show ip int br expect Loopback0 every 1h",
            "!monitor add show r1 command show clock reject (.*.*)*Z every 1h")]
        assert added[0].summary.endswith("ping r1,r2 every 1h, alerts to console:console at the first failure")
        assert "show r1 command show ip interface brief expect /Loopback0/ every 1h" in added[1].summary
        assert "reject /(.*.*)*Z/" in added[2].summary
        listing = await say(bot, "!monitor list")
        text = listing.summary + json.dumps([p.rows for p in listing.parts if isinstance(p, Table)])
        for repr_mark in ("[(", "('", "True", "False", "None", "{'"):
            assert repr_mark not in text, text
        assert listing.summary == "3 monitors"

    in_service(bot, scenario)


def test_a_stored_pattern_re2_refuses_is_paused_with_a_line(tmp_path: Path) -> None:
    """A show monitor stored by an older version, with a pattern RE2 refuses, neither
    freezes nor crashes the bot: paused at start, said so in the list, never run."""
    bot = monitor_bot(tmp_path)
    options = {"devices": ["r1"], "command": "show clock", "pattern": r"(a)\1", "expect": False}
    with bot.monitors.engine.begin() as conn:
        conn.execute(insert(monitors_table).values(
            id="0ld123", kind="show", targets="r1", options=json.dumps(options), interval=10.0,
            room="console:ops", owner="console:old", after=1, remind_every=3600.0, paused=False, source="chat"))
    alerts: list[tuple[str, Result]] = []

    async def record(room: str, result: Result) -> None:
        alerts.append((room, result))

    bot.add_notifier("console", record)

    async def scenario() -> None:
        stored = bot.monitors.get("0ld123")
        assert stored is not None and stored.paused
        row = (await say(bot, "!monitor list")).parts[0].rows[0]
        assert row[0] == "0ld123" and row[4].startswith("paused: '(a)\\1' is not a pattern this bot accepts")
        resumed = await say(bot, "!monitor resume 0ld123")
        assert resumed.status is Status.INVALID and resumed.summary.startswith("monitor 0ld123 cannot run: '(a)\\1'")
        # resumed behind the bot's back: the run pauses it again and says why in its room
        bot.monitors.set_paused("0ld123", False)
        alert = await bot.monitors.run_now("0ld123")
        assert alert is not None and "is paused: '(a)\\1' is not a pattern" in alert.summary
        assert alerts == [("ops", alert)] and bot.monitors.get("0ld123").paused
        assert (await say(bot, "!devices r1")).status is Status.OK  # and the bot answers

    in_service(bot, scenario)


def test_show_check_matches_in_the_worker_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check (and so its pattern matching) runs in the runner's threads, never on
    the event loop's."""
    import tasks.monitor_checks as checks
    from chatbot.device_work import DeviceOutput

    bot = monitor_bot(tmp_path)
    threads: list[threading.Thread] = []

    def fake_run(ctx: Any, devices: list[str], command: str) -> list[DeviceOutput]:
        threads.append(threading.current_thread())
        return [DeviceOutput(device=d, ok=True, output="Loopback0 up\n" * 1000) for d in devices]

    monkeypatch.setattr(checks, "run_on_devices", fake_run)

    async def scenario() -> None:
        added = await say(bot, f"!monitor add show r1 command show clock reject {CATASTROPHIC} after 1 every 1h")
        assert (await bot.monitors.run_now(added.summary.split()[1])) is None  # no Z: fine
        assert threads and threads[0] is not threading.main_thread()

    in_service(bot, scenario)


# --- help -------------------------------------------------------------------------------

def test_help_monitor_lists_subcommands_and_check_kinds(tmp_path: Path) -> None:
    bot = monitor_bot(tmp_path)

    async def scenario() -> None:
        for topic in ("monitor", "mon"):
            result = await say(bot, f"!help {topic}")
            assert result.status is Status.OK and result.summary == "monitor: 5 commands", result.summary
            usages = [row[0] for row in result.parts[0].rows]
            assert [u.split()[1] for u in usages] == ["add", "list", "pause", "remove", "resume"]
            kinds = result.parts[1]
            assert isinstance(kinds, Table) and kinds.title == "check kinds"
            assert {row[0] for row in kinds.rows} == {"ping", "ssh", "show", "apic-health", "apic-faults"}
        add = await say(bot, "!help monitor add")
        assert any(isinstance(p, Table) and p.title == "check kinds" for p in add.parts)

    in_service(bot, scenario)


def test_plurals() -> None:
    bot = sample_bot()
    assert ask(bot, "!devices r1").result.summary == "1 device matching 'r1'"
    assert ask(bot, "!devices group:core").result.summary == "3 devices matching 'group:core'"
