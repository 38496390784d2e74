"""show commands: running config (redacted), version table, and allowlisted show commands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatbot.api import (
    MATCH_LIMIT_TEXT,
    ArgType,
    ArgumentError,
    Device,
    DeviceInfo,
    Note,
    Param,
    ParseContext,
    Part,
    Result,
    Status,
    Table,
    Targets,
    TaskContext,
    TextBlock,
    command,
    compile_pattern,
    device_outcomes,
    failures_not_in_summary,
    is_bounded,
    outcome_summary,
    plural,
    redact,
    run_on_devices,
)
from tasks._config_filters import FILTERS, LineFilter, interface_section

if TYPE_CHECKING:
    from chatbot.api import DeviceOutput  # looking it up at run time would load device work at start

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
            e.startswith(w.lower()) for w, e in zip(words, entry_words, strict=False)
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
        listed = ", ".join("| " + p for p in allowed)
        raise ArgumentError(f"'| {name[:20]}' is not an allowed filter; allowed: {listed}")
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


@dataclass(frozen=True)
class RunRequest:
    device: DeviceInfo
    interface: str | None = None  # as the user wrote it: Gi1
    filter: LineFilter | None = None

    def describe(self) -> str:
        words = ["show running-config"]
        if self.interface:
            words.append(f"interface {self.interface}")
        if self.filter:
            words.append(str(self.filter))
        return " ".join(words)


_INTERFACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9./:-]{0,63}$")
# " | include x" inside a filter's pattern: a second filter, which IOS does not chain either
_SECOND_FILTER = re.compile(r"\s\|\s*([A-Za-z]{2,})\b")


class RunningConfigRequest(ArgType):
    """`r1`, `on r1`, `r1 interface Gi1`, `int gi1 r1`, `r1 | include hostname`: in any
    order, the filter last. The device only ever runs `show running-config`; the
    interface and the filter are applied by the bot to the redacted config."""

    metavar = "device"
    usage = "[on] <device> [interface <name>] [| <filter> <regex>]"

    def parse(self, raw: str, ctx: ParseContext) -> RunRequest:
        # As on IOS, the pattern runs to the end of the line: `| include bgp|ospf` is one filter.
        command_part, bar, filter_part = raw.partition("|")
        device: DeviceInfo | None = None
        interface: str | None = None
        words = command_part.split()
        i = 0
        while i < len(words):
            word, low = words[i], words[i].lower()
            if low == "on" and device is None and i + 1 < len(words):
                device, i = Device().parse(words[i + 1], ctx), i + 2
            elif device is None and word in ctx.inventory.devices:
                device, i = ctx.inventory.devices[word], i + 1
            elif interface is None and len(low) >= 2 and "interface".startswith(low):
                if i + 1 >= len(words):
                    raise ArgumentError("which interface? e.g. show run r1 interface Gi1")
                interface, i = words[i + 1], i + 2
                if i < len(words) and words[i][:1].isdigit():  # "Gi 1", as IOS also takes it
                    interface, i = interface + words[i], i + 1
                if not _INTERFACE_NAME.match(interface):
                    raise ArgumentError(f"'{interface[:40]}' is not an interface name")
            elif device is None:
                device, i = Device().parse(word, ctx), i + 1
            else:
                raise ArgumentError(f"unexpected '{word[:40]}'")
        if device is None:
            raise ArgumentError("which device? e.g. show run r1, or show run r1 interface Gi1")
        return RunRequest(device, interface, _parse_config_filter(filter_part, ctx) if bar else None)

    def devices_of(self, value: RunRequest) -> list[str]:
        return [value.device.name]


def _parse_config_filter(text: str, ctx: ParseContext) -> LineFilter:
    allowed = [p for p in ctx.config.show.pipes if p in FILTERS]
    name, _, pattern = text.strip().partition(" ")
    matches = [p for p in allowed if name and p.startswith(name.lower())]
    if len(matches) != 1:
        listed = ", ".join("| " + p for p in allowed)
        raise ArgumentError(f"'| {name[:20]}' is not an allowed filter; allowed: {listed}")
    if not pattern.strip():
        raise ArgumentError(f"'| {matches[0]}' needs a pattern, e.g. | {matches[0]} hostname")
    second = _SECOND_FILTER.search(" " + pattern)
    if second and any(f.startswith(second.group(1).lower()) for f in FILTERS):
        raise ArgumentError("only one | filter per command")
    return LineFilter(matches[0], compile_pattern(pattern.strip()))


@command(
    "show run",
    summary="running configuration of one device (or one interface of it), secrets redacted, with | filters",
    params=[Param("request", RunningConfigRequest(), greedy=True)],
    aliases=["show running-config"],
    permission="show.run",
    examples=["show run r1", "show run r1 interface Gi1", "show run r1 | include hostname",
              "show run r1 | section router bgp"],
)
def show_run(ctx: TaskContext, request: RunRequest) -> Result:
    """Secrets become <redacted>; then the bot cuts the interface and applies | include/exclude/section/begin/count
    (RE2 patterns, over the first 1 MiB) itself."""
    device = request.device
    [out] = run_on_devices(ctx, [device.name], "show running-config")
    status, summary = outcome_summary(request.describe(), [out])
    if not out.ok:
        return Result(status, summary, devices=device_outcomes([out]))
    text = _redacted(ctx, out)  # redact first: filters then only ever see redacted text
    parts: list[Part] = []
    if request.interface:
        try:
            text = interface_section(text, request.interface)
        except ArgumentError as err:
            return Result(Status.FAILED, f"{summary}: {err}", devices=device_outcomes([out]))
    if request.filter:
        if not is_bounded(text):
            parts.append(Note(f"the filter searched {MATCH_LIMIT_TEXT} of the config only"))
        text = request.filter.apply(text)
    lines = len(text.splitlines())
    name = f"{device.name}-running-config" + ("-" + re.sub(r"[^A-Za-z0-9]+", "-", request.interface)
                                              if request.interface else "")
    return Result(status, f"{summary} ({plural(lines, 'line')}, secrets redacted)", [
        TextBlock(text or "(no matching lines)", title=f"{device.name}: {request.describe()}",
                  filename=f"{name}.txt"),
        *parts,
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
