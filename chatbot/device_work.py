"""Running one command on many devices through Nornir + nornir-scrapli.

Each device gets its own session for the command and the session is closed at once:
memory stays flat however many devices a command touches, and no two commands share a
half-used channel. Failures come back per device as one readable line.

A session asks the device for no more than the command needs: IOS and IOS-XE devices
get the lean session of chatbot/ios_session.py, and no session types `exit` before it
closes (closing the SSH channel ends the device's session; scrapli's on_close would
find the prompt once more and type `exit`: two round trips for nothing).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nornir.core.task import Result as NornirResult
from nornir.core.task import Task

from chatbot import device_failures, ios_session
from chatbot.context import TaskContext
from chatbot.control import Progress
from chatbot.results import Status
from chatbot.ssh_transport import NetbotTransport, watching_sockets

CONNECTION = "scrapli"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceOutput:
    device: str
    ok: bool
    output: str = ""
    error: str = ""
    parsed: Any = None
    seconds: float = 0.0


def run_on_devices(ctx: TaskContext, devices: list[str], command: str, *,
                   textfsm: bool = False, timeout: float | None = None) -> list[DeviceOutput]:
    """Send `command` (already validated) to each device; one DeviceOutput per device, in order.

    A cancel (ctx.cancel) keeps queued devices from starting and cuts the sessions in
    flight; each finished device is reported through ctx.progress."""
    # A platform no driver handles fails here, once, before any connection is tried.
    refused = {name: problem for name in devices
               if (problem := device_failures.unsupported_platform(ctx.inventory.devices[name].platform))}
    wanted = set(devices) - set(refused)
    finished = _Tally(len(wanted), ctx.progress)
    nr = ctx.inventory.nornir.filter(filter_func=lambda host: host.name in wanted)
    # on_failed: Nornir otherwise skips, for good, every host that failed once.
    results = nr.run(task=_send_command, command=command, ctx=ctx, textfsm=textfsm, finished=finished,
                     timeout=timeout or ctx.config.limits.operation_timeout,
                     name=command, raise_on_error=False, on_failed=True)
    outputs = []
    for name in devices:
        if name in refused:
            outputs.append(DeviceOutput(name, False, error=describe_failure(refused[name], ctx, name)))
            continue
        multi = results.get(name)
        if multi is None:
            outputs.append(DeviceOutput(name, False, error="not run"))
            continue
        first = multi[0]
        if first.exception is not None:
            error = describe_failure(first.exception, ctx, name)
            log.warning("%s: %r failed: %s (%s)", name, command, error, type(first.exception).__name__)
            outputs.append(DeviceOutput(name, False, error=error))
        else:
            outputs.append(first.result)
    return outputs


class _Tally:
    """Devices finished so far, counted from Nornir's worker threads."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total, self.progress = total, progress
        self._done = 0
        self._lock = threading.Lock()

    def one_more(self) -> None:
        with self._lock:
            self._done += 1
            done = self._done
        self.progress(done, self.total)


def _send_command(task: Task, command: str, ctx: TaskContext, textfsm: bool,
                  timeout: float, finished: _Tally) -> NornirResult:
    try:
        return _send_one(task, command, ctx, textfsm, timeout)
    finally:
        finished.one_more()


def _send_one(task: Task, command: str, ctx: TaskContext, textfsm: bool, timeout: float) -> NornirResult:
    name = task.host.name
    cancel = ctx.cancel
    if cancel.cancelled:  # queued devices of a cancelled job never start
        return NornirResult(host=task.host, result=DeviceOutput(name, False, error="cancelled before it started"))
    with ctx.gate.session(name, background=ctx.background):
        if cancel.cancelled:
            return NornirResult(host=task.host, result=DeviceOutput(name, False, error="cancelled before it started"))
        started = time.monotonic()
        forget: list[Callable[[], None]] = []  # the cancel callbacks of this session
        try:
            # Cut-able from the moment TCP connects: a device may take the login and
            # then hold scrapli's open (no prompt) until the device timeout.
            with watching_sockets(lambda sock: forget.append(cancel.on_cancel(_socket_cutter(sock)))):
                conn = _open_session(task)
            forget.append(cancel.on_cancel(_session_cutter(conn)))
            response = _send(conn, command, timeout, lean=ios_session.is_lean_platform(task.host.platform))
        finally:
            for unregister in forget:
                unregister()
            if CONNECTION in task.host.connections:
                _close_quietly(task)
    elapsed = time.monotonic() - started
    if response.failed:
        out = DeviceOutput(task.host.name, False, response.result,
                           error=f"device rejected the command: {_device_error(response.result)}",
                           seconds=elapsed)
    else:
        parsed = response.textfsm_parse_output() if textfsm else None
        out = DeviceOutput(task.host.name, True, response.result, parsed=parsed or None, seconds=elapsed)
    return NornirResult(host=task.host, result=out)


