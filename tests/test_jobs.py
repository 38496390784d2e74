"""The job runner against the lab: device limits under load, queueing, cancel, rates."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chatbot.app import build_bot
from chatbot.audit import AuditLog, make_engine
from chatbot.cli import lab_access
from chatbot.config import parse_config
from chatbot.jobs import JobState, jobs_table
from chatbot.lab import Fault
from chatbot.message import Identity, Message
from chatbot.results import Status

pytestmark = pytest.mark.slow


USERS_WITHOUT_JOBS_ALL = {
    "roles": {"user": {"commands": ["show.*", "devices"]}},
    "grants": [{"who": ["console:*"], "where": ["*"], "roles": ["user"]}],
}


def make_bot(lab: Any, tmp_path: Path, access: dict | None = None, **limits: Any):  # type: ignore[no-untyped-def]
    raw: dict[str, Any] = {"limits": {"device_timeout": 10, "connect_timeout": 5, **limits}}
    if access:
        raw["access"] = access
    config = parse_config(raw)
    return build_bot(config, lab_access(lab), audit=AuditLog(make_engine(f"sqlite:///{tmp_path}/bot.sqlite")))


def message(user: str, text: str, n: int = 0) -> Message:
    return Message(platform="console", room="console", sender=Identity.native("console", user), text=text,
                   direct=True, message_id=f"{user}-{n}-{time.monotonic_ns()}")


async def wait_until(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_limits_hold_under_200_concurrent_commands_from_20_users(lab: Any, tmp_path: Path) -> None:
    bot = make_bot(lab, tmp_path, sessions_per_device=1, workers=20, running_jobs_per_user=3)
    devices = [f"r{i}" for i in range(1, 14)]
    for name in devices:
        lab.devices[name].stats.reset()
    rng = random.Random(7)
    plan = []
    for n in range(200):
        user = f"user{n % 20}"
        pick = rng.sample(devices, rng.choice([1, 1, 2, 3]))
        plan.append(message(user, f"!show version {','.join(pick)}", n))

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(bot.handle(m) for m in plan))

    started = time.monotonic()
    replies = asyncio.run(scenario())
    took = time.monotonic() - started
    assert all(r is not None for r in replies)
    statuses = {r.result.status for r in replies}
    assert statuses <= {Status.OK}, [r.result.summary for r in replies if r.result.status is not Status.OK][:3]
    for name in devices:
        stats = lab.devices[name].stats
        assert stats.max_concurrent == 1, (name, stats)
    assert sum(lab.devices[n].stats.sessions_total for n in devices) == sum(
        len(m.text.split()[-1].split(",")) for m in plan)
    print(f"200 commands from 20 users in {took:.1f} s")


def test_cancel_stops_running_and_queued_jobs(lab: Any, tmp_path: Path) -> None:
    bot = make_bot(lab, tmp_path, access=USERS_WITHOUT_JOBS_ALL, running_jobs_per_user=1)
    lab.set_delay("r4", 8.0)
    lab.devices["r5"].stats.reset()
    try:
        async def scenario() -> None:
            slow = asyncio.create_task(bot.handle(message("ann", "!show version r4", 1)))
            await wait_until(lambda: lab.devices["r4"].stats.sessions_now == 1, "r4's session")
            queued_msg = message("ann", "!show version r5", 2)
            queued = asyncio.create_task(bot.handle(queued_msg))
            await wait_until(lambda: (j := bot.jobs.job_for_message(queued_msg.message_id)) is not None
                             and j.state is JobState.QUEUED, "the second job to queue")
            assert bot.progress_text(queued_msg.message_id).startswith("queued (job ")
            listing = (await bot.handle(message("ann", "!jobs"))).result
            states = {row[2] for row in listing.parts[0].rows}
            assert states == {"running", "queued"}
            queued_id = bot.jobs.job_for_message(queued_msg.message_id).id
            running_id = next(j.id for j in bot.jobs.jobs.values() if j.state is JobState.RUNNING)
            # someone else may not cancel ann's job
            other = (await bot.handle(message("bob", f"!cancel {running_id}"))).result
            assert other.status is Status.INVALID

            cut = time.monotonic()
            assert (await bot.handle(message("ann", f"!cancel {queued_id}"))).result.status is Status.OK
            assert (await bot.handle(message("ann", f"!cancel {running_id}"))).result.status is Status.OK
            slow_reply, queued_reply = await slow, await queued
            assert "was cancelled by console:ann" in slow_reply.result.summary
            assert "was cancelled by console:ann" in queued_reply.result.summary
            # the session in flight is cut, long before r4's 8 s delay is over
            await wait_until(lambda: lab.devices["r4"].stats.sessions_now == 0, "r4's session to close", 5)
            assert time.monotonic() - cut < 5
            assert lab.devices["r5"].stats.sessions_total == 0  # the queued job never started
        asyncio.run(scenario())
    finally:
        lab.set_delay("r4", 0.01)
    bot.audit.flush()  # outcomes are written behind the work
    with bot.audit.engine.connect() as conn:
        states = {r.state for r in conn.execute(select(jobs_table.c.state))}
    assert "cancelled" in states


def test_cancel_cuts_a_session_still_logging_in(lab: Any, tmp_path: Path) -> None:
    """A device that takes the login but never shows a prompt holds the session inside
    scrapli's open: a cancel must cut it there too, not wait for the device timeout."""
    bot = make_bot(lab, tmp_path, access=USERS_WITHOUT_JOBS_ALL, device_timeout=30)
    lab.set_fault("r6", Fault.HANG)
    lab.devices["r6"].stats.reset()
    try:
        async def scenario() -> None:
            msg = message("ann", "!show version r6", 1)
            hung = asyncio.create_task(bot.handle(msg))
            await wait_until(lambda: lab.devices["r6"].stats.sessions_now == 1, "r6's session")
            job = bot.jobs.job_for_message(msg.message_id)
            assert job is not None
            cut = time.monotonic()
            assert (await bot.handle(message("ann", f"!cancel {job.id}"))).result.status is Status.OK
            reply = await asyncio.wait_for(hung, 10)  # the device timeout is 30 s
            assert "was cancelled by console:ann" in reply.result.summary
            await wait_until(lambda: lab.devices["r6"].stats.sessions_now == 0, "r6's session to close", 10)
            assert time.monotonic() - cut < 10
        asyncio.run(scenario())
    finally:
        lab.set_fault("r6", None)


def test_rate_limit_per_user(lab: Any, tmp_path: Path) -> None:
    bot = make_bot(lab, tmp_path, commands_per_minute=2)

    async def scenario() -> list[Any]:
        return [await bot.handle(message("cara", "!devices", n)) for n in range(3)]

    first, second, third = asyncio.run(scenario())
    assert first.result.status is Status.OK and second.result.status is Status.OK
    assert third.result.status is Status.DENIED
    assert "at most 2 commands a minute" in third.result.summary
    # another user is not slowed down by cara
    assert asyncio.run(bot.handle(message("dan", "!devices"))).result.status is Status.OK
