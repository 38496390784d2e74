"""Device session limits shared by every process of a deployment: the bot and each zone's
workers take their session slots from one Redis, so `sessions_per_device`, the global cap
and monitoring's share hold across processes and hosts.

`SharedSessionGate.session(device, background)` is `DeviceGate.session` (chatbot/limits.py)
with the slots in Redis. It takes, in this order, a slot on the device, (background work)
one of monitoring's share, then one of the global cap: a caller waiting on a busy device
holds no global slot meanwhile, and monitoring never takes every slot from users.

Each limit is a fair, leased counting semaphore, three sorted sets under its key:
  <key>:held     token -> lease expiry: the slots taken
  <key>:queue    token -> ticket: the waiters, first come first served
  <key>:waiting  token -> expiry of that waiter's place in the queue
Every slot and every place in a queue is a lease. A holding process renews its leases
from a background thread (every lease/3); a waiter renews its place each time it looks
again (at least every lease/3). A process that dies (SIGKILL, a lost host) stops renewing,
and its slots and places lapse within the lease: nobody has to clean up after it. Times
are Redis's own clock (TIME inside the scripts), so the hosts' clocks need not agree.

Waiters do not poll: a release (or a waiter leaving, or a lapsed lease swept away) is
published on one channel, and each process's listener thread wakes the waiters on that
limit. A waiter also looks again when the first held lease would lapse (a dead holder
publishes nothing) and when its own place needs renewing.

Why written here rather than taken from a library: redis-py's Lock, python-redis-lock and
pottery's Redlock are mutexes (one holder), not counting semaphores, and none queues its
waiters fairly; redis-semaphore is unmaintained since 2016. The pattern is the fair
semaphore of "Redis in Action" (6.3), with Lua scripts for atomicity (redis-py's
register_script: EVALSHA, and EVAL again after a restart emptied the script cache).

The store failing (down, unreachable, wrong password) raises LimitsStoreError, a type of
its own that callers turn into one line per device; nothing here waits on a store that
does not answer for longer than the socket timeouts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from chatbot.control import NEVER_CANCELLED, CancelToken

log = logging.getLogger(__name__)

DEFAULT_LEASE = 30.0
DEFAULT_WAIT_TIMEOUT = 300.0
DEFAULT_PREFIX = "netbot:limits"
# A store that answers nothing fails a call within these; a brief blip (a restart) is
# ridden over by two quick retries, a longer outage is an error, not a hang.
SOCKET_TIMEOUT = 5.0
RETRY = Retry(ExponentialBackoff(cap=0.25, base=0.05), 2)

# (on_wait) told which limit a session waits on: "device r1", "background share", "global cap".
WaitObserver = Callable[[str], None]


class SessionLimitsError(Exception):
    """A session slot could not be had; str() is one line fit for the user."""


class LimitsStoreError(SessionLimitsError):
    """The shared store of the session limits (Redis) cannot be used."""


class LimitsStoreUnreachable(LimitsStoreError):
    """The store is down, unreachable, or does not answer in time."""


class LimitsStoreAuthFailed(LimitsStoreError):
    """The store refused our credentials (a wrong or missing password)."""


class SessionWaitTimedOut(SessionLimitsError):
    """No slot came free within the wait timeout."""


class SessionWaitCancelled(SessionLimitsError):
    """The work was cancelled while it waited for a slot."""


@dataclass(frozen=True)
class _Limit:
    key: str
    size: int
    label: str  # what a waiter is told it waits on


# Sweep lapsed slots and places, take a place in the queue (once), and take a slot when
# fewer waiters are ahead than slots are free. Returns {1, 0} when held, else {0, ms}:
# how long until the first held lease would lapse (when a dead holder's slot frees).
_TRY_ACQUIRE = """
local held, queue, waiting, tickets = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, size, lease, channel = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local swept = redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', waiting, '-inf', now)
for _, dead in ipairs(gone) do
  redis.call('ZREM', waiting, dead)
  redis.call('ZREM', queue, dead)
