"""Device session limits shared by every task: how many sessions one device may see at
once, and how many the bot holds open in all. Tasks run in threads, so these are
thread primitives; a task takes a slot for each device session it opens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Protocol


class SessionGate(Protocol):
    """What device work needs of a gate: this process's DeviceGate, or the limits shared
    by every process through Redis (chatbot.shared_limits, for zones)."""

    per_device: int

    def session(self, device: str, background: bool = False) -> AbstractContextManager[None]:
        """Hold a slot on `device` and one of the global slots while inside."""
        ...


class DeviceGate:
    def __init__(self, per_device: int = 1, total: int = 50, background_share: float = 0.5) -> None:
        self.per_device = per_device
        self._total = threading.BoundedSemaphore(total)
        self._background = threading.BoundedSemaphore(max(1, int(total * background_share)))
        self._lock = threading.Lock()
        self._per_device: dict[str, threading.BoundedSemaphore] = {}

    def _device_slot(self, device: str) -> threading.BoundedSemaphore:
        with self._lock:
            slot = self._per_device.get(device)
            if slot is None:
                slot = self._per_device[device] = threading.BoundedSemaphore(self.per_device)
            return slot

    @contextmanager
    def session(self, device: str, background: bool = False) -> Iterator[None]:
        """Hold a session slot on `device` (and one of the global slots) while inside.
        Background work (scheduled checks) also takes one of the background share, so
        monitoring never takes every slot from interactive users."""
        slot = self._device_slot(device)
        with ExitStack() as held:
            if background:
                held.enter_context(self._background)
            # Device before the global cap: a caller waiting on a busy device must not
            # hold a global slot meanwhile.
            held.enter_context(slot)
            held.enter_context(self._total)
            yield
