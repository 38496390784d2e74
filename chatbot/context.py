"""What a task may use: the inventory, its settings, resolved APIC endpoints, and the
handles of the run it belongs to (cancel, progress, whether it is background work).

Nothing here knows about chat or the job runner, so task code can run in a worker
process later: a task learns of a cancel and reports progress only through its context.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from chatbot.config import ApicConfig, Config
from chatbot.control import NEVER_CANCELLED, CancelToken, Progress, no_progress
from chatbot.errors import ArgumentError
from chatbot.inventory import DeviceInventory, suggest
from chatbot.limits import DeviceGate, SessionGate
from chatbot.secrets import resolve_secret


@dataclass(frozen=True)
class ApicEndpoint:
    name: str
    url: str
    username: str
    password: str
    verify_tls: bool | str
    timeout: float


@dataclass
class TaskContext:
    inventory: DeviceInventory
    config: Config
    lab_mode: bool = False
    gate: SessionGate = field(default_factory=DeviceGate)
    # Per run (the runner hands each task its own copy, see for_run):
    cancel: CancelToken = NEVER_CANCELLED
    progress: Progress = no_progress
    # Scheduled checks: device sessions come from the background share of the cap, so
    # monitoring never takes every slot from interactive users.
    background: bool = False

    def for_run(self, *, cancel: CancelToken = NEVER_CANCELLED, progress: Progress = no_progress,
                background: bool = False) -> TaskContext:
        """This context for one run of a task, with that run's handles."""
        return replace(self, cancel=cancel, progress=progress, background=background)

    def apic(self, name: str | None) -> ApicEndpoint:
        apics = self.config.apic
        if not apics:
            raise ArgumentError("no APIC is configured (add an [apic.NAME] section)")
        if name is None:
            name = next(iter(apics))
        if name not in apics:
            raise ArgumentError(f"unknown APIC '{name}'{suggest(name, apics)}")
        return _endpoint(name, apics[name])

    def apic_names(self) -> list[str]:
        return list(self.config.apic)


def _endpoint(name: str, cfg: ApicConfig) -> ApicEndpoint:
    password = resolve_secret(cfg.extras(), "password", f"apic.{name}")
    if password is None:
        raise ArgumentError(f"[apic.{name}] has no password, password_env or password_file")
    return ApicEndpoint(name, cfg.url.rstrip("/"), cfg.username, password, cfg.verify_tls, cfg.timeout)
