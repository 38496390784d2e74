"""The core: one message in, at most one reply out, whatever the platform.

adapter -> Message -> router -> access policy -> audit -> runner -> task -> Result
-> redaction -> Reply. Every step that decides something leaves an audit row: committed
before work that reaches a device or changes the bot's state, written behind (queued,
flushed within half a second and on `stop`) when it describes work done or no work.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from chatbot import store
from chatbot.audit import AuditEvent, AuditLog
from chatbot.builtins import EXTRA_PERMISSIONS, builtin_commands
from chatbot.builtins.call import Call
from chatbot.commands import Registry
from chatbot.context import TaskContext
from chatbot.jobs import JobRunner, JobState, JobStore, RateLimited
from chatbot.message import Message, Reply
from chatbot.monitoring import MonitorService, Notifier
from chatbot.policy import AccessPolicy, Decision, Place, Principal
from chatbot.redact import redact
from chatbot.results import Part, Result, Status, Table, TextBlock, invalid
from chatbot.router import CommandRejected, Router
from chatbot.runner import Runner

log = logging.getLogger(__name__)


def all_permissions(registry: Registry) -> set[str]:
    """Every permission a role may name: the commands', the built-ins', and jobs.all."""
    return {c.permission for c in registry} | {c.permission for c in builtin_commands()} | EXTRA_PERMISSIONS


@dataclass
class Request:
    """One addressed message on its way through the core."""

    id: str
    msg: Message
    principal: Principal
    place: Place
    started: float
    # Audit rows (and job rows) not yet written: committed together before work starts,
    # or queued behind it when the command is done.
    pending: list[AuditEvent] = field(default_factory=list)
    also: list[store.Write] = field(default_factory=list)

    def event(self, kind: str, **fields: Any) -> AuditEvent:
        ident = self.msg.sender
        return AuditEvent(kind=kind, request_id=self.id, user=self.principal.name, platform_id=ident.platform_id,
                          bridge=ident.bridge, weak=ident.weak, platform=self.msg.platform, room=self.msg.room,
                          **fields)


class Bot:
    def __init__(self, registry: Registry, context: TaskContext, policy: AccessPolicy,
                 audit: AuditLog | None = None, jobs: JobRunner | None = None,
                 monitors: MonitorService | None = None) -> None:
        cfg = context.config
        self.registry = registry
        for cmd in builtin_commands():
            registry.add(cmd)
        self.context = context
        self.policy = policy
        self.audit = audit
        self.prefix = cfg.bot.prefix
        self.router = Router(registry, prefix=cfg.bot.prefix, names=(cfg.bot.name,))
        self.monitors = monitors
        self.jobs = jobs or JobRunner(max_running_per_user=cfg.limits.running_jobs_per_user,
                                      rate_per_minute=cfg.limits.commands_per_minute)
        self.runner = Runner(context, cfg.limits.command_timeout, prefix=cfg.bot.prefix)

    async def start(self) -> None:
        """Start what runs on its own (the monitor schedule); adapters call this once."""
        if self.monitors is not None and self.monitors.scheduler is None:
            await self.monitors.start(self.context.config.monitor)

    async def stop(self) -> None:
        """Write every queued row (a clean stop loses none) and stop the monitor schedule."""
        await self._flush_behind()  # first: the scheduler's job store disposes of the engine as it stops
        if self.monitors is not None:
            await self.monitors.stop()
        await self._flush_behind()

    async def _flush_behind(self) -> None:
        for writer in {w.writer for w in (self.audit, self.jobs.store) if w is not None}:
            await asyncio.to_thread(writer.flush)

    def add_notifier(self, platform: str, notifier: Notifier) -> None:
        """An adapter offers to post monitor alerts to rooms of its platform."""
        if self.monitors is not None:
            self.monitors.notifiers[platform] = notifier

    async def handle(self, msg: Message) -> Reply | None:
        text = self.router.command_text(msg.text, direct=msg.direct, mentioned=msg.mentions_bot)
        if text is None:
            return None
        req = Request(secrets.token_hex(6), msg, self.policy.principal(msg.sender),
                      Place(msg.platform, msg.room, msg.direct), time.monotonic())
        req.pending.append(req.event("request", arguments=text))
        result = await self._serve(req, text)
        req.pending.append(req.event("result", outcome=f"{result.status.value}: {result.summary}",
                                     duration_ms=(time.monotonic() - req.started) * 1000))
        await self._flush(req, behind=True)
        mention = msg.sender.display_name if msg.sender.weak else None
        return Reply(room=msg.room, result=scrub(result), thread=msg.thread, in_reply_to=msg.message_id,
                     job_id=req.id, mention=mention)

    async def reply_failed(self, reply: Reply, msg: Message, error: str) -> None:
        """Adapters call this when a reply could not be delivered."""
        req = Request(reply.job_id or secrets.token_hex(6), msg, self.policy.principal(msg.sender),
                      Place(msg.platform, msg.room, msg.direct), time.monotonic())
        if self.audit is not None:
            self.audit.defer(req.event("reply_failure", job_id=reply.job_id, outcome=error))

    async def _serve(self, req: Request, text: str) -> Result:
        try:
            inv = self.router.parse(text, self.context)
        except CommandRejected as err:
            req.pending.append(req.event("decision", decision="invalid", outcome=str(err)))
            return invalid(str(err), self.prefix + err.usage if err.usage else None)
        cmd = inv.command
        decision = (Decision(True, "anyone may ask") if cmd.public
                    else self.policy.check(req.principal, req.place, cmd.permission, inv.devices))
        req.pending.append(req.event("decision", command=cmd.name, arguments=inv.text,
                                     decision="allow" if decision.allowed else "deny",
                                     outcome=decision.reason if not decision.allowed else ", ".join(decision.grants)))
        if not decision.allowed:
            return Result(Status.DENIED, f"{cmd.name}: {decision.reason}")
        if cmd.inline:
            await self._flush(req)  # audit and monitor changes are recorded before they happen
            return await self.runner.run(inv, Call(self, req.msg, req.principal, req.place))
        try:
            job = self.jobs.new_job(user=req.principal.name, platform=req.msg.platform, room=req.msg.room,
                                    command=cmd.name, text=inv.text, devices=inv.devices,
                                    message_id=req.msg.message_id)
        except RateLimited as err:
            req.pending.append(req.event("decision", command=cmd.name, decision="deny", outcome=f"rate: {err}"))
            return Result(Status.DENIED, f"{cmd.name}: {err}")
        req.pending.append(req.event("job", command=cmd.name, arguments=inv.text, job_id=job.id,
                                     outcome="accepted for " + (",".join(inv.devices) or "no device")))
        if self.jobs.store is not None:
            state = JobState.RUNNING if self.jobs.starts_at_once(job) else JobState.QUEUED
            req.also.append(JobStore.insert_for(job, state))
        await self._flush(req)  # on disk before the job can touch a device
        log.info("%s runs %r on %s (job %s)", req.principal.name, inv.text, ",".join(inv.devices) or "-", job.id)
        result = await self.jobs.run(job, lambda job: self.runner.run(inv, cancel=job, progress=job.report_progress))
        for device, outcome in result.devices.items():
            req.pending.append(req.event("device", command=cmd.name, job_id=job.id, device=device, outcome=outcome))
        if self.jobs.store is not None:
            self.jobs.store.finished(job, f"{result.status.value}: {result.summary}")
        return result

    def progress_text(self, message_id: str | None) -> str:
        """What an adapter's "working on it" notice says about the job behind a message."""
        job = self.jobs.job_for_message(message_id)
        if job is None:
            return "working on it…"
        ahead = self.jobs.position(job)
        if job.state.value == "queued":
            return f"queued (job {job.id}): {ahead} of your jobs ahead" if ahead else f"queued (job {job.id})"
        return f"working on it (job {job.id}, {job.progress()})…"

    async def _flush(self, req: Request, *, behind: bool = False) -> None:
        """Write the request's rows: committed now (off the loop: commits block), or
        with `behind`, queued for the write-behind writer."""
        events, req.pending = req.pending, []
        also, req.also = req.also, []
        if self.audit is None or not (events or also):
            return
        if behind and not also:
            self.audit.defer(*events)
        else:
            await asyncio.to_thread(self._commit, events, also)

    def _commit(self, events: list[AuditEvent], also: list[store.Write]) -> None:
        """One unit of work: the audit rows and the job rows of the same moment."""
        assert self.audit is not None
        store.write(self.audit.engine, [self.audit.write_for(events), *also])


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
