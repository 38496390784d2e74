"""Plain data of the lab: fault kinds, device records, names, addresses and groups.

Everything here is a pure function of the device index, so the same lab size always yields
the same names, addresses and groups. That determinism lets tests elsewhere hard-code
"r4 is in site branch1" and lets the running configs be generated from the name alone.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

PLATFORM = "cisco_iosxe"
CORE_DEVICES = 3  # r1..r3 form the core; every later device is an edge router
EDGE_DEVICES_PER_SITE = 10
HOSTS_PER_OCTET = 250  # keeps .251-.255 free for the simulated gateways of each /24
MAX_DEVICES = HOSTS_PER_OCTET * 254  # third octet runs 1..254
RECENT_COMMANDS = 32

_NAME_RE = re.compile(r"^r([1-9][0-9]*)$")


class Fault(str, Enum):
    """Failure modes a device (or the APIC) can be put into at runtime."""

    DOWN = "down"  # not listening: connections are refused
    SLOW = "slow"  # every command answers only after the lab's slow_delay
    AUTH = "auth"  # every password is rejected
    HANG = "hang"  # login works, then nothing is ever printed again
    DISCONNECT = "disconnect"  # the first show/ping/traceroute drops the connection


@dataclass
class DeviceStats:
    """Counters, mutated only on the lab's event loop (readers may be anywhere).

    A session counts from successful SSH authentication until its connection is gone,
    like a line in IOS `show users`. Counting from authentication rather than from TCP
    accept keeps max_concurrent honest for a client that closes one connection and opens
    the next at once: the old connection's EOF is always processed before the new one has
    finished its key exchange and login.
    """

    connections_total: int = 0  # TCP connections accepted, authenticated or not
    sessions_total: int = 0
    sessions_now: int = 0
    max_concurrent: int = 0
    commands: int = 0
    empty_lines: int = 0  # a bare Enter: what a client sends to find the prompt
    auth_failures: int = 0
    # The latest command lines typed (never the enable secret), so a test can see what a
    # client asks of a device; bounded, so a long-running lab does not grow.
    recent_commands: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_COMMANDS))

    def session_opened(self) -> None:
        self.sessions_total += 1
        self.sessions_now += 1
        self.max_concurrent = max(self.max_concurrent, self.sessions_now)

    def session_closed(self) -> None:
        self.sessions_now = max(0, self.sessions_now - 1)

    def reset(self) -> None:
        """Forget history but keep counting live sessions, so max_concurrent stays honest."""
        self.connections_total = 0
        self.sessions_total = 0
        self.max_concurrent = self.sessions_now
        self.commands = 0
        self.empty_lines = 0
        self.auth_failures = 0
        self.recent_commands.clear()


@dataclass(eq=False)
class LabDevice:
    """One simulated router. `port` is the real listening port once the lab has started."""

    name: str
    index: int
    host: str
    port: int
    groups: list[str]
    site: str
    role: str
    platform: str = PLATFORM
    delay: float = 0.0
    fault: Fault | None = None
    stats: DeviceStats = field(default_factory=DeviceStats)


def device_name(index: int) -> str:
    return f"r{index + 1}"


def device_index(name: str) -> int | None:
    """Index of a lab device name (r1 -> 0), or None for anything that is not one."""
    match = _NAME_RE.match(name.strip().lower())
    if not match:
        return None
    index = int(match.group(1)) - 1
    return index if index < MAX_DEVICES else None


def device_host(index: int) -> str:
    """Loopback address of device `index`; Linux routes all of 127/8 to lo, so no setup."""
    return f"127.0.{1 + index // HOSTS_PER_OCTET}.{1 + index % HOSTS_PER_OCTET}"


def host_index(address: str) -> int | None:
    """Inverse of device_host (None when the address is not a lab device address)."""
    parts = address.split(".")
    if len(parts) != 4 or parts[0] != "127" or parts[1] != "0":
        return None
    try:
        third, fourth = int(parts[2]), int(parts[3])
    except ValueError:
        return None
    if not (1 <= third <= 254 and 1 <= fourth <= HOSTS_PER_OCTET):
        return None
    return (third - 1) * HOSTS_PER_OCTET + (fourth - 1)


def device_profile(index: int) -> tuple[list[str], str, str]:
    """(groups, site, role): r1-r3 core at hq, then edges ten to a branch site."""
    if index < CORE_DEVICES:
        return ["core"], "hq", "core"
    site_number = 1 + (index - CORE_DEVICES) // EDGE_DEVICES_PER_SITE
    return ["edge"], f"branch{site_number}", "edge"


def make_device(index: int, port: int, delay: float) -> LabDevice:
    groups, site, role = device_profile(index)
    return LabDevice(
        name=device_name(index),
        index=index,
        host=device_host(index),
        port=port,
        groups=groups,
        site=site,
        role=role,
        delay=delay,
    )
