"""What a task may use: the inventory, its settings, and resolved APIC endpoints.

Nothing here knows about chat, so task code can run in a worker process later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatbot.config import ApicConfig, Config
from chatbot.errors import ArgumentError
from chatbot.inventory import DeviceInventory, suggest
from chatbot.limits import DeviceGate
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
    gate: DeviceGate = field(default_factory=DeviceGate)

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
