"""Shared by ping and traceroute: where a probe may go and how to run it on a device."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Sequence
from typing import Any

from chatbot.args import NetTarget
from chatbot.context import TaskContext
from chatbot.errors import TaskFailure, UserError

LAB_PROBE_NETWORKS = ["127.0.0.0/8", "::1/128"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- names -------------------------------------------------------------------------------

class Unresolvable(TaskFailure):
    """A host name with no address: "r1: cannot resolve core1.example.net"."""


def _unresolvable(name: str, err: OSError | UnicodeError, owner: str | None) -> Unresolvable:
    reason = ""
    if isinstance(err, socket.gaierror) and err.errno == socket.EAI_AGAIN:
        reason = " (the DNS server did not answer; try again)"
    elif isinstance(err, UnicodeError):
        reason = " (not a valid host name)"
    return Unresolvable(f"{owner + ': ' if owner else ''}cannot resolve {name}{reason}")


def _addresses(infos: Sequence[tuple[Any, ...]]) -> list[str]:
    # getaddrinfo lists the addresses in the order the system prefers (RFC 6724); an IPv6
    # link-local answer keeps its scope ("fe80::1%eth0") so the echo leaves by that link.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_blocking(name: str, owner: str | None = None) -> list[str]:
    """The addresses of a host name. Blocks on DNS: call it from a task's worker thread,
    never on the bot's event loop."""
    try:
        return _addresses(socket.getaddrinfo(name, None, type=socket.SOCK_RAW))
    except (OSError, UnicodeError) as err:
        raise _unresolvable(name, err, owner) from None


async def resolve_async(name: str, owner: str | None = None) -> list[str]:
    """resolve_blocking for code on an event loop: the lookup runs in the loop's executor."""
    try:
        return _addresses(await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_RAW))
    except (OSError, UnicodeError) as err:
        raise _unresolvable(name, err, owner) from None


# --- where the bot host may send probes --------------------------------------------------

def probe_networks(ctx: TaskContext) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = ctx.config.limits.host_probe_networks or (LAB_PROBE_NETWORKS if ctx.lab_mode else [])
    return [ipaddress.ip_network(n, strict=False) for n in networks]


def host_probe_problem(ctx: TaskContext, address: str) -> str | None:
    """Why the bot host may not probe `address`, or None when it may.

    The bot host probes single hosts inside the networks the operator allows (in the lab,
    loopback only, so a demo never touches a real network). Refused whatever the
    networks: the limited broadcast 255.255.255.255, multicast and the unspecified
    address. Refused inside an allowed IPv4 network of /30 or wider: its first address
    (the network) and last (the directed broadcast), which are no host on a real subnet;
    /31 (RFC 3021) and /32 have none. A device may still ping them: 'from <device>'.
    """
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return f"{ip} is the broadcast address, not a host"
    if ip.is_multicast:
        return f"{ip} is a multicast address, not a host"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address, not a host"
    networks = probe_networks(ctx)
    if not networks:
        return None
    containing = [n for n in networks if ip in n]
    if not containing:
        where = ("in lab mode the bot host only probes loopback"
                 if ctx.lab_mode and not ctx.config.limits.host_probe_networks
                 else f"the bot host may only probe {', '.join(map(str, networks))}")
        return f"{ip} is out of bounds: {where}"
    for network in containing:
        if network.version == 4 and network.prefixlen <= 30:
            if ip == network.network_address:
                return f"{ip} is the network address of {network}, not a host"
            if ip == network.broadcast_address:
                return f"{ip} is the broadcast address of {network}, not a host"
    return None


FROM_DEVICE_HINT = "; add 'from <device>' to probe from a device"


def check_host_probe_allowed(ctx: TaskContext, address: str) -> None:
    problem = host_probe_problem(ctx, address)
    if problem is not None:
        raise UserError(problem + FROM_DEVICE_HINT)


def pick_address(ctx: TaskContext, addresses: list[str]) -> tuple[str | None, str | None]:
    """(the first of a name's addresses the bot host may probe, None), or (None, why the
    first may not be probed) when none may."""
    problems = []
    for address in addresses:
        problem = host_probe_problem(ctx, address)
        if problem is None:
            return address, None
        problems.append(problem)
    return None, problems[0] if problems else "no address"


def choose_address(ctx: TaskContext, label: str, addresses: list[str]) -> str:
    address, problem = pick_address(ctx, addresses)
    if address is None:
        raise UserError(f"{label}: {problem}{FROM_DEVICE_HINT}")
    return address


def host_probe_address(ctx: TaskContext, target: NetTarget) -> str:
    """The address the bot host sends to, resolved (from a worker thread) and allowed."""
    if target.address is not None:
        check_host_probe_allowed(ctx, target.address)
        return target.address
    name = target.hostname or target.text
    return choose_address(ctx, target.label, resolve_blocking(name, target.device))


def resolved_label(target: NetTarget, address: str) -> str:
    """How a probed target is shown once its name is resolved: "r1 (core1.example.net, 10.1.1.1)"."""
    if target.address is not None:
        return target.label
    if target.device:
        return f"{target.device} ({target.hostname}, {address})"
    return f"{target.text} ({address})"


# --- the bot host's ICMP rights ----------------------------------------------------------

ICMP_PERMISSION_HINT = (
    "the bot host may not send ICMP: allow unprivileged ping with "
    "sysctl net.ipv4.ping_group_range='0 2147483647' (or run with CAP_NET_RAW), "
    "or add 'from <device>'"
)

RAW_SOCKET_HINT = (
    "traceroute from the bot host needs raw sockets: run the bot with CAP_NET_RAW, "
    "or add 'from <device>'"
)


def privileged_modes() -> list[bool]:
    """Unprivileged ICMP sockets first (no special rights needed where the sysctl allows);
    raw sockets as a fallback when running as root."""
    return [False, True] if os.geteuid() == 0 else [False]


# --- commands on devices -----------------------------------------------------------------

DEVICE_PING = {
    "cisco_iosxe": "ping {target} repeat {count}",
    "cisco_ios": "ping {target} repeat {count}",
    "arista_eos": "ping {target} repeat {count}",
    "cisco_nxos": "ping {target} count {count}",
    "juniper_junos": "ping {target} count {count} rapid",
}
DEVICE_TRACEROUTE = {
    "cisco_iosxe": "traceroute {target}",
    "cisco_ios": "traceroute {target}",
    "arista_eos": "traceroute {target}",
    "cisco_nxos": "traceroute {target}",
    "juniper_junos": "traceroute {target}",
}


def device_command(templates: dict[str, str], platform: str | None, **values: object) -> str:
    template = templates.get(platform or "")
    if template is None:
        raise UserError(f"this command is not supported on platform {platform or 'unknown'}")
    return template.format(**values)