end
if swept + #gone > 0 then
  redis.call('PUBLISH', channel, held)
end
if redis.call('ZSCORE', held, token) then
  return {1, 0}
end
if not redis.call('ZSCORE', queue, token) then
  redis.call('ZADD', queue, redis.call('INCR', tickets), token)
end
local ahead = redis.call('ZRANK', queue, token)
if ahead < size - redis.call('ZCARD', held) then
  redis.call('ZREM', queue, token)
  redis.call('ZREM', waiting, token)
  redis.call('ZADD', held, now + lease, token)
  return {1, 0}
end
redis.call('ZADD', waiting, now + lease, token)
local first = redis.call('ZRANGE', held, 0, 0, 'WITHSCORES')
if first[2] then
  return {0, math.max(0, tonumber(first[2]) - now)}
end
return {0, lease}
"""

# Give up a token's slots and places (KEYS: held, queue, waiting of each limit) and wake
# the waiters of each limit where something was given up.
_RELEASE = """
local token, channel = ARGV[1], ARGV[2]
for i = 1, #KEYS, 3 do
  local held = KEYS[i]
  local changed = redis.call('ZREM', held, token)
  changed = changed + redis.call('ZREM', KEYS[i + 1], token)
  redis.call('ZREM', KEYS[i + 2], token)
  if changed > 0 then
    redis.call('PUBLISH', channel, held)
  end
end
return 0
"""

# Push each held lease's expiry on; XX: never bring back a slot already given up. Returns
# the keys whose lease had lapsed (the holder could not reach the store for a whole lease).
_RENEW = """
local lease = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lost = {}
for i = 1, #KEYS do
  local token = ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[i], token) then
    redis.call('ZADD', KEYS[i], 'XX', now + lease, token)
  else
    table.insert(lost, KEYS[i])
  end
