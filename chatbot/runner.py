"""Running a validated invocation: off the event loop, under a time limit, with every
failure turned into a result the user can read."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chatbot.context import TaskContext
from chatbot.control import NEVER_CANCELLED, CancelToken, Progress, no_progress
from chatbot.errors import TaskFailure, UserError
from chatbot.results import Result, Status, failed, invalid
from chatbot.router import Invocation

log = logging.getLogger(__name__)


class Runner:
    def __init__(self, context: TaskContext, command_timeout: float, prefix: str = "!", threads: int = 64) -> None:
        self.context = context
        self.command_timeout = command_timeout
        self.prefix = prefix
        # Tasks block in their thread for as long as their devices take: the default
        # executor (cores + 4 threads) would make every other command wait behind them.
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="task")

    async def run(self, inv: Invocation, context: Any = None, *, cancel: CancelToken = NEVER_CANCELLED,
                  progress: Progress = no_progress) -> Result:
        """Run the command with a context of its own, or with `context` when given (the bot's
        own commands get their asker and the bot's services). `cancel` and `progress` reach a
        task through its context and nothing else, so it would run the same in another process."""
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
