"""The interactive terminal chat, driven through prompt_toolkit's pipe input as a
person would type: history, completion, commands side by side, Ctrl-C, alerts and log
lines above the prompt. The bot works against the session's lab over real SSH."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output.plain_text import PlainTextOutput

from adapters.console import ConsoleChat
from adapters.console_completion import CommandCompleter
from chatbot.testing import sample_bot

UP, TAB, CTRL_C, CTRL_D = "\x1b[A", "\t", "\x03", "\x04"


class Terminal:
    """A running ConsoleChat with a keyboard (pipe) and a screen (plain text)."""

    def __init__(self, chat: ConsoleChat, keys: PipeInput, screen: io.StringIO) -> None:
        self.chat = chat
        self.keys = keys
        self.screen = screen
        self.task: asyncio.Task[int] | None = None

    def type(self, text: str) -> None:
        self.keys.send_text(text)

    async def until(self, what: str | Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until `what` is on the screen (or the callable returns something true)."""
        deadline = time.monotonic() + timeout
        while True:
            found = what() if callable(what) else (what in self.screen.getvalue())
            if found:
                return found
            assert self.task is not None
            if self.task.done():
                self.task.result()  # the chat ended: its exception, or a clear failure
                raise AssertionError(f"the chat ended before {what!r}:\n{self.screen.getvalue()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what!r} within {timeout} s:\n{self.screen.getvalue()[-3000:]}")
            await asyncio.sleep(0.02)

    def line(self) -> str:
        """What is typed at the prompt right now."""
        session = self.chat.session
        return session.default_buffer.text if session is not None else ""

    def after(self, mark: int) -> str:
        return self.screen.getvalue()[mark:]


@contextmanager
def terminal(bot: Any, tmp_path: Path, **options: Any) -> Iterator[Terminal]:
    with create_pipe_input() as keys:
        screen = io.StringIO()
        with create_app_session(input=keys, output=PlainTextOutput(screen)):
            chat = ConsoleChat(bot, interactive=True, history_file=tmp_path / "state" / "netbot" / "history",
                               **options)
            yield Terminal(chat, keys, screen)


@pytest.fixture(scope="module")
def lab():  # type: ignore[no-untyped-def]
    """This module's own lab: sessions these tests hang and cancel must not linger in
    the session's shared lab, whose session counts other tests measure."""
    from chatbot.lab import LabThread

    with LabThread(devices=3, delay=0.01) as running:
        yield running


