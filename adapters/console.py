"""Terminal chat: the operator types commands, the bot answers in plain text.

On a TTY it is a prompt_toolkit session: line editing, a history file, tab completion
of command words and device names, and commands that run side by side (a slow one says
"working on it (job ...)" and the prompt stays usable for `jobs` and `cancel`). Log
lines and monitor alerts print above the prompt; Ctrl-C cancels the newest running job
(or clears the line), Ctrl-D, `exit` or `quit` leaves.

Otherwise (stdin or stdout is not a terminal) it reads one command per line from stdin
and prints each reply in order, so
`printf '!help\n!ping r1\n' | chatbot shell --lab` works in scripts.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from chatbot.bot import Bot
from chatbot.inbox import answer_with_progress
from chatbot.jobs import Job
from chatbot.message import Identity, Message, Reply
from chatbot.render import render_text
from chatbot.results import Result

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

ROOM = "console"
PROMPT = "you> "
LEAVE_WORDS = {"exit", "quit"}
# A command still running after this long gets a "working on it (job ...)" line.
PROGRESS_AFTER = 1.0


def history_path() -> Path:
    """Where typed commands are kept between sessions: the user's state directory."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "netbot" / "history"


class ConsoleChat:
    def __init__(self, bot: Bot, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, *,
                 interactive: bool | None = None, history_file: Path | None = None,
                 progress_after: float = PROGRESS_AFTER) -> None:
        self.bot = bot
        self.stdin = stdin
        self.stdout = stdout
        user = getpass.getuser()
        self.sender = Identity.native("console", user, display_name=user)
        # Output redirected to a file gets plain lines, not a prompt's escape sequences.
        self.interactive = (stdin.isatty() and stdout.isatty()) if interactive is None else interactive
        self.history_file = history_file
        self.progress_after = progress_after
        self._out: TextIO = stdout
        self.session: PromptSession[str] | None = None  # while the interactive prompt runs
        self._answers: dict[str, asyncio.Task[None]] = {}  # message id -> its answer in progress
        self._silenced: set[str] = set()  # answers nobody waits for any more (cancelled on leaving)

    async def run(self) -> int:
        self.bot.add_notifier("console", self.alert)
        await self.bot.start()
        try:
            return await (self._interactive() if self.interactive else self._piped())
        finally:
            await self.bot.stop()

    async def alert(self, room: str, result: Result) -> None:
        """Monitor alerts for console rooms are printed where the operator sees them."""
        self._print(f"[alert to {room}] " + render_text(result) + "\n")

    # --- piped: one command per line, answers in order -------------------------------
    async def _piped(self) -> int:
        while True:
            line = await asyncio.to_thread(self.stdin.readline)
            if not line:
                return 0
            if not line.strip():
                continue
            self._print(f"> {line.rstrip()}")
            await self.handle(line)

    async def handle(self, line: str) -> None:
        reply = await self.bot.handle(self._message(line))
        if reply is not None:
            self._print(render_text(reply.result) + "\n")

    def _message(self, line: str) -> Message:
        # The console is a one-to-one conversation: a command works with or without the prefix.
        return Message(platform="console", room=ROOM, sender=self.sender, text=line.rstrip("\r\n"), direct=True,
                       message_id=f"console-{secrets.token_hex(6)}")

    # --- interactive: a prompt that stays usable while commands run -------------------
    async def _interactive(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        from adapters.console_completion import CommandCompleter

        history = FileHistory(str(self.history_file)) if self._history_ready() else InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history, complete_while_typing=False,
            completer=CommandCompleter(self.bot.registry, self.bot.context.inventory, self.bot.prefix))
        self.session = session
        with _above_the_prompt() as out:
            self._out = out
            try:
                self._print(f"{self.bot.context.config.bot.name}: type help for commands, Tab completes, "
                            "Ctrl-C cancels the running command, Ctrl-D leaves.")
                while True:
                    try:
                        line = await session.prompt_async(PROMPT)
                    except KeyboardInterrupt:
                        await self._interrupt()
                        continue
                    except EOFError:
                        break
                    if line.strip().lower() in LEAVE_WORDS:
                        break
                    if line.strip():
                        self._start(line)
                await self._leave()
            finally:
                self._out = self.stdout
        return 0

    def _history_ready(self) -> bool:
        """The history file exists and is the user's alone (commands name devices and
        addresses); without a writable state directory the history lasts one session."""
        if self.history_file is None:
            return False
        try:
            self.history_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.history_file.touch(mode=0o600, exist_ok=True)
        except OSError as err:
            log.warning("no command history: %s", err)
            return False
        return True

    def _start(self, line: str) -> None:
        msg = self._message(line)
        task = asyncio.create_task(answer_with_progress(
            self.bot, msg, self.progress_after,
            acknowledge=lambda: self._acknowledge(msg), deliver=lambda reply, ack: self._deliver(msg, reply, ack)))
        assert msg.message_id is not None
        self._answers[msg.message_id] = task
        task.add_done_callback(lambda _: self._answers.pop(msg.message_id or "", None))

    async def _acknowledge(self, msg: Message) -> str:
        """Say "working on it (job ...)"; the job id (if it is a job) will head its answer."""
        self._print(self.bot.progress_text(msg.message_id))
        job = self.bot.jobs.job_for_message(msg.message_id)
        return job.id if job is not None else ""

    async def _deliver(self, msg: Message, reply: Reply, ack: str | None) -> None:
        if msg.message_id in self._silenced:
            return
        # Answers of slow commands come in between others: say which command this answers.
        header = ""
        if ack is not None:
            header = f"[{msg.text.strip()}]" + (f" (job {ack})" if ack else "") + "\n"
        self._print(header + render_text(reply.result) + "\n")

    def _running_jobs(self) -> list[tuple[str, Job]]:
        found = [(mid, self.bot.jobs.job_for_message(mid)) for mid in list(self._answers)]
        return sorted(((mid, job) for mid, job in found if job is not None), key=lambda pair: pair[1].created)

    async def _interrupt(self) -> None:
        """Ctrl-C: cancel the newest job of this terminal, through the bot (audited);
        with nothing running, the line is simply cleared."""
        jobs = self._running_jobs()
        if jobs:
            await self.handle(f"cancel {jobs[-1][1].id}")

    async def _leave(self) -> None:
        jobs = self._running_jobs()
        if jobs:
            self._print(f"leaving: cancelling {len(jobs)} running job(s): " + ", ".join(j.id for _, j in jobs))
            for mid, job in jobs:
                self._silenced.add(mid)
                await self.bot.handle(self._message(f"cancel {job.id}"))
        if self._answers:
            await asyncio.gather(*self._answers.values(), return_exceptions=True)

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


@contextmanager
def _above_the_prompt() -> Iterator[TextIO]:
    """Everything written while the prompt is up goes above it: our answers and alerts,
    stray prints, and the log handlers that write to the terminal. Escape sequences in
    device output are shown, not obeyed (patch_stdout without raw)."""
    from prompt_toolkit.patch_stdout import patch_stdout

    terminal = (sys.stdout, sys.stderr)
    with patch_stdout():
        proxy = sys.stdout
        moved = [(h, h.setStream(proxy)) for h in logging.getLogger().handlers
                 if type(h) is logging.StreamHandler and h.stream in terminal]
        try:
            yield proxy
        finally:
            for handler, stream in moved:
                handler.setStream(stream)
