"""The core: one message in, at most one reply out, whatever the platform.

adapter -> Message -> router -> (policy) -> runner -> task -> Result -> redaction -> Reply
"""

from __future__ import annotations

import logging

from chatbot.commands import Command, Registry
from chatbot.context import TaskContext
from chatbot.message import Message, Reply
from chatbot.redact import redact
from chatbot.results import Note, Part, Result, Status, Table, TextBlock, invalid
from chatbot.router import CommandRejected, Router
from chatbot.runner import Runner

log = logging.getLogger(__name__)

BUILTIN_HELP = ("help", "help [command]", "list the commands, or show one command's usage")


class Bot:
    def __init__(self, registry: Registry, context: TaskContext) -> None:
        cfg = context.config
        self.registry = registry
        self.context = context
        self.prefix = cfg.bot.prefix
        self.router = Router(registry, prefix=cfg.bot.prefix, names=(cfg.bot.name,))
        self.runner = Runner(context, cfg.limits.command_timeout, prefix=cfg.bot.prefix)

    async def handle(self, msg: Message) -> Reply | None:
        text = self.router.command_text(msg.text, direct=msg.direct, mentioned=msg.mentions_bot)
        if text is None:
            return None
        result = await self.execute(text)
        return Reply(room=msg.room, result=scrub(result), thread=msg.thread, in_reply_to=msg.message_id)

    async def execute(self, text: str) -> Result:
        words = text.split()
        if words and words[0].lower() in ("help", "?"):
            return self.help(words[1:])
        try:
            inv = self.router.parse(text, self.context)
        except CommandRejected as err:
            return invalid(str(err), self.prefix + err.usage if err.usage else None)
        log.info("running %r on %s", inv.text, ",".join(inv.devices) or "-")
        return await self.runner.run(inv)

    def help(self, topic: list[str]) -> Result:
        if topic:
            return self._help_for(" ".join(topic))
        rows = [[f"{self.prefix}{BUILTIN_HELP[1]}", BUILTIN_HELP[2]]]
        rows += [[f"{self.prefix}{c.usage()}", c.summary] for c in self.registry]
        return Result(Status.OK, "Commands you can run:", [
            Table(["usage", "what it does"], rows),
            Note(f"{self.prefix}help <command> shows details and examples. "
                 "Targets: a device (r1), a list (r1,r2), group:NAME, site:NAME or all."),
        ])

    def _help_for(self, name: str) -> Result:
        cmd = self._find(name)
        if cmd is None:
            try:
                self.router.parse(name, self.context)
            except CommandRejected as err:
                if str(err).startswith("unknown command"):
                    return invalid(str(err))
            return invalid(f"no help for '{name[:40]}'; try {self.prefix}help")
        parts: list[Part] = [Note(f"usage: {self.prefix}{cmd.usage()}")]
        if cmd.details:
            parts.append(Note(cmd.details))
        if cmd.aliases:
            parts.append(Note("also written: " + ", ".join(cmd.aliases)))
        if cmd.examples:
            parts.append(Note("examples: " + "   ".join(f"{self.prefix}{e}" for e in cmd.examples)))
        return Result(Status.OK, f"{cmd.name}: {cmd.summary}", parts)

    def _find(self, name: str) -> Command | None:
        exact = self.registry.lookup(name.lower())
        if exact is not None:
            return exact
        try:
            return self.router.match(name.split())[0]
        except CommandRejected:
            return None


def scrub(result: Result) -> Result:
    """Redaction as a safety net over the device text a task returns (text blocks and
    table cells): tasks redact with the device's platform patterns; this catches what
    any of them missed. Summaries and notes are the bot's own prose, where the patterns
    would strike ordinary words ("Username or password is incorrect")."""
    def clean(part: Part) -> Part:
        if isinstance(part, TextBlock):
            return TextBlock(redact(part.text), part.title, part.filename)
        if isinstance(part, Table):
            return Table(part.columns, [[redact(c) for c in row] for row in part.rows], part.title)
        return part

    return Result(result.status, result.summary, [clean(p) for p in result.parts])
