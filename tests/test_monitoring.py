"""Monitoring against the lab: flap damping, recovery, site outages, restarts, checks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from chatbot.app import build_bot
from chatbot.audit import AuditLog, make_engine
from chatbot.cli import lab_access
from chatbot.config import parse_config
from chatbot.lab import Fault
from chatbot.message import Identity, Message
from chatbot.results import Result, Status

pytestmark = pytest.mark.slow


def make_bot(lab: Any, db: Path, monitors: list[dict] | None = None):  # type: ignore[no-untyped-def]
    config = parse_config({"limits": {"device_timeout": 5, "connect_timeout": 3, "monitor_min_interval": 1},
                           "monitor": monitors or []})
    bot = build_bot(config, lab_access(lab), audit=AuditLog(make_engine(f"sqlite:///{db}")))
    # The tests run monitors by hand (run_now) and must not race the scheduler's first run.
    bot.monitors.first_run_now = False
    alerts: list[tuple[str, Result]] = []

    async def record(room: str, result: Result) -> None:
        alerts.append((room, result))

    bot.add_notifier("console", record)
    return bot, alerts




async def ask(bot, text: str) -> Result:  # type: ignore[no-untyped-def]
    msg = Message(platform="console", room="ops", sender=Identity.native("console", "noc"), text=text, direct=True)
    reply = await bot.handle(msg)
    assert reply is not None
    return reply.result


def monitor_id(result: Result) -> str:
    assert result.status is Status.OK, result.summary
    return result.summary.split()[1]


@pytest.fixture()
def clean_lab(lab):  # type: ignore[no-untyped-def]
    yield lab
    for name in lab.devices:
        lab.set_fault(name, None)
    lab.apic.set_health(fabric=95)


def test_down_after_n_failures_once_then_recovery(clean_lab: Any, tmp_path: Path) -> None:
    lab = clean_lab
    bot, alerts = make_bot(lab, tmp_path / "bot.sqlite")

    async def scenario() -> None:
        await bot.start()
        try:
            mid = monitor_id(await ask(bot, "!monitor add ssh r5 every 1h after 2"))
            assert await bot.monitors.run_now(mid) is None  # up: nothing to say
            lab.set_fault("r5", Fault.DOWN)
            assert await bot.monitors.run_now(mid) is None  # one failure: damped
            down = await bot.monitors.run_now(mid)
            assert down is not None and down.status is Status.FAILED
            assert down.summary.endswith(": 1 down")
            assert down.parts[0].rows == [["r5", "DOWN", "connection refused"]]
            assert await bot.monitors.run_now(mid) is None  # still down: no storm
            lab.set_fault("r5", None)
            up = await bot.monitors.run_now(mid)
            assert up is not None and up.summary.endswith(": 1 back up")
            assert up.parts[0].rows[0][:2] == ["r5", "up"] and up.parts[0].rows[0][2].startswith("back after ")
            assert [room for room, _ in alerts] == ["ops", "ops"]  # alerts went to the room, once each
        finally:
            await bot.stop()
    asyncio.run(scenario())


def test_site_outage_is_one_grouped_alert(clean_lab: Any, tmp_path: Path) -> None:
    lab = clean_lab
    bot, alerts = make_bot(lab, tmp_path / "bot.sqlite")

    async def scenario() -> None:
        await bot.start()
        try:
            mid = monitor_id(await ask(bot, "!monitor add ssh all every 1h after 1"))
            for name in ("r1", "r2", "r3"):  # all of site hq
                lab.set_fault(name, Fault.DOWN)
            lab.set_fault("r6", Fault.DOWN)  # and one device of branch1
            alert = await bot.monitors.run_now(mid)
            assert alert is not None
            assert alert.summary.endswith(": 4 down (site hq dark)")
            assert alert.parts[0].rows == [["site hq", "DOWN", "all 3 devices: r1, r2, r3"],
                                           ["r6", "DOWN", "connection refused"]]
            assert len(alerts) == 1
        finally:
            await bot.stop()
    asyncio.run(scenario())


def test_show_and_apic_checks(clean_lab: Any, tmp_path: Path) -> None:
    lab = clean_lab
    bot, _ = make_bot(lab, tmp_path / "bot.sqlite")

    async def scenario() -> None:
        await bot.start()
        try:
            ok = monitor_id(await ask(bot, "!monitor add show r1 command show ip int br expect Loopback0 every 1h"))
            assert await bot.monitors.run_now(ok) is None
            bad = monitor_id(await ask(bot, "!monitor add show r1 command show ip int br reject Loopback0 after 1"))
            alert = await bot.monitors.run_now(bad)
            assert alert is not None and alert.parts[0].rows == [["r1", "DOWN", "matches /Loopback0/"]]
            health = monitor_id(await ask(bot, "!monitor add apic-health below 80 after 1 every 1h"))
            assert await bot.monitors.run_now(health) is None
            lab.apic.set_health(fabric=60)
            alert = await bot.monitors.run_now(health)
            assert alert is not None and alert.parts[0].rows == [["apic1 fabric", "DOWN", "health 60 (alert below 80)"]]
            faults = monitor_id(await ask(bot, "!monitor add apic-faults severity critical after 1"))
            alert = await bot.monitors.run_now(faults)
            assert alert is not None and all(r[1] == "DOWN" for r in alert.parts[0].rows)
            assert await bot.monitors.run_now(faults) is None  # the same faults: no new alert
        finally:
            await bot.stop()
    asyncio.run(scenario())


def test_bad_monitor_definitions_are_one_line(clean_lab: Any, tmp_path: Path) -> None:
    bot, _ = make_bot(clean_lab, tmp_path / "bot.sqlite")

    async def scenario() -> None:
        await bot.start()
        try:
            for text, reason in [
                ("!monitor add telepathy r1", "unknown check 'telepathy'"),
                ("!monitor add ssh r99", "unknown device 'r99'"),
                ("!monitor add ssh r1 every soon", "'soon' is not an interval"),
                ("!monitor add show r1 command show tech expect x", "not an allowed show command"),
                ("!monitor add show r1 command show clock", "exactly one of: expect <regex>, reject <regex>"),
                ("!monitor add ping 10.0.0.1", "in lab mode the bot host only probes loopback"),
                ("!monitor remove nope", "no monitor nope"),
            ]:
                result = await ask(bot, text)
                assert result.status is Status.INVALID and reason in result.summary, (text, result.summary)
            assert (await ask(bot, "!monitor list")).summary == "no monitors"
        finally:
            await bot.stop()
    asyncio.run(scenario())


def test_monitors_survive_a_restart_and_run_on_schedule(clean_lab: Any, tmp_path: Path) -> None:
    lab = clean_lab
    db = tmp_path / "bot.sqlite"
    static = [{"kind": "ssh", "targets": "r8", "room": "console:noc", "every": "1h"}]

    async def first_life() -> str:
        bot, _ = make_bot(lab, db, static)
        await bot.start()
        try:
            mid = monitor_id(await ask(bot, "!monitor add ssh r7 every 1s after 1 to console:ops"))
            paused = monitor_id(await ask(bot, "!monitor add ssh r9 every 1s after 1"))
            assert (await ask(bot, f"!monitor pause {paused}")).status is Status.OK
            return mid
        finally:
            await bot.stop()

    mid = asyncio.run(first_life())
    lab.set_fault("r7", Fault.DOWN)
    lab.set_fault("r9", Fault.DOWN)

    async def second_life() -> None:
        bot, alerts = make_bot(lab, db, static)
        await bot.start()
        try:
            listing = await ask(bot, "!monitor list")
            rows = {r[0]: r for r in listing.parts[0].rows}
            assert set(rows) == {mid, "config-1", next(i for i in rows if i not in (mid, "config-1"))}
            assert rows["config-1"][2] == "console:noc"
            deadline = time.monotonic() + 20
            while not alerts:  # the scheduler, not the test, runs the monitor
                assert time.monotonic() < deadline, "the restored monitor never ran"
                await asyncio.sleep(0.1)
            room, alert = alerts[0]
            assert room == "ops" and alert.summary.startswith(f"monitor {mid} ") and "r7" in str(alert.parts[0].rows)
            assert not any("r9" in str(a.parts[0].rows) for _, a in alerts)  # paused stays paused
            removed = await ask(bot, "!monitor remove config-1")
            assert removed.status is Status.INVALID and "comes from the config file" in removed.summary
        finally:
            await bot.stop()
    asyncio.run(second_life())


@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_neither_pins_the_bot_nor_stops_it_answering(clean_lab: Any, tmp_path: Path) -> None:
    """The monitor of the issue: with a backtracking engine its first run never ends and
    holds the interpreter, so the bot stops answering everyone. With RE2 the run ends,
    and another command is answered while it runs."""
    bot, _ = make_bot(clean_lab, tmp_path / "bot.sqlite")

    async def scenario() -> None:
        await bot.start()
        try:
            added = await ask(bot, "!monitor add show r1 command show ip route reject (.*.*)*Z every 10s after 1")
            mid = monitor_id(added)
            run = asyncio.create_task(bot.monitors.run_now(mid))
            answer = await ask(bot, "!devices r1")
            assert answer.status is Status.OK and answer.summary == "1 device matching 'r1'"
            assert await run is None  # the route table has no Z: nothing to alert
        finally:
            await bot.stop()
    asyncio.run(scenario())
