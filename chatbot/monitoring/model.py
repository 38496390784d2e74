"""What a monitor is: one check kind on some targets, how often, and where it alerts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chatbot.checks import CheckKind
from chatbot.durations import format_duration
from chatbot.errors import ArgumentError


class MonitorRefused(ArgumentError):
    """A monitor that would exceed the limits, or watch exactly what another one does."""


@dataclass
class Monitor:
    id: str
    kind: str
    targets: str
    options: dict[str, Any]
    interval: float
    room: str
    owner: str
    after: int = 2
    remind_every: float = 3600.0
    paused: bool = False
    source: str = "chat"

    def describe(self, kind: CheckKind | None = None) -> str:
        """'show r1 command show clock expect /x/ every 5m': what it watches, in chat words."""
        opts = kind.describe_spec(self.options) if kind is not None else ""
        words = [self.kind, self.targets, opts, f"every {format_duration(self.interval)}"]
        return " ".join(w for w in words if w)

    def same_watch(self, other: Monitor) -> bool:
        """Exactly what `other` watches, how often and where it alerts."""
        return (self.kind, self.targets.strip(), _canonical(self.options), self.interval, self.room) == \
            (other.kind, other.targets.strip(), _canonical(other.options), other.interval, other.room)


def _canonical(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)
