"""Shared by ping and traceroute: where a probe may go and how to run it on a device."""

from __future__ import annotations

import ipaddress
import os
import socket

from chatbot.args import NetTarget
from chatbot.context import TaskContext
from chatbot.errors import TaskFailure, UserError

LAB_PROBE_NETWORKS = ["127.0.0.0/8", "::1/128"]


def resolve(target: NetTarget) -> str:
    if target.address:
        return target.address
    try:
        infos = socket.getaddrinfo(target.text, None, type=socket.SOCK_RAW)
    except socket.gaierror:
        raise TaskFailure(f"cannot resolve host name '{target.text}'") from None
    return str(infos[0][4][0])


def check_host_probe_allowed(ctx: TaskContext, address: str) -> None:
    """The bot host sends real packets: keep them inside the networks the operator allows
    (in the lab, loopback only, so a demo never touches a real network)."""
    networks = ctx.config.limits.host_probe_networks or (LAB_PROBE_NETWORKS if ctx.lab_mode else [])
    if not networks:
        return
    ip = ipaddress.ip_address(address)
    if not any(ip in ipaddress.ip_network(n, strict=False) for n in networks):
        where = "in lab mode the bot host only probes loopback" if ctx.lab_mode and not ctx.config.limits.host_probe_networks \
            else f"the bot host may only probe {', '.join(networks)}"
        raise UserError(f"{address} is out of bounds: {where}; add 'from <device>' to probe from a device")


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
