"""ping: from the bot host (icmplib) or from a device (over SSH, output parsed)."""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.api import (
    Device,
    DeviceInfo,
    Flag,
    Integer,
    NetTarget,
    NetworkTarget,
    Param,
    ProbeCount,
    Result,
    SourceInterface,
    Status,
    Table,
    TaskContext,
    TaskFailure,
    TextBlock,
    UserError,
    VrfName,
    command,
    device_outcomes,
    run_on_devices,
)
from tasks._ios_parsers import parse_ios_ping
from tasks._probe import (
    DEVICE_PING,
    ICMP_PERMISSION_HINT,
    device_command,
    host_probe_address,
    privileged_modes,
    resolved_label,
)

COLUMNS = ["target", "from", "sent", "received", "loss", "rtt min/avg/max (ms)"]
IOS_PLATFORMS = {"cisco_iosxe", "cisco_ios"}
SECONDS_PER_PROBE = 2  # IOS's default per-echo timeout: a count of N may take N*2 s
DEFAULT_COUNT = 5
# IOS's `size` is the whole IP datagram; the bot host's echoes carry that minus the headers.
MIN_SIZE, MAX_SIZE = 36, 18024
IP_AND_ICMP_HEADERS = {4: 20 + 8, 6: 40 + 8}


@dataclass(frozen=True)
class DeviceOptions:
    """What only a device's ping can do (the bot host has one table, and icmplib cannot
    set the DF bit)."""

    source: str | None = None
    vrf: str | None = None
    df_bit: bool = False

    def given(self) -> list[str]:
        return [name for name, value in (("source", self.source), ("vrf", self.vrf), ("df-bit", self.df_bit)) if value]


@command(
    "ping",
    summary="ping a device or address from the bot host, or from a device",
    params=[
        Param("target", NetworkTarget()),
        Param("source", Device(), keyword="from", optional=True),
        Param("count", ProbeCount(), keyword="count", aliases=("repeat",), optional=True),
        Param("size", Integer(MIN_SIZE, MAX_SIZE, metavar="size"), keyword="size", optional=True),
        Param("source_interface", SourceInterface(), keyword="source", optional=True),
        Param("vrf", VrfName(), keyword="vrf", optional=True),
        Param("df_bit", Flag(), keyword="df-bit", optional=True, default=False, flag=True),
    ],
    examples=["ping r1", "ping 10.0.0.1 from r1 count 10", "ping 10.0.0.1 from r1 source Loopback0 size 1500 df-bit",
              "ping r2 from r1 vrf Mgmt-intf"],
)
def ping(ctx: TaskContext, target: NetTarget, source: DeviceInfo | None, count: int | None, size: int | None,
         source_interface: str | None, vrf: str | None, df_bit: bool) -> Result:
    """Without 'from', the bot host sends the echoes; with 'from <device>', the device does.
    count (or repeat, as on IOS): 1 to [limits] ping_count_max echoes, 5 by default.
    size: the datagram size in bytes, IOS's 36 to 18024.
    source <interface|address>, vrf <name>, df-bit: only from a Cisco IOS/IOS-XE device.
    The bot host pings single hosts inside [limits] host_probe_networks: never a
    broadcast, multicast or network address (a device may, with 'from')."""
    if count is None:  # the default stays within the limit, however low it is set
        count = min(DEFAULT_COUNT, ctx.config.limits.ping_count_max)
    options = DeviceOptions(source_interface, vrf, df_bit)
    if source is None:
        if given := options.given():
            raise UserError(f"{' and '.join(given)} only {'applies' if len(given) == 1 else 'apply'} "
                            "to a ping from a device: add 'from <device>'")
        return _ping_from_host(ctx, target, count, size)
    return _ping_from_device(ctx, target, source, count, size, options)


