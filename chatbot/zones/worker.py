"""A zone's worker: `chatbot worker --zone NAME --config FILE`.

It runs inside the zone, connects out to the broker, takes task messages from its
zone's queue only, and trusts none of them: a message must carry a valid signature
(checked by Celery before this code sees it), name a command of the worker's own
registry, pass the worker's own argument checks and allowlist ([show] in the worker's
config), and touch only devices of the worker's own inventory that sit in its zone.
It holds that zone's device credentials (its own [inventory] section); the bot holds
none of them. What it sends back is the task's Result as plain data.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatbot.args import Targets
from chatbot.commands import Registry
from chatbot.config import Config
from chatbot.context import TaskContext
from chatbot.control import CancelFlag
from chatbot.errors import ArgumentError, TaskFailure, UserError
from chatbot.inventory import DeviceInventory
from chatbot.results import Result, Status, failed, invalid
from chatbot.router import parse_values
from chatbot.shared_limits import LimitsStoreError, SharedSessionGate
from chatbot.zones.store import ZoneStore
from chatbot.zones.wire import WireError, ZoneRequest, result_to_data

log = logging.getLogger(__name__)


def zone_inventory(inventory: DeviceInventory, zone: str) -> DeviceInventory:
    """The devices of `zone` only: a worker cannot even name another zone's device."""
    nr = inventory.nornir.filter(filter_func=lambda host: inventory.devices[host.name].zone == zone)
    return DeviceInventory(nr)


@dataclass
class _Running:
    """Progress of one task, read by its lease renewals."""

    done: int = 0
    total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, done: int, total: int) -> None:
        with self.lock:
            self.done, self.total = done, total


class ZoneExecutor:
    """Checks a request against this worker's own rules and runs it."""

    def __init__(self, zone: str, context: TaskContext, registry: Registry, store: ZoneStore | None) -> None:
        self.zone = zone
        self.context = context
        self.registry = registry
        self.store = store

    def execute(self, data: object, task_id: str) -> dict[str, Any]:
        return result_to_data(self.run(data, task_id))

    def run(self, data: object, task_id: str) -> Result:
        try:
            request = ZoneRequest.from_data(data)
        except (WireError, TypeError) as err:
            log.warning("zone %s: task %s refused: %s", self.zone, task_id, err)
            return invalid(f"refused by zone {self.zone}'s worker: {err}")
        try:
            handler, args = self.check(request)
        except ArgumentError as err:
            log.warning("zone %s: job %s (%s) refused: %s", self.zone, request.job, request.command, err)
            return invalid(f"refused by zone {self.zone}'s worker: {err}")
        if time.time() >= request.deadline:
            return failed(f"zone {self.zone}: the work arrived after its deadline")
        log.info("zone %s: job %s: %s on %d devices", self.zone, request.job, request.command, len(request.devices))
        return self._run_leased(request, handler, args, task_id)

    def check(self, request: ZoneRequest) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The handler and its arguments, parsed again by this worker's own rules."""
        if request.zone != self.zone:
            raise ArgumentError(f"the request is for zone {request.zone[:40]}, this worker serves {self.zone}")
        cmd = self.registry.lookup(request.command)
        if cmd is None or cmd.inline or cmd.name != request.command:
            raise ArgumentError(f"unknown command '{request.command[:40]}'")
        devices = self.context.inventory.devices
        outside = [name for name in request.devices if name not in devices]
        if outside:
            listed = ", ".join(n[:40] for n in outside[:5]) + (" and more" if len(outside) > 5 else "")
            raise ArgumentError(f"{listed}: not a device of zone {self.zone}")
        params = {p.name: p for p in cmd.params}
        unknown = (set(request.raw_args) | set(request.targets)) - set(params)
        if unknown:
            raise ArgumentError(f"'{request.command}' has no argument {sorted(unknown)[0][:40]}")
        parsed: dict[str, Any] = {}
        for name, names in request.targets.items():
            if not isinstance(params[name].type, Targets):
                raise ArgumentError(f"argument {name} of '{request.command}' is not a list of devices")
            if not names:
                raise ArgumentError("no targets given")
            parsed[name] = [self.context.inventory.device(n).name for n in dict.fromkeys(names)]
        values, touched = parse_values(cmd, request.raw_args, self.context, parsed=parsed)
        stray = [d for d in touched if d not in request.devices]
        if stray:  # the arguments name a device the request did not declare
            raise ArgumentError(f"{stray[0][:40]} is not among the request's devices")
        return cmd.handler, values

    def _run_leased(self, request: ZoneRequest, handler: Callable[..., Any], args: dict[str, Any],
                    task_id: str) -> Result:
        cancel = CancelFlag()
        running = _Running(total=len(request.devices))
        stop = threading.Event()
        renewals = threading.Thread(target=self._renew, args=(task_id, request, running, cancel, stop),
                                    name=f"lease-{task_id[:8]}", daemon=True)
        if self.store is not None:
            self._renew_once(task_id, request, running, cancel)  # a cancel that came first stops it here
            renewals.start()
        try:
            ctx = self.context.for_run(cancel=cancel, progress=running.report, background=request.background)
            if isinstance(ctx.gate, SharedSessionGate):
                ctx.gate = ctx.gate.watching(cancel)  # a cancel also ends a wait for a slot
            return _call(handler, ctx, args, request.command)
        finally:
            stop.set()
            if renewals.is_alive():
                renewals.join()
            if self.store is not None:
                self._renew_once(task_id, request, running, cancel)  # the final count, for the bot's progress

    def _renew(self, task_id: str, request: ZoneRequest, running: _Running, cancel: CancelFlag,
               stop: threading.Event) -> None:
        assert self.store is not None
        interval = self.store.lease_seconds / 3
        while not stop.wait(interval):
            self._renew_once(task_id, request, running, cancel)

    def _renew_once(self, task_id: str, request: ZoneRequest, running: _Running, cancel: CancelFlag) -> None:
        assert self.store is not None
        with running.lock:
            done, total = running.done, running.total
        try:
            cancelled = self.store.renew(task_id, done, total)
        except Exception as err:  # the store unreachable for a moment: the work goes on
            log.warning("zone %s: cannot renew the lease of task %s: %s", self.zone, task_id, type(err).__name__)
            cancelled = False
        if cancelled or time.time() >= request.deadline:
            cancel.cancel()


