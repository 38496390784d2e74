"""The small Redis keys that travel beside Celery's messages, under one prefix:

- `presence:<zone>`: a sorted set of the zone's workers, scored by when each last said
  it was alive; a zone whose newest score is old has no worker answering.
- `lease:<task>`: set by the worker running a task, renewed while it runs and left to
  expire; it holds the progress ("done total"). A task seen running whose lease lapsed
  without a result was on a worker that died.
- `cancel:<task>`: set by the bot; the worker's cancel token polls it.

Nothing secret is written here: names, counts and flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

PREFIX = "netbot:zones:"


@dataclass(frozen=True)
class Lease:
    done: int
    total: int


class ZoneStore:
    def __init__(self, client: Any, *, lease_seconds: float = 3.0, presence_seconds: float = 5.0) -> None:
        self.client = client  # a redis.Redis
        self.lease_seconds = lease_seconds
        self.presence_seconds = presence_seconds

    # -- worker presence -------------------------------------------------------------

    def announce(self, zone: str, worker: str) -> None:
        key = PREFIX + f"presence:{zone}"
        now = time.time()
        with self.client.pipeline() as pipe:
            pipe.zadd(key, {worker: now})
            pipe.zremrangebyscore(key, "-inf", now - 10 * self.presence_seconds)  # long gone
            pipe.execute()

    def withdraw(self, zone: str, worker: str) -> None:
        self.client.zrem(PREFIX + f"presence:{zone}", worker)

    def live_zones(self, zones: list[str]) -> set[str]:
        """Those of `zones` with a worker heard from within presence_seconds (one round trip)."""
        since = time.time() - self.presence_seconds
        with self.client.pipeline(transaction=False) as pipe:
            for zone in zones:
                pipe.zcount(PREFIX + f"presence:{zone}", since, "+inf")
            counts = pipe.execute()
        return {zone for zone, count in zip(zones, counts, strict=True) if count}

    # -- running tasks ---------------------------------------------------------------

    def renew(self, task: str, done: int, total: int) -> bool:
        """Renew the lease of a running task with its progress; True when it was cancelled."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.set(PREFIX + f"lease:{task}", f"{done} {total}", px=int(self.lease_seconds * 1000))
            pipe.exists(PREFIX + f"cancel:{task}")
            _, cancelled = pipe.execute()
        return bool(cancelled)

    def leases(self, tasks: list[str]) -> list[Lease | None]:
        if not tasks:
            return []
        values = self.client.mget([PREFIX + f"lease:{t}" for t in tasks])
        return [_lease(v) for v in values]

    def cancel(self, tasks: list[str], ttl: float) -> None:
        if not tasks:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for task in tasks:
                pipe.set(PREFIX + f"cancel:{task}", "1", px=max(1, int(ttl * 1000)))
            pipe.execute()


def _lease(value: bytes | None) -> Lease | None:
    if value is None:
        return None
    done, _, total = value.decode().partition(" ")
    return Lease(int(done), int(total))
