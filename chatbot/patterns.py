"""Patterns that users write (monitor expect/reject, show run filters), matched safely.

Python's `re` backtracks: `(.*.*)*Z` against a few kilobytes takes longer than the age
of the universe, holding the GIL all the while, so one such pattern stops the whole bot.
Every user pattern goes through RE2 instead (google-re2), whose matching time is linear
in the text, and whose compiled programs are capped in memory. RE2 refuses what it
cannot do in linear time (backreferences, lookaround): that is one line to the user.
The text a pattern is matched against is bounded too (MAX_MATCH_CHARS).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from chatbot.errors import ArgumentError

MAX_PATTERN_LENGTH = 128
# Matching is linear, but the text is device output of any size: only its head is searched.
MAX_MATCH_CHARS = 1024 * 1024
MATCH_LIMIT_TEXT = "the first 1 MiB"
# RE2's memory budget per pattern (its default is 8 MiB). 1 MiB still takes any
# realistic pattern (`.{1000}`, `(\w+\s*){1000}`), and the costliest pattern of 128
# characters then fails to compile within about 8 ms here instead of 50: patterns are
# compiled when a command is parsed.
MAX_PATTERN_MEMORY = 1 << 20


@cache
def _options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False  # a refused pattern is the user's one line, not a stderr dump
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@dataclass(frozen=True)
class UserPattern:
    """A user's pattern, compiled by RE2."""

    text: str
    compiled: Any  # re2's compiled pattern (the package ships no type hints)

    def search(self, text: str) -> bool:
        return self.compiled.search(bounded(text)) is not None

    def __str__(self) -> str:
        return f"/{self.text}/"


def compile_pattern(text: str) -> UserPattern:
    """RE2-compile a user pattern; ArgumentError with one line when RE2 refuses it."""
    if not text:
        raise ArgumentError("an empty pattern")
    if len(text) > MAX_PATTERN_LENGTH:
        raise ArgumentError(f"a pattern may have at most {MAX_PATTERN_LENGTH} characters")
    import re2  # here, not at the top: 3 MiB that a bot whose users write no pattern never needs

    try:
        return UserPattern(text, re2.compile(text, options=_options()))
    except re2.error as err:
        reason = err.args[0].decode("utf-8", "replace") if err.args and isinstance(err.args[0], bytes) \
            else str(err)
        raise ArgumentError(f"'{text[:40]}' is not a pattern this bot accepts ({reason}); patterns are RE2 "
                            "syntax: no backreferences or lookaround") from None


def bounded(text: str) -> str:
    """The head of `text` that patterns are matched against, cut at a line end."""
    if len(text) <= MAX_MATCH_CHARS:
        return text
    head = text[:MAX_MATCH_CHARS]
    cut = head.rfind("\n")
    return head[:cut] if cut > 0 else head


def is_bounded(text: str) -> bool:
    """Whether `text` is searched whole (False: only its head, see MAX_MATCH_CHARS)."""
    return len(text) <= MAX_MATCH_CHARS
