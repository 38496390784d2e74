"""One interactive SSH session of a lab device: terminal behaviour, timing and faults.

The device behaves like IOS with a PTY: every character is echoed as it arrives (scrapli
writes a command, waits to read its echo, then sends the return), Enter answers "\\r\\n"
at once, the command's output follows after the device delay, CRLF line endings, and
the prompt is printed after every command. The enable password is read without echo.

Delay rules: the device delay (or `slow_delay` under the SLOW fault, whichever is longer)
is waited before the output of every command except empty lines, `terminal ...` session
setup and `enable` (the device delay only), which IOS answers instantly and which every
client sends on connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncssh

from chatbot.lab.configs import device_facts
from chatbot.lab.ios_cli import IosCli, Kind, Parsed
from chatbot.lab.model import Fault, LabDevice
from chatbot.lab.netsim import Topology

_CLEAN_EXIT_ERRORS = (asyncssh.Error, ConnectionError, BrokenPipeError, OSError)
_DROP_ON_DISCONNECT = (Kind.SHOW, Kind.PING, Kind.TRACEROUTE)


@dataclass
class SessionContext:
    """What every session of the lab shares; built once by the Lab."""

    enable_secret: str
    slow_delay: float
    topology: Topology
    started_at: float  # time.monotonic() when the lab started, for uptimes

    def minutes_since_start(self) -> int:
        return int((time.monotonic() - self.started_at) // 60)


class DeviceSession:
    def __init__(
        self, process: asyncssh.SSHServerProcess[bytes], device: LabDevice, context: SessionContext
    ) -> None:
        self._process = process
        self._device = device
        self._context = context
        self._cli = IosCli(
            device_facts(device.name),
            context.topology,
            context.enable_secret,
            context.minutes_since_start,
        )
        self._out: list[str] = []

    # -- plumbing ------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self._out.append(text)

    def _flush(self) -> None:
        if self._out:
            data = "".join(self._out)
            self._out.clear()
            self._process.stdout.write(data.encode("utf-8"))

    def _abort_connection(self) -> None:
        self._process.channel.get_connection().abort()

    async def _swallow_forever(self) -> None:
        """HANG: read and drop whatever the client sends, answer nothing, until it leaves."""
        self._out.clear()
        while await self._process.stdin.read(4096):
            pass

    def _delay(self, parsed: Parsed) -> float:
        if parsed.kind in (Kind.EMPTY, Kind.TERMINAL):
            return 0.0
        # The device delay models the work of a command (building a config, probing);
        # `enable` costs a real device nothing. A SLOW device is slow at everything.
        delay = 0.0 if parsed.kind is Kind.ENABLE else self._device.delay
        if self._device.fault is Fault.SLOW:
            delay = max(delay, self._context.slow_delay)
        return delay

    # -- the session ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self._process.command is not None:
                await self._run_exec(self._process.command)
            elif self._device.fault is Fault.HANG:
                await self._swallow_forever()
            else:
                self._write("\r\n" + self._cli.prompt)  # banner-less, straight to the prompt
                self._flush()
                await self._interactive()
        except _CLEAN_EXIT_ERRORS:
            pass  # the client went away mid-command: nothing to tell anyone
        finally:
            with contextlib.suppress(*_CLEAN_EXIT_ERRORS):
                self._process.exit(0)

    async def _interactive(self) -> None:
        line: list[str] = []
        reading_secret = False
        pending = ""
        last_was_cr = False
        while True:
            if not pending:
                self._flush()
                data = await self._process.stdin.read(4096)
                if not data:
                    return  # EOF: client closed the channel
                pending = data.decode("utf-8", "replace")
            if self._device.fault is Fault.HANG:
                await self._swallow_forever()
                return
            char, pending = pending[0], pending[1:]
            if char == "\n" and last_was_cr:  # CRLF counts as one Enter
                last_was_cr = False
                continue
            last_was_cr = char == "\r"
            if char in "\r\n":
                self._write("\r\n")
                text, line = "".join(line), []
                if reading_secret:
                    reading_secret = False
                    self._finish_enable(text)
                    continue
                self._flush()
                outcome = await self._execute(text)
                if outcome == "end":
                    return
                reading_secret = outcome == "secret"
            elif char in ("\x7f", "\x08"):
                if line:
                    line.pop()
                    if not reading_secret:
                        self._write("\b \b")
            elif char == "\x15":  # Ctrl-U: erase the line
                if not reading_secret:
                    self._write("\b \b" * len(line))
                line = []
            elif char == "\x1b":  # drop ANSI escape sequences (arrow keys) rather than echo them
                if pending.startswith("["):
                    end = 1
                    while end < len(pending) and not pending[end].isalpha():
                        end += 1
                    pending = pending[end + 1 :]
            elif char >= " ":
                line.append(char)
                if not reading_secret:
                    self._write(char)

    async def _execute(self, text: str) -> str:
        """Run one command line; returns "end", "secret" (enable prompt shown) or ""."""
        parsed = self._cli.parse(text)
        if parsed.kind is Kind.EMPTY:
            self._device.stats.empty_lines += 1
        else:
            self._device.stats.commands += 1
            self._device.stats.recent_commands.append(text.strip())
        fault = self._device.fault
        if fault is Fault.DISCONNECT and parsed.kind in _DROP_ON_DISCONNECT:
            self._abort_connection()
            return "end"
        delay = self._delay(parsed)
        if delay > 0:
            await asyncio.sleep(delay)
        if self._device.fault is Fault.HANG:
            await self._swallow_forever()
            return "end"
        if parsed.kind is Kind.EXIT:
            return "end"
        if parsed.kind is Kind.ENABLE and not self._cli.privileged:
            self._write("Password: ")
            return "secret"
        lines = self._cli.run(parsed)
        self._write("".join(f"{line}\r\n" for line in lines) + self._cli.prompt)
        return ""

    def _finish_enable(self, secret: str) -> None:
        if not self._cli.try_enable(secret):
            self._write("% Access denied\r\n\r\n")
        self._write(self._cli.prompt)

    async def _run_exec(self, command: str) -> None:
        """`ssh r1 show version`: IOS runs one exec-level command and closes the channel."""
        parsed = self._cli.parse(command)
        self._device.stats.commands += 1
        self._device.stats.recent_commands.append(command.strip())
        if self._device.fault is Fault.DISCONNECT and parsed.kind in _DROP_ON_DISCONNECT:
            self._abort_connection()
            return
        if self._device.fault is Fault.HANG:
            await self._swallow_forever()
            return
        delay = self._delay(parsed)
        if delay > 0:
            await asyncio.sleep(delay)
        newline = "\r\n" if self._process.get_terminal_type() else "\n"
        lines = [] if parsed.kind is Kind.ENABLE else self._cli.run(parsed)
        self._write("".join(f"{line}{newline}" for line in lines))
        self._flush()
