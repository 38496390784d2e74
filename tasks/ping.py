"""ping: from the bot host (icmplib) or from a device (over SSH, output parsed)."""

from __future__ import annotations

import icmplib
from icmplib.exceptions import ICMPLibError, SocketPermissionError

from chatbot.args import Device, Integer, NetTarget, NetworkTarget, Param
from chatbot.commands import command
from chatbot.context import TaskContext
from chatbot.errors import TaskFailure, UserError
from chatbot.inventory import DeviceInfo
from chatbot.results import Result, Status, Table, TextBlock
from tasks._device import device_outcomes, run_on_devices
from tasks._ios_parsers import parse_ios_ping
from tasks._probe import (
    DEVICE_PING,
    ICMP_PERMISSION_HINT,
    check_host_probe_allowed,
    device_command,
    privileged_modes,
    resolve,
)

COLUMNS = ["target", "from", "sent", "received", "loss", "rtt min/avg/max (ms)"]
IOS_PLATFORMS = {"cisco_iosxe", "cisco_ios"}
SECONDS_PER_PROBE = 2  # IOS's default per-echo timeout: a count of N may take N*2 s


@command(
    "ping",
    summary="ping a device or address from the bot host, or from a device",
    params=[
        Param("target", NetworkTarget()),
        Param("source", Device(), keyword="from", optional=True),
        Param("count", Integer(1, 100, metavar="count"), keyword="count", optional=True, default=5),
    ],
    examples=["ping r1", "ping 10.0.0.1 from r1", "ping 10.0.0.1 from r1 count 10"],
)
def ping(ctx: TaskContext, target: NetTarget, source: DeviceInfo | None, count: int) -> Result:
    """Without 'from', the bot host sends the echoes; with 'from <device>', the device does."""
    limit = ctx.config.limits.ping_count_max
    if count > limit:
        raise UserError(f"count must be at most {limit}")
    if source is None:
        return _ping_from_host(ctx, target, count)
    return _ping_from_device(ctx, target, source, count)


def _ping_from_host(ctx: TaskContext, target: NetTarget, count: int) -> Result:
    address = resolve(target)
    check_host_probe_allowed(ctx, address)
    host = None
    for privileged in privileged_modes():
        try:
            # Adaptive, like `ping -A`: one echo in flight, the next as soon as it is answered.
            # Polite to the target, and a reachable host answers in milliseconds, not count x 1 s.
            host = icmplib.ping(address, count=count, interval=0, timeout=2, privileged=privileged)
            break
        except SocketPermissionError:
            continue
        except ICMPLibError as err:
            raise TaskFailure(f"ping {target.label}: {err}") from None
    if host is None:
        raise TaskFailure(ICMP_PERMISSION_HINT)
    rtt = f"{host.min_rtt:.1f}/{host.avg_rtt:.1f}/{host.max_rtt:.1f}" if host.packets_received else "-"
    row = [target.label, "bot host", str(host.packets_sent), str(host.packets_received),
           f"{host.packet_loss * 100:.0f}%", rtt]
    return _result(target, "the bot host", host.packets_received, host.packets_sent, row)


def _ping_from_device(ctx: TaskContext, target: NetTarget, source: DeviceInfo, count: int) -> Result:
    address = target.address or target.text  # a host name is resolved by the device itself
    cmd = device_command(DEVICE_PING, source.platform, target=address, count=count)
    [out] = run_on_devices(ctx, [source.name], cmd, timeout=ctx.config.limits.operation_timeout + count * SECONDS_PER_PROBE)
    if not out.ok:
        return Result(Status.FAILED, f"ping from {source.name} failed: {out.error}", devices=device_outcomes([out]))
    if source.platform not in IOS_PLATFORMS:
        return Result(Status.OK, f"ping {target.label} from {source.name}", [TextBlock(out.output)])
    try:
        stats = parse_ios_ping(out.output)
    except ValueError as err:
        raise TaskFailure(f"ping from {source.name}: {err}") from None
    rtt = f"{stats.rtt_min_ms:g}/{stats.rtt_avg_ms:g}/{stats.rtt_max_ms:g}" if stats.rtt_avg_ms is not None else "-"
    row = [target.label, source.name, str(stats.sent), str(stats.received),
           f"{100 - stats.success_percent}%", rtt]
    return _result(target, source.name, stats.received, stats.sent, row)


def _result(target: NetTarget, origin: str, received: int, sent: int, row: list[str]) -> Result:
    if received == 0:
        status, verdict = Status.FAILED, "is unreachable"
    elif received < sent:
        status, verdict = Status.OK, f"answers with loss ({received}/{sent})"
    else:
        status, verdict = Status.OK, f"is reachable ({received}/{sent})"
    return Result(status, f"{target.label} {verdict} from {origin}", [Table(COLUMNS, [row])])
