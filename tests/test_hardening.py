"""Hardening: the whole core fuzzed end to end, and secrets never leaving the bot.

1. Property tests drive `Bot.handle` with arbitrary and near-valid chat text and prove
   that nothing crashes and that only canonical, validated commands reach a device
   session (or the bot host's ICMP), for the console (allowed by default) and for a
   chat platform with no grants (where nothing may reach anything).
2. Integration tests against the lab: planted device secrets and the lab's real
   credentials appear in no reply, attachment, audit row or log line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import icmplib
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import chatbot.device_work
import tasks._probe
import tasks.apic
import tasks.ping
import tasks.show
import tasks.traceroute
from chatbot.audit import AuditLog, make_engine
from chatbot.bot import Bot
from chatbot.builtins import builtin_commands
from chatbot.config import DEFAULT_PIPES, DEFAULT_SHOW_COMMANDS
from chatbot.device_work import DeviceOutput
from chatbot.message import Identity, Message
from chatbot.plugins import load_registry
from chatbot.render import render_text
from chatbot.results import Note, Result, Status, Table, TextBlock
from chatbot.router import MAX_COMMAND_LENGTH, CommandRejected
from chatbot.testing import SAMPLE_INVENTORY, console_message, sample_bot

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DEVICES = frozenset(SAMPLE_INVENTORY["hosts"])
SAMPLE_ADDRESSES = frozenset(h["hostname"] for h in SAMPLE_INVENTORY["hosts"].values())
LINE_BREAKS = "\r\n\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e"
# Generous: the raw command is at most MAX_COMMAND_LENGTH characters, and canonical
# spelling expands abbreviations ("|i x" -> "| include x") by at most about three times.
MAX_DEVICE_COMMAND = 4 * MAX_COMMAND_LENGTH


# --- what may reach a device: the canonical forms -------------------------------------------

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+", re.ASCII)
_SHOW_BASE = "|".join(re.escape(c) for c in sorted(DEFAULT_SHOW_COMMANDS, key=len, reverse=True))
_PIPE_NAMES = "|".join(DEFAULT_PIPES)
# printable, no '|', no '?' (IOS's help key)
_PIPE_TEXT = r"[\x21-\x3e\x40-\x7b\x7d\x7e](?:[\x20-\x3e\x40-\x7b\x7d\x7e]{0,78}[\x21-\x3e\x40-\x7b\x7d\x7e])?"
CANONICAL_SHOW = re.compile(  # at most one filter: IOS applies one per command
    rf"(?:{_SHOW_BASE})(?: [A-Za-z0-9._:/-]{{1,64}}){{0,4}}(?: \| (?:{_PIPE_NAMES}) {_PIPE_TEXT})?", re.ASCII)
CANONICAL_PING = re.compile(
    r"ping (?:vrf [A-Za-z0-9][A-Za-z0-9_.:-]{0,31} )?(?P<target>\S+) repeat (?P<count>[1-9][0-9]?|100)"
    r"(?: size (?:3[6-9]|[4-9][0-9]|[1-9][0-9]{2,3}|1[0-7][0-9]{3}|180[01][0-9]|1802[0-4]))?(?: df-bit)?"
    r"(?: source (?P<source>[A-Za-z][A-Za-z-]{0,40}[0-9]{1,10}(?:/[0-9]{1,10}){0,3}(?:[.:][0-9]{1,10})?|\S+))?",
    re.ASCII)
CANONICAL_TRACE = re.compile(r"traceroute (?P<target>\S+)", re.ASCII)
FORBIDDEN_PIPE = re.compile(r"\|\s*(?:redirect|tee|append|format)", re.IGNORECASE)


def is_ip(text: str) -> bool:
    """A plain IPv4/IPv6 address: ASCII, and no IPv6 scope id ("%eth0")."""
    if "%" in text or not text.isascii():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_ip_or_hostname(text: str) -> bool:
    return text in SAMPLE_ADDRESSES or is_ip(text) or bool(_HOSTNAME.fullmatch(text))


def command_problems(module: str, devices: tuple[str, ...], command: str) -> list[str]:
    """Everything wrong with one device session request; empty when it is canonical."""
    problems = []
    if not devices:
        problems.append("a session with no device")
    if not set(devices) <= SAMPLE_DEVICES:
        problems.append(f"devices outside the inventory: {sorted(set(devices) - SAMPLE_DEVICES)}")
    if len(set(devices)) != len(devices):
        problems.append("a device named twice")
    bad = [f"U+{ord(c):04X}" for c in command if unicodedata.category(c) in ("Cc", "Cf") or c in LINE_BREAKS]
    if bad:
        problems.append(f"control characters {bad}")
    if len(command) > MAX_DEVICE_COMMAND:
        problems.append(f"{len(command)} characters long")
    if FORBIDDEN_PIPE.search(command):
        problems.append("a forbidden pipe (redirect/tee/append)")
    if module == "tasks.show":
        ok = command in ("show running-config", "show version") or bool(CANONICAL_SHOW.fullmatch(command))
    elif module == "tasks.ping":
        m = CANONICAL_PING.fullmatch(command)
        ok = bool(m) and is_ip_or_hostname(m.group("target"))  # type: ignore[union-attr]
        if m and m.group("source") and not re.fullmatch(r"[A-Za-z].*", m.group("source")):
            ok = ok and is_ip(m.group("source"))
    elif module == "tasks.traceroute":
        m = CANONICAL_TRACE.fullmatch(command)
        ok = bool(m) and is_ip_or_hostname(m.group("target"))  # type: ignore[union-attr]
    else:
        ok = False  # only these three task modules open device sessions
    if not ok:
        problems.append(f"not a canonical {module} command")
    return problems


# --- recorders in place of every way out of the bot -----------------------------------------

@dataclass
class Recorder:
    sessions: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)  # module, devices, command
    host_probes: list[tuple[str, str, int | None]] = field(default_factory=list)  # kind, address, count
    resolved: list[str] = field(default_factory=list)  # host names the bot host would resolve
    apic: list[Any] = field(default_factory=list)

    def clear(self) -> None:
        for items in (self.sessions, self.host_probes, self.resolved, self.apic):
            items.clear()

    def empty(self) -> bool:
        return not (self.sessions or self.host_probes or self.resolved or self.apic)


def install_recorders(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()

    def session(module: str):  # type: ignore[no-untyped-def]
        def run_on_devices(ctx: Any, devices: list[str], command: str, *, textfsm: bool = False,
                           timeout: float | None = None) -> list[DeviceOutput]:
            rec.sessions.append((module, tuple(devices), command))
            return [DeviceOutput(d, True, "") for d in devices]
        return run_on_devices

    for module in (tasks.show, tasks.ping, tasks.traceroute, chatbot.device_work):
        monkeypatch.setattr(module, "run_on_devices", session(module.__name__))

    def ping(address: str, count: int = 4, **kwargs: Any) -> icmplib.Host:
        rec.host_probes.append(("ping", address, count))
        return icmplib.Host(address, count, [0.5] * count)

    def traceroute(address: str, **kwargs: Any) -> list[icmplib.Hop]:
        rec.host_probes.append(("traceroute", address, None))
        return [icmplib.Hop(address, 2, [0.5, 0.6], 1)]

    monkeypatch.setattr(icmplib, "ping", ping)
    monkeypatch.setattr(icmplib, "traceroute", traceroute)

    def resolve(name: str, owner: str | None = None) -> list[str]:  # no DNS from a test: TEST-NET-1
        rec.resolved.append(name)
        return ["192.0.2.1"]

    monkeypatch.setattr(tasks._probe, "resolve_blocking", resolve)

    def client_for(endpoint: Any) -> Any:
        rec.apic.append(endpoint)
        raise AssertionError("the sample bot has no APIC: nothing may reach one")

    monkeypatch.setattr(tasks.apic, "client_for", client_for)
    return rec


def probe_problems(rec: Recorder, ping_count_max: int) -> list[str]:
    problems = []
    for kind, address, count in rec.host_probes:
        if not is_ip(address):
            problems.append(f"{kind} from the bot host to {address!r}, not a plain IP address")
        if kind == "ping" and not (count is not None and 1 <= count <= ping_count_max):
            problems.append(f"ping from the bot host with count {count!r}")
    for name in rec.resolved:
        if not _HOSTNAME.fullmatch(name):
            problems.append(f"the bot host resolves {name!r}, not a host name")
    if rec.apic:
        problems.append("an APIC was contacted")
    return problems


# --- strategies -----------------------------------------------------------------------------

_REGISTRY = load_registry()
SPELLINGS = sorted({" ".join(s) for s, _ in _REGISTRY.spellings()} | {c.name for c in builtin_commands()})
COMMAND_WORDS = sorted({w for s in SPELLINGS for w in s.split()})
SHOW_WORDS = sorted({w for c in DEFAULT_SHOW_COMMANDS for w in c.split()[1:]}
                    | {"running-config", "startup-config", "tech-support", "run", "configuration"})
PIPE_NAMES = [*DEFAULT_PIPES, "redirect", "tee", "append", "format", "re", "red", "t", "te", "a", "ap",
              "i", "e", "s", "b", "c", "r", "f", "INCLUDE", "Include", ""]
TARGETS = ["r1", "r2", "r3", "sw10", "r1,r2", "r1,sw10", "group:core", "group:edge", "site:hq",
           "site:branch1", "all", "ALL", "R1", "r9", "group:nope", "site:", "group:", ",", "r1,,r2",
           "r1,r9", "host:r1", "group:core,r1"]
VALID_TARGETS = ["r1", "r2", "r3", "sw10", "r1,r2", "r1,sw10", "group:core", "group:edge", "site:hq", "all"]
NET_TARGETS = ["example.com", "a.b", "host-1.lab.", "r1.lab", "10.0.0.1", "127.0.1.1", "999.1.1.1",
               "1.2.3", "-a.b", "a..b", "localhost", "01.2.3.4", "::1", "fe80::1", "1.2.3.4.",
               "a" * 64 + ".b", "a.b-", "xn--bcher-kva.example", "::ffff:10.0.0.1"]
SEPARATORS = [" "] * 12 + ["  ", "\t", "\u00a0", "\u3000", "|", ",", "\n", "\r\n", "\u2028",
                           "\u2029", "\x85", "\x00", "\u200b", "\u202e", "\ufeff", "\x1b["]

# IPv6 with a scope id: ipaddress takes any text after the '%'.
scoped_ipv6 = st.builds(lambda ip, scope: f"{ip}%{scope}", st.ip_addresses(v=6),
                        st.one_of(st.sampled_from(["eth0", "|redirect:flash:x", "é", "$(reboot)"]),
                                  st.text(min_size=1, max_size=12)))
numbers = st.one_of(st.integers(-3, 200).map(str), st.sampled_from(["0", "00", "007", "1e3", "٣", "５",
                                                                    "999999999", "1" * 12, "+5", "-0"]))


def abbreviated(word: str) -> st.SearchStrategy[str]:
    """IOS-style abbreviations of a word, sometimes in another case."""
    return st.tuples(st.integers(1, len(word)), st.sampled_from([str, str.upper, str.title])).map(
        lambda t: t[1](word[: t[0]]))


pipes = st.builds(
    lambda sep, name, pattern: f"{sep}{name} {pattern}".rstrip(" ") if pattern else f"{sep}{name}",
    st.sampled_from(["|", "| ", " | ", "||", "|  "]),
    st.one_of(st.sampled_from(PIPE_NAMES), st.text(max_size=8)),
    st.one_of(st.sampled_from(["up", "secret", "flash:x", "on", ">", "a|b", "Gi0/0", "^interface",
                               "x" * 81, "x" * 80, "?", "\x00", "é"]),
              st.text(max_size=90)),
)
tokens = st.one_of(
    st.sampled_from(COMMAND_WORDS + SHOW_WORDS).flatmap(abbreviated),
    st.sampled_from(["on", "from", "count", "repeat", "ON", "From", "|", "!", "@netbot"]),
    st.sampled_from(TARGETS),
    st.sampled_from(NET_TARGETS),
    st.ip_addresses().map(str),
    scoped_ipv6,
    numbers,
    pipes,
    st.from_regex(r"[A-Za-z0-9._:/@+,-]{1,12}", fullmatch=True),
    st.text(min_size=1, max_size=12),
)


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """Registry commands (abbreviated or not) followed by random tokens and separators."""
    prefix = draw(st.sampled_from(["!", "!", "!", "", "! ", "netbot: ", "@netbot ", "NetBot, !", "!!", " !"]))
    head = " ".join(draw(abbreviated(w)) if draw(st.booleans()) else w
                    for w in draw(st.sampled_from(SPELLINGS)).split())
    rest = draw(st.lists(st.tuples(st.sampled_from(SEPARATORS), tokens), max_size=8))
    return prefix + head + "".join(sep + tok for sep, tok in rest)


# Single-line text without whitespace or control characters: what the router lets through.
printable_words = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp")),
                          min_size=1, max_size=90)
mostly_valid_targets = st.one_of(st.sampled_from(VALID_TARGETS), st.sampled_from(TARGETS))


@st.composite
def valid_looking(draw: st.DrawFn) -> str:
    """Commands built to pass validation most of the time, so sessions really happen."""
    kind = draw(st.sampled_from(["show", "show run", "show version", "ping", "traceroute"]))
    if kind == "show":
        base = draw(st.sampled_from(DEFAULT_SHOW_COMMANDS)).split()[1:]
        words = [draw(abbreviated(w)) if len(w) > 1 and draw(st.booleans()) else w for w in base]
        extra = draw(st.lists(st.from_regex(r"[A-Za-z0-9._:/-]{1,10}", fullmatch=True), max_size=5))
        pipe_list = draw(st.lists(st.tuples(
            st.sampled_from(PIPE_NAMES[:12]),
            st.one_of(st.from_regex(r"[\x21-\x7e]{1,20}", fullmatch=True), printable_words,
                      st.sampled_from(["x" * 80, "x" * 81, "a b", "up  down", "é", "\u00a0x"])),
        ), max_size=3))
        text = "show " + " ".join(words + extra) + "".join(f" | {n} {p}" for n, p in pipe_list)
        return f"!{text} on {draw(mostly_valid_targets)}"
    if kind == "show run":
        return f"!{draw(st.sampled_from(['show run', 'sh ru', 'show running-config']))} " \
               f"{draw(st.sampled_from(['', 'on ']))}{draw(mostly_valid_targets)}"
    if kind == "show version":
        return f"!sh ver {draw(mostly_valid_targets)}"
    target = draw(st.one_of(st.sampled_from(NET_TARGETS + ["r1", "r2", "sw10"]), st.ip_addresses().map(str),
                            scoped_ipv6))
    source = draw(st.one_of(st.just(""), mostly_valid_targets.map(lambda t: f" from {t}")))
    if kind == "ping":
        count = draw(st.one_of(st.just(""), st.integers(1, 25).map(lambda n: f" count {n}"),
                               numbers.map(lambda n: f" repeat {n}")))
        options = draw(st.lists(st.sampled_from([
            " df-bit", " size 1500", " size 35", " size 18025", " vrf MGMT", " vrf a;b", " source Loopback0",
            " source Gi0/0/1.100", " source 10.0.0.1", " source lo0;reload", " source 1.2.3.4.5"]), max_size=3))
        return f"!ping {target}{source}{count}{''.join(options)}"
    return f"!{draw(st.sampled_from(['traceroute', 'trace', 'tr']))} {target}{source}"


arbitrary = st.one_of(
    st.text(),
    st.tuples(st.sampled_from(["!", "netbot: ", "!show ", "!ping ", "!help "]), st.text()).map("".join),
    # Long texts around the 1000-character limit, built by repetition (cheap to generate).
    st.builds(lambda head, unit, n: head + unit * n, st.sampled_from(["!", "!show ip int br ", "!help "]),
              st.sampled_from(["|i x", "a", "é", " ", "r1,", "| include up ", "\u2028", "x" * 7]),
              st.integers(1, 1300)),
)
messages = st.one_of(arbitrary, near_valid(), valid_looking(), valid_looking())


# --- the property ---------------------------------------------------------------------------

@dataclass
class Tally:
    examples: int = 0
    addressed: int = 0
    sessions: int = 0
    probes: int = 0
    statuses: dict[Status, int] = field(default_factory=dict)


def run_one(runner: asyncio.Runner, bot: Bot, rec: Recorder, msg: Message, tally: Tally) -> Result | None:
    """One message through the whole core, and every check on what came out of it.

    One event loop per test (asyncio.Runner), not asyncio.run per example: a fresh loop
    means a fresh thread pool for every example, which made the audit writes 5x slower."""
    rec.clear()
    tally.examples += 1
    addressed = bot.router.command_text(msg.text, direct=msg.direct, mentioned=msg.mentions_bot) is not None
    reply = runner.run(bot.handle(msg))
    if not addressed:
        assert reply is None
        assert rec.empty(), "a message not addressed to the bot did something"
        return None
    tally.addressed += 1
    assert reply is not None, "an addressed message got no reply"
    result = reply.result
    assert isinstance(result.status, Status)
    assert result.status is not Status.ERROR, result.summary
    tally.statuses[result.status] = tally.statuses.get(result.status, 0) + 1
    assert "\n" not in result.summary, f"a multi-line summary: {result.summary!r}"
    render_text(result)  # every result renders
    for module, devices, command in rec.sessions:
        problems = command_problems(module, devices, command)
        assert not problems, f"{msg.text!r} sent {command!r} to {devices}: {problems}"
    problems = probe_problems(rec, bot.context.config.limits.ping_count_max)
    assert not problems, f"{msg.text!r}: {problems}"
    if result.status in (Status.INVALID, Status.DENIED):
        # Rejected means rejected before anything ran.
        assert not rec.sessions and not rec.host_probes, f"{msg.text!r} was rejected after it ran"
    tally.sessions += len(rec.sessions)
    tally.probes += len(rec.host_probes)
    return result


def in_memory_audit() -> AuditLog:
    return AuditLog(make_engine("sqlite://"))


def test_console_fuzz_nothing_crashes_nothing_unvalidated_reaches_a_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = install_recorders(monkeypatch)
    audit = in_memory_audit()  # weird text must also survive the audit log
    bot = sample_bot(audit=audit)
    tally = Tally()

    @settings(max_examples=600, deadline=None, derandomize=True,  # a fixed draw: the floors below hold every run
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(text=messages, direct=st.booleans(), mentioned=st.booleans())
    @example(text="!show ip int br | redirect flash:x on r1", direct=False, mentioned=False)
    @example(text="!show ip int br | include up\n| redirect flash:x on r1", direct=False, mentioned=False)
    @example(text="!show ip int br | include up\u2028show run on r1", direct=False, mentioned=False)
    @example(text="!ping 10.0.0.1\rreload from r1", direct=False, mentioned=False)
    @example(text="!show run r1\x00", direct=False, mentioned=False)
    @example(text="!show ip int br | include up on r1", direct=False, mentioned=False)
    @example(text="!ping 10.0.0.1 from r1 count 100", direct=False, mentioned=False)
    @example(text="!traceroute 10.0.0.1 from r1", direct=False, mentioned=False)
    def check(text: str, direct: bool, mentioned: bool) -> None:
        msg = Message(platform="console", room="console", sender=Identity.native("console", "tester"),
                      text=text, direct=direct, mentions_bot=mentioned)
        run_one(runner, bot, rec, msg, tally)

    with asyncio.Runner() as runner:
        check()
    # The property is not vacuous: many examples got through validation and ran.
    print(tally)
    assert tally.addressed > tally.examples // 3, tally
    assert tally.sessions >= 30 and tally.probes >= 5, tally
    assert tally.statuses.get(Status.INVALID, 0) >= 50, tally
    assert audit.recent(5), "the audit log recorded nothing"


def test_matrix_without_grants_reaches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """No [access] section: only the terminal may run commands; a chat platform may ask
    for help, whoami and their own jobs (the public commands) and gets DENIED or INVALID for everything else."""
    rec = install_recorders(monkeypatch)
    bot = sample_bot(audit=in_memory_audit())
    tally = Tally()

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(text=messages, direct=st.booleans(), mentioned=st.booleans())
    @example(text="!show run r1", direct=False, mentioned=False)
    @example(text="!ping 10.0.0.1 from r1", direct=True, mentioned=False)
    @example(text="!audit 10", direct=False, mentioned=False)
    def check(text: str, direct: bool, mentioned: bool) -> None:
        msg = Message(platform="matrix", room="!room:example.org",
                      sender=Identity.native("matrix", "@eve:example.org"),
                      text=text, direct=direct, mentions_bot=mentioned)
        command = bot.router.command_text(text, direct=direct, mentioned=mentioned)
        result = run_one(runner, bot, rec, msg, tally)
        assert rec.empty(), f"{text!r} from matrix reached {rec}"
        if result is None:
            return
        try:
            public = bot.router.parse(command or "", bot.context).command.public
        except CommandRejected:
            public = False
        if public:
            assert result.status in (Status.OK, Status.INVALID), result.summary
        else:
            assert result.status in (Status.DENIED, Status.INVALID), (text, result.status, result.summary)

    with asyncio.Runner() as runner:
        check()
    print(tally)
    assert tally.statuses.get(Status.DENIED, 0) >= 20, tally


def test_ipv6_scope_id_never_reaches_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: ipaddress.ip_address accepts any text after an IPv6 '%' (scope id), so
    '!ping fe80::1%|redirect:flash:x from r1' once sent 'ping fe80::1%|redirect:flash:x
    repeat 5' to r1. Every such target must now be refused before anything runs."""
    rec = install_recorders(monkeypatch)
    bot = sample_bot()
    tally = Tally()
    # Anything the router lets through as one word and ipaddress takes as a scope id.
    scope = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp"),
                                  blacklist_characters="%"), min_size=1, max_size=20)

    @settings(max_examples=25, deadline=None)
    @given(address=st.sampled_from(["fe80::1", "::1", "2001:db8::1"]), scope=scope,
           verb=st.sampled_from(["ping", "traceroute"]))
    @example(address="fe80::1", scope="|redirect:flash:x", verb="ping")
    @example(address="::1", scope="é", verb="traceroute")
    def check(address: str, scope: str, verb: str) -> None:
        text = f"!{verb} {address}%{scope} from r1"
        result = run_one(runner, bot, rec, console_message(text), tally)
        assert result is not None
        assert rec.empty(), f"{text!r} reached {rec}"
        assert result.status is Status.INVALID, result.summary

    with asyncio.Runner() as runner:
        check()


