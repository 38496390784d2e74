"""The alert state machine of one monitor, without a database, a clock or an event loop.

Per target: down after `after` consecutive failures (flap damping), back up with the
outage's duration, a still-down reminder every `remind_every`. `step` turns the states
before a run and the run's outcomes into the states after it and what changed; `alert`
words the changes as one message, naming devices of a site that all went down together
as the site, not one line each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatbot.checks import Outcome
from chatbot.durations import format_elapsed
from chatbot.results import Result, Status, Table
from chatbot.wording import plural

UP, DOWN = "up", "down"


@dataclass(frozen=True)
class TargetState:
    """What is known of one target of a monitor between runs (times are epoch seconds)."""

    status: str = UP
    failures: int = 0  # in a row
    first_failure: float | None = None  # of the current run of failures
    down_since: float | None = None  # when the failures that made it down began
    last_notified: float | None = None  # the down alert or the latest reminder
    detail: str = ""  # the latest failure's


@dataclass(frozen=True)
class Down:
    target: str
    detail: str


@dataclass(frozen=True)
class StillDown:
    target: str
    detail: str
    for_seconds: float


@dataclass(frozen=True)
class BackUp:
    target: str
    after_seconds: float


@dataclass(frozen=True)
class Changes:
    states: dict[str, TargetState]  # after the run; a vanished target that is fine is forgotten
    downs: list[Down] = field(default_factory=list)
    reminders: list[StillDown] = field(default_factory=list)
    ups: list[BackUp] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.downs or self.reminders or self.ups)


def step(states: Mapping[str, TargetState], outcomes: Mapping[str, Outcome], now: float, *,
         after: int, remind_every: float) -> Changes:
    """One run: the new state of every target known before or checked now, and the changes
    worth telling."""
    changes = Changes(states={})
    for target in sorted(set(outcomes) | set(states)):
        outcome = outcomes.get(target, Outcome(True))  # a target that vanished (a fault cleared) is fine
        before = states.get(target, TargetState())
        if outcome.ok:
            if before.status == DOWN:
                since = before.down_since if before.down_since is not None else now
                changes.ups.append(BackUp(target, now - since))
            if target in outcomes:  # forget vanished targets
                changes.states[target] = TargetState()
            continue
        first_failure = before.first_failure if before.first_failure is not None else now
        state = replace(before, failures=before.failures + 1, first_failure=first_failure, detail=outcome.detail)
        if state.status != DOWN and state.failures >= after:
            state = replace(state, status=DOWN, down_since=first_failure, last_notified=now)
            changes.downs.append(Down(target, outcome.detail))
        elif state.status == DOWN and now - _or(state.last_notified, now) >= remind_every:
            state = replace(state, last_notified=now)
            changes.reminders.append(StillDown(target, outcome.detail, now - _or(state.down_since, now)))
        changes.states[target] = state
    return changes


def alert(title: str, changes: Changes, sites: Mapping[str, str | None]) -> Result | None:
    """The message for one run's changes, or None when nothing changed. `title` names the
    monitor; `sites` maps every device of the inventory to its site."""
    if not changes:
        return None
    down_names = {d.target for d in changes.downs}
    dark = dark_sites(down_names, sites)
    rows: list[list[str]] = []
    shown_dark: set[str] = set()
    for down in changes.downs:
        site = sites.get(down.target)
        if site is not None and site in dark:
            if site not in shown_dark:
                shown_dark.add(site)
                members = sorted(t for t in down_names if sites.get(t) == site)
                rows.append([f"site {site}", "DOWN", f"all {plural(len(members), 'device')}: {', '.join(members)}"])
            continue
        rows.append([down.target, "DOWN", down.detail])
    for reminder in changes.reminders:
        rows.append([reminder.target, "still down", f"for {format_elapsed(reminder.for_seconds)}: {reminder.detail}"])
    for up in changes.ups:
        rows.append([up.target, "up", f"back after {format_elapsed(up.after_seconds)}"])
    parts: list[str] = []
    if changes.downs:
        parts.append(f"{len(changes.downs)} down" + (f" (site {', '.join(sorted(dark))} dark)" if dark else ""))
    if changes.reminders:
        parts.append(f"{len(changes.reminders)} still down")
    if changes.ups:
        parts.append(f"{len(changes.ups)} back up")
    status = Status.FAILED if changes.downs or changes.reminders else Status.OK
    return Result(status, f"{title}: {', '.join(parts)}", [Table(["target", "state", "detail"], rows)])


def dark_sites(down: set[str], sites: Mapping[str, str | None]) -> set[str]:
    """Sites whose every device went down in this one run (at least two devices)."""
    members: dict[str, list[str]] = {}
    for device, site in sites.items():
        if site:
            members.setdefault(site, []).append(device)
    return {s for s, devices in members.items() if len(devices) > 1 and set(devices) <= down}


def _or(value: float | None, default: float) -> float:
    return value if value is not None else default
