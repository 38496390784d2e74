"""Declaring commands: a task module decorates a function with @command.

The decorator only attaches a Command description to the function; the plugin loader
collects them into a Registry, so importing a task module has no side effect.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chatbot.args import Param

ATTRIBUTE = "__chatbot_command__"


@dataclass(frozen=True)
class Command:
    name: str  # one or more words: "ping", "show run"
    summary: str
    handler: Callable[..., Any]
    params: tuple[Param, ...] = ()
    permission: str = ""
    aliases: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    details: str = ""
    # Seconds the whole command may take before the user is told it timed out.
    timeout: float | None = None
    # The bot's own commands (chatbot/builtins) answer at once on the event loop instead of
    # running as a job (no job id, queue or rate limit); their async handler gets a
    # chatbot.builtins.call.Call, the asker and the bot's services, not a TaskContext.
    inline: bool = False
    # Anyone may run it, because it shows or touches only the asker's own things; its
    # permission still names it in roles.
    public: bool = False

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.name.split())

    def usage(self) -> str:
        return " ".join([self.name, *(p.usage() for p in self.params)])

    def short_usage(self) -> str:
        """For the help list: many optional keywords fold into [options]."""
        optional_keywords = [p for p in self.params if p.keyword and p.optional and not p.bare_ok]
        if len(optional_keywords) <= 3:
            return self.usage()
        shown = [p.usage() for p in self.params if p not in optional_keywords]
        return " ".join([self.name, *shown, "[options]"])


def command(name: str, *, summary: str, params: list[Param] | None = None,
            permission: str | None = None, aliases: list[str] | None = None,
            examples: list[str] | None = None, timeout: float | None = None,
            inline: bool = False, public: bool = False
            ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as the handler of chat command `name`.

    The handler is called as handler(ctx, **arguments) with each Param's parsed value,
    runs in a worker thread, and returns a chatbot.results.Result. `inline` and `public`
    are for the bot's own commands (see Command).
    """

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, ATTRIBUTE, Command(
            name=name,
            summary=summary,
            handler=func,
            params=tuple(params or ()),
            permission=permission or name.replace(" ", "."),
            aliases=tuple(aliases or ()),
            examples=tuple(examples or ()),
            details=inspect.cleandoc(func.__doc__ or ""),
            timeout=timeout,
            inline=inline,
            public=public,
        ))
        return func

    return mark


@dataclass
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)

    def add(self, cmd: Command) -> None:
        for spelling in (cmd.name, *cmd.aliases):
            clash = self.lookup(spelling)
            if clash is not None:
                raise ValueError(f"command '{spelling}' is declared twice "
                                 f"({clash.handler.__module__} and {cmd.handler.__module__})")
        self.commands[cmd.name] = cmd

    def lookup(self, name: str) -> Command | None:
        for cmd in self.commands.values():
            if name == cmd.name or name in cmd.aliases:
                return cmd
        return None

    def spellings(self) -> list[tuple[tuple[str, ...], Command]]:
        """Every way to name a command, as word tuples."""
        return [(tuple(s.split()), c) for c in self.commands.values() for s in (c.name, *c.aliases)]

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self.commands.values(), key=lambda c: c.name))
