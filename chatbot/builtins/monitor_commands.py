"""monitor add, list, remove, pause and resume: the chat side of chatbot.monitoring."""

from __future__ import annotations

import asyncio

from chatbot.access_config import PLATFORMS
from chatbot.args import Integer, Param, Text, Word
from chatbot.builtins.call import Call
from chatbot.commands import command
from chatbot.monitoring import Monitor, MonitorRefused, MonitorService
from chatbot.patterns import MATCH_LIMIT_TEXT
from chatbot.results import Note, Part, Result, Status, Table, invalid
from chatbot.wording import plural

MONITORS_PER_PAGE = 20
MONITOR_ADD = "monitor add"


@command(
    MONITOR_ADD, summary="watch something on a schedule; alerts go to a room on changes only",
    params=[Param("kind", Word("check")), Param("targets", Text("targets"), optional=True, greedy=True, default=""),
            Param("every", Word("interval"), keyword="every", optional=True, default="1m"),
            Param("to", Word("room"), keyword="to", optional=True),
            Param("after", Integer(1, 100, metavar="failures"), keyword="after", optional=True, default=2),
            Param("command", Text("show command"), keyword="command", optional=True, greedy=True),
            Param("expect", Text("regex"), keyword="expect", optional=True, greedy=True),
            Param("reject", Text("regex"), keyword="reject", optional=True, greedy=True),
            Param("below", Word("score"), keyword="below", optional=True),
            Param("severity", Word("severity"), keyword="severity", optional=True)],
    examples=["monitor add ping group:core every 1m", "monitor add ssh r1,r2 every 30s after 3",
              "monitor add show r1 command show ip bgp summary expect Estab every 5m",
              "monitor add apic-health below 80 every 5m", "monitor add apic-faults severity critical every 2m"],
    inline=True)
async def add_monitor(call: Call, kind: str, targets: str, every: str, to: str | None, after: int,
                      **options: str | None) -> Result:
    # `options` are the check's own: command, expect, reject, below and severity.
    service = call.bot.monitors
    if service is None:
        return _not_running()
    given = {name: value for name, value in options.items() if value}
    # The asking room is a platform's own id (the terminal's is "console"): always
    # qualify it; a `to` room may already name its platform.
    platform = call.msg.platform
    room = to or f"{platform}:{call.msg.room}"
    if ":" not in room or room.partition(":")[0] not in PLATFORMS:
        room = f"{platform}:{room}"
    # A bad definition is a UserError: the runner answers it with the usage.
    monitor = await asyncio.to_thread(service.build, kind, targets, given, every=every, room=room,
                                      owner=call.principal.name, after=after)
    # The devices are known only once the check has read its targets: ask the policy again.
    inventory = call.bot.context.inventory.devices
    devices = list(monitor.options.get("devices") or
                   [label for label, _ in monitor.options.get("targets", []) if label in inventory])
    decision = call.bot.policy.check(call.principal, call.place, "monitor.add", devices)
    if not decision.allowed:
        return Result(Status.DENIED, f"monitor add: {decision.reason}")
    try:
        await asyncio.to_thread(service.add, monitor)
    except MonitorRefused as err:
        return invalid(f"monitor add: {err}")
    failures = "at the first failure" if monitor.after == 1 else f"after {monitor.after} failures in a row"
    return Result(Status.OK, f"monitor {monitor.id} added: {service.describe(monitor)}, alerts to {monitor.room} "
                             f"{failures}")


@command("monitor list", summary=f"the monitors and what they watch, {MONITORS_PER_PAGE} a page",
         params=[Param("page", Integer(1, 1_000_000, metavar="N"), keyword="page", optional=True, default=1)],
         examples=["monitor list", "monitor list page 2"], inline=True)
async def list_monitors(call: Call, page: int) -> Result:
    service = call.bot.monitors
    if service is None:
        return _not_running()
    monitors = await asyncio.to_thread(service.all)
    if not monitors:
        return Result(Status.OK, "no monitors")
    pages = -(-len(monitors) // MONITORS_PER_PAGE)
    if page > pages:
        return invalid(f"there {'is' if pages == 1 else 'are'} only {plural(pages, 'page')} of monitors")
    shown = monitors[(page - 1) * MONITORS_PER_PAGE:page * MONITORS_PER_PAGE]
    # a paused monitor's state may say why, which may compile its pattern: not on the loop
    states = await asyncio.to_thread(lambda: [_monitor_state(service, m) for m in shown])
    rows = [[m.id, service.describe(m), m.room, m.owner, state] for m, state in zip(shown, states, strict=True)]
    summary = plural(len(monitors), "monitor")
    if pages > 1:
        summary += f", page {page}/{pages}"
        if page < pages:
            summary += f"; {call.prefix}monitor list page {page + 1} for more"
    return Result(Status.OK, summary, [Table(["id", "checks", "alerts to", "owner", "state"], rows)])


@command("monitor remove", summary="delete a monitor", params=[Param("monitor_id", Word("monitor id"))], inline=True)
async def remove_monitor(call: Call, monitor_id: str) -> Result:
    return await _change(call, monitor_id, "remove")


@command("monitor pause", summary="stop running a monitor for now", params=[Param("monitor_id", Word("monitor id"))],
         inline=True)
async def pause_monitor(call: Call, monitor_id: str) -> Result:
    return await _change(call, monitor_id, "pause")


@command("monitor resume", summary="run a paused monitor again", params=[Param("monitor_id", Word("monitor id"))],
         inline=True)
async def resume_monitor(call: Call, monitor_id: str) -> Result:
    return await _change(call, monitor_id, "resume")


async def _change(call: Call, monitor_id: str, verb: str) -> Result:
    service = call.bot.monitors
    if service is None:
        return _not_running()
    monitor = await asyncio.to_thread(service.get, monitor_id)
    if monitor is None:
        return invalid(f"no monitor {monitor_id[:16]}; see {call.prefix}monitor list")
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


def _not_running() -> Result:
    return Result(Status.FAILED, "monitoring is not running in this bot")


def _monitor_state(service: MonitorService, monitor: Monitor) -> str:
    if not monitor.paused:
        return "active"
    problem = service.problem(monitor)
    return f"paused: {problem}" if problem else "paused"


def check_kinds_help(call: Call) -> list[Part]:
    """For help on monitor add: the check kinds the bot knows, and their options."""
    service = call.bot.monitors
    if service is None:
        return []
    kinds = sorted(service.kinds.values(), key=lambda k: k.name)
    rows = [[k.name, k.summary, ", ".join(k.options) or "-"] for k in kinds]
    return [Table(["check", "watches", "options"], rows, title="check kinds"),
            Note(f"Patterns (expect, reject) are RE2 syntax, matched against {MATCH_LIMIT_TEXT} of the output; "
                 f"at most {call.bot.context.config.limits.monitors_per_person} monitors per person.")]
