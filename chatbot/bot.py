"""The core: one message in, at most one reply out, whatever the platform.

adapter -> Message -> router -> access policy -> audit -> runner -> task -> Result
-> redaction -> Reply. Every step that decides something leaves an audit row first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from chatbot.args import Integer, Param, Text
from chatbot.audit import AuditEvent, AuditLog
from chatbot.commands import Command, Registry
from chatbot.context import TaskContext
from chatbot.message import Message, Reply
from chatbot.policy import AccessPolicy, Decision, Place, Principal
from chatbot.redact import redact
from chatbot.results import Note, Part, Result, Status, Table, TextBlock, invalid
from chatbot.router import CommandRejected, Invocation, Router
from chatbot.runner import Runner

log = logging.getLogger(__name__)

MAX_AUDIT_ROWS = 100


def _builtin(name: str, summary: str, params: tuple[Param, ...] = (), examples: tuple[str, ...] = ()) -> Command:
    # The bot answers these itself; the handler is never called through the runner.
    return Command(name=name, summary=summary, handler=lambda ctx, **kw: None, params=params,
                   permission=name, examples=examples)


BUILTINS = {
    "help": _builtin("help", "the commands you may run here, or one command's usage",
                     (Param("topic", Text("command"), optional=True, greedy=True),), ("help", "help ping")),
    "whoami": _builtin("whoami", "who the bot thinks you are, and what you may run here"),
    "audit": _builtin("audit", "the latest audit log rows",
                      (Param("count", Integer(1, MAX_AUDIT_ROWS, metavar="n"), optional=True, default=10),),
                      ("audit", "audit 50")),
}
# help and whoami only describe the asker's own rights: anyone may ask (and is audited).
ALWAYS_ALLOWED = {"help", "whoami"}


@dataclass
class Request:
    """One addressed message on its way through the core."""

    id: str
    msg: Message
    principal: Principal
    place: Place
    started: float

    def event(self, kind: str, **fields: Any) -> AuditEvent:
        ident = self.msg.sender
        return AuditEvent(kind=kind, request_id=self.id, user=self.principal.name, platform_id=ident.platform_id,
                          bridge=ident.bridge, weak=ident.weak, platform=self.msg.platform, room=self.msg.room,
                          **fields)


class Bot:
    def __init__(self, registry: Registry, context: TaskContext, policy: AccessPolicy,
                 audit: AuditLog | None = None) -> None:
        cfg = context.config
        self.registry = registry
        for cmd in BUILTINS.values():
            registry.add(cmd)
        self.context = context
        self.policy = policy
        self.audit = audit
        self.prefix = cfg.bot.prefix
        self.router = Router(registry, prefix=cfg.bot.prefix, names=(cfg.bot.name,))
        self.runner = Runner(context, cfg.limits.command_timeout, prefix=cfg.bot.prefix)

    async def handle(self, msg: Message) -> Reply | None:
        text = self.router.command_text(msg.text, direct=msg.direct, mentioned=msg.mentions_bot)
        if text is None:
            return None
        req = Request(secrets.token_hex(6), msg, self.policy.principal(msg.sender),
                      Place(msg.platform, msg.room, msg.direct), time.monotonic())
        await self._audit(req.event("request", arguments=text))
        result = await self._serve(req, text)
        await self._audit(req.event("result", outcome=f"{result.status.value}: {result.summary}",
                                    duration_ms=(time.monotonic() - req.started) * 1000))
        mention = msg.sender.display_name if msg.sender.weak else None
        return Reply(room=msg.room, result=scrub(result), thread=msg.thread, in_reply_to=msg.message_id,
                     job_id=req.id, mention=mention)

    async def reply_failed(self, reply: Reply, msg: Message, error: str) -> None:
        """Adapters call this when a reply could not be delivered."""
        req = Request(reply.job_id or secrets.token_hex(6), msg, self.policy.principal(msg.sender),
                      Place(msg.platform, msg.room, msg.direct), time.monotonic())
        await self._audit(req.event("reply_failure", job_id=reply.job_id, outcome=error))

    async def _serve(self, req: Request, text: str) -> Result:
        try:
            inv = self.router.parse(text, self.context)
        except CommandRejected as err:
            await self._audit(req.event("decision", decision="invalid", outcome=str(err)))
            return invalid(str(err), self.prefix + err.usage if err.usage else None)
        cmd = inv.command
        decision = (Decision(True, "anyone may ask") if cmd.name in ALWAYS_ALLOWED
                    else self.policy.check(req.principal, req.place, cmd.permission, inv.devices))
        await self._audit(req.event("decision", command=cmd.name, arguments=inv.text,
                                    decision="allow" if decision.allowed else "deny",
                                    outcome=decision.reason if not decision.allowed else ", ".join(decision.grants)))
        if not decision.allowed:
            return Result(Status.DENIED, f"{cmd.name}: {decision.reason}")
        if cmd.name in BUILTINS:
            return await self._builtin(req, inv)
        await self._audit(req.event("job", command=cmd.name, arguments=inv.text, job_id=req.id,
                                    outcome="started on " + (",".join(inv.devices) or "no device")))
        log.info("%s runs %r on %s", req.principal.name, inv.text, ",".join(inv.devices) or "-")
        result = await self.runner.run(inv)
        for device, outcome in result.devices.items():
            await self._audit(req.event("device", command=cmd.name, job_id=req.id, device=device, outcome=outcome))
        return result

    async def _builtin(self, req: Request, inv: Invocation) -> Result:
        if inv.command.name == "help":
            return self.help(req, inv.args["topic"])
        if inv.command.name == "whoami":
            return self.whoami(req)
        return await self.audit_rows(inv.args["count"])

    async def _audit(self, event: AuditEvent) -> None:
        if self.audit is not None:
            # SQLite commits block; keep them off the event loop.
            await asyncio.to_thread(self.audit.record, event)

    # --- built-in commands ----------------------------------------------------------
    def _may_run(self, req: Request, cmd: Command) -> bool:
        return cmd.name in ALWAYS_ALLOWED or self.policy.may_run_somewhere(req.principal, req.place, cmd.permission)

    def help(self, req: Request, topic: str | None) -> Result:
        if topic:
            return self._help_for(req, topic)
        allowed = [c for c in self.registry if self._may_run(req, c)]
        rows = [[f"{self.prefix}{c.usage()}", c.summary] for c in allowed if c.name not in ALWAYS_ALLOWED]
        rows = [[f"{self.prefix}{BUILTINS[n].usage()}", BUILTINS[n].summary] for n in ("help", "whoami")] + rows
        note = ("Targets: a device (r1), a list (r1,r2), group:NAME, site:NAME or all. "
                f"{self.prefix}help <command> shows details and examples.")
        if len(rows) == 2:
            note = "You may not run any network command here; ask the bot's operators for access."
        return Result(Status.OK, "Commands you can run here:", [Table(["usage", "what it does"], rows), Note(note)])

    def _help_for(self, req: Request, name: str) -> Result:
        cmd = self._find(name)
        if cmd is None:
            try:
                self.router.match(name.split())
            except CommandRejected as err:  # "unknown command ... Did you mean ...?"
                return invalid(str(err))
        if cmd is None or not self._may_run(req, cmd):
            return invalid(f"no command '{name[:40]}' that you may run here; try {self.prefix}help")
        parts: list[Part] = [Note(f"usage: {self.prefix}{cmd.usage()}")]
        if cmd.details:
            parts.append(Note(cmd.details))
        if cmd.aliases:
            parts.append(Note("also written: " + ", ".join(cmd.aliases)))
        if cmd.examples:
            parts.append(Note("examples: " + "   ".join(f"{self.prefix}{e}" for e in cmd.examples)))
        return Result(Status.OK, f"{cmd.name}: {cmd.summary}", parts)

    def _find(self, name: str) -> Command | None:
        exact = self.registry.lookup(name.lower())
        if exact is not None:
            return exact
        try:
            return self.router.match(name.split())[0]
        except CommandRejected:
            return None

    def whoami(self, req: Request) -> Result:
        ident, p = req.msg.sender, req.principal
        rows = [["identity", ident.user], ["account", ident.platform_id]]
        if ident.bridge:
            rows.append(["bridge", ident.bridge + (" (relayed nick: a claim, not a proof)" if ident.weak else "")])
        rows.append(["person", p.person or "(not in [identities])"])
        rows.append(["groups", ", ".join(sorted(p.groups)) or "-"])
        rows.append(["room", req.place.ref + (" (direct)" if req.place.direct else "")])
        runnable = [c.name for c in self.registry if c.name not in ALWAYS_ALLOWED and self._may_run(req, c)]
        rows.append(["may run here", ", ".join(runnable) or "nothing"])
        return Result(Status.OK, f"You are {p.name}" + (f" via {ident.bridge}" if ident.bridge else ""),
                      [Table(["", ""], rows)])

    async def audit_rows(self, count: int) -> Result:
        if self.audit is None:
            return Result(Status.FAILED, "the audit log is not enabled")
        rows = await asyncio.to_thread(self.audit.recent, count)
        table = [[r["at"].strftime("%Y-%m-%d %H:%M:%S"), r["request_id"], r["kind"], r["user"],
                  f"{r['platform']}:{r['room']}", r["command"] or r["arguments"] or "", r["decision"] or "",
                  r["device"] or "", (r["outcome"] or "")[:80]] for r in rows]
        return Result(Status.OK, f"the last {len(rows)} audit rows", [
            Table(["time (UTC)", "request", "kind", "user", "room", "command", "decision", "device", "outcome"], table)])


def scrub(result: Result) -> Result:
    """Redaction as a safety net over the device text a task returns (text blocks and
    table cells): tasks redact with the device's platform patterns; this catches what
    any of them missed. Summaries and notes are the bot's own prose, where the patterns
    would strike ordinary words ("Username or password is incorrect")."""
    def clean(part: Part) -> Part:
        if isinstance(part, TextBlock):
            return TextBlock(redact(part.text), part.title, part.filename)
        if isinstance(part, Table):
            return Table(part.columns, [[redact(c) for c in row] for row in part.rows], part.title)
        return part

    return Result(result.status, result.summary, [clean(p) for p in result.parts], result.devices)
