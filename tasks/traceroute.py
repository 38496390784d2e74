"""traceroute: from the bot host (icmplib, needs raw sockets) or from a device over SSH."""

from __future__ import annotations

from chatbot.api import (
    Device,
    DeviceInfo,
    NetTarget,
    NetworkTarget,
    Param,
    Result,
    Status,
    Table,
    TaskContext,
    TaskFailure,
    TextBlock,
    command,
    device_outcomes,
    plural,
    run_on_devices,
)
from tasks._ios_parsers import parse_ios_traceroute, traced_address
from tasks._probe import DEVICE_TRACEROUTE, RAW_SOCKET_HINT, device_command, host_probe_address, resolved_label

COLUMNS = ["hop", "address", "rtt (ms)"]
MAX_HOPS = 30
DEVICE_TRACE_SECONDS = 90  # an unreachable target makes IOS wait on every hop


@command(
    "traceroute",
    summary="trace the path to a device or address, from the bot host or from a device",
    params=[
        Param("target", NetworkTarget()),
        Param("source", Device(), keyword="from", optional=True),
    ],
    aliases=["trace"],
    examples=["traceroute 10.0.0.1 from r1", "traceroute r2"],
)
def traceroute(ctx: TaskContext, target: NetTarget, source: DeviceInfo | None) -> Result:
    if source is None:
        return _trace_from_host(ctx, target)
    return _trace_from_device(ctx, target, source)


def _trace_from_host(ctx: TaskContext, target: NetTarget) -> Result:
    import icmplib  # on first use: the command is declared at start, icmplib is needed only to trace
    from icmplib.exceptions import ICMPLibError, SocketPermissionError

    address = host_probe_address(ctx, target)
    label = resolved_label(target, address)
    try:
        hops = icmplib.traceroute(address, count=2, interval=0.05, timeout=1, max_hops=MAX_HOPS)
    except SocketPermissionError:
        raise TaskFailure(RAW_SOCKET_HINT) from None
    except ICMPLibError as err:
        raise TaskFailure(f"traceroute {label}: {err}") from None
    rows = [[str(h.distance), h.address, f"{h.avg_rtt:.1f}"] for h in hops]
    reached = bool(hops) and hops[-1].address == address
    summary = f"traceroute to {label} from the bot host: {plural(len(hops), 'hop')}" + _unreached(reached)
    return Result(Status.OK if reached else Status.FAILED, summary, [Table(COLUMNS, rows)])


def _trace_from_device(ctx: TaskContext, target: NetTarget, source: DeviceInfo) -> Result:
    cmd = device_command(DEVICE_TRACEROUTE, source.platform, target=target.host)
    [out] = run_on_devices(ctx, [source.name], cmd, timeout=DEVICE_TRACE_SECONDS)
    if not out.ok:
        return Result(Status.FAILED, f"traceroute from {source.name} failed: {out.error}",
                      devices=device_outcomes([out]))
    if source.platform not in ("cisco_iosxe", "cisco_ios"):
        return Result(Status.OK, f"traceroute {target.label} from {source.name}", [TextBlock(out.output)])
    try:
        hops = parse_ios_traceroute(out.output)
    except ValueError as err:
        raise TaskFailure(f"traceroute from {source.name}: {err}") from None
    rows = [[str(h.number), h.address or "*",
             " ".join("*" if r is None else f"{r:g}" for r in h.rtts_ms)] for h in hops]
    # A host name is resolved by the device, which says to what: "Tracing the route to x (10.1.1.1)".
    destination = target.address or traced_address(out.output)
    reached = destination is not None and any(h.address == destination for h in hops)
    summary = f"traceroute to {target.label} from {source.name}: {plural(len(hops), 'hop')}" + _unreached(reached)
    return Result(Status.OK if reached else Status.FAILED, summary, [Table(COLUMNS, rows)])


def _unreached(reached: bool) -> str:
    return "" if reached else ", target not reached"
