"""The scheduler's stored jobs name `chatbot.monitoring:run_scheduled` by import path:
jobs stored before monitoring became a package must still load and run, and new jobs
keep that same name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

import chatbot.monitoring
from chatbot.checks import CheckKind, Outcome
from chatbot.monitoring import Monitor, MonitorService
from chatbot.results import Result
from chatbot.store import make_engine
from chatbot.testing import sample_context

OLD_REFERENCE = "chatbot.monitoring:run_scheduled"  # what the single-module code stored


def service(db: Path, runs: list[dict[str, Any]]) -> MonitorService:
    def probe(ctx: Any, spec: dict[str, Any]) -> dict[str, Outcome]:
        runs.append(spec)
        return {"r1": Outcome(False, "unreachable")}

    kinds = {"probe": CheckKind("probe", "a recording check", (), lambda ctx, targets, options: {}, probe)}
    monitors = MonitorService(sample_context(), make_engine(f"sqlite:///{db}"), kinds, executor=None)
    monitors.first_run_now = False
    return monitors


def stored_references(db: Path) -> dict[str, str]:
    store = SQLAlchemyJobStore(engine=make_engine(f"sqlite:///{db}"), tablename="apscheduler_jobs")
    store.start(BackgroundScheduler(), "default")
    try:
        return {job.id: job.func_ref for job in store.get_all_jobs()}
    finally:
        store.shutdown()


def test_a_job_stored_by_the_old_module_runs_the_live_service(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite"
    runs: list[dict[str, Any]] = []
    alerts: list[tuple[str, Result]] = []
    monitors = service(db, runs)
    monitors.rows.save(Monitor("0ld123", "probe", "r1", {"n": 1}, 3600.0, "console:ops", "noc", after=1))
    # The job exactly as the old code's scheduler stored it, by its textual reference.
    old = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(engine=monitors.engine,
                                                                       tablename="apscheduler_jobs")})
    old.start(paused=True)
    old.add_job(OLD_REFERENCE, "interval", seconds=3600, id="0ld123", args=[monitors.database, "0ld123"])
    old.shutdown(wait=False)

    async def record(room: str, result: Result) -> None:
        alerts.append((room, result))

    async def scenario() -> None:
        monitors.notifiers["console"] = record
        await monitors.start()
        try:
            assert monitors.scheduler is not None
            job = monitors.scheduler.get_job("0ld123")
            assert job is not None and job.func is chatbot.monitoring.run_scheduled
            await job.func(*job.args)  # what the scheduler does when the job is due
        finally:
            await monitors.stop()
    asyncio.run(scenario())
    assert runs == [{"n": 1}]
    assert [(room, result.summary) for room, result in alerts] == \
        [("ops", "monitor 0ld123 (probe r1 every 1h): 1 down")]


def test_new_jobs_are_stored_under_the_same_reference(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite"
    monitors = service(db, [])

    async def scenario() -> None:
        await monitors.start()
        try:
            monitors.add(Monitor("n3w456", "probe", "r1", {}, 600.0, "console:ops", "noc"))
            monitors.save(Monitor("config-1", "probe", "r2", {}, 600.0, "console:ops", "config", source="config"))
        finally:
            await monitors.stop()
    asyncio.run(scenario())
    assert stored_references(db) == {"n3w456": OLD_REFERENCE, "config-1": OLD_REFERENCE}
