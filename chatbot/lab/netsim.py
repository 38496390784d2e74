"""The simulated data plane behind `ping` and `traceroute`. No packet is ever sent.

Reachability model (deterministic, from the point of view of any lab device):

- 10.0.0.0/8 answers every probe. Exception: the loopback (10.0.x.y) of a lab device
  that is currently DOWN does not answer.
- The lab devices' own management addresses (127.0.x.y, one per device in the lab)
  answer, unless that device is DOWN.
- 192.0.2.0/24 (TEST-NET-1) loses every second probe: `!.!.!`, 60 percent (3/5).
- Everything else is unreachable: `.....`, 0 percent.
- In vrf Mgmt-intf (the management network) only the lab devices' management
  addresses answer; a source interface of another table reaches nothing.
- Every link has an MTU of 1500 bytes: a larger datagram with the DF bit set cannot
  leave (`M.M.M`, the router's unreachables rate-limited as on IOS).

Names resolve only if they are lab device names (r1, r2, ...), to that device's
management address, like `ip host` entries would; any other name is unknown.

Round-trip times are small integers derived from a hash of the target, so a given
target always gives the same figures.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from chatbot.lab.configs import loopback_index
from chatbot.lab.model import device_host, device_index, host_index

_LOSSY = ipaddress.IPv4Network("192.0.2.0/24")
_REACHABLE = ipaddress.IPv4Network("10.0.0.0/8")
PING_LINE_WIDTH = 70  # IOS wraps the !!!!! line every 70 probes
LINK_MTU = 1500
MGMT_VRF = "Mgmt-intf"
TRACE_MAX_HOPS = 5  # IOS goes to 30; the lab stops early so a trace stays instant


class Reach(Enum):
    REACHABLE = "reachable"
    LOSSY = "lossy"
    UNREACHABLE = "unreachable"


@dataclass
class Topology:
    """What a device needs to know about the rest of the lab."""

    device_count: int
    is_device_up: Callable[[int], bool] = lambda index: True

    def has_device(self, index: int | None) -> bool:
        return index is not None and 0 <= index < self.device_count

    def device_alive(self, index: int | None) -> bool:
        return self.has_device(index) and self.is_device_up(index)  # type: ignore[arg-type]

    def resolve(self, target: str) -> str | None:
        """An IPv4 literal as is, a lab device name to its address, anything else None."""
        try:
            return str(ipaddress.IPv4Address(target))
        except ValueError:
            pass
        index = device_index(target)
        if index is None or not self.has_device(index):
            return None
        return device_host(index)

    def reach(self, address: str, vrf: str | None = None) -> Reach:
        ip = ipaddress.IPv4Address(address)
        if vrf == MGMT_VRF:
            lab_index = host_index(address)
            return Reach.REACHABLE if self.device_alive(lab_index) else Reach.UNREACHABLE
        if ip in _LOSSY:
            return Reach.LOSSY
        lab_index = host_index(address)
        if lab_index is not None:
            return Reach.REACHABLE if self.device_alive(lab_index) else Reach.UNREACHABLE
        loopback = loopback_index(address)
        if self.has_device(loopback) and not self.device_alive(loopback):
            return Reach.UNREACHABLE
        return Reach.REACHABLE if ip in _REACHABLE else Reach.UNREACHABLE


def _rtt_seed(source: str, address: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{source}>{address}".encode()).digest()[:4], "big")


def ping_output(
    topology: Topology,
    source: str,
    address: str,
    count: int = 5,
    size: int = 100,
    timeout: int = 2,
    *,
    vrf: str | None = None,
    source_address: str | None = None,
    df_bit: bool = False,
    reach: Reach | None = None,
) -> str:
    """IOS `ping` text for an already resolved address. `reach` overrides the topology
    (a source interface in another table reaches nothing)."""
    reach = reach or topology.reach(address, vrf)
    if df_bit and size > LINK_MTU and reach is not Reach.UNREACHABLE:
        marks = "".join("M" if n % 2 == 0 else "." for n in range(count))
    elif reach is Reach.REACHABLE:
        marks = "!" * count
    elif reach is Reach.LOSSY:
        marks = "".join("!" if n % 2 == 0 else "." for n in range(count))
    else:
        marks = "." * count
    lines = [
        "Type escape sequence to abort.",
        f"Sending {count}, {size}-byte ICMP Echos to {address}, timeout is {timeout} seconds:",
    ]
    if source_address:
        lines.append(f"Packet sent with a source address of {source_address} ")
    if df_bit:
        lines.append("Packet sent with the DF bit set")
    lines += [marks[start : start + PING_LINE_WIDTH] for start in range(0, count, PING_LINE_WIDTH)]
    received = marks.count("!")
    percent = received * 100 // count
    summary = f"Success rate is {percent} percent ({received}/{count})"
    if received:
        seed = _rtt_seed(source, address)
        low = 1 + seed % 2
        spread = 1 + (seed >> 4) % 4
        # one round trip per answered echo, so min/avg/max agree with each other
        rtts = [low + (seed >> (8 + n % 16)) % (spread + 1) for n in range(count) if marks[n] == "!"]
        summary += f", round-trip min/avg/max = {min(rtts)}/{sum(rtts) // len(rtts)}/{max(rtts)} ms"
    lines.append(summary)
    return "\n".join(lines)


def _hop_line(hop: int, address: str, probes: list[int | None]) -> str:
    parts = []
    for probe in probes:
        parts.append("* " if probe is None else f"{probe} msec")
    return f"  {hop} {address} " + " ".join(parts)


def traceroute_output(topology: Topology, source_index: int, target: str, address: str) -> str:
    """IOS `traceroute` text; `target` is what the user typed, `address` what it resolved to."""
    reach = topology.reach(address)
    seed = _rtt_seed(str(source_index), address)
    shown = target if target == address else f"{target} ({address})"
    lines = [
        "Type escape sequence to abort.",
        f"Tracing the route to {shown}",
        "VRF info: (vrf in name/id, vrf out name/id)",
    ]
    # Transit routers 10.255.<hop-1>.1: one to three of them, fixed per (source, target).
    transit = 1 + seed % 3
    if reach is Reach.UNREACHABLE:
        transit = min(transit, 2)
    hop = 0
    for hop in range(1, transit + 1):
        rtt = hop
        lines.append(
            _hop_line(hop, f"10.255.{hop - 1}.1", [rtt, rtt, max(1, rtt - (seed >> hop) % 2)])
        )
    if reach is Reach.UNREACHABLE:
        for hop in range(transit + 1, TRACE_MAX_HOPS + 1):
            lines.append(f"  {hop}  *  *  * ")
    else:
        final = transit + 1
        rtt = final
        probes: list[int | None] = (
            [rtt, None, max(1, rtt - 1)] if reach is Reach.LOSSY else [rtt, rtt, rtt]
        )
        if reach is Reach.REACHABLE and seed % 5 == 0:
            probes = [rtt, None, max(1, rtt - 1)]  # one lost probe now and then, as in real life
        lines.append(_hop_line(final, address, probes))
    return "\n".join(lines)
