"""Structured results: what tasks return and renderers turn into text for each platform.

Tasks never format for a chat platform; they describe their answer with these parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    OK = "ok"  # everything asked for succeeded
    PARTIAL = "partial"  # some devices failed, others answered
    FAILED = "failed"  # the work ran and failed (device down, timeout...)
    INVALID = "invalid"  # the user's request was rejected before anything ran
    DENIED = "denied"  # the access policy said no
    ERROR = "error"  # a bug in the bot: logged with a reference, not shown in detail


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    title: str | None = None


@dataclass(frozen=True)
class TextBlock:
    """Verbatim text, e.g. device output. `filename` marks it worth an attachment when long."""

    text: str
    title: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class Note:
    """A single line of prose."""

    text: str


Part = Table | TextBlock | Note


@dataclass
class Result:
    status: Status
    summary: str
    parts: list[Part] = field(default_factory=list)
    # Per device touched: "ok" or the one-line failure; the audit log keeps each.
    devices: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.PARTIAL)


def invalid(reason: str, usage: str | None = None) -> Result:
    """A user error: one line saying why, and the usage when it helps."""
    parts: list[Part] = [Note(f"usage: {usage}")] if usage else []
    return Result(Status.INVALID, reason, parts)


def failed(reason: str) -> Result:
    return Result(Status.FAILED, reason)