end
return lost
"""


class SharedSessionGate:
    """DeviceGate's limits, held in Redis for every process of the deployment.

    `url`: redis:// or rediss:// (TLS), with the password (redis://:PASSWORD@host:port/db).
    `lease`: how long a slot outlives a holder that stopped renewing it (a dead process).
    `wait_timeout`: how long a session waits for its slots before SessionWaitTimedOut.
    Every process sharing limits must use the same url, prefix and sizes."""

    def __init__(self, url: str, *, per_device: int = 1, total: int = 50, background_share: float = 0.5,
                 lease: float = DEFAULT_LEASE, wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
                 prefix: str = DEFAULT_PREFIX) -> None:
        if per_device < 1 or total < 1:
            raise ValueError("per_device and total must be at least 1")
        if lease <= 0 or wait_timeout < 0:
            raise ValueError("lease must be positive and wait_timeout not negative")
        self.per_device = per_device
        self.lease = lease
        self.wait_timeout = wait_timeout
        self._prefix = prefix
        self._total = _Limit(f"{prefix}:total", total, "global cap")
        self._background = _Limit(f"{prefix}:background", max(1, int(total * background_share)), "background share")
        self._client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT,
                                            socket_connect_timeout=SOCKET_TIMEOUT, retry=RETRY)
        self._where = _describe(self._client)
        self._channel = f"{prefix}:released"
        self._tickets = f"{prefix}:tickets"
        self._try_acquire = self._client.register_script(_TRY_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._renew = self._client.register_script(_RENEW)
        self._wakeups = _Wakeups(self._client, self._channel)
        self._leases = _Renewals(self)
        # A forked child (Celery's prefork pool) has none of its parent's threads and
        # holds none of its slots: it starts its own listener and renewals when needed.
        gate = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _start_afresh(gate))

    def _start_afresh(self) -> None:
        self._wakeups = _Wakeups(self._client, self._channel)
        self._leases = _Renewals(self)

    def _device_limit(self, device: str) -> _Limit:
        return _Limit(f"{self._prefix}:device:{device}", self.per_device, f"device {device}")

    def check(self) -> None:
        """Reach the store once (e.g. at a worker's start): LimitsStoreError if unusable."""
        with self._store_errors():
            self._client.ping()

    @contextmanager
    def session(self, device: str, background: bool = False, *, cancel: CancelToken = NEVER_CANCELLED,
                on_wait: WaitObserver | None = None) -> Iterator[None]:
        """Hold a session slot on `device` and one of the global slots (background work:
        one of monitoring's share too) while inside. Raises a SessionLimitsError: the
        store failing, the wait timing out, or `cancel` while waiting."""
        limits = [self._device_limit(device)]
        if background:
            limits.append(self._background)
        limits.append(self._total)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_timeout
        taken: list[_Limit] = []
        try:
            for limit in limits:
                self._acquire(limit, token, deadline, cancel, on_wait)
                taken.append(limit)
                self._leases.hold(token, limit.key)
        except BaseException:
            self._give_up(token, taken, limits)
            raise
        try:
            yield
        finally:
            self._give_up(token, taken, limits)

    def watching(self, cancel: CancelToken) -> CancellableGate:
        """This gate with DeviceGate's exact signature, waits cut by `cancel` (one task's
        token): what a worker puts in the TaskContext of the task it runs."""
        return CancellableGate(self, cancel)

    def _acquire(self, limit: _Limit, token: str, deadline: float, cancel: CancelToken,
                 on_wait: WaitObserver | None) -> None:
        if cancel.cancelled:
            raise SessionWaitCancelled(f"cancelled while waiting for a session slot ({limit.label})")
        if self._try(limit, token)[0]:
            return
        # Busy: from here on, releases wake us, and so does a cancel.
        wake = threading.Event()
        self._wakeups.watch(limit.key, wake)
        forget = cancel.on_cancel(wake.set)
        try:
            if on_wait is not None:
                on_wait(limit.label)
            while True:
                wake.clear()
                if cancel.cancelled:
                    raise SessionWaitCancelled(f"cancelled while waiting for a session slot ({limit.label})")
                held, lapse_ms = self._try(limit, token)
                if held:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SessionWaitTimedOut(f"no session slot came free within {self.wait_timeout:g} s "
                                              f"({limit.label} taken by other sessions)")
                # Look again at the latest when our place needs renewing or a held lease
                # would lapse (its holder may be dead); any release wakes us before.
                wake.wait(min(remaining, self.lease / 3, lapse_ms / 1000 + 0.01))
        finally:
            forget()
            self._wakeups.unwatch(limit.key, wake)

    def _try(self, limit: _Limit, token: str) -> tuple[bool, float]:
        with self._store_errors():
            held, lapse_ms = self._try_acquire(
                keys=[f"{limit.key}:held", f"{limit.key}:queue", f"{limit.key}:waiting", self._tickets],
                args=[token, limit.size, int(self.lease * 1000), self._channel])
        return bool(held), float(lapse_ms)

    def _give_up(self, token: str, taken: list[_Limit], limits: list[_Limit]) -> None:
        """Release the slots taken and leave any queue joined. Best effort: with the store
        unreachable the slots lapse with their leases, and the work already done stands."""
        for limit in taken:
            self._leases.drop(token, limit.key)
        keys = [f"{limit.key}:{part}" for limit in limits for part in ("held", "queue", "waiting")]
        try:
            with self._store_errors():
                self._release(keys=keys, args=[token, self._channel])
        except LimitsStoreError as exc:
            log.warning("session slots not released (they lapse within %g s): %s", self.lease, exc)

    @contextmanager
    def _store_errors(self) -> Iterator[None]:
        try:
            yield
        except redis.AuthenticationError as exc:
            raise LimitsStoreAuthFailed(f"the session-limit store at {self._where} refused the password") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise LimitsStoreUnreachable(f"the session-limit store at {self._where} is unreachable "
                                         f"({type(exc).__name__})") from exc
        except redis.RedisError as exc:
            raise LimitsStoreError(f"the session-limit store at {self._where} failed "
                                   f"({type(exc).__name__})") from exc

    def close(self) -> None:
        """Stop the listener and renewal threads and close the connections."""
        self._wakeups.close()
        self._leases.close()
        self._client.close()


class CancellableGate:
    """A SharedSessionGate seen through one task's cancel token."""

    def __init__(self, gate: SharedSessionGate, cancel: CancelToken) -> None:
        self._gate = gate
        self._cancel = cancel
        self.per_device = gate.per_device

    def session(self, device: str, background: bool = False) -> AbstractContextManager[None]:
        return self._gate.session(device, background, cancel=self._cancel)


def _start_afresh(gate: weakref.ref[SharedSessionGate]) -> None:
    alive = gate()
    if alive is not None:
        alive._start_afresh()


def _describe(client: redis.Redis) -> str:
    """host:port of the store, never its password."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class _Wakeups:
    """One listener thread per gate on the release channel: wakes this process's waiters
    on the limit released. If the store connection breaks it wakes every waiter, whose
    next look then fails with the store's error instead of waiting out its timeout."""

    IDLE_READ = 1.0  # how long one read waits before the thread checks whether to stop

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, key: str, wake: threading.Event) -> None:
        with self._lock:
            self._waiters.setdefault(f"{key}:held", set()).add(wake)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="session-limit-wakeups", daemon=True)
                self._thread.start()
        # A release published before we subscribe would be missed: the waiter looks again
        # after this returns, so wait until subscribed (bounded: the store may be down).
        self._subscribed.wait(SOCKET_TIMEOUT)

    def unwatch(self, key: str, wake: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get(f"{key}:held")
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._waiters[f"{key}:held"]

    def _wake(self, held_key: str | None) -> None:
        with self._lock:
            if held_key is None:
                events = [event for waiting in self._waiters.values() for event in waiting]
            else:
                events = list(self._waiters.get(held_key, ()))
        for event in events:
            event.set()

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self._channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=self.IDLE_READ)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._subscribed.set()
                        self._wake(None)  # releases while we were not subscribed went unheard
                    elif message["type"] == "message":
                        self._wake(message["data"].decode(errors="replace"))
            except redis.RedisError as exc:
                log.debug("session-limit wake-ups lost their connection: %s", type(exc).__name__)
                self._subscribed.clear()
                self._wake(None)
                self._stop.wait(self.IDLE_READ)  # then reconnect; waiters meanwhile renew on their timer
            finally:
                pubsub.close()
        self._subscribed.set()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.IDLE_READ + SOCKET_TIMEOUT)