@pytest.fixture()
def slow_lab_bot(lab, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A bot on the shared lab whose devices may stay silent for a minute, so a hung
    device is a command that runs until it is cancelled."""
    from chatbot.app import build_bot
    from chatbot.cli import lab_access
    from chatbot.config import parse_config

    config = parse_config({"bot": {"database": f"sqlite:///{tmp_path}/bot.sqlite"},
                           "limits": {"device_timeout": 60, "connect_timeout": 3, "command_timeout": 120}})
    bot = build_bot(config, lab_access(lab))
    yield bot
    for name in list(lab.devices) + ["apic1"]:
        lab.set_fault(name, None)


def test_history_completion_and_log_lines(slow_lab_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    terminal_log = logging.StreamHandler(sys.stderr)  # as `chatbot` sets it up: the log to the terminal
    root.addHandler(terminal_log)

    async def scenario(t: Terminal) -> None:
        t.task = asyncio.create_task(t.chat.run())
        await t.until("type help for commands")
        t.type("devices group:core\r")
        await t.until("3 devices matching 'group:core'")
        t.type(UP)  # the last command comes back from the history
        await t.until(lambda: t.line() == "devices group:core")
        t.type("\r")
        await t.until(lambda: t.screen.getvalue().count("3 devices matching 'group:core'") == 2)

        t.type("sh" + TAB)  # command words, then the command's words, then targets
        await t.until(lambda: t.line() == "show")
        t.type(" ver" + TAB)
        await t.until(lambda: t.line() == "show version")
        t.type(" group:c" + TAB)
        await t.until(lambda: t.line() == "show version group:core")
        t.type("\r")
        await t.until("show version on 3 devices: 3 ok")

        logging.getLogger("chatbot.test").warning("a log line above the prompt")
        await t.until("a log line above the prompt")
        t.type(CTRL_D)
        assert await t.task == 0

    with terminal(slow_lab_bot, tmp_path) as t:
        try:
            asyncio.run(scenario(t))
        finally:
            root.removeHandler(terminal_log)
    assert terminal_log.stream is sys.stderr  # the log goes back to the terminal afterwards
    history = (tmp_path / "state" / "netbot" / "history")
    assert history.stat().st_mode & 0o077 == 0
    assert "+show version group:core" in history.read_text().splitlines()


def test_slow_commands_run_side_by_side_and_ctrl_c_cancels(slow_lab_bot, lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from chatbot.lab import Fault

    lab.set_fault("r1", Fault.HANG)
    lab.set_fault("r2", Fault.HANG)

    async def scenario(t: Terminal) -> None:
        t.task = asyncio.create_task(t.chat.run())
        await t.until("type help for commands")
        t.type("show run r1\r")
        first = (await t.until(lambda: re.search(r"working on it \(job (\w+)", t.screen.getvalue()))).group(1)
        mark = len(t.screen.getvalue())
        t.type("show run r2\r")
        second = (await t.until(lambda: re.search(r"working on it \(job (\w+)", t.after(mark)))).group(1)
        assert first != second

        mark = len(t.screen.getvalue())
        t.type("jobs\r")  # the prompt answers while both run
        await t.until(lambda: "2 jobs" in t.after(mark) and first in t.after(mark) and second in t.after(mark))

        t.type(f"!cancel {first}\r")
        await t.until(f"job {first} (show run r1) cancelled")
        await t.until(f"[show run r1] (job {first})\n[failed] job {first} (show run r1) was cancelled by console:")

        t.type("show r" + CTRL_C)  # Ctrl-C cancels the newest running job, and clears the line
        await t.until(f"job {second} (show run r2) cancelled")
        await t.until(f"job {second} (show run r2) was cancelled by console:")
        await t.until(lambda: not t.chat._answers)
        assert t.line() == ""

        mark = len(t.screen.getvalue())
        t.type("devices r" + CTRL_C)  # nothing running: Ctrl-C only clears the line
        await t.until(lambda: t.line() == "" and t.chat.session is not None)
        t.type("whoami\r")
        await t.until("You are console:")
        assert "cancel" not in t.after(mark)
        t.type("quit\r")
        assert await t.task == 0

    with terminal(slow_lab_bot, tmp_path, progress_after=0.3) as t:
        asyncio.run(scenario(t))


def test_leaving_cancels_running_jobs_in_one_line(slow_lab_bot, lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from chatbot.lab import Fault

    lab.set_fault("r1", Fault.HANG)

    async def scenario(t: Terminal) -> None:
        t.task = asyncio.create_task(t.chat.run())
        await t.until("type help for commands")
        t.type("show run r1\r")
        job = (await t.until(lambda: re.search(r"working on it \(job (\w+)", t.screen.getvalue()))).group(1)
        mark = len(t.screen.getvalue())
        t.type("exit\r")
        assert await asyncio.wait_for(t.task, 30) == 0
        assert t.after(mark).strip().splitlines()[-1] == f"leaving: cancelling 1 running job(s): {job}"
        assert not slow_lab_bot.jobs.jobs

    with terminal(slow_lab_bot, tmp_path, progress_after=0.3) as t:
        asyncio.run(scenario(t))


def test_monitor_alerts_default_to_the_terminal(slow_lab_bot, lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The README's `!monitor add` examples work in the terminal: alerts come here."""
    from chatbot.lab import Fault

    lab.set_fault("r3", Fault.DOWN)

    async def scenario(t: Terminal) -> None:
        t.task = asyncio.create_task(t.chat.run())
        await t.until("type help for commands")
        t.type("!monitor add ssh r3 every 1h after 1\r")
        await t.until("alerts to console:console")
        await t.until("[alert to console]")
        t.type(CTRL_D)
        assert await t.task == 0

    with terminal(slow_lab_bot, tmp_path) as t:
        asyncio.run(scenario(t))
    assert "r3" in t.screen.getvalue().split("[alert to console]", 1)[1]


@pytest.mark.parametrize("typed,expected", [
    ("", {"help", "ping", "show", "devices", "monitor", "jobs", "cancel"}),
    ("!sh", {"show"}),
    ("show ", {"run", "running-config", "version"}),
    ("mon", {"monitor"}),
    ("monitor a", {"add"}),
    ("ping 10.0.0.1 f", {"from"}),
    ("show version group:", {"group:core", "group:edge"}),
    ("show version r1,r", {"r1,r2", "r1,r3"}),
    ("show version site:b", {"site:branch1"}),
    ("frobnicate ", set()),
])
def test_completion_words(typed: str, expected: set[str]) -> None:
    bot = sample_bot()
    completer = CommandCompleter(bot.registry, bot.context.inventory, bot.prefix)
    found = {c.text for c in completer.get_completions(Document(typed), CompleteEvent(completion_requested=True))}
    assert expected <= found if typed == "" else found == expected


@pytest.mark.slow
def test_real_terminal(tmp_path: Path) -> None:
    """`chatbot shell --lab` on a pseudo-terminal: arrow keys edit instead of printing
    ^[[A, a slow command leaves the prompt usable, Ctrl-C cancels it, Ctrl-D leaves.
    (Slow, not hung: a hung device's session cannot be cut while it is still logging
    in, and the process would wait for that thread's device timeout on leaving.)"""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # A pty answers no cursor position requests: tell prompt_toolkit not to ask.
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "chatbot", "shell", "--lab", "--fault", "r2=slow"],
                            stdin=child, stdout=child, stderr=child, cwd=tmp_path, env=env, start_new_session=True)
    os.close(child)
    seen = bytearray()

    def until(*patterns: str, timeout: float = 60.0) -> re.Match[bytes]:
        """Wait until every pattern is on the screen and the prompt is drawn after the
        last of them; returns the first pattern's match. Keys go in only then: while
        prompt_toolkit prints above the prompt the terminal is in cooked mode, where it
        would take a DEL, an arrow, Ctrl-C or Ctrl-D for itself (a person types after
        reading, some milliseconds later)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [re.search(p.encode(), seen, re.DOTALL) for p in patterns]
            if all(found) and b"you>" in seen[max(m.end() for m in found if m):]:
                return found[0]  # type: ignore[return-value]
            if time.monotonic() > deadline or proc.poll() is not None:
                (tmp_path / "screen").write_bytes(seen)
                raise AssertionError(f"no {patterns!r} in {bytes(seen[-3000:])!r}; all of it in "
                                     + str(tmp_path / "screen"))
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    seen.extend(os.read(main, 65536))
                except OSError:  # the shell closed the terminal
                    pass

    try:
        until("type help for commands")
        os.write(main, b"show run r2\r")
        job = until(r"working on it \(job (\w+)").group(1).decode()
        os.write(main, b"devXies\x1b[D\x1b[D\x1b[D\x7f\x1b[Cc\r")  # a typo fixed with the arrow keys
        until("3 devices in the inventory")
        os.write(main, b"\x03")
        until(f"job {job} \\(show run r2\\) cancelled", f"job {job} \\(show run r2\\) was cancelled by console:")
        os.write(main, b"\x04")
        try:
            assert proc.wait(30) == 0
        except subprocess.TimeoutExpired:
            until("the end")  # fails, showing the screen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"^[[" not in seen and b"Traceback" not in seen
    assert "devices" in (tmp_path / "state" / "netbot" / "history").read_text()


@pytest.mark.slow
def test_output_to_a_file_gets_plain_lines(tmp_path: Path) -> None:
    """Typing at a terminal with the output redirected (`chatbot shell --lab > out`):
    one command per line, plain answers, no prompt drawing in the file."""
    import os
    import pty
    import subprocess

    main, child = pty.openpty()
    out = tmp_path / "out"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "chatbot", "shell", "--lab"], stdin=child, stdout=sink,
                                stderr=subprocess.PIPE, cwd=tmp_path, env=env, start_new_session=True)
    os.close(child)
    try:
        os.write(main, b"devices\n\x04")  # a line, then end of input
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    text = out.read_text()
    assert "> devices\n3 devices in the inventory" in text and "\x1b" not in text
