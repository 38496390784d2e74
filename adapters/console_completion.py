"""Tab completion for the terminal chat: command words first, then the command's
keywords, device names, `group:`/`site:` targets and `all`.

Words complete by prefix as the router abbreviates them (`sh ver` is `show version`),
and a target list completes its last item (`r1,r` -> `r1,r2`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from chatbot.commands import Command, Registry
from chatbot.inventory import DeviceInventory


class CommandCompleter(Completer):
    def __init__(self, registry: Registry, inventory: DeviceInventory, prefix: str = "!") -> None:
        self.registry = registry
        self.inventory = inventory
        self.prefix = prefix

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor.lstrip()
        if self.prefix and text.startswith(self.prefix):
            text = text[len(self.prefix):]
        *typed, current = text.split(" ")
        typed = [w.lower() for w in typed if w]
        naming = sorted(self._next_command_words(typed))
        if naming:
            yield from _matching(current, naming)
            return
        command = self._command(typed)
        if command is None:
            return
        keywords = sorted({p.keyword for p in command.params if p.keyword})
        yield from _matching(current, keywords)
        head, comma, item = current.rpartition(",")
        listed = set(head.split(","))
        for target in _matching(item, [t for t in self._targets() if t not in listed]):
            yield Completion(head + comma + target.text, start_position=-len(current), display=target.text)

    def _next_command_words(self, typed: list[str]) -> set[str]:
        """The words that may come next while the command is still being named."""
        out = set()
        for spelling, _ in self.registry.spellings():
            if len(spelling) > len(typed) and all(s.startswith(w) for w, s in zip(typed, spelling, strict=False)):
                out.add(spelling[len(typed)])
        return out

    def _command(self, typed: list[str]) -> Command | None:
        """The command the first words name, the longest spelling first."""
        found = [(len(spelling), cmd) for spelling, cmd in self.registry.spellings()
                 if len(spelling) <= len(typed) and all(s.startswith(w) for w, s in zip(typed, spelling, strict=False))]
        return max(found, key=lambda pair: pair[0])[1] if found else None

    def _targets(self) -> list[str]:
        inv = self.inventory
        return ["all", *inv.devices, *(f"group:{g}" for g in sorted(inv.groups())),
                *(f"site:{s}" for s in sorted(inv.sites()))]


def _matching(current: str, choices: Iterable[str]) -> Iterator[Completion]:
    low = current.lower()
    for choice in choices:
        if choice.lower().startswith(low) and choice != current:
            yield Completion(choice, start_position=-len(current))