def _call(handler: Callable[..., Any], ctx: TaskContext, args: dict[str, Any], name: str) -> Result:
    """As the bot's runner calls a task: every failure becomes a Result."""
    try:
        if asyncio.iscoroutinefunction(handler):
            result = asyncio.run(handler(ctx, **args))
        else:
            result = handler(ctx, **args)
    except UserError as err:
        return invalid(str(err))
    except TaskFailure as err:
        return failed(str(err))
    except Exception:
        ref = secrets.token_hex(4)
        log.exception("command %s failed (ref %s)", name, ref)
        return Result(Status.ERROR, f"{name} failed inside the worker (reference {ref}); "
                                    "the error is in the worker's log")
    if not isinstance(result, Result):
        return Result(Status.ERROR, f"{name} returned nothing usable")
    return result


# -- the worker process ----------------------------------------------------------------


def worker_name(zone: str) -> str:
    return f"{zone}-{os.getpid()}@{socket.gethostname()}"


def build_worker(config: Config, zone: str) -> tuple[Any, ZoneExecutor, ZoneStore]:
    """The Celery app with the zone's task registered, and what runs it."""
    import redis
    from nornir.plugins.runners import ThreadedRunner

    from chatbot.app import build_context
    from chatbot.plugins import load_registry
    from chatbot.zones.celery_app import make_app, store_url
    from chatbot.zones.wire import TASK_NAME

    cfg = config.workers
    if cfg is None:
        raise UserError("a worker needs a [workers] section (the broker and the signing key)")
    context = build_context(config)
    inventory = zone_inventory(context.inventory, zone)
    if not inventory.devices:
        zones = ", ".join(sorted(context.inventory.zones())) or "none"
        raise UserError(f"zone {zone}: no device of the inventory sits in it (zones: {zones})")
    # The worker's share of the session cap, spread over the messages it runs at once:
    # more threads would only queue for the shared slots, each a Redis round trip.
    threads = max(1, math.ceil(config.limits.workers / cfg.concurrency))
    context.inventory = DeviceInventory(inventory.nornir.with_runner(ThreadedRunner(num_workers=threads)))
    context.gate = _session_gate(config, store_url(cfg))
    store = ZoneStore(redis.Redis.from_url(store_url(cfg), socket_timeout=5, socket_connect_timeout=3),
                      lease_seconds=cfg.lease_seconds, presence_seconds=cfg.presence_seconds)
    executor = ZoneExecutor(zone, context, load_registry(), store)
    app = make_app(cfg)

    @app.task(name=TASK_NAME, bind=True)
    def run_in_zone(task: Any, data: object) -> dict[str, Any]:
        return executor.execute(data, task.request.id)

    return app, executor, store


def _session_gate(config: Config, url: str) -> SharedSessionGate:
    """The session limits of the whole deployment, held in the broker's Redis: two
    workers of one zone never open more sessions to a device than sessions_per_device."""
    limits = config.limits
    gate = SharedSessionGate(url, per_device=limits.sessions_per_device, total=limits.workers,
                             wait_timeout=limits.command_timeout)
    try:
        gate.check()
    except LimitsStoreError as err:
        raise UserError(f"[workers] the broker's store: {err}") from None
    return gate


def _raise_open_files_limit() -> None:
    """Each session in flight holds a socket to its device and one to Redis (the shared
    gate): the usual soft limit of 1024 open files is short of a few hundred sessions."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_worker(config: Config, zone: str, *, log_level: str = "WARNING") -> int:
    _raise_open_files_limit()
    app, executor, store = build_worker(config, zone)
    # Celery's trace logs every task's return value at INFO: device output has no place in a log.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    cfg = config.workers
    assert cfg is not None
    name = worker_name(zone)
    stop = threading.Event()
    presence = threading.Thread(target=_announce, args=(store, zone, name, stop), name="presence", daemon=True)
    from celery.signals import worker_ready

    from chatbot.zones.wire import queue_of

    # The zone counts as served once the worker consumes its queue, not before.
    worker_ready.connect(lambda **_: presence.start(), weak=False)

    worker = app.Worker(hostname=name, queues=[queue_of(zone)], concurrency=cfg.concurrency, pool="threads",
                        without_gossip=True, without_mingle=True, without_heartbeat=True,
                        loglevel=log_level, quiet=True)
    try:
        worker.start()
    finally:
        stop.set()
        try:
            store.withdraw(zone, name)
        except Exception:  # the broker gone: the presence ages out by itself
            pass
    return int(worker.exitcode or 0)


def _announce(store: ZoneStore, zone: str, name: str, stop: threading.Event) -> None:
    """Say the zone has a live worker, a few times within each presence period."""
    while True:
        try:
            store.announce(zone, name)
        except Exception as err:
            log.warning("zone %s: cannot reach the broker's store: %s", zone, type(err).__name__)
        if stop.wait(store.presence_seconds / 3):
            return
