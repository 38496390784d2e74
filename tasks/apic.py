"""apic: Cisco ACI fabric health and faults over the APIC REST API."""

from __future__ import annotations

import re

from chatbot.args import Choice, Param, Word
from chatbot.commands import command
from chatbot.context import TaskContext
from chatbot.results import Note, Part, Result, Status, Table
from tasks._apic_client import client_for

SEVERITIES = ("critical", "major", "minor", "warning")
MAX_FAULT_ROWS = 50
_POD = re.compile(r"^topology/pod-(\d+)/health$")


@command(
    "apic health",
    summary="ACI fabric and pod health scores",
    params=[Param("apic", Word("apic"), optional=True)],
    examples=["apic health", "apic health apic1"],
)
def apic_health(ctx: TaskContext, apic: str | None) -> Result:
    endpoint = ctx.apic(apic)
    objects = client_for(endpoint).get_class("fabricHealthTotal")
    rows: list[list[str]] = []
    fabric = None
    for attrs in sorted(objects, key=lambda a: _scope(a.get("dn", ""))):
        scope = _scope(attrs.get("dn", ""))
        if scope == "fabric":
            fabric = attrs.get("cur")
        rows.append([scope, attrs.get("cur", "?"), attrs.get("prev", "?"), attrs.get("chng", "?"),
                     attrs.get("maxSev", ""), attrs.get("updTs", "")])
    if not rows:
        return Result(Status.FAILED, f"APIC {endpoint.name} returned no health scores")
    pods = ", ".join(f"{r[0]} {r[1]}" for r in rows if r[0] != "fabric")
    summary = f"APIC {endpoint.name}: fabric health {fabric if fabric is not None else '?'}" + (f" ({pods})" if pods else "")
    return Result(Status.OK, summary, [Table(["scope", "health", "previous", "change", "max severity", "updated"], rows)])


def _scope(dn: str) -> str:
    if dn == "topology/health":
        return "fabric"
    m = _POD.match(dn)
    return f"pod-{m.group(1)}" if m else dn


@command(
    "apic faults",
    summary="active ACI faults, optionally of one severity",
    params=[
        Param("severity", Choice(*SEVERITIES, metavar="severity"), optional=True),
        Param("apic", Word("apic"), keyword="on", optional=True),
    ],
    examples=["apic faults", "apic faults critical", "apic faults major on apic1"],
)
def apic_faults(ctx: TaskContext, severity: str | None, apic: str | None) -> Result:
    endpoint = ctx.apic(apic)
    params = {"query-target-filter": f'eq(faultInst.severity,"{severity}")'} if severity else None
    faults = client_for(endpoint).get_class("faultInst", params=params, node=True)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    faults.sort(key=lambda f: (order.get(f.get("severity", ""), 99), f.get("lastTransition", "")))
    what = f"{severity} faults" if severity else "faults"
    if not faults:
        return Result(Status.OK, f"APIC {endpoint.name}: no active {what}")
    rows = [[f.get("severity", ""), f.get("code", ""), f.get("descr", "")[:120], f.get("dn", ""),
             f.get("lastTransition", "")] for f in faults[:MAX_FAULT_ROWS]]
    parts: list[Part] = [Table(["severity", "code", "description", "object", "since"], rows)]
    if len(faults) > MAX_FAULT_ROWS:
        parts.append(Note(f"showing {MAX_FAULT_ROWS} of {len(faults)}"))
    return Result(Status.OK, f"APIC {endpoint.name}: {len(faults)} active {what.rstrip('s') if len(faults) == 1 else what}", parts)
