"""What monitors can check: reachability (ICMP, SSH), a show command's output, and
the ACI fabric (health score, faults). The scheduling and alerting are the core's."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chatbot.api import (
    MATCH_LIMIT_TEXT,
    ArgumentError,
    Outcome,
    TaskContext,
    TaskFailure,
    check_kind,
    compile_pattern,
    is_bounded,
    is_ip_address,
    run_on_devices,
)
from tasks._apic_client import active_faults_query, client_for
from tasks._icmp import ping_many
from tasks._probe import Unresolvable, host_probe_problem, pick_address, resolve_async
from tasks.show import ShowCommandText, _check_platforms

SSH_TIMEOUT = 5.0
MAX_PARALLEL_SSH_PROBES = 100
MAX_MONITORED_FAULTS = 2000  # one alert target each; more are counted, not followed one by one


def _devices_or_addresses(ctx: TaskContext, targets: str) -> list[tuple[str, str]]:
    """`group:core`, `r1,r2`, `10.0.0.1`: (label, address) pairs, validated now."""
    found: list[tuple[str, str]] = []
    for item in filter(None, (t.strip() for t in targets.split(","))):
        if is_ip_address(item):
            found.append((item, item))
        else:
            for name in ctx.inventory.resolve(item):
                found.append((name, ctx.inventory.devices[name].address))
    if not found:
        raise ArgumentError("no targets given")
    return found


def _site(ctx: TaskContext, name: str) -> str | None:
    device = ctx.inventory.devices.get(name)
    return device.site if device else None


def _validate_ping(ctx: TaskContext, targets: str, options: dict[str, str]) -> dict[str, Any]:
    pairs = _devices_or_addresses(ctx, targets)
    for _, address in pairs:
        # A device known by a DNS name is resolved, and bounded, at every run: its
        # address may change, and a start of the bot must not wait on DNS.
        if is_ip_address(address) and (problem := host_probe_problem(ctx, address)):
            raise ArgumentError(problem)
    return {"targets": pairs}


@check_kind("ping", summary="the bot host pings devices or addresses", validate=_validate_ping)
def ping_check(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Outcome]:
    pairs = [(str(label), str(host)) for label, host in spec["targets"]]
    return asyncio.run(_ping_targets(ctx, pairs))


async def _ping_targets(ctx: TaskContext, pairs: list[tuple[str, str]]) -> dict[str, Outcome]:
    """Resolve the names (all at once, in the loop's executor), then one ICMP sweep."""
    names = list(dict.fromkeys(host for _, host in pairs if not is_ip_address(host)))
    lookups = await asyncio.gather(*(resolve_async(name) for name in names), return_exceptions=True)
    for found in lookups:
        if isinstance(found, BaseException) and not isinstance(found, Unresolvable):
            raise found
    resolved = dict(zip(names, lookups, strict=True))
    out: dict[str, Outcome] = {}
    addresses: dict[str, str] = {}
    for label, host in pairs:
        found = resolved.get(host, [host])
        if isinstance(found, BaseException):
            out[label] = Outcome(False, str(found), _site(ctx, label))
            continue
        address, problem = pick_address(ctx, found)
        if address is None:
            # the operator narrowed host_probe_networks, or the name moved out of them
            out[label] = Outcome(False, f"not probed: {problem}", _site(ctx, label))
            continue
        addresses[label] = address
    results = await ping_many(list(dict.fromkeys(addresses.values())), count=2, timeout=1.0)
    for label, address in addresses.items():
        r = results[address]
        detail = f"answers in {r.rtt_ms:.1f} ms" if r.alive and r.rtt_ms is not None else (r.error or "no answer")
        out[label] = Outcome(r.alive, detail, _site(ctx, label))
    return out


def _validate_devices(ctx: TaskContext, targets: str, options: dict[str, str]) -> dict[str, Any]:
    return {"devices": ctx.inventory.resolve(targets)}


@check_kind("ssh", summary="devices accept SSH connections (banner within 5 s)", validate=_validate_devices)
def ssh_check(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Outcome]:
    devices = spec["devices"]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SSH_PROBES, len(devices))) as pool:
        details = dict(zip(devices, pool.map(lambda d: _ssh_banner(ctx, d), devices), strict=True))
    return {d: Outcome(detail is None, detail or "SSH answers", _site(ctx, d)) for d, detail in details.items()}


def _ssh_banner(ctx: TaskContext, name: str) -> str | None:
    """None when the device answers with an SSH banner, else why not."""
    info = ctx.inventory.devices[name]
    try:
        with socket.create_connection((info.address, info.port or 22), timeout=SSH_TIMEOUT) as sock:
            sock.settimeout(SSH_TIMEOUT)
            banner = sock.recv(256)
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {SSH_TIMEOUT:g} s"
    except OSError as err:
        return f"unreachable ({err.strerror or err})"
    return None if banner.startswith(b"SSH-") else "answers, but not with SSH"


