"""How whoever runs a task reaches it while it runs: a cancel token and a progress callback.

A task sees only these two small interfaces (through its TaskContext), never the job
runner itself, so the same task code can run in another process: a worker implements
`CancelToken` over whatever carries the cancel (a flag polled from a broker, a
message pushed to it) and `Progress` over whatever carries progress back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

# (done, total): how many of the task's units of work (devices, targets) are finished.
Progress = Callable[[int, int], None]


class CancelToken(Protocol):
    @property
    def cancelled(self) -> bool:
        """Whether the work was cancelled: check it before each unit of work starts."""
        ...

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (from any thread) when the work is cancelled, or at once if it
        already is; e.g. to cut a session in flight. Returns what unregisters it."""
        ...


def no_progress(done: int, total: int) -> None:
    """The progress callback of work nobody watches."""


class NeverCancelled:
    """The token of work that cannot be cancelled (a scheduled check, a test)."""

    @property
    def cancelled(self) -> bool:
        return False

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        return _nothing


def _nothing() -> None:
    pass


NEVER_CANCELLED = NeverCancelled()


class CancelFlag:
    """The in-process CancelToken: a flag and the callbacks to run when it is set.
    Tasks run in threads, so every method is thread-safe."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._set.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            if not self._set.is_set():
                key = self._next
                self._next += 1
                self._callbacks[key] = callback

                def unregister() -> None:
                    with self._lock:
                        self._callbacks.pop(key, None)
                return unregister
        _call_quietly(callback)  # already cancelled: the caller must not start
        return _nothing

    def cancel(self) -> None:
        with self._lock:
            self._set.set()
            callbacks, self._callbacks = list(self._callbacks.values()), {}
        for callback in callbacks:
            _call_quietly(callback)


def _call_quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # e.g. a session already gone: the cancel still stands
        pass
