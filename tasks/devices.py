"""devices: the inventory as a table."""

from __future__ import annotations

from chatbot.api import Note, Param, Result, Status, Table, TaskContext, Word, command, plural

MAX_ROWS = 200


@command(
    "devices",
    summary="list inventory devices, optionally filtered",
    params=[Param("filter", Word("filter"), optional=True, default="")],
    examples=["devices", "devices group:core", "devices site:hq", "devices r1"],
)
def devices(ctx: TaskContext, filter: str) -> Result:
    """The filter is a target (r1, r1,r2, group:NAME, site:NAME, all) or any part of a name, address, group or site."""
    found = ctx.inventory.filter(filter)
    rows = [[d.name, d.address + (f":{d.port}" if d.port else ""), d.platform or "", ",".join(d.groups),
             d.site or "", d.role or ""] for d in found[:MAX_ROWS]]
    parts: list = [Table(["device", "address", "platform", "groups", "site", "role"], rows)]
    if len(found) > MAX_ROWS:
        parts.append(Note(f"showing {MAX_ROWS} of {len(found)}; narrow it with a filter such as group:NAME"))
    what = f"matching '{filter}'" if filter else "in the inventory"
    return Result(Status.OK, f"{plural(len(found), 'device')} {what}", parts)
