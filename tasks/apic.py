"""apic: Cisco ACI fabric health and faults over the APIC REST API."""

from __future__ import annotations

import re

from chatbot.api import Choice, Note, Param, Part, Result, Status, Table, TaskContext, Word, command
from tasks._apic_client import active_faults_query, client_for

SEVERITIES = ("critical", "major", "minor", "warning")
LISTED_SEVERITIES = (*SEVERITIES, "info")  # `apic faults` without a severity lists these, in this order
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
    score = fabric if fabric is not None else "?"
    summary = f"APIC {endpoint.name}: fabric health {score}" + (f" ({pods})" if pods else "")
    columns = ["scope", "health", "previous", "change", "max severity", "updated"]
    return Result(Status.OK, summary, [Table(columns, rows)])


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
    client = client_for(endpoint)
    # One query per severity, most severe first: the first page then holds the worst
    # faults whatever order the APIC gives an enumerated property, and every totalCount
    # adds up to the true number however many faults there are.
    faults: list[dict[str, str]] = []
    total = 0
    for level in (severity,) if severity else LISTED_SEVERITIES:
        page = client.get_page("faultInst", active_faults_query(level), node=True,
                               page_size=max(MAX_FAULT_ROWS - len(faults), 1))
        total += page.total
        faults += page.objects[: MAX_FAULT_ROWS - len(faults)]
    what = f"{severity} faults" if severity else "faults"
    if not total:
        return Result(Status.OK, f"APIC {endpoint.name}: no active {what}")
    rows = [[f.get("severity", ""), f.get("code", ""), f.get("descr", "")[:120], f.get("dn", ""),
             f.get("lastTransition", "")] for f in faults]
    parts: list[Part] = [Table(["severity", "code", "description", "object", "since"], rows)]
    if total > len(rows):
        parts.append(Note(f"showing {len(rows)} of {total}"))
    return Result(Status.OK, f"APIC {endpoint.name}: {total} active {what.rstrip('s') if total == 1 else what}", parts)