def _open_session(task: Task) -> Any:
    """The host's scrapli connection, opened for one command (see the module docstring)."""
    extras = dict(task.host.get_connection_parameters(CONNECTION).extras or {})
    extras["on_close"] = _close_without_exit
    if ios_session.is_lean_platform(task.host.platform):
        extras["on_open"] = ios_session.open_for_show
    task.host.open_connection(CONNECTION, task.nornir.config, extras=extras)
    return task.host.connections[CONNECTION].connection


def _close_without_exit(conn: Any) -> None:
    """scrapli on_close: nothing to type; the transport's close ends the session."""


def _send(conn: Any, command: str, timeout: float, *, lean: bool) -> Any:
    if isinstance(conn.transport, NetbotTransport):
        # The transport bounds each answer in this thread (chatbot/ssh_transport.py);
        # scrapli's timeout_ops would start a thread for every read.
        conn.transport.operation_timeout = timeout
        return ios_session.send_show(conn, command) if lean else conn.send_command(command)
    return conn.send_command(command, timeout_ops=timeout)


def _session_cutter(conn: Any) -> Callable[[], None]:
    """How a cancel cuts a session from another thread: shut the TCP socket down (the
    reading thread then fails at once); closing the libssh2 session itself from a second
    thread is not safe. Transports without a socket (system ssh) are closed."""
    sock = getattr(getattr(conn.transport, "socket", None), "sock", None)
    if sock is not None:
        return _socket_cutter(sock)
    return conn.transport.close


def _socket_cutter(sock: socket.socket) -> Callable[[], None]:
    def cut() -> None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)
    return cut


def _close_quietly(task: Task) -> None:
    try:
        task.host.close_connection(CONNECTION)
    except Exception:  # a dropped session may fail to close; it is gone either way
        task.host.connections.pop(CONNECTION, None)


def _device_error(output: str) -> str:
    """The device's own error line ("% Invalid input ..."); never other output, which
    could hold anything, since this line goes into the summary."""
    for line in output.splitlines():
        if line.strip().startswith("%"):
            return line.strip()[:200]
    return "the command failed"


def describe_failure(exc: BaseException, ctx: TaskContext, device: str) -> str:
    """One line a network engineer understands, for any session failure (by exception type)."""
    return device_failures.describe_failure(exc, device, ctx.config.limits.device_timeout)


SUMMARY_FAILURES = 5  # failures a summary names; any further ones are listed below it


def outcome_summary(what: str, outputs: list[DeviceOutput]) -> tuple[Status, str]:
    """'show version on 3 devices: 2 ok, 1 failed (r3: authentication failed)'."""
    bad = [o for o in outputs if not o.ok]
    good = len(outputs) - len(bad)
    if len(outputs) == 1:
        o = outputs[0]
        if o.ok:
            return Status.OK, f"{what} on {o.device}"
        return Status.FAILED, f"{what} on {o.device} failed: {o.error}"
    status = Status.OK if not bad else Status.PARTIAL if good else Status.FAILED
    text = f"{what} on {len(outputs)} devices: {good} ok"
    if bad:
        shown = "; ".join(f"{o.device}: {o.error}" for o in bad[:SUMMARY_FAILURES])
        more = f"; and {len(bad) - SUMMARY_FAILURES} more" if len(bad) > SUMMARY_FAILURES else ""
        text += f", {len(bad)} failed ({shown}{more})"
    return status, text


def failures_not_in_summary(outputs: list[DeviceOutput]) -> list[DeviceOutput]:
    """The failed devices whose error outcome_summary left out: the only failures a reply
    should list again under the summary, so that every error is printed once."""
    if len(outputs) == 1:
        return []
    return [o for o in outputs if not o.ok][SUMMARY_FAILURES:]


def device_outcomes(outputs: list[DeviceOutput]) -> dict[str, str]:
    """Per device, "ok" or the failure line: what the audit log records."""
    return {o.device: "ok" if o.ok else o.error for o in outputs}
