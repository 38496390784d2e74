"""Running a validated invocation: off the event loop, under a time limit, with every
failure turned into a result the user can read."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from chatbot.context import TaskContext
from chatbot.control import NEVER_CANCELLED, CancelToken, Progress, no_progress
from chatbot.errors import TaskFailure, UserError
from chatbot.results import Result, Status, failed, invalid
from chatbot.router import Invocation

if TYPE_CHECKING:
    from chatbot.zones.dispatch import ZoneDispatcher

log = logging.getLogger(__name__)


def zone_dispatcher(context: TaskContext, executor: ThreadPoolExecutor | None = None) -> ZoneDispatcher | None:
    """What sends zone devices' work to their workers, when the inventory has zones."""
    zoned = sorted({d.zone for d in context.inventory.devices.values() if d.zone})
    if not zoned:
        return None
    workers = context.config.workers
    if workers is None:
        raise UserError(f"the inventory puts devices in zones ({', '.join(zoned)}) but the config has no "
                        "[workers] section to reach their workers")
    missing = [name for name in ("celery", "redis") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"the inventory puts devices in zones but {' and '.join(missing)} "
                        "is not installed: pip install 'netbot[zones]'")
    from chatbot.zones.dispatch import ZoneDispatcher

    return ZoneDispatcher(workers, context.inventory, executor=executor)


class Runner:
    def __init__(self, context: TaskContext, command_timeout: float, prefix: str = "!", threads: int = 64) -> None:
        self.context = context
        self.command_timeout = command_timeout
        self.prefix = prefix
        # Tasks block in their thread for as long as their devices take: the default
        # executor (cores + 4 threads) would make every other command wait behind them.
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="task")
        # Devices with a `zone` run on that zone's workers (chatbot/zones); None: all here.
        self.zones = zone_dispatcher(context, self.executor)

    async def run(self, inv: Invocation, context: Any = None, *, cancel: CancelToken = NEVER_CANCELLED,
                  progress: Progress = no_progress) -> Result:
        """Run the command with a context of its own, or with `context` when given (the bot's
        own commands get their asker and the bot's services). `cancel` and `progress` reach a
        task through its context and nothing else, so it runs the same in a zone's worker."""
        if context is None and self.zones is not None and self.zones.involved(inv):
            try:
                return await self.zones.run(inv, self._run_here, timeout=inv.command.timeout or self.command_timeout,
                                            cancel=cancel, progress=progress)
            except Exception:
                ref = secrets.token_hex(4)
                log.exception("command %r failed sending work to its zones (ref %s)", inv.text, ref)
                return Result(Status.ERROR, f"{inv.command.name} failed inside the bot (reference {ref}); "
                                            "the error is in the bot's log")
        return await self._run(inv, context, cancel=cancel, progress=progress)

    async def _run_here(self, inv: Invocation, cancel: CancelToken, progress: Progress) -> Result:
        return await self._run(inv, None, cancel=cancel, progress=progress)

    async def _run(self, inv: Invocation, context: Any = None, *, cancel: CancelToken = NEVER_CANCELLED,
                   progress: Progress = no_progress) -> Result:
        timeout = inv.command.timeout or self.command_timeout
        handler = inv.command.handler
        context = self.context.for_run(cancel=cancel, progress=progress) if context is None else context
        try:
            if asyncio.iscoroutinefunction(handler):
                coro = handler(context, **inv.args)
            else:
                # Nornir, requests and icmplib's sync API block: keep them off the loop.
                call = functools.partial(handler, context, **inv.args)
                coro = asyncio.get_running_loop().run_in_executor(self.executor, call)
            # asyncio.timeout rather than wait_for, which wraps a coroutine in a task of its
            # own: that task cost the built-ins (answered in tens of microseconds) about 18 us.
            async with asyncio.timeout(timeout):
                result = await coro
        except TimeoutError:
            return failed(f"{inv.command.name} did not finish within {timeout:g} s")
        except UserError as err:
            return invalid(str(err), self.prefix + inv.command.usage())
        except TaskFailure as err:
            return failed(str(err))
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("command %r failed (ref %s)", inv.text, ref)
            return Result(Status.ERROR, f"{inv.command.name} failed inside the bot (reference {ref}); "
                                        "the error is in the bot's log")
        if not isinstance(result, Result):
            ref = secrets.token_hex(4)
            log.error("command %r returned %r instead of a Result (ref %s)", inv.text, type(result), ref)
            return Result(Status.ERROR, f"{inv.command.name} returned nothing usable (reference {ref})")
        return result
