"""From chat text to a validated invocation: addressing, command lookup, arguments.

The router decides whether a message is for the bot (prefix, mention, or direct
message), finds the command (IOS-style unique abbreviations of each word allowed),
and parses every argument with its type. Whatever it rejects gets one line of reason.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from chatbot.args import Param, ParseContext
from chatbot.commands import Command, Registry
from chatbot.errors import ArgumentError, UserError

MAX_COMMAND_LENGTH = 1000
MIN_ABBREVIATION = 2


@dataclass
class Invocation:
    command: Command
    args: dict[str, Any]
    text: str
    devices: list[str] = field(default_factory=list)  # every device the command may touch
    # Each given argument's text as the user wrote it, by parameter name: what a zone's
    # worker parses again with its own rules (chatbot/zones), never trusting ours.
    raw_args: dict[str, str] = field(default_factory=dict)


class CommandRejected(UserError):
    """Parsing failed; carries the command's usage when one was identified."""

    def __init__(self, reason: str, usage: str | None = None) -> None:
        super().__init__(reason)
        self.usage = usage


class Router:
    def __init__(self, registry: Registry, prefix: str = "!", names: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.prefix = prefix
        mention = "|".join(re.escape(n) for n in names if n)
        # "@netbot ping r1", "netbot: ping r1", "netbot, ping r1"; not "netbot is great"
        self._mention = re.compile(rf"^(?:@(?:{mention})[:,]?|(?:{mention})[:,])\s+", re.IGNORECASE) \
            if mention else None

    def command_text(self, text: str, *, direct: bool = False, mentioned: bool = False) -> str | None:
        """The command part of a message addressed to the bot, or None if it is not for us."""
        stripped = text.strip()
        if self._mention is not None:
            m = self._mention.match(stripped)
            if m:
                stripped, mentioned = stripped[m.end():], True
        if self.prefix and stripped.startswith(self.prefix):
            return stripped[len(self.prefix):].strip()
        if direct or mentioned:
            return stripped
        return None

    def parse(self, text: str, ctx: ParseContext) -> Invocation:
        check_printable(text)
        words = text.split()
        if not words:
            raise CommandRejected("an empty command; try help")
        cmd, used = self.match(words)
        try:
            raw = split_arguments(cmd, words[used:])
            args, devices = parse_values(cmd, raw, ctx)
        except ArgumentError as err:
            raise CommandRejected(str(err), cmd.usage()) from None
        return Invocation(cmd, args, " ".join(words), devices, raw)

    def match(self, words: list[str]) -> tuple[Command, int]:
        best: list[tuple[int, bool, Command]] = []
        for spelling, cmd in self.registry.spellings():
            if len(spelling) > len(words):
                continue
            pairs = list(zip(words, spelling, strict=False))
            if all(_abbreviates(w.lower(), s) for w, s in pairs):
                exact = all(w.lower() == s for w, s in pairs)
                best.append((len(spelling), exact, cmd))
        if not best:
            raise CommandRejected(self._unknown(words))
        longest = max(n for n, _, _ in best)
        top = [(exact, cmd) for n, exact, cmd in best if n == longest]
        exact_hits = {cmd.name for exact, cmd in top if exact}
        names = exact_hits or {cmd.name for _, cmd in top}
        if len(names) > 1:
            raise CommandRejected(f"'{' '.join(words[:longest])}' is ambiguous: {', '.join(sorted(names))}")
        chosen = next(cmd for _, cmd in top if cmd.name in names)
        return chosen, longest

    def _unknown(self, words: list[str]) -> str:
        spellings = [" ".join(s) for s, _ in self.registry.spellings()]
        guess = " ".join(words[:2]).lower()
        close = difflib.get_close_matches(guess, spellings, n=3, cutoff=0.5)
        close += [c for c in difflib.get_close_matches(words[0].lower(), spellings, n=3, cutoff=0.5) if c not in close]
        shown = words[0][:40]
        hint = f" Did you mean {' or '.join(close[:3])}?" if close else ""
        return f"unknown command '{shown}'.{hint} Try {self.prefix}help."


def _abbreviates(word: str, full: str) -> bool:
    return word == full or (len(word) >= MIN_ABBREVIATION and full.startswith(word))


def check_printable(text: str) -> None:
    if len(text) > MAX_COMMAND_LENGTH:
        raise CommandRejected(f"the command is longer than {MAX_COMMAND_LENGTH} characters")
    for ch in text:
        if ch in "\r\n\u2028\u2029\x85":
            raise CommandRejected("a command must be a single line (it contains a line break)")
        if unicodedata.category(ch) in ("Cc", "Cf") and ch not in " ":
            raise CommandRejected(f"the command contains a control character (U+{ord(ch):04X})")


def parse_arguments(cmd: Command, words: list[str], ctx: ParseContext) -> tuple[dict[str, Any], list[str]]:
    return parse_values(cmd, split_arguments(cmd, words), ctx)


def split_arguments(cmd: Command, words: list[str]) -> dict[str, str]:
    """The words of each argument, by parameter name, before any type has parsed them."""
    keywords = {k: p for p in cmd.params for k in p.keywords}
    raw: dict[str, str] = {}
    positional = [p for p in cmd.params if not p.keyword or p.bare_ok]
    i = 0
    while i < len(words):
        word = words[i]
        param = keywords.get(word.lower())
        if param is not None and param.name in raw:
            raise ArgumentError(f"'{word[:40]}' is given twice" if word.lower() == param.keyword
                                else f"'{word[:40]}' is another name for '{param.keyword}': give one of them")
        if param is not None and param.flag:
            raw[param.name], i = "", i + 1
            continue
        if param is not None:
            if i + 1 >= len(words):
                raise ArgumentError(f"'{param.keyword}' needs a value")
            value_words, i = _take(words, i + 1, param, keywords)
            raw[param.name] = value_words
            continue
        slot = next((p for p in positional if p.name not in raw), None)
        if slot is None:
            raise ArgumentError(f"unexpected '{word[:40]}'")
        raw[slot.name], i = _take(words, i, slot, keywords)
    return raw


def parse_values(cmd: Command, raw: dict[str, str], ctx: ParseContext,
                 parsed: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Each parameter's value parsed by its type (defaults for those not given), and
    every device they name. `parsed`: values already checked by the caller, by name."""
    values: dict[str, Any] = {}
    devices: list[str] = []
    for p in cmd.params:
        if parsed and p.name in parsed:
            values[p.name] = parsed[p.name]
            devices.extend(_devices_of(p, values[p.name]))
            continue
        if p.name not in raw:
            if not p.optional:
                raise ArgumentError(f"missing <{p.type.metavar}>")
            values[p.name] = p.default
            continue
        values[p.name] = p.type.parse(raw[p.name], ctx)
        devices.extend(_devices_of(p, values[p.name]))
    return values, list(dict.fromkeys(devices))


def _take(words: list[str], start: int, param: Param, keywords: dict[str, Param]) -> tuple[str, int]:
    if not param.greedy:
        return words[start], start + 1
    end = start
    while end < len(words) and words[end].lower() not in keywords:
        end += 1
    if end == start:
        raise ArgumentError(f"missing <{param.type.metavar}>")
    return " ".join(words[start:end]), end


def _devices_of(param: Param, value: Any) -> list[str]:
    """The devices an argument names, so policy and limits can see them before running.
    A ping destination is not a device the bot opens a session to: its type names none."""
    return param.type.devices_of(value)