# --- secrets never come out anywhere (lab) ---------------------------------------------------

def _strings(value: Any) -> list[str]:
    return [] if value is None else [str(value)]


@pytest.mark.slow
def test_secrets_never_come_out_anywhere(lab, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from chatbot.app import build_bot
    from chatbot.audit import audit_events
    from chatbot.cli import lab_access
    from chatbot.config import parse_config
    from chatbot.lab import planted_secrets

    for name in ("r1", "r2"):
        lab.set_fault(name, None)
    config = parse_config({"limits": {"device_timeout": 5, "connect_timeout": 5, "command_timeout": 60}})
    audit = AuditLog(make_engine(f"sqlite:///{tmp_path}/audit.sqlite"))
    bot = build_bot(config, lab_access(lab), audit=audit)

    planted = {name: planted_secrets(name) for name in ("r1", "r2")}
    credentials = {"lab login password": lab.password, "lab enable secret": lab.enable_secret,
                   "APIC password": lab.apic.password}
    needles = {f"{name} planted secret {s!r}": s for name, values in planted.items() for s in values}
    needles.update(credentials)
    assert all(len(s) >= 8 for s in needles.values())  # long enough never to match by chance

    def leaks(texts: list[str]) -> list[str]:
        return sorted({label for label, s in needles.items() for t in texts if s in t})

    # The test can fail: the devices really hold these secrets, so redaction removed them.
    for name, values in planted.items():
        [raw] = chatbot.device_work.run_on_devices(bot.context, [name], "show running-config")
        assert raw.ok, raw.error
        assert len(values) >= 10 and [s for s in values if s not in raw.output] == []
        assert leaks([raw.output]), "the leak detector finds nothing in raw device output"

    caplog.clear()  # from here on, only what the bot itself logs
    # As `chatbot` (cli.main) runs the bot: scrapli and asyncssh pinned to WARNING (their
    # DEBUG lines echo the session). Everything else at DEBUG; the root call comes last,
    # because caplog.set_level also sets its handler's level.
    for noisy in ("scrapli", "asyncssh", "aiohttp.access"):
        caplog.set_level(logging.WARNING, logger=noisy)
    caplog.set_level(logging.DEBUG)

    commands = [
        "!show run r1",
        "!show run r2",
        "!show running-config on r1",
        "!show ip int br | include up on r1",
        "!show interfaces | include pass on r1",
        "!show version r1,r2",
        "!show run r1 | include secret",  # filtered by the bot, after redaction
        "!show run r1 | section key chain",  # a secret on a line of its own, under its context
        "!show run r2 interface Gi2",
        "!show ip int br | include secret on r1,r2",
        "!audit 100",
    ]
    results: dict[str, Result] = {}
    for text in commands:
        reply = asyncio.run(bot.handle(console_message(text)))
        assert reply is not None
        results[text] = reply.result

    rendered = [render_text(r) for r in results.values()]
    # What a chat adapter uploads as attachments, and every other structured piece.
    attachments = [p.text for r in results.values() for p in r.parts if isinstance(p, TextBlock)]
    pieces = [s for r in results.values() for p in r.parts for s in (
        [p.title or "", p.filename or ""] if isinstance(p, TextBlock)
        else [c for row in p.rows for c in row] + list(p.columns) if isinstance(p, Table)
        else [p.text] if isinstance(p, Note) else [])]
    pieces += [r.summary for r in results.values()] + [o for r in results.values() for o in r.devices.values()]
    with audit.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(audit_events))]
    assert len(rows) >= 3 * len(commands)
    audit_texts = [s for row in rows for v in row.values() for s in _strings(v)]
    log_texts = [caplog.text] + [r.getMessage() for r in caplog.records]

    assert leaks(rendered) == []
    assert leaks(attachments) == []
    assert leaks(pieces) == []
    assert leaks(audit_texts) == []
    assert leaks(log_texts) == []

    # ... and none of that is vacuous: the secrets' lines came back, redacted, and each
    # channel above really holds what it should.
    for text in ("!show run r1", "!show run r2", "!show running-config on r1", "!show ip int br | include up on r1",
                 "!show version r1,r2", "!audit 100"):
        assert results[text].status is Status.OK, (text, results[text].summary)
    for text in ("!show run r1 | include secret", "!show run r1 | section key chain", "!show run r2 interface Gi2"):
        block = next(p for p in results[text].parts if isinstance(p, TextBlock))
        assert results[text].status is Status.OK and "<redacted>" in block.text, (text, block.text)
    run_r1 = next(p for p in results["!show run r1"].parts if isinstance(p, TextBlock))
    assert "hostname r1" in run_r1.text and "enable secret 9 <redacted>" in run_r1.text
    assert len(run_r1.text.splitlines()) > 50  # the whole config came back, not a stub
    audit_table = next(p for p in results["!audit 100"].parts if isinstance(p, Table))
    assert len(audit_table.rows) >= 3 * len(commands) - 1
    assert any(r.name == "chatbot.bot" and "show run" in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG really was captured


@pytest.mark.slow
def test_cli_debug_log_and_output_hold_no_secrets(tmp_path: Path) -> None:
    """The real `chatbot shell --lab` at DEBUG log level: stdout and stderr (the log)."""
    from chatbot.lab import planted_secrets

    script = "!show run r1\n!show run r2\n!show ip int br | include up on r1\n!audit 50\n"
    env = dict(os.environ, CHATBOT_LOG_LEVEL="DEBUG")
    proc = subprocess.run([sys.executable, "-m", "chatbot", "--log-level", "DEBUG", "shell", "--lab"],
                          input=script, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=dict(env, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hostname r1" in proc.stdout and "<redacted>" in proc.stdout
    assert "DEBUG" in proc.stderr  # the log really ran at DEBUG
    # The shell's audit database (the config default, var/chatbot.sqlite, under its cwd).
    with sqlite3.connect(tmp_path / "var" / "chatbot.sqlite") as db:
        rows = db.execute("SELECT * FROM audit_events").fetchall()
    assert len(rows) >= 3 * 4
    texts = [proc.stdout, proc.stderr] + [str(v) for row in rows for v in row if v is not None]
    leaked = sorted({s for name in ("r1", "r2") for s in planted_secrets(name) for t in texts if s in t})
    assert leaked == []
