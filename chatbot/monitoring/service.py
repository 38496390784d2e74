"""The monitoring service: monitors on a schedule, each run's changes alerted to a room.

The schedule is APScheduler 3 with its SQLAlchemy job store in the bot's database:
monitors survive a restart, and runs missed while the bot was down are coalesced into
one. What is stored is in chatbot.monitoring.store, what an alert says in
chatbot.monitoring.alerts; this module wires them to the scheduler, the check kinds and
the adapters' notifiers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine

from chatbot.checks import CheckKind, Outcome
from chatbot.context import TaskContext
from chatbot.durations import format_duration, parse_duration
from chatbot.errors import ArgumentError
from chatbot.monitoring import alerts
from chatbot.monitoring.model import Monitor
from chatbot.monitoring.store import MonitorRows
from chatbot.results import Result, Status

log = logging.getLogger(__name__)


Notifier = Callable[[str, Result], Awaitable[None]]  # (room without platform, result)
# Live services by database: a stored job names its database, which stays the same
# across restarts (and tells apart several bots in one process, as in tests).
_services: dict[str, MonitorService] = {}
# How the job store names `run_scheduled`: the import path of the days when monitoring was
# one module, which the jobs stored since then still carry; it stays valid (the package
# re-exports the function) however this package is laid out inside.
RUN_SCHEDULED = "chatbot.monitoring:run_scheduled"


async def run_scheduled(database: str, monitor_id: str) -> None:
    """What APScheduler stores and calls: a module-level function, found by name after a
    restart; the live service is looked up here."""
    service = _services.get(database)
    if service is None:
        return
    try:
        await service.run_now(monitor_id)
    except asyncio.CancelledError:
        # the bot is stopping with this run in flight (the job's task is cancelled and
        # ends here): one line instead of APScheduler's traceback of a failed job
        log.info("monitor %s: run cut short by shutdown", monitor_id)


@dataclass
class MonitorService:
    context: TaskContext
    engine: Engine
    kinds: dict[str, CheckKind]
    executor: Any  # the runner's thread pool: checks share the task threads
    min_interval: float = 10.0
    max_per_person: int = 20  # monitors added in chat by one person
    max_total: int = 500  # monitors in all, the config's included
    first_run_now: bool = True  # a new monitor checks at once, not one interval later
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    scheduler: AsyncIOScheduler | None = None
    rows: MonitorRows = field(init=False)

    def __post_init__(self) -> None:
        self.rows = MonitorRows(self.engine)

    # --- lifecycle ----------------------------------------------------------------
    @property
    def database(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    async def start(self, static: list[dict[str, Any]] | None = None) -> None:
        _services[self.database] = self
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=UTC,
        )
        self.scheduler.start()
        # validating a check may compile patterns and read the inventory: not on the loop
        await asyncio.to_thread(self._add_statics, static or [])
        for monitor, problem in await asyncio.to_thread(self._pause_unrunnable):
            try:
                self.scheduler.pause_job(monitor.id)
            except JobLookupError:
                pass  # not scheduled: nothing would run it anyway
            log.warning("monitor %s (%s) paused: %s", monitor.id, self.describe(monitor), problem)

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if _services.get(self.database) is self:
            del _services[self.database]

    def _add_statics(self, static: list[dict[str, Any]]) -> None:
        for number, raw in enumerate(static, 1):
            self._add_static(number, raw)

    def _add_static(self, number: int, raw: dict[str, Any]) -> None:
        """[[monitor]] from the config: same fields as the chat command."""
        raw = dict(raw)
        try:
            kind, targets, room = raw.pop("kind"), raw.pop("targets"), raw.pop("room")
        except KeyError as err:
            raise ArgumentError(f"[[monitor]] number {number} needs {err.args[0]}") from None
        every = str(raw.pop("every", "1m"))
        after = int(raw.pop("after", 2))
        remind = str(raw.pop("remind_every", "1h"))
        monitor = self.build(kind, str(targets), {k: str(v) for k, v in raw.items()}, every=every,
                             room=str(room), owner="config", after=after, remind_every=remind,
                             monitor_id=f"config-{number}")
        monitor.source = "config"
        self.save(monitor)

    def describe(self, monitor: Monitor) -> str:
        return monitor.describe(self.kinds.get(monitor.kind))

    def problem(self, monitor: Monitor) -> str | None:
        """Why a stored monitor cannot run (its kind is gone, its pattern is refused...)."""
        kind = self.kinds.get(monitor.kind)
        if kind is None:
            return f"there is no '{monitor.kind}' check any more"
        return kind.stored_problem(monitor.options) if kind.stored_problem is not None else None

    def _pause_unrunnable(self) -> list[tuple[Monitor, str]]:
        """Monitors stored by an older version that this one cannot run: paused, not run."""
        paused = []
        for monitor in self.all():
            problem = None if monitor.paused else self.problem(monitor)
            if problem is not None:
                self.rows.set_paused(monitor.id, True)
                paused.append((monitor, problem))
        return paused

    # --- definitions ----------------------------------------------------------------
    def build(self, kind: str, targets: str, options: dict[str, str], *, every: str, room: str, owner: str,
              after: int = 2, remind_every: str = "1h", monitor_id: str | None = None) -> Monitor:
        check = self.kinds.get(kind)
        if check is None:
            raise ArgumentError(f"unknown check '{kind}'; checks are {', '.join(sorted(self.kinds))}")
        unknown = set(options) - set(check.options)
        if unknown:
            raise ArgumentError(f"{kind} checks take no '{sorted(unknown)[0]}'")
        interval = parse_duration(every)
        if interval < self.min_interval:
            raise ArgumentError(f"checks run at most every {format_duration(self.min_interval)}")
        spec = check.validate(self.context, targets, options)
        if ":" not in room:
            raise ArgumentError(f"'{room}' is not a room (platform:room)")
        return Monitor(monitor_id or secrets.token_hex(3), kind, targets, spec, interval, room, owner,
                       after=max(1, after), remind_every=parse_duration(remind_every))

    def add(self, monitor: Monitor) -> None:
        """A monitor from chat: refused (MonitorRefused) when it duplicates one, or when its
        owner or the bot has as many as the limits allow."""
        self.rows.add(monitor, max_total=self.max_total, max_per_person=self.max_per_person)
        self._schedule(monitor)

    def save(self, monitor: Monitor) -> None:
        """Store a monitor as is (the config's, or one changed), and schedule it."""
        self.rows.save(monitor)
        self._schedule(monitor)

    def _schedule(self, monitor: Monitor) -> None:
        assert self.scheduler is not None
        self.scheduler.add_job(RUN_SCHEDULED, "interval", seconds=monitor.interval, id=monitor.id,
                               args=[self.database, monitor.id], replace_existing=True,
                               **({"next_run_time": datetime.now(UTC)} if self.first_run_now else {}))
        if monitor.paused:
            self.scheduler.pause_job(monitor.id)

    def get(self, monitor_id: str) -> Monitor | None:
        return self.rows.get(monitor_id)

    def all(self) -> list[Monitor]:
        return self.rows.all()

    def remove(self, monitor_id: str) -> None:
        self.rows.remove(monitor_id)
        try:
            assert self.scheduler is not None
            self.scheduler.remove_job(monitor_id)
        except JobLookupError:
            pass

    def set_paused(self, monitor_id: str, paused: bool) -> None:
        self.rows.set_paused(monitor_id, paused)
        assert self.scheduler is not None
        try:
            (self.scheduler.pause_job if paused else self.scheduler.resume_job)(monitor_id)
        except JobLookupError:  # stored, but its schedule was lost: a resume makes a new one
            monitor = None if paused else self.get(monitor_id)
            if monitor is not None:
                self._schedule(monitor)

    # --- running ------------------------------------------------------------------
    async def run_now(self, monitor_id: str) -> Result | None:
        """One run of a monitor: check, update states, alert on changes. Returns the alert."""
        monitor = await asyncio.to_thread(self.get, monitor_id)
        if monitor is None or monitor.paused:
            return None
        problem = await asyncio.to_thread(self.problem, monitor)  # may compile a pattern
        if problem is not None:
            return await self._pause_with_alert(monitor, problem)
        check = self.kinds[monitor.kind]
        loop = asyncio.get_running_loop()

        # Device sessions of a check come from the background share of the cap.
        context = self.context.for_run(background=True)
        try:
            outcomes = await loop.run_in_executor(self.executor, check.run, context, monitor.options)
        except Exception as err:
            log.exception("monitor %s failed to run", monitor_id)
            outcomes = {"(check)": Outcome(False, f"the check failed to run: {type(err).__name__}")}
        alert = await asyncio.to_thread(self._evaluate, monitor, outcomes, time.time())
        if alert is not None:
            await self._notify(monitor, alert)
        return alert

    async def _pause_with_alert(self, monitor: Monitor, problem: str) -> Result:
        await asyncio.to_thread(self.set_paused, monitor.id, True)
        log.warning("monitor %s (%s) paused: %s", monitor.id, self.describe(monitor), problem)
        alert = Result(Status.FAILED, f"monitor {monitor.id} ({self.describe(monitor)}) is paused: {problem}; "
                                      "remove it and add it again")
        await self._notify(monitor, alert)
        return alert

    def _evaluate(self, monitor: Monitor, outcomes: dict[str, Outcome], now: float) -> Result | None:
        changes = self.rows.update_states(monitor.id, lambda states: alerts.step(
            states, outcomes, now, after=monitor.after, remind_every=monitor.remind_every))
        if not changes:
            return None
        sites = {device.name: device.site for device in self.context.inventory.devices.values()}
        return alerts.alert(f"monitor {monitor.id} ({self.describe(monitor)})", changes, sites)

    async def _notify(self, monitor: Monitor, alert: Result) -> None:
        platform, _, room = monitor.room.partition(":")
        notifier = self.notifiers.get(platform)
        if notifier is None:
            log.warning("monitor %s: no %s adapter to alert %s: %s", monitor.id, platform, monitor.room, alert.summary)
            return
        try:
            await notifier(room, alert)
        except Exception as err:
            log.warning("monitor %s: alert to %s failed: %s", monitor.id, monitor.room, err)
