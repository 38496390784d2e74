"""The bot's side of zones: an invocation's devices split by zone, each zone's share
sent to its queue as signed task messages, the answers waited for off the event loop
and merged with the in-process share into one Result.

Progress sums what every place reports; a cancel sets a flag per message that the
workers' cancel tokens poll: sessions in flight are cut, queued messages are dropped
before they touch a device. Whatever
goes wrong with a zone (no worker, a worker dying mid-task, the broker down, no answer
in time) becomes a line for that zone's devices; the in-process devices still answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from chatbot.args import Targets
from chatbot.config import WorkersConfig
from chatbot.control import CancelToken, Progress
from chatbot.errors import UserError
from chatbot.inventory import DeviceInventory
from chatbot.results import Result, invalid
from chatbot.router import Invocation
from chatbot.zones.merge import Piece, merge
from chatbot.zones.store import ZoneStore
from chatbot.zones.wire import TASK_NAME, WireError, ZoneRequest, queue_of, result_from_data

log = logging.getLogger(__name__)

LOCAL = None  # the placement of a device without a zone: the bot's own process
POLL_FIRST, POLL_MOST = 0.02, 0.25  # seconds between looks at the answers: quick jobs answer quickly
PRESENCE_EVERY = 1.0  # seconds between checks that a zone waiting on us still has a worker
CANCEL_GRACE = 2.0  # seconds a cancelled message that never started may take to be dropped

RunHere = Callable[[Invocation, CancelToken, Progress], Awaitable[Result]]


def no_worker(zone: str) -> str:
    return f"zone {zone}: no worker answering"


@dataclass
class _Sent:
    """One task message sent to a zone, and what is known of it."""

    task_id: str
    zone: str
    devices: list[str]
    started: bool = False
    done: int = 0
    piece: Piece | None = None


@dataclass
class Plan:
    local: Invocation | None = None
    zones: dict[str, list[str]] = field(default_factory=dict)  # zone -> its devices, in target order
    targets_param: str | None = None  # the parameter split by zone; None: the whole invocation went


class ZoneDispatcher:
    def __init__(self, cfg: WorkersConfig, inventory: DeviceInventory, *, app: Any = None,
                 store: ZoneStore | None = None, executor: Executor | None = None) -> None:
        self.cfg = cfg
        self.inventory = inventory
        # Waiting on a zone takes a thread for the whole command: the runner's task
        # threads, not the loop's default executor (a few threads others need too).
        self.executor = executor
        self._app = app
        self._store = store
        self._lock = threading.Lock()

    # -- connections, made on first use so a bot without zone work never needs a broker --

    @property
    def app(self) -> Any:
        with self._lock:
            if self._app is None:
                from chatbot.zones.celery_app import make_app
                self._app = make_app(self.cfg)
            return self._app

    @property
    def store(self) -> ZoneStore:
        with self._lock:
            if self._store is None:
                import redis

                from chatbot.zones.celery_app import store_url
                client = redis.Redis.from_url(store_url(self.cfg), socket_timeout=3, socket_connect_timeout=2)
                self._store = ZoneStore(client, lease_seconds=self.cfg.lease_seconds,
                                        presence_seconds=self.cfg.presence_seconds)
            return self._store

    # -- planning ------------------------------------------------------------------------

    def involved(self, inv: Invocation) -> bool:
        """Whether any device of the invocation sits in a zone."""
        devices = self.inventory.devices
        return any(devices[d].zone for d in inv.devices if d in devices)

    def plan(self, inv: Invocation) -> Plan:
        """Where each device's work runs. Only a list of targets is split; any other
        argument naming a device (`from r1`) takes the whole command to that device's zone."""
        zone_of = {d: self.inventory.devices[d].zone for d in inv.devices}
        split_params = [p for p in inv.command.params if isinstance(p.type, Targets) and inv.args.get(p.name)]
        split_names = {p.name for p in split_params}
        fixed = [d for p in inv.command.params if p.name not in split_names and inv.args.get(p.name) is not None
                 for d in p.type.devices_of(inv.args[p.name])]
        places = list(dict.fromkeys(zone_of[d] for d in inv.devices))
        if places == [LOCAL]:
            return Plan(local=inv)
        if fixed or len(split_params) != 1:
            if len(places) > 1:
                raise UserError("this command names devices in different zones ("
                                + ", ".join(_place(p) for p in places) + "): ask each zone on its own")
            return Plan(zones={places[0]: list(inv.devices)})  # type: ignore[dict-item]
        param = split_params[0].name
        targets: list[str] = inv.args[param]
        plan = Plan(targets_param=param)
        local = [d for d in targets if zone_of[d] is LOCAL]
        if local:
            plan.local = Invocation(inv.command, {**inv.args, param: local}, inv.text, local, inv.raw_args)
        for d in targets:
            if zone_of[d] is not LOCAL:
                plan.zones.setdefault(zone_of[d], []).append(d)  # type: ignore[arg-type]
        return plan

    # -- running -------------------------------------------------------------------------

    async def run(self, inv: Invocation, run_here: RunHere, *, timeout: float, cancel: CancelToken,
                  progress: Progress, background: bool = False) -> Result:
        try:
            plan = self.plan(inv)
        except UserError as err:
            return invalid(str(err))
        if not plan.zones:
            return await run_here(inv, cancel, progress)
        deadline = time.time() + timeout
        counts = _Counts(progress, len(inv.devices))
        local_work = None
        if plan.local is not None:
            local_work = asyncio.ensure_future(run_here(plan.local, cancel, counts.local))
        zone_work = asyncio.get_running_loop().run_in_executor(
            self.executor, self._run_zones, inv, plan, deadline, timeout, cancel, counts, background)
        pieces: list[Piece] = []
        if local_work is not None:
            assert plan.local is not None
            pieces.append(Piece(plan.local.devices, await local_work))
        pieces += await zone_work
        return merge(_what(inv, plan), inv.devices, pieces)

    def _run_zones(self, inv: Invocation, plan: Plan, deadline: float, timeout: float, cancel: CancelToken,
                   counts: _Counts, background: bool) -> list[Piece]:
        """Send, wait and collect (in a thread: the broker's client blocks)."""
        import redis
        from kombu.exceptions import OperationalError

        unreachable = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError, OSError)
        zones = list(plan.zones)
        pieces: list[Piece] = []
        try:
            live = self.store.live_zones(zones)
        except redis.exceptions.AuthenticationError:
            return [Piece(plan.zones[z], failure="zones: the broker refused the bot's password") for z in zones]
        except unreachable as err:
            log.warning("zones: broker unreachable: %s", err)
            return [Piece(plan.zones[z], failure=f"zones: the broker at {self._where()} is not answering")
                    for z in zones]
        sent: list[_Sent] = []
        for zone in zones:
            if zone not in live:
                pieces.append(Piece(plan.zones[zone], failure=no_worker(zone)))
                continue
            try:
                sent += self._send(inv, plan, zone, deadline, background)
            except unreachable as err:
                log.warning("zones: cannot send to zone %s: %s", zone, err)
                pieces.append(Piece(plan.zones[zone], failure=f"zones: the broker at {self._where()} "
                                                              "is not answering"))
        counts.zones = sent
        return pieces + self._wait(sent, deadline, timeout, cancel, counts)

    def _send(self, inv: Invocation, plan: Plan, zone: str, deadline: float, background: bool) -> list[_Sent]:
        devices = plan.zones[zone]
        size = self.cfg.chunk_size if plan.targets_param is not None else len(devices)  # a whole command: one message
        chunks = [devices[i:i + size] for i in range(0, len(devices), size)]
        raw = {k: v for k, v in inv.raw_args.items()
               if not isinstance(_param(inv, k).type, Targets)}
        job = uuid.uuid4().hex[:12]
        expires = dt.datetime.fromtimestamp(deadline, dt.UTC)
        sent = []
        for chunk in chunks:
            targets = {p.name: [d for d in inv.args[p.name] if d in chunk] for p in inv.command.params
                       if isinstance(p.type, Targets) and inv.args.get(p.name)}
            request = ZoneRequest(command=inv.command.name, raw_args=raw, targets=targets, devices=chunk,
                                  zone=zone, job=job, deadline=deadline, background=background)
            task_id = uuid.uuid4().hex
            self.app.send_task(TASK_NAME, args=[request.to_data()], queue=queue_of(zone), task_id=task_id,
                               expires=expires, retry=False)
            sent.append(_Sent(task_id, zone, chunk))
        return sent

    def _wait(self, sent: list[_Sent], deadline: float, timeout: float, cancel: CancelToken,
              counts: _Counts) -> list[Piece]:
        pending = {s.task_id: s for s in sent}
        backend = self.app.backend
        pause = POLL_FIRST
        cancelled_at: float | None = None
        next_presence = time.monotonic() + PRESENCE_EVERY
        while pending:
            try:
                self._collect(backend, pending)
                self._watch_leases(backend, pending)
                if cancel.cancelled and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    self._cancel(list(pending), deadline)
                if time.monotonic() >= next_presence:
                    next_presence = time.monotonic() + PRESENCE_EVERY
                    self._watch_presence(pending)
            except Exception as err:  # the broker went away mid-job
                log.warning("zones: lost the broker while waiting: %s", err)
                for s in pending.values():
                    s.piece = Piece(s.devices, failure=f"zones: lost the broker at {self._where()} mid-job")
                break
            counts.report()
            if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE:
                for s in list(pending.values()):
                    if not s.started:
                        s.piece = Piece(s.devices, failure="cancelled before it started")
                        del pending[s.task_id]
            if time.time() >= deadline:
                self._cancel(list(pending), deadline + 60)
                for s in pending.values():
                    s.piece = Piece(s.devices, failure=f"zone {s.zone}: no answer within {timeout:g} s")
                break
            time.sleep(min(pause, max(0.0, deadline - time.time())))
            pause = min(pause * 1.5, POLL_MOST)
        counts.report()
        return [s.piece or Piece(s.devices, failure="no answer") for s in sent]

    def _collect(self, backend: Any, pending: dict[str, _Sent]) -> None:
        """Take in the answers that arrived (one round trip for all)."""
        ids = list(pending)
        values = backend.client.mget([backend.get_key_for_task(t) for t in ids])
        for task_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            meta = backend.decode_result(value)  # checks the worker's signature
            status = meta["status"]
            s = pending[task_id]
            if status == "SUCCESS":
                try:
                    s.piece = Piece(s.devices, result_from_data(meta["result"]))
                except WireError as err:
                    log.warning("zone %s: unusable answer to task %s: %s", s.zone, task_id, err)
                    s.piece = Piece(s.devices, failure=f"zone {s.zone}: the worker's answer was unusable")
                s.done = len(s.devices)
            elif status == "REVOKED":
                s.piece = Piece(s.devices, failure="cancelled before it started")
            elif status == "FAILURE":
                log.warning("zone %s: task %s failed on the worker: %r", s.zone, task_id, meta.get("result"))
                s.piece = Piece(s.devices, failure=f"zone {s.zone}: the worker failed (see its log)")
            else:
                continue
            del pending[task_id]

    def _watch_leases(self, backend: Any, pending: dict[str, _Sent]) -> None:
        """Progress from the running tasks' leases; a lease that lapsed without an answer
        means the worker died with the task."""
        ids = list(pending)
        for task_id, lease in zip(ids, self.store.leases(ids), strict=True):
            s = pending[task_id]
            if lease is not None:
                s.started, s.done = True, lease.done
            elif s.started:
                self._collect(backend, {task_id: s})  # it may have answered just now
                if s.piece is None:
                    log.warning("zone %s: the worker running task %s stopped", s.zone, task_id)
                    s.piece = Piece(s.devices, failure=f"zone {s.zone}: the worker stopped mid-job "
                                                       "(outcome unknown)")
                pending.pop(task_id, None)

    def _watch_presence(self, pending: dict[str, _Sent]) -> None:
        """Messages not yet started in a zone that no longer has any worker."""
        waiting = {s.zone for s in pending.values() if not s.started}
        if not waiting:
            return
        live = self.store.live_zones(sorted(waiting))
        for s in list(pending.values()):
            if not s.started and s.zone not in live:
                s.piece = Piece(s.devices, failure=no_worker(s.zone))
                del pending[s.task_id]

    def _cancel(self, task_ids: list[str], deadline: float) -> None:
        """A flag per message: a running task cuts its sessions, a queued one is dropped
        by the worker that takes it before it touches any device (workers take no
        remote control, so Celery's revoke would reach none)."""
        self.store.cancel(task_ids, ttl=max(60.0, deadline - time.time() + 60))

    def _where(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.cfg.broker_url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


class _Counts:
    """Progress over every place: the in-process share's own count plus each message's."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.local_done = 0
        self.zones: list[_Sent] = []

    def local(self, done: int, total: int) -> None:
        self.local_done = done
        self.report()

    def report(self) -> None:
        self.progress(self.local_done + sum(s.done for s in self.zones), self.total)


def _param(inv: Invocation, name: str) -> Any:
    return next(p for p in inv.command.params if p.name == name)


def _place(zone: str | None) -> str:
    return "the bot's own" if zone is None else f"zone {zone}"


def _what(inv: Invocation, plan: Plan) -> str:
    """The command without the arguments naming devices, for a merged summary: "show ip int br"."""
    words = [inv.command.name]
    for p in inv.command.params:
        if p.name in inv.raw_args and not p.keyword and not p.type.devices_of(inv.args.get(p.name)):
            words.append(inv.raw_args[p.name])
    return " ".join(words)


__all__ = ["Plan", "RunHere", "ZoneDispatcher", "no_worker"]