class _Renewals:
    """The leases this process holds, renewed every lease/3 from one thread while any is held."""

    def __init__(self, gate: SharedSessionGate) -> None:
        self._gate = gate
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], None] = {}  # (token, limit key), in order taken
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def hold(self, token: str, key: str) -> None:
        with self._lock:
            self._held[(token, key)] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="session-limit-renewals", daemon=True)
                self._thread.start()

    def drop(self, token: str, key: str) -> None:
        with self._lock:
            self._held.pop((token, key), None)

    def _run(self) -> None:
        gate = self._gate
        while not self._stop.wait(gate.lease / 3):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                with gate._store_errors():
                    lost = gate._renew(keys=[f"{key}:held" for _, key in held],
                                       args=[int(gate.lease * 1000), *(token for token, _ in held)])
            except LimitsStoreError as exc:
                if not self._failing:
                    log.warning("session slots not renewed (they lapse within %g s unless the store "
                                "comes back): %s", gate.lease, exc)
                self._failing = True
                continue
            self._failing = False
            for key in lost:
                # Still working, but the slot lapsed while the store was unreachable: the
                # limit may be exceeded until this session ends.
                log.warning("a session slot lapsed while its session still runs: %s",
                            key.decode(errors="replace") if isinstance(key, bytes) else key)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=SOCKET_TIMEOUT * 2)
