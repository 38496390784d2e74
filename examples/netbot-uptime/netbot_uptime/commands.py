"""`!uptime <targets>`: how long each device has been up, longest first; and the
`uptime` check kind, which alerts when a device has rebooted recently."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from chatbot.api import (
    ArgumentError,
    Integer,
    Note,
    Outcome,
    Param,
    Part,
    Result,
    Table,
    Targets,
    TaskContext,
    check_kind,
    command,
    device_outcomes,
    outcome_summary,
    run_on_devices,
)

if TYPE_CHECKING:
    from chatbot.api import DeviceOutput  # an annotation only: looking it up loads device work

# "r1 uptime is 1 year, 3 weeks, 2 days, 4 hours, 5 minutes" (IOS and IOS-XE)
_UPTIME_LINE = re.compile(r"^\S+ uptime is (?P<phrase>.+)$", re.MULTILINE)
_AMOUNT = re.compile(r"(\d+) (year|week|day|hour|minute)s?")
_MINUTES = {"year": 525600, "week": 10080, "day": 1440, "hour": 60, "minute": 1}
DEFAULT_BELOW = 60


def uptime_minutes(show_version: str) -> int | None:
    """Minutes of uptime in a `show version`, or None when it has no uptime line."""
    found = _UPTIME_LINE.search(show_version)
    if found is None:
        return None
    return sum(int(n) * _MINUTES[unit] for n, unit in _AMOUNT.findall(found["phrase"]))


def _minutes_of(out: DeviceOutput) -> int | None:
    return uptime_minutes(out.output) if out.ok else None


@command(
    "uptime",
    summary="how long devices have been up, longest first",
    params=[
        Param("targets", Targets()),
        Param("below", Integer(1, 525600, metavar="minutes"), keyword="below", optional=True, default=DEFAULT_BELOW),
    ],
    # Whoever may run `show ...` commands may run this one too (roles grant "show.*").
    permission="show.uptime",
    examples=["uptime r1", "uptime group:core below 1440"],
)
def uptime(ctx: TaskContext, targets: list[str], below: int) -> Result:
    """Reads `show version` on each device. A device that does not answer gets its own
    line with the reason; the others are still listed. Devices up for less than `below`
    minutes (default 60) are named in a note: they rebooted recently."""
    outputs = run_on_devices(ctx, targets, "show version")
    status, summary = outcome_summary("uptime", outputs)
    minutes = {o.device: m for o in outputs if (m := _minutes_of(o)) is not None}
    rows = [[device, _readable(m), str(m)] for device, m in sorted(minutes.items(), key=lambda item: -item[1])]
    rows += [[o.device, f"failed: {o.error}" if not o.ok else "no uptime in show version", ""]
             for o in outputs if o.device not in minutes]
    parts: list[Part] = [Table(["device", "up for", "minutes"], rows)]
    recent = [device for device, m in minutes.items() if m < below]
    if recent:
        parts.append(Note(f"rebooted less than {below} minutes ago: {', '.join(recent)}"))
    return Result(status, summary, parts, devices=device_outcomes(outputs))


def _readable(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    return f"{days} d {rest // 60} h" if days else f"{rest // 60} h {rest % 60} min"


def _validate(ctx: TaskContext, targets: str, options: dict[str, str]) -> dict[str, Any]:
    below = options.get("below", str(DEFAULT_BELOW))
    if not below.isdigit() or int(below) < 1:
        raise ArgumentError(f"below takes a number of minutes, not '{below[:20]}'")
    return {"devices": ctx.inventory.resolve(targets), "below": int(below)}


@check_kind("uptime", summary="devices stay up: alert when one rebooted less than N minutes ago (below N, default 60)",
            options=("below",), validate=_validate)
def uptime_check(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Outcome]:
    below = spec["below"]
    outcomes = {}
    for out in run_on_devices(ctx, spec["devices"], "show version"):
        minutes = _minutes_of(out)
        if minutes is None:
            outcomes[out.device] = Outcome(False, out.error or "no uptime in show version")
        else:
            outcomes[out.device] = Outcome(minutes >= below, f"up for {_readable(minutes)}")
    return outcomes

