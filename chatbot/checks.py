"""Declaring monitor check kinds: a task module decorates a function with @check_kind.

Like @command, the decorator only attaches a CheckKind to the function; the plugin loader
(chatbot.plugins) collects them from the same places as commands, and the monitoring
service schedules them. Nothing here knows of schedules or storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatbot.context import TaskContext

ATTRIBUTE = "__chatbot_check__"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str = ""
    site: str | None = None  # lets a site outage be reported as one line


@dataclass(frozen=True)
class CheckKind:
    """A kind of check, declared by a task module. `validate` turns the user's targets
    and options into what `run` needs (raising ArgumentError); `run` is synchronous and
    returns an Outcome per target."""

    name: str
    summary: str
    options: tuple[str, ...]
    validate: Callable[[TaskContext, str, dict[str, str]], dict[str, Any]]
    run: Callable[[TaskContext, dict[str, Any]], dict[str, Outcome]]
    # How a validated spec reads in chat ("command show clock expect /x/"); by default
    # the spec's values of the user-facing options.
    describe: Callable[[dict[str, Any]], str] | None = None
    # Why a stored spec cannot run any more (e.g. a pattern RE2 refuses), or None.
    stored_problem: Callable[[dict[str, Any]], str | None] | None = None

    def describe_spec(self, spec: dict[str, Any]) -> str:
        if self.describe is not None:
            return self.describe(spec)
        return " ".join(f"{k} {spec[k]}" for k in self.options
                        if isinstance(spec.get(k), (str, int)) and not isinstance(spec[k], bool) and spec[k] != "")


def check_kind(name: str, *, summary: str, options: tuple[str, ...] = (),
               validate: Callable[[TaskContext, str, dict[str, str]], dict[str, Any]],
               describe: Callable[[dict[str, Any]], str] | None = None,
               stored_problem: Callable[[dict[str, Any]], str | None] | None = None,
               ) -> Callable[[Callable[..., dict[str, Outcome]]], Callable[..., dict[str, Outcome]]]:
    """Mark `run(ctx, spec) -> {target: Outcome}` as the check kind `name`, which users
    schedule with `!monitor add <name> <targets> [option value ...] every <interval>`.

    `validate(ctx, targets, options)` runs when the monitor is added and turns the user's
    text into the spec `run` gets later (raise ArgumentError for a one-line refusal).
    `run` is synchronous, runs in a worker thread, and reports every target it checked."""

    def mark(run: Callable[..., dict[str, Outcome]]) -> Callable[..., dict[str, Outcome]]:
        setattr(run, ATTRIBUTE, CheckKind(name, summary, options, validate, run, describe, stored_problem))
        return run
    return mark
