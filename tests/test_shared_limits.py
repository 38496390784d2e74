"""The session limits shared through Redis (chatbot/shared_limits.py), against a real
Redis server (tests/redis_server.py) and, where the point is "across processes", real
separate processes (tests/gate_holder.py)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import RedisServer

from chatbot.control import CancelFlag
from chatbot.limits import DeviceGate, SessionGate
from chatbot.shared_limits import (
    LimitsStoreAuthFailed,
    LimitsStoreUnreachable,
    SessionWaitCancelled,
    SessionWaitTimedOut,
    SharedSessionGate,
)

HOLDER = Path(__file__).with_name("gate_holder.py")
LINE_TIMEOUT = 20.0  # a holder's next line: generous, the machine is shared


class Holder:
    """A gate_holder.py process, its output lines read by a thread into a queue."""

    def __init__(self, settings: dict[str, Any], *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, str(HOLDER), args[0], json.dumps(settings), *args[1:]],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("<exited>")

    def next_line(self, timeout: float = LINE_TIMEOUT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the holder within {timeout} s") from None

    def expect(self, word: str) -> str:
        line = self.next_line()
        assert line.split(" ", 1)[0] == word, f"expected {word!r}, got {line!r}"
        return line.split(" ", 1)[1] if " " in line else ""

    def nothing_more_yet(self) -> bool:
        return self.lines.empty()

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def release(self) -> int:
        """Release; the time it left its session."""
        self.send("release")
        return int(self.expect("released"))

    def finish(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture()
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.finish()


def settings(url: str, prefix: str, **sizes: Any) -> dict[str, Any]:
    return {"url": url, "prefix": prefix, "lease": 2.0, "wait_timeout": 30.0, **sizes}


def unique_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


def hold(holders: list[Holder], config: dict[str, Any], device: str, *extra: str) -> Holder:
    holder = Holder(config, "hold", device, *extra)
    holders.append(holder)
    return holder


def test_per_device_limit_holds_across_processes(redis_url: str, holders: list[Holder]) -> None:
    one = settings(redis_url, unique_prefix(), per_device=1)
    first = hold(holders, one, "r1")
    first.expect("entered")
    second = hold(holders, one, "r1")
    assert second.expect("waiting") == "device r1"
    assert second.nothing_more_yet()
    left = first.release()
    entered = int(second.expect("entered"))
    assert entered >= left  # the second session began only after the first had ended

    # The same processes with two sessions allowed per device: the second enters at once.
    two = settings(redis_url, unique_prefix(), per_device=2)
    third = hold(holders, two, "r1")
    third.expect("entered")
    fourth = hold(holders, two, "r1")
    fourth.expect("entered")


def overlaps(stays: list[tuple[int, int]]) -> int:
    ordered = sorted(stays)
    return sum(1 for (_, left), (entered, _) in zip(ordered, ordered[1:], strict=False) if entered < left)


def stays_of_two_processes(config: dict[str, Any], holders: list[Holder]) -> list[tuple[int, int]]:
    pair = [Holder(config, "cycles", "r1", "8", "0.03") for _ in range(2)]
    holders.extend(pair)
    for holder in pair:
        holder.expect("ready")
    for holder in pair:
        holder.send("go")
    stays = []
    for holder in pair:
        for _ in range(8):
            entered, left = holder.expect("stay").split()
            stays.append((int(entered), int(left)))
    return stays


def test_sessions_on_one_device_never_overlap_across_processes(redis_url: str, holders: list[Holder]) -> None:
    stays = stays_of_two_processes(settings(redis_url, unique_prefix(), per_device=1), holders)
    assert len(stays) == 16
    assert overlaps(stays) == 0
    # The same load with two allowed per device does overlap: the check above can fail.
    assert overlaps(stays_of_two_processes(settings(redis_url, unique_prefix(), per_device=2), holders)) > 0


def test_global_cap_holds_across_processes(redis_url: str, holders: list[Holder]) -> None:
    config = settings(redis_url, unique_prefix(), per_device=1, total=2)
    first, second = hold(holders, config, "r1"), hold(holders, config, "r2")
    first.expect("entered")
    second.expect("entered")
    third = hold(holders, config, "r3")
    assert third.expect("waiting") == "global cap"
    assert third.nothing_more_yet()
    left = second.release()
    assert int(third.expect("entered")) >= left


def test_background_share_holds_across_processes(redis_url: str, holders: list[Holder]) -> None:
    # 4 sessions in all, half of them for background work (monitoring).
    config = settings(redis_url, unique_prefix(), per_device=1, total=4, background_share=0.5)
    checks = [hold(holders, config, device, "background") for device in ("r1", "r2")]
    for check in checks:
        check.expect("entered")
    third_check = hold(holders, config, "r3", "background")
    assert third_check.expect("waiting") == "background share"
    user = hold(holders, config, "r4")  # interactive work is not held back by the share
    user.expect("entered")
    assert third_check.nothing_more_yet()
    left = checks[0].release()
    assert int(third_check.expect("entered")) >= left


def test_a_killed_holder_frees_its_slot_after_the_lease(redis_url: str, holders: list[Holder]) -> None:
    lease = 1.0
    prefix = unique_prefix()
    holder = hold(holders, {**settings(redis_url, prefix), "lease": lease}, "r1")
    holder.expect("entered")
    os.kill(holder.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    holder.process.wait(timeout=10)
    waited: list[str] = []
    gate = SharedSessionGate(redis_url, prefix=prefix, lease=lease, wait_timeout=20.0)
    try:
        with gate.session("r1", on_wait=waited.append):
            entered_after = time.monotonic() - killed_at
    finally:
        gate.close()
    assert waited == ["device r1"]  # the dead holder's slot was still taken at first...
    # ...and lapsed with its lease: renewed at most lease/3 before the kill, so it had at
    # least 2/3 of a lease left, and at most a whole one (plus a shared machine's slack).
    assert lease / 2 <= entered_after <= lease + 2.0


def test_renewal_keeps_a_long_holders_slot(redis_url: str, holders: list[Holder]) -> None:
    lease = 0.6
    prefix = unique_prefix()
    holder = hold(holders, {**settings(redis_url, prefix), "lease": lease}, "r1")
    holder.expect("entered")
    gate = SharedSessionGate(redis_url, prefix=prefix, lease=lease, wait_timeout=5 * lease)
    try:
        # Five leases long, and the live holder's slot never lapsed.
        with pytest.raises(SessionWaitTimedOut) as timed_out, gate.session("r1"):
            pass
        assert "no session slot came free within 3 s (device r1 taken by other sessions)" == str(timed_out.value)
        holder.release()
        with gate.session("r1"):  # the timed-out wait left no place in the queue behind
            pass
    finally:
        gate.close()


def waiting_thread(gate: SharedSessionGate, device: str, **kwargs: Any) -> tuple[threading.Thread, threading.Event,
                                                                                  list[BaseException | str]]:
    """A thread that enters a session on `device` and leaves at once; what happened, and an
    event set when it has to wait."""
    waits = threading.Event()
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            with gate.session(device, on_wait=lambda limit: waits.set(), **kwargs):
                outcome.append("entered")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, waits, outcome


def test_cancel_while_waiting_stops_the_wait_and_leaves_the_queue(redis_url: str) -> None:
    prefix = unique_prefix()
    # A long lease: the waiter's own look-again timer (lease/3) is far off.
    gate = SharedSessionGate(redis_url, prefix=prefix, lease=30.0, wait_timeout=60.0)
    store = redis.Redis.from_url(redis_url)
    try:
        with gate.session("r1"):
            cancel = CancelFlag()
            thread, waits, outcome = waiting_thread(gate, "r1", cancel=cancel)
            assert waits.wait(10)
            assert store.zcard(f"{prefix}:device:r1:queue") == 1
            cancelled_at = time.monotonic()
            cancel.cancel()
            thread.join(10)
            assert time.monotonic() - cancelled_at < 1.0  # woken by the cancel, not by a timer
            assert len(outcome) == 1 and isinstance(outcome[0], SessionWaitCancelled), outcome
            assert store.zcard(f"{prefix}:device:r1:queue") == 0
            assert store.zcard(f"{prefix}:device:r1:waiting") == 0
    finally:
        gate.close()
        store.close()


def test_waiters_enter_in_the_order_they_came(redis_url: str) -> None:
    gate = SharedSessionGate(redis_url, prefix=unique_prefix(), lease=2.0, wait_timeout=30.0)
    order: list[str] = []
    try:
        with gate.session("r1"):
            threads = []
            for name in ("first", "second", "third"):
                waits = threading.Event()

                def enter(name: str = name, waits: threading.Event = waits) -> None:
                    with gate.session("r1", on_wait=lambda limit: waits.set()):
                        order.append(name)

                threads.append(threading.Thread(target=enter, daemon=True))
                threads[-1].start()
                assert waits.wait(10)
        for thread in threads:
            thread.join(10)
        assert order == ["first", "second", "third"]
    finally:
        gate.close()


def test_store_stopped_while_waiting_fails_the_waiter_quickly() -> None:
    with RedisServer() as server:
        gate = SharedSessionGate(server.url, prefix=unique_prefix(), lease=30.0, wait_timeout=60.0)
        try:
            with gate.session("r1"):
                thread, waits, outcome = waiting_thread(gate, "r1")
                assert waits.wait(10)
                stopped_at = time.monotonic()
                server.stop()
                thread.join(10)
                # Woken by the lost connection: not by its 10 s look-again timer, nor the 60 s timeout.
                assert time.monotonic() - stopped_at < 5.0
                assert len(outcome) == 1 and isinstance(outcome[0], LimitsStoreUnreachable), outcome
            # Leaving a session with the store gone is no error: the slot lapses with its lease.
        finally:
            gate.close()


def test_store_down_when_acquiring_is_a_quick_typed_error() -> None:
    with RedisServer() as server:
        gate = SharedSessionGate(server.url, prefix=unique_prefix())
        try:
            server.stop()
            started = time.monotonic()
            with pytest.raises(LimitsStoreUnreachable) as unreachable, gate.session("r1"):
                pass
            assert time.monotonic() - started < 3.0
            message = str(unreachable.value)
            assert message == f"the session-limit store at 127.0.0.1:{server.port} is unreachable (ConnectionError)"
            assert server.password not in message
        finally:
            gate.close()


def test_the_shared_gate_serves_where_a_device_gate_does(redis_url: str) -> None:
    shared = SharedSessionGate(redis_url, prefix=unique_prefix(), per_device=2)
    try:
        gates: list[SessionGate] = [DeviceGate(per_device=2), shared, shared.watching(CancelFlag())]  # mypy checks
        for gate in gates:
            assert gate.per_device == 2
            with gate.session("r1", background=True), gate.session("r1"):
                pass
    finally:
        shared.close()


def test_wrong_password_is_a_clear_error(redis_server: RedisServer) -> None:
    gate = SharedSessionGate(redis_server.url_with_password("not-the-password"), prefix=unique_prefix())
    try:
        for attempt in (gate.check, lambda: gate.session("r1").__enter__()):
            with pytest.raises(LimitsStoreAuthFailed) as refused:
                attempt()
            assert str(refused.value) == f"the session-limit store at 127.0.0.1:{redis_server.port} refused the password"
    finally:
        gate.close()
