"""The core: one message in, at most one reply out, whatever the platform.

adapter -> Message -> router -> access policy -> audit -> runner -> task -> Result
-> redaction -> Reply. Every step that decides something leaves an audit row first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from chatbot.args import Integer, Param, Text, Word
from chatbot.audit import AuditEvent, AuditLog
from chatbot.commands import Command, Registry
from chatbot.errors import UserError
from chatbot.jobs import JobRunner, JobState, JobStore, RateLimited
from chatbot.monitoring import Monitor, MonitorRefused, MonitorService, Notifier
from chatbot.context import TaskContext
from chatbot.message import Message, Reply
from chatbot.patterns import MATCH_LIMIT_TEXT
from chatbot.policy import AccessPolicy, Decision, Place, Principal
from chatbot.redact import redact
from chatbot.results import Note, Part, Result, Status, Table, TextBlock, invalid
from chatbot.router import MIN_ABBREVIATION, CommandRejected, Invocation, Router
from chatbot.runner import Runner
from chatbot.wording import plural

log = logging.getLogger(__name__)

MAX_AUDIT_ROWS = 100
MONITORS_PER_PAGE = 20


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
    "jobs": _builtin("jobs", "running and queued jobs: yours, or everyone's with the jobs.all right"),
    "cancel": _builtin("cancel", "stop a job: queued work never starts, sessions in flight are closed",
                       (Param("job", Word("job id")),), ("cancel 3fa2c1",)),
    "monitor add": _builtin(
        "monitor add", "watch something on a schedule; alerts go to a room on changes only",
        (Param("kind", Word("check")), Param("targets", Text("targets"), optional=True, greedy=True, default=""),
         Param("every", Word("interval"), keyword="every", optional=True, default="1m"),
         Param("to", Word("room"), keyword="to", optional=True),
         Param("after", Integer(1, 100, metavar="failures"), keyword="after", optional=True, default=2),
         Param("command", Text("show command"), keyword="command", optional=True, greedy=True),
         Param("expect", Text("regex"), keyword="expect", optional=True, greedy=True),
         Param("reject", Text("regex"), keyword="reject", optional=True, greedy=True),
         Param("below", Word("score"), keyword="below", optional=True),
         Param("severity", Word("severity"), keyword="severity", optional=True)),
        ("monitor add ping group:core every 1m", "monitor add ssh r1,r2 every 30s after 3",
         "monitor add show r1 command show ip bgp summary expect Estab every 5m",
         "monitor add apic-health below 80 every 5m", "monitor add apic-faults severity critical every 2m")),
    "monitor list": _builtin("monitor list", f"the monitors and what they watch, {MONITORS_PER_PAGE} a page",
                             (Param("page", Integer(1, 1_000_000, metavar="N"), keyword="page", optional=True,
                                    default=1),), ("monitor list", "monitor list page 2")),
    "monitor remove": _builtin("monitor remove", "delete a monitor", (Param("id", Word("monitor id")),)),
    "monitor pause": _builtin("monitor pause", "stop running a monitor for now", (Param("id", Word("monitor id")),)),
    "monitor resume": _builtin("monitor resume", "run a paused monitor again", (Param("id", Word("monitor id")),)),
}
PLATFORMS = ("console", "matrix", "mattermost", "slack")
# help and whoami only describe the asker's own rights: anyone may ask (and is audited).
ALWAYS_ALLOWED = {"help", "whoami", "jobs", "cancel"}  # jobs/cancel: your own jobs only, unless jobs.all
SEE_ALL_JOBS = "jobs.all"


def all_permissions(registry: Registry) -> set[str]:
    """Every permission a role may name: the commands', the built-ins', and jobs.all."""
    return {c.permission for c in registry} | {c.permission for c in BUILTINS.values()} | {SEE_ALL_JOBS}


@dataclass
class Request:
    """One addressed message on its way through the core."""

    id: str
    msg: Message
    principal: Principal
    place: Place
    started: float
    # Audit rows (and job rows) not yet written: flushed together, before any work starts.
    pending: list[AuditEvent] = field(default_factory=list)
    also: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

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
        for cmd in BUILTINS.values():
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
        if self.monitors is not None:
            await self.monitors.stop()

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
        await self._flush(req)
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
            req.pending.append(req.event("decision", decision="invalid", outcome=str(err)))
            return invalid(str(err), self.prefix + err.usage if err.usage else None)
        cmd = inv.command
        decision = (Decision(True, "anyone may ask") if cmd.name in ALWAYS_ALLOWED
                    else self.policy.check(req.principal, req.place, cmd.permission, inv.devices))
        req.pending.append(req.event("decision", command=cmd.name, arguments=inv.text,
                                     decision="allow" if decision.allowed else "deny",
                                     outcome=decision.reason if not decision.allowed else ", ".join(decision.grants)))
        if not decision.allowed:
            return Result(Status.DENIED, f"{cmd.name}: {decision.reason}")
        if cmd.name in BUILTINS:
            await self._flush(req)  # audit and monitor changes are recorded before they happen
            return await self._builtin(req, inv)
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
            req.also.append(JobStore.finish_for(job, f"{result.status.value}: {result.summary}"))
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

    async def _builtin(self, req: Request, inv: Invocation) -> Result:
        if inv.command.name == "help":
            return self.help(req, inv.args["topic"])
        if inv.command.name == "whoami":
            return self.whoami(req)
        if inv.command.name == "jobs":
            return self.list_jobs(req)
        if inv.command.name == "cancel":
            return self.cancel_job(req, inv.args["job"])
        if inv.command.name.startswith("monitor "):
            return await self.monitor_command(req, inv.command.name.split()[1], inv.args)
        return await self.audit_rows(inv.args["count"])

    async def monitor_command(self, req: Request, verb: str, args: dict[str, Any]) -> Result:
        service = self.monitors
        if service is None:
            return Result(Status.FAILED, "monitoring is not running in this bot")
        if verb == "list":
            return await self.list_monitors(args["page"])
        if verb == "add":
            return await self._add_monitor(req, args)
        monitor = await asyncio.to_thread(service.get, args["id"])
        if monitor is None:
            return invalid(f"no monitor {args['id'][:16]}; see {self.prefix}monitor list")
        if monitor.source == "config" and verb == "remove":
            return invalid(f"monitor {monitor.id} comes from the config file; remove it there")
        if verb == "resume":
            problem = await asyncio.to_thread(service.problem, monitor)
            if problem is not None:
                return invalid(f"monitor {monitor.id} cannot run: {problem}; remove it and add it again")
        if verb == "remove":
            await asyncio.to_thread(service.remove, monitor.id)
        else:
            await asyncio.to_thread(service.set_paused, monitor.id, verb == "pause")
        done = {"remove": "removed", "pause": "paused", "resume": "resumed"}[verb]
        return Result(Status.OK, f"monitor {monitor.id} ({service.describe(monitor)}) {done}")

    async def list_monitors(self, page: int) -> Result:
        service = self.monitors
        assert service is not None
        monitors = await asyncio.to_thread(service.all)
        if not monitors:
            return Result(Status.OK, "no monitors")
        pages = -(-len(monitors) // MONITORS_PER_PAGE)
        if page > pages:
            return invalid(f"there {'is' if pages == 1 else 'are'} only {plural(pages, 'page')} of monitors")
        shown = monitors[(page - 1) * MONITORS_PER_PAGE:page * MONITORS_PER_PAGE]
        # a paused monitor's state may say why, which may compile its pattern: not on the loop
        states = await asyncio.to_thread(lambda: [_monitor_state(service, m) for m in shown])
        rows = [[m.id, service.describe(m), m.room, m.owner, state] for m, state in zip(shown, states)]
        summary = plural(len(monitors), "monitor")
        if pages > 1:
            summary += f", page {page}/{pages}"
            if page < pages:
                summary += f"; {self.prefix}monitor list page {page + 1} for more"
        return Result(Status.OK, summary, [Table(["id", "checks", "alerts to", "owner", "state"], rows)])

    async def _add_monitor(self, req: Request, args: dict[str, Any]) -> Result:
        service = self.monitors
        assert service is not None
        options = {k: args[k] for k in ("command", "expect", "reject", "below", "severity") if args.get(k)}
        # The asking room is a platform's own id (the terminal's is "console"): always
        # qualify it; a `to` room may already name its platform.
        room = args.get("to") or f"{req.msg.platform}:{req.msg.room}"
        if ":" not in room or room.partition(":")[0] not in PLATFORMS:
            room = f"{req.msg.platform}:{room}"
        try:
            monitor = await asyncio.to_thread(
                service.build, args["kind"], args["targets"], options, every=args["every"], room=room,
                owner=req.principal.name, after=args["after"])
        except UserError as err:
            return invalid(str(err), self.prefix + BUILTINS["monitor add"].usage())
        devices = list(monitor.options.get("devices") or
                       [label for label, _ in monitor.options.get("targets", []) if label in self.context.inventory.devices])
        decision = self.policy.check(req.principal, req.place, "monitor.add", devices)
        if not decision.allowed:
            return Result(Status.DENIED, f"monitor add: {decision.reason}")
        try:
            await asyncio.to_thread(service.add, monitor)
        except MonitorRefused as err:
            return invalid(f"monitor add: {err}")
        failures = "at the first failure" if monitor.after == 1 else f"after {monitor.after} failures in a row"
        return Result(Status.OK, f"monitor {monitor.id} added: {service.describe(monitor)}, alerts to {monitor.room} "
                                 f"{failures}")

    def _sees_all_jobs(self, req: Request) -> bool:
        return self.policy.may_run_somewhere(req.principal, req.place, SEE_ALL_JOBS)

    def list_jobs(self, req: Request) -> Result:
        everyone = self._sees_all_jobs(req)
        live = [j for j in self.jobs.jobs.values() if everyone or j.user == req.principal.name]
        if not live:
            return Result(Status.OK, "no running or queued jobs" + ("" if everyone else " of yours"))
        rows = [[j.id, j.user, j.state.value, j.progress(), f"{time.time() - j.created:.0f} s", j.text[:60]]
                for j in sorted(live, key=lambda j: j.created)]
        return Result(Status.OK, plural(len(live), "job"), [Table(["job", "user", "state", "progress", "age", "command"], rows)])

    def cancel_job(self, req: Request, job_id: str) -> Result:
        job = self.jobs.jobs.get(job_id)
        if job is None or not (job.user == req.principal.name or self._sees_all_jobs(req)):
            return Result(Status.INVALID, f"no running or queued job {job_id[:16]} that you may cancel")
        self.jobs.cancel(job_id, by=req.principal.name)
        return Result(Status.OK, f"job {job.id} ({job.text}) cancelled")

    async def _audit(self, event: AuditEvent) -> None:
        if self.audit is not None:
            # SQLite commits block; keep them off the event loop.
            await asyncio.to_thread(self.audit.record, event)

    async def _flush(self, req: Request) -> None:
        events, req.pending = req.pending, []
        also, req.also = req.also, []
        if (events or also) and self.audit is not None:
            await asyncio.to_thread(self.audit.record, *events, also=tuple(also))

    # --- built-in commands ----------------------------------------------------------
    def _may_run(self, req: Request, cmd: Command) -> bool:
        return cmd.name in ALWAYS_ALLOWED or self.policy.may_run_somewhere(req.principal, req.place, cmd.permission)

    def help(self, req: Request, topic: str | None) -> Result:
        if topic:
            return self._help_for(req, topic)
        allowed = [c for c in self.registry if self._may_run(req, c)]
        rows = [[f"{self.prefix}{c.short_usage()}", c.summary] for c in allowed if c.name not in ALWAYS_ALLOWED]
        rows += [[f"{self.prefix}{BUILTINS[n].usage()}", BUILTINS[n].summary] for n in ("jobs", "cancel")]
        rows = [[f"{self.prefix}{BUILTINS[n].usage()}", BUILTINS[n].summary] for n in ("help", "whoami")] + rows
        note = ("Targets: a device (r1), a list (r1,r2), group:NAME, site:NAME or all. "
                f"{self.prefix}help <command> shows details and examples.")
        if len(rows) == 4:
            note = "You may not run any network command here; ask the bot's operators for access."
        return Result(Status.OK, "Commands you can run here:", [Table(["usage", "what it does"], rows), Note(note)])

    def _help_for(self, req: Request, name: str) -> Result:
        cmd = self._find(name)
        family = [] if cmd is not None else self._family(req, name)
        if family:
            return self._help_for_family(name, family)
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
        if cmd.name == "monitor add":
            parts += self._check_kinds_help()
        return Result(Status.OK, f"{cmd.name}: {cmd.summary}", parts)

    def _family(self, req: Request, topic: str) -> list[Command]:
        """`help monitor`: the commands whose name starts with the topic's words."""
        words = topic.lower().split()
        return [c for c in self.registry if len(c.words) > len(words) and self._may_run(req, c)
                and all(w == full or (len(w) >= MIN_ABBREVIATION and full.startswith(w))
                        for w, full in zip(words, c.words))]

    def _help_for_family(self, topic: str, family: list[Command]) -> Result:
        rows = [[f"{self.prefix}{c.usage()}", c.summary] for c in family]
        parts: list[Part] = [Table(["usage", "what it does"], rows)]
        if any(c.name == "monitor add" for c in family):
            parts += self._check_kinds_help()
        parts.append(Note(f"{self.prefix}help <command> shows one command's details and examples."))
        name = " ".join(family[0].words[:len(topic.split())])
        return Result(Status.OK, f"{name}: {plural(len(family), 'command')}", parts)

    def _check_kinds_help(self) -> list[Part]:
        if self.monitors is None:
            return []
        kinds = sorted(self.monitors.kinds.values(), key=lambda k: k.name)
        rows = [[k.name, k.summary, ", ".join(k.options) or "-"] for k in kinds]
        return [Table(["check", "watches", "options"], rows, title="check kinds"),
                Note(f"Patterns (expect, reject) are RE2 syntax, matched against {MATCH_LIMIT_TEXT} of the output; "
                     f"at most {self.context.config.limits.monitors_per_person} monitors per person.")]

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
        return Result(Status.OK, f"the last {plural(len(rows), 'audit row')}", [
            Table(["time (UTC)", "request", "kind", "user", "room", "command", "decision", "device", "outcome"], table)])


def _monitor_state(service: MonitorService, monitor: Monitor) -> str:
    if not monitor.paused:
        return "active"
    problem = service.problem(monitor)
    return f"paused: {problem}" if problem else "paused"


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
