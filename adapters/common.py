"""What every chat adapter does the same way around the core: reconnecting with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chatbot.inbox import short_error

__all__ = ["Backoff", "Reconnector", "short_error"]

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0


class Backoff:
    """Exponential waits between connection attempts (1, 2, 4... up to `most` seconds),
    which `stopping` cuts short."""

    def __init__(self, stopping: asyncio.Event, first: float = BACKOFF_FIRST, most: float = BACKOFF_MAX) -> None:
        self.stopping = stopping
        self.first, self.most = first, most
        self.seconds = first  # the next wait

    def reset(self) -> None:
        self.seconds = self.first

    async def pause(self) -> None:
        """Wait `seconds` (or until stopped); the wait after it is twice as long."""
        try:
            await asyncio.wait_for(self.stopping.wait(), self.seconds)
        except TimeoutError:
            pass
        self.seconds = min(self.seconds * 2, self.most)


class Reconnector:
    """One adapter's connection loop: run `attempt` again and again until stopped.

    `attempt` returns None when it went well and may run again at once (one Matrix
    sync), or why a connection that was up has ended (a dropped websocket): the next
    try then waits the shortest backoff. An exception is a failed try and the wait
    grows; one of `fatal` (a refused token) ends the loop. The attempt in flight is a
    task of its own, so that `stop` can cut a long-poll or a connection attempt short."""

    def __init__(self, platform: str, log: logging.Logger, fatal: type[BaseException],
                 first: float = BACKOFF_FIRST, most: float = BACKOFF_MAX) -> None:
        self.platform = platform
        self.log = log
        self.fatal = fatal
        self.stopping = asyncio.Event()
        self.backoff = Backoff(self.stopping, first, most)
        self._current: asyncio.Task[Any] | None = None

    async def run(self, attempt: Callable[[], Awaitable[str | None]], failed: str = "{}; reconnecting in {:.0f} s",
                  on_failure: Callable[[], None] | None = None) -> None:
        """`failed` words the log line of a failed try: the error, then the wait."""
        while not self.stopping.is_set():
            try:
                self._current = asyncio.ensure_future(attempt())
                ended = await self._current
            except asyncio.CancelledError:
                if self.stopping.is_set():
                    return  # stop() cut the attempt short
                raise
            except Exception as err:
                if isinstance(err, self.fatal):
                    raise
                ended = None
                line = failed.format(short_error(err), self.backoff.seconds)
                if on_failure is not None:
                    on_failure()
            else:
                self.backoff.reset()
                if ended is None:
                    continue
                line = f"{ended}; reconnecting in {self.backoff.seconds:.0f} s"
            if self.stopping.is_set():
                return
            self.log.warning("%s: %s", self.platform, line)
            await self.backoff.pause()

    async def stop(self) -> None:
        """Cut the connection attempt or long-poll in flight."""
        self.stopping.set()
        current = self._current
        if current is not None and not current.done():
            current.cancel()
            await asyncio.gather(current, return_exceptions=True)
