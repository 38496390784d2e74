"""Tasks hold no process-local state: a cancel and progress reach a task only through its
TaskContext, so the same task code would run unchanged in a worker process."""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatbot.app import build_context
from chatbot.cli import lab_access
from chatbot.config import parse_config
from chatbot.device_work import run_on_devices
from chatbot.lab import Fault

TASKS = Path(__file__).resolve().parent.parent / "tasks"
# The runner's own machinery: a task that imports it depends on living in the bot's process.
RUNNER_MODULES = {"chatbot.jobs", "chatbot.limits", "chatbot.runner", "chatbot.monitoring", "chatbot.bot"}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", [*sorted(TASKS.glob("*.py")), TASKS.parent / "chatbot" / "device_work.py"],
                         ids=lambda p: p.name)
def test_no_task_reaches_into_the_runner(path: Path) -> None:
    """Task code, and the device runner it calls, know the runner only as TaskContext."""
    reached = {name for name in _imported_modules(path)
               if any(name == runner or name.startswith(runner + ".") for runner in RUNNER_MODULES)}
    assert not reached


@pytest.mark.parametrize("path", sorted(p for p in TASKS.glob("*.py") if not p.name.startswith("_")),
                         ids=lambda p: p.name)
def test_public_task_modules_use_only_the_plugin_api(path: Path) -> None:
    """A command module in tasks/ reads like a third-party plugin: of the core it imports
    chatbot.api alone (its own private helpers in tasks/_*.py aside)."""
    core = {name for name in _imported_modules(path) if name == "chatbot" or name.startswith("chatbot.")}
    assert core == {"chatbot.api"}


class WorkerToken:
    """A CancelToken as a worker in another process might implement it (a flag set by
    whatever carries the cancel): nothing of the bot's job runner."""

    def __init__(self) -> None:
        self.flag = False
        self.callbacks: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self.flag

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self.lock:
            if not self.flag:
                self.callbacks.append(callback)
                return lambda: self.callbacks.remove(callback) if callback in self.callbacks else None
        callback()
        return lambda: None

    def cancel(self) -> None:
        with self.lock:
            self.flag = True
            callbacks = list(self.callbacks)
        for callback in callbacks:
            callback()


def _lab_context(lab: Any, **handles: Any) -> Any:
    config = parse_config({"limits": {"device_timeout": 30, "connect_timeout": 5}})
    return build_context(config, lab_access(lab)).for_run(**handles)


def test_a_cancel_reaches_a_task_through_its_context_alone(lab: Any) -> None:
    """No job, no context variable: the token in the context cuts a session that is still
    logging in (the device takes the login and never prompts), and a cancelled run never
    starts its devices."""
    token = WorkerToken()
    ctx = _lab_context(lab, cancel=token)
    lab.set_fault("r6", Fault.HANG)
    lab.devices["r6"].stats.reset()
    outputs: list[Any] = []
    try:
        worker = threading.Thread(target=lambda: outputs.extend(run_on_devices(ctx, ["r6"], "show version")))
        worker.start()
        deadline = time.monotonic() + 10
        while lab.devices["r6"].stats.sessions_now != 1:
            assert time.monotonic() < deadline, "r6's session never opened"
            time.sleep(0.02)
        cut = time.monotonic()
        token.cancel()
        worker.join(10)
        assert not worker.is_alive() and time.monotonic() - cut < 10  # the device timeout is 30 s
        assert len(outputs) == 1 and not outputs[0].ok
    finally:
        lab.set_fault("r6", None)
    again = run_on_devices(ctx, ["r1", "r2"], "show version")
    assert [o.error for o in again] == ["cancelled before it started"] * 2


def test_progress_reaches_the_runner_through_the_context(lab: Any) -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(done: int, total: int) -> None:
        with lock:
            seen.append((done, total))

    outputs = run_on_devices(_lab_context(lab, progress=progress), ["r1", "r2", "r3"], "show version")
    assert all(o.ok for o in outputs)
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]


def test_a_scheduled_check_runs_as_background_work(lab: Any) -> None:
    """Monitoring says "background" through the check's context (its sessions come from
    the background share of the cap), not through a flag of the thread."""
    import asyncio

    from chatbot.checks import CheckKind, Outcome
    from chatbot.testing import make_bot

    seen: list[bool] = []

    def run(ctx: Any, spec: dict[str, Any]) -> dict[str, Outcome]:
        seen.append(ctx.background)
        return {"r1": Outcome(True)}

    bot = make_bot({"limits": {"monitor_min_interval": 1}}, lab=lab)
    bot.monitors.first_run_now = False  # run by hand, not raced by the scheduler
    bot.monitors.kinds["ssh"] = CheckKind("ssh", "recording", (), lambda ctx, targets, options: {}, run)

    async def scenario() -> None:
        await bot.start()
        try:
            added = await bot.handle(_console("!monitor add ssh r1 every 1h"))
            assert added is not None and added.result.status.value == "ok", added
            await bot.monitors.run_now(added.result.summary.split()[1])
        finally:
            await bot.stop()
    asyncio.run(scenario())
    assert seen == [True]
    assert not bot.context.background  # the flag lives in the check's own context only


def _console(text: str) -> Any:
    from chatbot.testing import message

    return message(text)


def test_the_in_process_cancel_flag() -> None:
    from chatbot.control import CancelFlag

    flag = CancelFlag()
    calls: list[str] = []
    flag.on_cancel(lambda: calls.append("first"))
    forget = flag.on_cancel(lambda: calls.append("forgotten"))
    forget()

    def broken() -> None:
        raise OSError("the session is already gone")
    flag.on_cancel(broken)
    assert not flag.cancelled
    flag.cancel()  # a failing callback does not stop the others or the cancel
    assert flag.cancelled and calls == ["first"]
    flag.on_cancel(lambda: calls.append("late"))  # registered after the cancel: called at once
    assert calls == ["first", "late"]
