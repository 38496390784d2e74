"""show commands: running config (redacted), version table, and allowlisted show commands."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatbot.args import ArgType, Device, Param, ParseContext, Targets
from chatbot.commands import command
from chatbot.context import TaskContext
from chatbot.errors import ArgumentError
from chatbot.inventory import DeviceInfo
from chatbot.redact import redact
from chatbot.results import Note, Part, Result, Table, TextBlock
from tasks._device import (
    DeviceOutput,
    device_outcomes,
    failures_not_in_summary,
    outcome_summary,
    run_on_devices,
)

_COMMAND_WORD = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")
# Printable ASCII; no '?', which an IOS command line takes as a request for help.
_PIPE_PATTERN = re.compile(r"^[\x20-\x3e\x40-\x7e]{1,80}$")
MAX_PIPES = 1  # IOS applies one output filter per command
MAX_EXTRA_WORDS = 4


@dataclass(frozen=True)
class ShowRequest:
    base: str  # the allowlist entry, e.g. "show ip interface brief"
    text: str  # the full command sent to the device, canonical spelling


class ShowCommandText(ArgType):
    """`ip int br | include up`: an allowlisted show command and allowed pipes."""

    metavar = "command"

    def parse(self, raw: str, ctx: ParseContext) -> ShowRequest:
        config = ctx.config
        command_part, *pipe_parts = raw.split("|")
        words = command_part.split()
        if not words:
            raise ArgumentError("which show command? e.g. show ip interface brief on r1")
        for w in words:
            if not _COMMAND_WORD.match(w):
                raise ArgumentError(f"'{w[:40]}' is not allowed in a show command")
        allowed = sorted({e for entries in config.show.allowed.values() for e in entries})
        base, extra = _match_allowlist(words, allowed)
        if len(pipe_parts) > MAX_PIPES:
            raise ArgumentError("only one | filter per command")
        pipes = [_parse_pipe(p, config.show.pipes) for p in pipe_parts]
        return ShowRequest(base, " ".join([base, *extra, *pipes]))


def _match_allowlist(words: list[str], allowed: list[str]) -> tuple[str, list[str]]:
    best: list[str] = []
    for entry in allowed:
        entry_words = entry.split()[1:]  # without "show"
        if len(entry_words) <= len(words) and all(
            e.startswith(w.lower()) for w, e in zip(words, entry_words)
        ):
            best.append(entry)
    if not best:
        raise ArgumentError(f"'show {' '.join(words)[:60]}' is not an allowed show command; "
                            f"allowed: {', '.join(e.removeprefix('show ') for e in allowed)}")
    longest = max(len(e.split()) for e in best)
    top = [e for e in best if len(e.split()) == longest]
    if len(top) > 1:
        raise ArgumentError(f"'show {' '.join(words[:longest - 1])}' is ambiguous: {', '.join(top)}")
    extra = words[longest - 1:]
    if len(extra) > MAX_EXTRA_WORDS:
        raise ArgumentError(f"too many arguments after '{top[0]}'")
    return top[0], extra


def _parse_pipe(text: str, allowed: list[str]) -> str:
    name, _, pattern = text.strip().partition(" ")
    matches = [p for p in allowed if name and p.startswith(name.lower())]
    if len(matches) != 1:
        raise ArgumentError(f"'| {name[:20]}' is not an allowed filter; allowed: {', '.join('| ' + p for p in allowed)}")
    pattern = pattern.strip()
    if not _PIPE_PATTERN.match(pattern):
        raise ArgumentError(f"'| {matches[0]}' needs a pattern of printable text without '?', at most 80 characters")
    return f"| {matches[0]} {pattern}"


def _check_platforms(ctx: TaskContext, devices: list[str], request: ShowRequest) -> None:
    allowed = ctx.config.show.allowed
    for name in devices:
        platform = ctx.inventory.devices[name].platform or "default"
        entries = allowed.get(platform, allowed.get("default", []))
        if request.base not in entries:
            raise ArgumentError(f"'{request.base}' is not allowed on {name} (platform {platform})")


def _redacted(ctx: TaskContext, out: DeviceOutput) -> str:
    return redact(out.output, ctx.inventory.devices[out.device].platform)


@command(
    "show run",
    summary="running configuration of one device, secrets redacted",
    params=[Param("device", Device(), keyword="on", bare_ok=True)],
    aliases=["show running-config"],
    permission="show.run",
    examples=["show run r1"],
)
def show_run(ctx: TaskContext, device: DeviceInfo) -> Result:
    """Passwords, secrets, SNMP communities, keys and pre-shared keys are replaced by <redacted>."""
    [out] = run_on_devices(ctx, [device.name], "show running-config")
    status, summary = outcome_summary("show running-config", [out])
    if not out.ok:
        return Result(status, summary, devices=device_outcomes([out]))
    text = _redacted(ctx, out)
    lines = text.count("\n") + 1
    return Result(status, f"{summary} ({lines} lines, secrets redacted)", [
        TextBlock(text, title=f"{device.name} running-config", filename=f"{device.name}-running-config.txt"),
    ], devices=device_outcomes([out]))


@command(
    "show version",
    summary="software version, model, serial and uptime, one row per device",
    params=[Param("targets", Targets(), keyword="on", bare_ok=True)],
    permission="show.version",
    examples=["show version r1", "show version group:core", "show version all"],
)
def show_version(ctx: TaskContext, targets: list[str]) -> Result:
    outputs = run_on_devices(ctx, targets, "show version", textfsm=True)
    status, summary = outcome_summary("show version", outputs)
    rows = [_version_row(o) for o in outputs]
    return Result(status, summary, [Table(["device", "status", "version", "model", "serial", "uptime"], rows)],
                  devices=device_outcomes(outputs))


def _version_row(out: DeviceOutput) -> list[str]:
    if not out.ok:
        return [out.device, f"failed: {out.error}", "", "", "", ""]
    facts = out.parsed[0] if isinstance(out.parsed, list) and out.parsed else {}
    if not facts:
        return [out.device, "ok (output not parsed)", "", "", "", ""]

    def first(key: str) -> str:
        value = facts.get(key, "")
        return str(value[0] if isinstance(value, list) and value else value or "")

    return [out.device, "ok", first("version"), first("hardware"), first("serial"), first("uptime")]


@command(
    "show",
    summary="an allowed show command on devices, with | include/exclude/section/begin",
    params=[
        Param("request", ShowCommandText(), greedy=True),
        Param("targets", Targets(), keyword="on"),
    ],
    permission="show.command",
    examples=["show ip interface brief on r1", "show ip int br | include up on group:core"],
)
def show_command(ctx: TaskContext, request: ShowRequest, targets: list[str]) -> Result:
    """Only commands on the allowlist for the device's platform run ([show] allowed in the config)."""
    _check_platforms(ctx, targets, request)
    outputs = run_on_devices(ctx, targets, request.text)
    status, summary = outcome_summary(request.text, outputs)
    parts: list[Part] = []
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.base).strip("-")
    for out in outputs:
        if out.ok:
            parts.append(TextBlock(_redacted(ctx, out) or "(no output)", title=f"{out.device}: {request.text}",
                                   filename=f"{out.device}-{name}.txt"))
    # The summary already names the first failures with their errors: list only the rest.
    parts += [Note(f"{out.device}: {out.error}") for out in failures_not_in_summary(outputs)]
    return Result(status, summary, parts, devices=device_outcomes(outputs))
