"""`chatbot check`, the device part: log in to every device once, as a command would.

Opening a session is the whole check: name resolution, TCP, the host key (before any
password), the login, enable, and the paging setup. Sessions run through the same Nornir
runner as commands, so at most `[limits] workers` at once, and are closed at once.
"""

from __future__ import annotations

import logging

from nornir.core.task import Result, Task

from chatbot.context import TaskContext
from chatbot.device_failures import describe_failure, unsupported_platform

CONNECTION = "scrapli"
log = logging.getLogger(__name__)


def device_problems(ctx: TaskContext, devices: list[str], *, offline: bool = False) -> dict[str, str]:
    """Device -> one line saying what is wrong, in the order given; devices that are fine are absent.
    Offline, only what the inventory alone can tell (an unsupported platform)."""
    problems: dict[str, str] = {}
    timeout = ctx.config.limits.device_timeout
    for name in devices:
        refused = unsupported_platform(ctx.inventory.devices[name].platform)
        if refused is not None:
            problems[name] = describe_failure(refused, name, timeout)
    reachable = [name for name in devices if name not in problems]
    if offline or not reachable:
        return problems
    wanted = set(reachable)
    nr = ctx.inventory.nornir.filter(filter_func=lambda host: host.name in wanted)
    results = nr.run(task=_log_in, name="check", raise_on_error=False, on_failed=True)
    for name in reachable:
        multi = results.get(name)
        if multi is None:
            problems[name] = "not checked"
        elif multi[0].exception is not None:
            problems[name] = describe_failure(multi[0].exception, name, timeout)
            log.debug("%s: check failed (%s)", name, type(multi[0].exception).__name__)
    return {name: problems[name] for name in devices if name in problems}  # in inventory order


def _log_in(task: Task) -> Result:
    try:
        task.host.get_connection(CONNECTION, task.nornir.config)
    finally:
        if CONNECTION in task.host.connections:
            try:
                task.host.close_connection(CONNECTION)
            except Exception:  # a dropped session may fail to close; it is gone either way
                task.host.connections.pop(CONNECTION, None)
    return Result(host=task.host, result="ok")
