"""audit: the latest rows of the audit log, in chat."""

from __future__ import annotations

import asyncio

from chatbot.args import Integer, Param
from chatbot.builtins.call import Call
from chatbot.commands import command
from chatbot.results import Result, Status, Table
from chatbot.wording import plural

MAX_AUDIT_ROWS = 100


@command("audit", summary="the latest audit log rows",
         params=[Param("count", Integer(1, MAX_AUDIT_ROWS, metavar="n"), optional=True, default=10)],
         examples=["audit", "audit 50"], inline=True)
async def audit_rows(call: Call, count: int) -> Result:
    audit = call.bot.audit
    if audit is None:
        return Result(Status.FAILED, "the audit log is not enabled")
    rows = await asyncio.to_thread(audit.recent, count)
    table = [[r["at"].strftime("%Y-%m-%d %H:%M:%S"), r["request_id"], r["kind"], r["user"],
              f"{r['platform']}:{r['room']}", r["command"] or r["arguments"] or "", r["decision"] or "",
              r["device"] or "", (r["outcome"] or "")[:80]] for r in rows]
    return Result(Status.OK, f"the last {plural(len(rows), 'audit row')}", [
        Table(["time (UTC)", "request", "kind", "user", "room", "command", "decision", "device", "outcome"], table)])