def _validate_show(ctx: TaskContext, targets: str, options: dict[str, str]) -> dict[str, Any]:
    devices = ctx.inventory.resolve(targets)
    if "command" not in options:
        raise ArgumentError("a show check needs: command <show command>")
    request = ShowCommandText().parse(options["command"].removeprefix("show ").strip(), ctx)
    _check_platforms(ctx, devices, request)
    if ("expect" in options) == ("reject" in options):
        raise ArgumentError("a show check needs exactly one of: expect <regex>, reject <regex>")
    pattern = options.get("expect") or options["reject"]
    compile_pattern(pattern)  # refused now, with one line, rather than at every run
    return {"devices": devices, "command": request.text, "pattern": pattern, "expect": "expect" in options}


def _stored_show_problem(spec: dict[str, Any]) -> str | None:
    """A show monitor stored before patterns went through RE2 may hold one RE2 refuses."""
    try:
        compile_pattern(str(spec.get("pattern", "")))
    except ArgumentError as err:
        return str(err)
    return None


def _describe_show(spec: dict[str, Any]) -> str:
    return f"command {spec['command']} {'expect' if spec['expect'] else 'reject'} /{spec['pattern']}/"


@check_kind("show", summary="a show command's output must (expect) or must not (reject) match a pattern (RE2 syntax)",
            options=("command", "expect", "reject"), validate=_validate_show,
            describe=_describe_show, stored_problem=_stored_show_problem)
def show_check(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Outcome]:
    # Runs in the check's worker thread; RE2 matches in linear time, on bounded text.
    pattern = compile_pattern(spec["pattern"])
    out = {}
    for o in run_on_devices(ctx, spec["devices"], spec["command"]):
        if not o.ok:
            out[o.device] = Outcome(False, o.error, _site(ctx, o.device))
            continue
        found = pattern.search(o.output)
        ok = found if spec["expect"] else not found
        detail = ("matches" if found else "does not match") + f" {pattern}"
        if not is_bounded(o.output):
            detail += f" (in {MATCH_LIMIT_TEXT} of the output)"
        out[o.device] = Outcome(ok, detail, _site(ctx, o.device))
    return out


def _validate_apic(ctx: TaskContext, targets: str, options: dict[str, str]) -> dict[str, Any]:
    name = None if targets in ("", "default") else targets
    endpoint = ctx.apic(name)
    spec: dict[str, Any] = {"apic": endpoint.name}
    if "below" in options:
        if not options["below"].isdigit() or not 0 < int(options["below"]) <= 100:
            raise ArgumentError("below takes a health score from 1 to 100")
        spec["below"] = int(options["below"])
    if "severity" in options:
        if options["severity"] not in ("critical", "major", "minor", "warning"):
            raise ArgumentError("severity is one of critical, major, minor, warning")
        spec["severity"] = options["severity"]
    return spec


@check_kind("apic-health", summary="ACI fabric health stays at or above a score (below N, default 80)",
            options=("below",), validate=_validate_apic)
def apic_health_check(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Outcome]:
    below = spec.get("below", 80)
    key = f"{spec['apic']} fabric"
    try:
        scores = client_for(ctx.apic(spec["apic"])).get_class("fabricHealthTotal")
    except TaskFailure as err:
        return {key: Outcome(False, str(err))}
    fabric = next((a for a in scores if a.get("dn") == "topology/health"), None)
    if fabric is None:
        return {key: Outcome(False, "the APIC returned no fabric health")}
    score = int(fabric.get("cur", "0") or 0)
    return {key: Outcome(score >= below, f"health {score} (alert below {below})")}


@check_kind("apic-faults", summary="no active ACI faults of a severity (severity S, default critical)",
            options=("severity",), validate=_validate_apic)
def apic_faults_check(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Outcome]:
    severity = spec.get("severity", "critical")
    try:
        found = client_for(ctx.apic(spec["apic"])).get_all(
            "faultInst", active_faults_query(severity), node=True, limit=MAX_MONITORED_FAULTS)
    except TaskFailure as err:
        return {f"{spec['apic']} API": Outcome(False, str(err))}
    # one target per fault: a new fault alerts once, and its clearing (or its leaving the
    # raised state) is a recovery
    out = {f"{spec['apic']} {f.get('code', '?')} {f.get('dn', '')}": Outcome(False, f.get("descr", "")[:120])
           for f in found.objects}
    if found.total > len(found.objects):
        out[f"{spec['apic']} more {severity} faults"] = Outcome(
            False, f"{found.total - len(found.objects)} more not followed one by one (the check follows "
                   f"the newest {len(found.objects)})")
    return out
