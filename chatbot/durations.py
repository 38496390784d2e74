"""Durations as people write them, in chat, in the config and on the command line.

One grammar everywhere: a whole number and a unit, `30s`, `5m`, `1h`, `7d`. Monitors also
take a bare number as seconds (`every = 30` in the config); where a bare number could be
mistaken for something else (`--since 2026` is not 2026 seconds), the caller asks for a
unit.
"""

from __future__ import annotations

import re

from chatbot.errors import ArgumentError

_DURATION = re.compile(r"(\d{1,6})([smhd]?)")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, unit_required: bool = False) -> int:
    """'30s', '5m', '1h', '7d' (and '30' unless `unit_required`): the number of seconds."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m or (unit_required and not m.group(2)):
        raise ArgumentError(f"'{text[:20]}' is not an interval; write 30s, 1m, 5m or 1h")
    return int(m.group(1)) * UNIT_SECONDS[m.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration, in the largest unit that divides evenly: 300 -> '5m'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_elapsed(seconds: float) -> str:
    """How long something lasted, for prose, rounded to what a reader cares about:
    '45 s', '12 min', '3 h 5 min'."""
    whole = int(seconds)
    if whole < 90:
        return f"{whole} s"
    if whole < 5400:
        return f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
