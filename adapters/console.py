"""Terminal chat: the operator types commands, the bot answers in plain text.

Interactive on a TTY; otherwise it reads one command per line from stdin and prints
each reply, so `printf '!help\n!ping r1\n' | chatbot shell --lab` works in scripts.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from chatbot.bot import Bot
from chatbot.message import Identity, Message
from chatbot.render import render_text
from chatbot.results import Result

ROOM = "console"


class ConsoleChat:
    def __init__(self, bot: Bot, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        self.bot = bot
        self.stdin = stdin
        self.stdout = stdout
        user = getpass.getuser()
        self.sender = Identity.native("console", user, display_name=user)
        self.interactive = stdin.isatty()

    async def run(self) -> int:
        self.bot.add_notifier("console", self.alert)
        await self.bot.start()
        try:
            return await self._chat()
        finally:
            await self.bot.stop()

    async def alert(self, room: str, result: Result) -> None:
        """Monitor alerts for console rooms are printed where the operator sees them."""
        self._print(f"[alert to {room}] " + render_text(result) + "\n")

    async def _chat(self) -> int:
        if self.interactive:
            self._print(f"{self.bot.context.config.bot.name}: type {self.bot.prefix}help for commands, "
                        "Ctrl-D to leave.")
        while True:
            line = await self._read_line()
            if line is None:
                return 0
            if not line.strip():
                continue
            if not self.interactive:
                self._print(f"> {line.rstrip()}")
            await self.handle(line)

    async def handle(self, line: str) -> None:
        # The console is a one-to-one conversation: a command works with or without the prefix.
        msg = Message(platform="console", room=ROOM, sender=self.sender, text=line.rstrip("\r\n"), direct=True)
        reply = await self.bot.handle(msg)
        if reply is not None:
            self._print(render_text(reply.result) + "\n")

    async def _read_line(self) -> str | None:
        if self.interactive:
            try:
                return await asyncio.to_thread(input, "you> ")
            except EOFError:
                self._print("")
                return None
        line = await asyncio.to_thread(self.stdin.readline)
        return line or None

    def _print(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()
