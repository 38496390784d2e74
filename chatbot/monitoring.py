"""Monitoring: checks on a schedule, alerts to a room on state changes only.

Checks come from task modules (`@check_kind`), so the core knows no network. The
schedule is APScheduler 3 with its SQLAlchemy job store in the bot's database: monitors
survive a restart, and runs missed while the bot was down are coalesced into one.

Alerting, per monitor and target: down after `after` consecutive failures (flap
damping), back up with the outage's duration, a still-down reminder every
`remind_every`; every change of one run goes out as one message, and devices of a site
that all went down together are named as the site, not one line each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from chatbot.checks import CheckKind, Outcome
from chatbot.context import TaskContext
from chatbot.durations import format_duration, format_elapsed, parse_duration
from chatbot.errors import ArgumentError
from chatbot.results import Result, Status, Table as ResultTable
from chatbot.store import monitor_state_table as state_table, monitors_table, prepare, transaction
from chatbot.wording import plural

log = logging.getLogger(__name__)


class MonitorRefused(ArgumentError):
    """A monitor that would exceed the limits, or watch exactly what another one does."""


@dataclass
class Monitor:
    id: str
    kind: str
    targets: str
    options: dict[str, Any]
    interval: float
    room: str
    owner: str
    after: int = 2
    remind_every: float = 3600.0
    paused: bool = False
    source: str = "chat"

    def describe(self, kind: CheckKind | None = None) -> str:
        """'show r1 command show clock expect /x/ every 5m': what it watches, in chat words."""
        opts = kind.describe_spec(self.options) if kind is not None else ""
        words = [self.kind, self.targets, opts, f"every {format_duration(self.interval)}"]
        return " ".join(w for w in words if w)

    def same_watch(self, other: Monitor) -> bool:
        """Exactly what `other` watches, how often and where it alerts."""
        return (self.kind, self.targets.strip(), _canonical(self.options), self.interval, self.room) == \
            (other.kind, other.targets.strip(), _canonical(other.options), other.interval, other.room)


def _canonical(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


Notifier = Callable[[str, Result], Awaitable[None]]  # (room without platform, result)
# Live services by database: a stored job names its database, which stays the same
# across restarts (and tells apart several bots in one process, as in tests).
_services: dict[str, MonitorService] = {}


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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        prepare(self.engine)

    # --- lifecycle ----------------------------------------------------------------
    @property
    def database(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    async def start(self, static: list[dict[str, Any]] | None = None) -> None:
        _services[self.database] = self
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=timezone.utc,
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
                with self._lock, transaction(self.engine) as conn:
                    conn.execute(update(monitors_table).where(monitors_table.c.id == monitor.id).values(paused=True))
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
        owner or the bot has as many as the limits allow. Checked and stored as one step."""
        with self._lock, transaction(self.engine) as conn:
            existing = [_monitor(r._mapping) for r in conn.execute(select(monitors_table))]
            twin = next((m for m in existing if m.same_watch(monitor)), None)
            if twin is not None:
                raise MonitorRefused(f"already watched by monitor {twin.id}")
            if len(existing) >= self.max_total:
                raise MonitorRefused(f"the bot already runs {plural(len(existing), 'monitor')}, its limit "
                                     "([limits] monitors_total); remove one first")
            own = sum(1 for m in existing if m.owner == monitor.owner and m.source == "chat")
            if own >= self.max_per_person:
                raise MonitorRefused(f"you already have {plural(own, 'monitor')}, the limit per person "
                                     "([limits] monitors_per_person); remove one first")
            _store(conn, monitor)
        self._schedule(monitor)

    def save(self, monitor: Monitor) -> None:
        """Store a monitor as is (the config's, or one changed), and schedule it."""
        with self._lock, transaction(self.engine) as conn:
            _store(conn, monitor)
        self._schedule(monitor)

    def _schedule(self, monitor: Monitor) -> None:
        assert self.scheduler is not None
        self.scheduler.add_job(run_scheduled, "interval", seconds=monitor.interval, id=monitor.id,
                               args=[self.database, monitor.id], replace_existing=True,
                               **({"next_run_time": datetime.now(timezone.utc)} if self.first_run_now else {}))
        if monitor.paused:
            self.scheduler.pause_job(monitor.id)

    def get(self, monitor_id: str) -> Monitor | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(monitors_table).where(monitors_table.c.id == monitor_id)).first()
        return _monitor(row._mapping) if row else None

    def all(self) -> list[Monitor]:
        with self.engine.connect() as conn:
            return [_monitor(r._mapping) for r in conn.execute(select(monitors_table).order_by(monitors_table.c.id))]

    def remove(self, monitor_id: str) -> None:
        with self._lock, transaction(self.engine) as conn:
            conn.execute(delete(monitors_table).where(monitors_table.c.id == monitor_id))
            conn.execute(delete(state_table).where(state_table.c.monitor_id == monitor_id))
        try:
            assert self.scheduler is not None
            self.scheduler.remove_job(monitor_id)
        except JobLookupError:
            pass

    def set_paused(self, monitor_id: str, paused: bool) -> None:
        with self._lock, transaction(self.engine) as conn:
            conn.execute(update(monitors_table).where(monitors_table.c.id == monitor_id).values(paused=paused))
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
        with self._lock, transaction(self.engine) as conn:
            states = {r.target: dict(r._mapping) for r in conn.execute(
                select(state_table).where(state_table.c.monitor_id == monitor.id))}
            downs, ups, reminders = [], [], []
            for target in set(outcomes) | set(states):
                outcome = outcomes.get(target, Outcome(True))  # a target that vanished (a fault cleared) is fine
                st = states.get(target) or {"monitor_id": monitor.id, "target": target, "status": "up",
                                            "failures": 0, "first_failure": None, "down_since": None,
                                            "last_notified": None, "detail": ""}
                if outcome.ok:
                    if st["status"] == "down":
                        ups.append((target, outcome, now - (st["down_since"] or now)))
                    st.update(status="up", failures=0, first_failure=None, down_since=None, detail="")
                else:
                    st["failures"] += 1
                    st["first_failure"] = st["first_failure"] or now
                    st["detail"] = outcome.detail
                    if st["status"] != "down" and st["failures"] >= monitor.after:
                        st.update(status="down", down_since=st["first_failure"], last_notified=now)
                        downs.append((target, outcome))
                    elif st["status"] == "down" and now - (st["last_notified"] or now) >= monitor.remind_every:
                        st["last_notified"] = now
                        reminders.append((target, outcome, now - st["down_since"]))
                conn.execute(delete(state_table).where((state_table.c.monitor_id == monitor.id)
                                                       & (state_table.c.target == target)))
                if outcome.ok and target not in outcomes:
                    continue  # forget vanished targets
                conn.execute(insert(state_table).values(**st))
        if not (downs or ups or reminders):
            return None
        return self._alert(monitor, downs, ups, reminders)

    def _alert(self, monitor: Monitor, downs: list, ups: list, reminders: list) -> Result:  # type: ignore[type-arg]
        rows: list[list[str]] = []
        parts: list[str] = []
        down_names = {t for t, _ in downs}
        dark_sites = self._dark_sites(down_names)
        shown_dark: set[str] = set()
        for target, outcome in sorted(downs):
            site = self._site_of(target)
            if site in dark_sites:
                if site not in shown_dark:
                    shown_dark.add(site)
                    members = sorted(t for t in down_names if self._site_of(t) == site)
                    rows.append([f"site {site}", "DOWN", f"all {plural(len(members), 'device')}: {', '.join(members)}"])
                continue
            rows.append([target, "DOWN", outcome.detail])
        for target, outcome, duration in sorted(reminders):
            rows.append([target, "still down", f"for {format_elapsed(duration)}: {outcome.detail}"])
        for target, _, duration in sorted(ups):
            rows.append([target, "up", f"back after {format_elapsed(duration)}"])
        if downs:
            parts.append(f"{len(downs)} down" + (f" (site {', '.join(sorted(dark_sites))} dark)" if dark_sites else ""))
        if reminders:
            parts.append(f"{len(reminders)} still down")
        if ups:
            parts.append(f"{len(ups)} back up")
        status = Status.FAILED if downs or reminders else Status.OK
        return Result(status, f"monitor {monitor.id} ({self.describe(monitor)}): {', '.join(parts)}",
                      [ResultTable(["target", "state", "detail"], rows)])

    def _site_of(self, target: str) -> str | None:
        device = self.context.inventory.devices.get(target)
        return device.site if device else None

    def _dark_sites(self, down: set[str]) -> set[str]:
        """Sites whose every device went down in this one run (at least two devices)."""
        sites: dict[str, list[str]] = {}
        for device in self.context.inventory.devices.values():
            if device.site:
                sites.setdefault(device.site, []).append(device.name)
        return {s for s, members in sites.items() if len(members) > 1 and set(members) <= down}

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


def _store(conn: Any, monitor: Monitor) -> None:
    row = {"id": monitor.id, "kind": monitor.kind, "targets": monitor.targets,
           "options": json.dumps(monitor.options), "interval": monitor.interval, "room": monitor.room,
           "owner": monitor.owner, "after": monitor.after, "remind_every": monitor.remind_every,
           "paused": monitor.paused, "source": monitor.source}
    conn.execute(delete(monitors_table).where(monitors_table.c.id == monitor.id))
    conn.execute(insert(monitors_table).values(**row))


def _monitor(row: Any) -> Monitor:
    return Monitor(id=row["id"], kind=row["kind"], targets=row["targets"], options=json.loads(row["options"]),
                   interval=row["interval"], room=row["room"], owner=row["owner"], after=row["after"],
                   remind_every=row["remind_every"], paused=row["paused"], source=row["source"])