def _ping_from_host(ctx: TaskContext, target: NetTarget, count: int, size: int | None) -> Result:
    import icmplib  # on first use: the command is declared at start, icmplib is needed only to ping
    from icmplib.exceptions import ICMPLibError, SocketPermissionError

    address = host_probe_address(ctx, target)
    label = resolved_label(target, address)
    extra = {}
    if size is not None:
        extra["payload_size"] = size - IP_AND_ICMP_HEADERS[6 if ":" in address else 4]
    host = None
    for privileged in privileged_modes():
        try:
            # Adaptive, like `ping -A`: one echo in flight, the next as soon as it is answered.
            # Polite to the target, and a reachable host answers in milliseconds, not count x 1 s.
            host = icmplib.ping(address, count=count, interval=0, timeout=2, privileged=privileged, **extra)
            break
        except SocketPermissionError:
            continue
        except ICMPLibError as err:
            raise TaskFailure(f"ping {label}: {err}") from None
        except OSError as err:  # e.g. a datagram larger than the socket may send
            raise TaskFailure(f"ping {label}: {err.strerror or err}") from None
    if host is None:
        raise TaskFailure(ICMP_PERMISSION_HINT)
    rtt = f"{host.min_rtt:.1f}/{host.avg_rtt:.1f}/{host.max_rtt:.1f}" if host.packets_received else "-"
    row = [label, "bot host", str(host.packets_sent), str(host.packets_received),
           f"{host.packet_loss * 100:.0f}%", rtt]
    return _result(label, "the bot host", host.packets_received, host.packets_sent, row)


def ios_ping_command(target: str, count: int, size: int | None, options: DeviceOptions) -> str:
    """`ping vrf MGMT 10.0.0.1 repeat 10 size 1500 df-bit source Loopback0`: IOS's own order."""
    words = ["ping"]
    if options.vrf:
        words += ["vrf", options.vrf]
    words += [target, "repeat", str(count)]
    if size is not None:
        words += ["size", str(size)]
    if options.df_bit:
        words.append("df-bit")
    if options.source:
        words += ["source", options.source]
    return " ".join(words)


def _ping_from_device(ctx: TaskContext, target: NetTarget, origin: DeviceInfo, count: int, size: int | None,
                      options: DeviceOptions) -> Result:
    host = target.host  # a host name is resolved by the device itself
    if origin.platform in IOS_PLATFORMS:
        cmd = ios_ping_command(host, count, size, options)
    else:
        unsupported = options.given() + (["size"] if size is not None else [])
        if unsupported:
            raise UserError(f"{' and '.join(unsupported)}: only on Cisco IOS/IOS-XE devices "
                            f"({origin.name} is {origin.platform or 'of unknown platform'})")
        cmd = device_command(DEVICE_PING, origin.platform, target=host, count=count)
    [out] = run_on_devices(ctx, [origin.name], cmd,
                           timeout=ctx.config.limits.operation_timeout + count * SECONDS_PER_PROBE)
    if not out.ok:
        return Result(Status.FAILED, f"ping from {origin.name} failed: {out.error}", devices=device_outcomes([out]))
    if origin.platform not in IOS_PLATFORMS:
        return Result(Status.OK, f"ping {target.label} from {origin.name}", [TextBlock(out.output)])
    try:
        stats = parse_ios_ping(out.output)
    except ValueError as err:
        raise TaskFailure(f"ping from {origin.name}: {err}") from None
    rtt = f"{stats.rtt_min_ms:g}/{stats.rtt_avg_ms:g}/{stats.rtt_max_ms:g}" if stats.rtt_avg_ms is not None else "-"
    shown_origin = origin.name + (f" ({stats.source_address})" if stats.source_address else "")
    row = [target.label, shown_origin, str(stats.sent), str(stats.received),
           f"{100 - stats.success_percent}%", rtt]
    result = _result(target.label, origin.name, stats.received, stats.sent, row)
    if stats.could_not_fragment:
        result.summary += (f"; {stats.could_not_fragment} of {stats.sent} could not be sent unfragmented "
                           f"(M): the path MTU is below {stats.datagram_size or size} bytes")
    return result


def _result(label: str, origin: str, received: int, sent: int, row: list[str]) -> Result:
    if received == 0:
        status, verdict = Status.FAILED, "is unreachable"
    elif received < sent:
        status, verdict = Status.OK, f"answers with loss ({received}/{sent})"
    else:
        status, verdict = Status.OK, f"is reachable ({received}/{sent})"
    return Result(status, f"{label} {verdict} from {origin}", [Table(COLUMNS, [row])])
