"""The IOS-XE exec-mode command interpreter of a lab device (no I/O, no timing).

It reproduces what clients and parsers depend on: unique-prefix abbreviation of every
keyword (`sh ip int br`), IOS's three parser errors with their exact wording and caret
placement, the privilege split between `r1>` and `r1#`, and output pipes
(`| include/exclude/section/begin/count <regex>`).

Keywords a real router has but the lab does not implement are listed as stubs: they make
abbreviations exactly as ambiguous as on IOS (`t` could be telnet, terminal or traceroute)
and answer with `% Invalid input` when used.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from chatbot.lab import shows
from chatbot.lab.configs import DeviceFacts, running_config
from chatbot.lab.netsim import Reach, Topology, ping_output, traceroute_output

USER, PRIVILEGED = 1, 15
PING_MAX_REPEAT = 100_000  # IOS accepts up to 2^31-1; the lab caps what it will render
INVALID = "% Invalid input detected at '^' marker."
INCOMPLETE = "% Incomplete command."
UNRESOLVED = "% Unrecognized host or address, or protocol not running."
INCONSISTENT_MASK = "% Inconsistent address and mask"


class Kind(Enum):
    EMPTY = "empty"
    ERROR = "error"
    TERMINAL = "terminal"  # session setup: answered at once, no device delay
    ENABLE = "enable"
    DISABLE = "disable"
    EXIT = "exit"
    SHOW = "show"
    PING = "ping"
    TRACEROUTE = "traceroute"


@dataclass(frozen=True)
class Node:
    word: str
    children: tuple[Node, ...] = ()
    command: str | None = None  # set when the line may end at this node
    priv: int = USER
    stub: bool = False
    takes_args: bool = False  # remaining tokens go to the command's argument parser
    # The line may end here, go on with a keyword below, or give arguments (an interface
    # name, a prefix) that the show command's own argument parser reads.
    optional_args: bool = False


def _stubs(*words: str, priv: int = USER) -> tuple[Node, ...]:
    return tuple(Node(word, stub=True, priv=priv) for word in words)


_SHOW_IP = Node(
    "ip",
    (
        Node("arp", command="show ip arp"),
        Node(
            "bgp",
            (Node("summary", command="show ip bgp summary"), *_stubs("neighbors", "all", "ipv4")),
        ),
        Node("interface", (Node("brief", command="show ip interface brief"),)),
        Node(
            "ospf",
            (
                Node("neighbor", command="show ip ospf neighbor"),
                *_stubs("border-routers", "database", "interface", "statistics", "virtual-links"),
            ),
        ),
        Node("route", command="show ip route", optional_args=True),
        *_stubs("access-lists", "cef", "dhcp", "eigrp", "nat", "protocols", "ssh", "vrf"),
    ),
)


def _neighbors_of(protocol: str) -> Node:
    return Node(
        protocol,
        (Node("neighbors", command=f"show {protocol} neighbors"), *_stubs("entry", "interface", "traffic")),
    )


_SHOW = Node(
    "show",
    (
        _neighbors_of("cdp"),
        Node("clock", command="show clock"),
        Node(
            "interfaces",
            (
                Node("status", command="show interfaces status"),
                *_stubs("accounting", "counters", "description", "stats", "summary", "switchport"),
                *_stubs("trunk"),
            ),
            command="show interfaces",
            optional_args=True,
        ),
        Node("inventory", command="show inventory"),
        _SHOW_IP,
        _neighbors_of("lldp"),
        Node("logging", command="show logging"),
        Node(
            "mac",
            (Node("address-table", command="show mac address-table"),),
        ),
        Node(
            "processes",
            (Node("cpu", command="show processes cpu"), *_stubs("memory", "platform")),
        ),
        Node("running-config", command="show running-config", priv=PRIVILEGED),
        Node("version", command="show version"),
        Node("vlan", (Node("brief", command="show vlan brief"), *_stubs("id", "name", "summary"))),
        *_stubs("access-lists", "arp", "controllers", "environment", "history", "hosts"),
        *_stubs("ipv6", "license", "memory", "module", "platform", "users", "vrf"),
        *_stubs("startup-config", priv=PRIVILEGED),
    ),
)

_ROOT = Node(
    "",
    (
        Node("disable", command="disable"),
        Node("enable", command="enable"),
        Node("exit", command="exit"),
        Node("logout", command="logout"),
        Node("ping", command="ping", takes_args=True),
        _SHOW,
        Node(
            "terminal",
            (
                Node("length", command="terminal length", takes_args=True),
                Node("width", command="terminal width", takes_args=True),
                Node("monitor", command="terminal monitor"),
            ),
        ),
        Node("traceroute", command="traceroute", takes_args=True),
        *_stubs("clock", "connect", "disconnect", "ssh", "systat", "telnet"),
        *_stubs("clear", "configure", "copy", "debug", "dir", "more", "reload", priv=PRIVILEGED),
        *_stubs("send", "setup", "undebug", "verify", "write", priv=PRIVILEGED),
    ),
)

_ROUTE_PROTOCOLS = ("bgp", "connected", "eigrp", "ospf", "static")
_ROUTE_STUBS = ("isis", "lisp", "list", "mobile", "nhrp", "odr", "profile", "rip", "summary")
_PIPE_OPTIONS = ("begin", "count", "exclude", "include", "section")
_PIPE_STUBS = ("append", "format", "redirect", "tee")
_PING_OPTIONS = ("repeat", "size", "timeout")  # each takes a number
_PING_WORDS = (*_PING_OPTIONS, "df-bit", "source")
_PING_STUBS = ("data", "validate", "verbose")
_PING_LIMITS = {"repeat": (1, PING_MAX_REPEAT), "size": (36, 18024), "timeout": (0, 3600)}
# Interface types as IOS's parser knows them, so abbreviations are as ambiguous as there
# (`T1` could be Tunnel or TenGigabitEthernet); the lab's devices have only some of them.
_INTERFACE_TYPES = ("GigabitEthernet", "Loopback", "Null", "Port-channel", "Serial",
                    "TenGigabitEthernet", "Tunnel", "Vlan")
_INTERFACE = re.compile(r"^(?P<kind>[A-Za-z][A-Za-z-]*)(?P<number>\d+(?:/\d+)*(?:\.\d+)?)$")
INVALID_SOURCE_INTERFACE = "% Invalid source interface - IP not enabled or interface is down"
INVALID_SOURCE_ADDRESS = "% Invalid source address- IP address not on any of our up interfaces"


@dataclass
class Pipe:
    action: str
    pattern: str


@dataclass
class Parsed:
    kind: Kind
    command: str = ""
    args: dict[str, object] = field(default_factory=dict)
    pipe: Pipe | None = None
    error: list[str] = field(default_factory=list)  # output lines when kind is ERROR


class _ParseError(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[-1] if lines else "")
        self.lines = lines


def _kind_of(command: str) -> Kind:
    head = command.split()[0]
    return {
        "disable": Kind.DISABLE,
        "enable": Kind.ENABLE,
        "exit": Kind.EXIT,
        "logout": Kind.EXIT,
        "ping": Kind.PING,
        "show": Kind.SHOW,
        "terminal": Kind.TERMINAL,
        "traceroute": Kind.TRACEROUTE,
    }[head]


def _is_ipv4(word: str) -> bool:
    try:
        ipaddress.IPv4Address(word)
    except ValueError:
        return False
    return True


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error:
        return re.compile(re.escape(pattern))  # IOS would complain; a literal is kinder


def apply_pipe(text: str, pipe: Pipe) -> str:
    lines = text.split("\n")
    regex = _compile(pipe.pattern)
    if pipe.action == "include":
        return "\n".join(line for line in lines if regex.search(line))
    if pipe.action == "exclude":
        return "\n".join(line for line in lines if not regex.search(line))
    if pipe.action == "count":
        return (
            f"Number of lines which match regexp = {sum(1 for line in lines if regex.search(line))}"
        )
    if pipe.action == "begin":
        for number, line in enumerate(lines):
            if regex.search(line):
                return "\n".join(lines[number:])
        return ""
    # section: a header line (not indented) and its indented children form a block; print
    # the blocks whose header matches, and lone matching child lines of the other blocks.
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        if regex.search(block[0]):
            out.extend(block)
        else:
            out.extend(line for line in block[1:] if regex.search(line))

    for line in lines:
        if line.startswith(" "):
            block.append(line)
        else:
            flush()
            block = [line]
    flush()
    return "\n".join(out)


class IosCli:
    """One exec session's parser state: privilege level and what to print."""

    def __init__(
        self,
        facts: DeviceFacts,
        topology: Topology,
        enable_secret: str,
        minutes_since_start: Callable[[], int] = lambda: 0,
    ) -> None:
        self.facts = facts
        self.topology = topology
        self._enable_secret = enable_secret
        self._minutes = minutes_since_start
        self.privileged = False
        self._line = ""

    @property
    def prompt(self) -> str:
        return f"{self.facts.hostname}{'#' if self.privileged else '>'}"

    def try_enable(self, secret: str) -> bool:
        self.privileged = secret == self._enable_secret
        return self.privileged

    # -- parsing -------------------------------------------------------------------------

    def _invalid(self, column: int) -> _ParseError:
        return _ParseError([" " * (len(self.prompt) + column) + "^", INVALID, ""])

    def _visible(self, node: Node) -> tuple[Node, ...]:
        level = PRIVILEGED if self.privileged else USER
        return tuple(child for child in node.children if child.priv <= level)

    @staticmethod
    def _match(word: str, candidates: tuple[str, ...]) -> list[str]:
        word = word.lower()
        if word in candidates:
            return [word]
        return [candidate for candidate in candidates if candidate.startswith(word)]

    def _ambiguous(self) -> _ParseError:
        # IOS quotes the whole line as typed, e.g. % Ambiguous command:  "sh i"
        return _ParseError([f'% Ambiguous command:  "{self._line.strip()}"', ""])

    def parse(self, line: str) -> Parsed:
        self._line = line
        if not line.strip():
            return Parsed(Kind.EMPTY)
        left, bar, right = line.partition("|")
        tokens = [(m.group(), m.start()) for m in re.finditer(r"\S+", left)]
        try:
            if not tokens:  # a line starting with '|'
                raise self._invalid(line.index("|"))
            node, rest = self._walk(tokens)
            if node.command is None:
                raise _ParseError([INCOMPLETE, ""])
            if node.takes_args:
                args = self._parse_args(node.command, rest)
            elif rest and node.optional_args:
                args = self._parse_show_args(node.command, rest)
            elif rest:
                raise self._invalid(rest[0][1])
            else:
                args = {}
            kind = _kind_of(node.command)
            pipe = None
            if bar:
                if kind is not Kind.SHOW:
                    raise self._invalid(len(left))
                pipe = self._parse_pipe(right, len(left) + 1)
            return Parsed(kind, node.command, args, pipe)
        except _ParseError as error:
            return Parsed(Kind.ERROR, error=error.lines)

    def _walk(self, tokens: list[tuple[str, int]]) -> tuple[Node, list[tuple[str, int]]]:
        node = _ROOT
        for position, (word, column) in enumerate(tokens):
            if node.takes_args or (node.command is not None and not node.children):
                return node, tokens[position:]
            children = {child.word: child for child in self._visible(node)}
            matches = self._match(word, tuple(children))
            if not matches and node.optional_args:
                return node, tokens[position:]
            if not matches:
                raise self._invalid(column)
            if len(matches) > 1:
                raise self._ambiguous()
            node = children[matches[0]]
            if node.stub:
                raise self._invalid(column)
        return node, []

    def _parse_args(self, command: str, rest: list[tuple[str, int]]) -> dict[str, object]:
        if command in ("terminal length", "terminal width"):
            if not rest:
                raise _ParseError([INCOMPLETE, ""])
            value = self._number(rest[0], 0, 512)
            if len(rest) > 1:
                raise self._invalid(rest[1][1])
            return {"value": value}
        if not rest:  # ping/traceroute with no target
            raise _ParseError([INCOMPLETE, ""])
        args: dict[str, object] = {"target": rest[0][0]}
        if command == "traceroute":
            if len(rest) > 1:
                raise self._invalid(rest[1][1])
            return args
        return self._parse_ping_args(rest)

    def _parse_ping_args(self, rest: list[tuple[str, int]]) -> dict[str, object]:
        """`ping [vrf NAME] <target> [repeat N] [size N] [timeout N] [df-bit] [source IF|ADDR]`"""
        args: dict[str, object] = {"repeat": 5, "size": 100, "timeout": 2, "df-bit": False}
        if self._match(rest[0][0], ("vrf",)) == ["vrf"] and len(rest[0][0]) > 1:
            if len(rest) < 3:
                raise _ParseError([INCOMPLETE, ""])
            args["vrf"] = rest[1][0]
            rest = rest[2:]
        args["target"] = rest[0][0]
        position = 1
        while position < len(rest):
            word, column = rest[position]
            matches = self._match(word, _PING_WORDS + _PING_STUBS)
            if len(matches) != 1 or matches[0] in _PING_STUBS:
                if len(matches) > 1:
                    raise self._ambiguous()
                raise self._invalid(column)
            option = matches[0]
            if option == "df-bit":
                args[option] = True
                position += 1
                continue
            if position + 1 >= len(rest):
                raise _ParseError([INCOMPLETE, ""])
            if option == "source":
                args["source"] = self._source(rest[position + 1])
            else:
                args[option] = self._number(rest[position + 1], *_PING_LIMITS[option])
            position += 2
        return args

    def _source(self, token: tuple[str, int]) -> str:
        """A source address as typed, or an interface by its full name."""
        word, column = token
        if re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", word):
            return word
        found = _INTERFACE.match(word)
        typed = found["kind"].lower() if found else ""
        kinds = [kind for kind in _INTERFACE_TYPES if typed and kind.lower().startswith(typed)]
        kinds = [kind for kind in kinds if kind.lower() == typed] or kinds
        if len(kinds) != 1:
            raise self._invalid(column)
        name = f"{kinds[0]}{found['number']}"  # type: ignore[index]
        if name not in self.facts.interfaces_by_name:
            raise self._invalid(column + len(found["kind"]))  # type: ignore[index]
        return name

    def _parse_show_args(self, command: str, rest: list[tuple[str, int]]) -> dict[str, object]:
        if command == "show interfaces":
            return {"interface": self._interface_name(rest)}
        return {"route": self._route_query(rest)}

    def _interface_name(self, rest: list[tuple[str, int]]) -> str:
        """`gi1`, `Gi 1`, `GigabitEthernet1`, `lo0`: the full name of an existing interface."""
        word, column = rest[0]
        match = re.fullmatch(r"([A-Za-z-]+)([0-9/.:]*)", word)
        if match is None:
            raise self._invalid(column)
        kind, number = match.groups()
        used = 1
        if not number and len(rest) > 1:  # the number may follow after a space
            number, number_column = rest[1]
            used = 2
        else:
            number_column = column + len(kind)
        by_lower = {kind_name.lower(): kind_name for kind_name in _INTERFACE_TYPES}
        kinds = self._match(kind, tuple(by_lower))
        if len(kinds) > 1:
            raise self._ambiguous()
        if not kinds:
            raise self._invalid(column)
        if not number:
            raise _ParseError([INCOMPLETE, ""])
        name = by_lower[kinds[0]] + number
        if name not in self.facts.interfaces_by_name:
            raise self._invalid(number_column)
        if len(rest) > used:
            raise self._invalid(rest[used][1])
        return name

    def _route_query(self, rest: list[tuple[str, int]]) -> shows.RouteQuery:
        """`show ip route` [ospf | A.B.C.D [mask [longer-prefixes]]]."""
        word, column = rest[0]
        if not _is_ipv4(word):
            protocols = self._match(word, _ROUTE_PROTOCOLS + _ROUTE_STUBS)
            if len(protocols) > 1:
                raise self._ambiguous()
            if not protocols or protocols[0] in _ROUTE_STUBS:
                raise self._invalid(column)
            if len(rest) > 1:
                raise self._invalid(rest[1][1])
            return shows.RouteQuery(protocol=protocols[0])
        if len(rest) == 1:
            return shows.RouteQuery(address=word)
        mask, mask_column = rest[1]
        if not _is_ipv4(mask):
            raise self._invalid(mask_column)
        try:
            ipaddress.IPv4Network(f"{word}/{mask}")
        except ValueError:  # host bits set, or a mask that is not contiguous
            raise _ParseError([INCONSISTENT_MASK, ""]) from None
        longer = False
        if len(rest) > 2:
            keyword, keyword_column = rest[2]
            if self._match(keyword, ("longer-prefixes",)) != ["longer-prefixes"] or len(rest) > 3:
                raise self._invalid(rest[3][1] if len(rest) > 3 else keyword_column)
            longer = True
        return shows.RouteQuery(address=word, mask=mask, longer_prefixes=longer)

    def _number(self, token: tuple[str, int], low: int, high: int) -> int:
        word, column = token
        if not word.isdigit() or not low <= int(word) <= high:
            raise self._invalid(column)
        return int(word)

    def _parse_pipe(self, right: str, offset: int) -> Pipe:
        match = re.match(r"\s*(\S+)", right)
        if not match:
            raise _ParseError([INCOMPLETE, ""])
        word, column = match.group(1), offset + match.start(1)
        matches = self._match(word, _PIPE_OPTIONS + _PIPE_STUBS)
        if len(matches) > 1:
            raise self._ambiguous()
        if not matches or matches[0] in _PIPE_STUBS:
            raise self._invalid(column)
        pattern = right[match.end(1) :].strip()
        if not pattern:
            raise _ParseError([INCOMPLETE, ""])
        return Pipe(matches[0], pattern)

    # -- execution -----------------------------------------------------------------------

    def run(self, parsed: Parsed) -> list[str]:
        """Output lines of an already parsed, non-interactive command."""
        if parsed.kind is Kind.ERROR:
            return parsed.error
        if parsed.kind is Kind.DISABLE:
            self.privileged = False
            return []
        if parsed.kind in (Kind.EMPTY, Kind.TERMINAL, Kind.ENABLE, Kind.EXIT):
            return []
        if parsed.kind is Kind.PING:
            return self._ping(parsed.args)
        if parsed.kind is Kind.TRACEROUTE:
            return self._traceroute(str(parsed.args["target"]))
        text = self._show(parsed)
        if parsed.pipe is not None:
            text = apply_pipe(text, parsed.pipe)
        return text.split("\n") if text else []

    def _show(self, parsed: Parsed) -> str:
        command, facts, topology, minutes = parsed.command, self.facts, self.topology, self._minutes()
        now = dt.datetime.now(dt.UTC)
        if command == "show running-config":
            return running_config(facts.hostname)  # ends with "end\n": IOS's blank last line
        if command == "show version":
            return shows.show_version(facts, minutes)
        if command == "show clock":
            return shows.show_clock(now)
        if command == "show inventory":
            return shows.show_inventory(facts)
        if command == "show ip interface brief":
            return shows.show_ip_interface_brief(facts)
        if command == "show ip route":
            query = parsed.args.get("route", shows.RouteQuery())
            assert isinstance(query, shows.RouteQuery)
            return shows.show_ip_route(facts, topology, minutes, query)
        if command == "show ip bgp summary":
            return shows.show_ip_bgp_summary(facts, topology, minutes)
        if command == "show interfaces":
            only = parsed.args.get("interface")
            return shows.show_interfaces(facts, str(only) if only else None)
        simple: dict[str, Callable[[], str]] = {
            "show interfaces status": lambda: shows.show_interfaces_status(facts),
            "show ip ospf neighbor": lambda: shows.show_ip_ospf_neighbor(facts, topology),
            "show ip arp": lambda: shows.show_ip_arp(facts, topology),
            "show cdp neighbors": lambda: shows.show_cdp_neighbors(facts, topology),
            "show lldp neighbors": lambda: shows.show_lldp_neighbors(facts, topology),
            "show logging": lambda: shows.show_logging(facts, topology, now, minutes),
            "show processes cpu": lambda: shows.show_processes_cpu(facts, minutes),
            "show vlan brief": shows.show_vlan_brief,
            "show mac address-table": shows.show_mac_address_table,
        }
        if command in simple:
            return simple[command]()
        raise AssertionError(f"unhandled show command {command!r}")

    def _ping(self, args: dict[str, object]) -> list[str]:
        vrf = args.get("vrf")
        if vrf is not None and vrf not in {i.vrf for i in self.facts.interfaces}:
            return [f"% VRF {vrf} does not exist."]  # the lab's wording
        address = self.topology.resolve(str(args["target"]))
        if address is None:
            return [UNRESOLVED]
        reach = None
        source_address = None
        if "source" in args:
            source = str(args["source"])
            interfaces = self.facts.interfaces_by_name
            if source in interfaces:
                interface = interfaces[source]
                if not (interface.enabled and interface.address):
                    return [INVALID_SOURCE_INTERFACE]
                source_address = interface.address
                if interface.vrf != vrf:
                    reach = Reach.UNREACHABLE  # that address has no route in this table
            else:
                if not any(i.address == source and i.enabled for i in interfaces.values()):
                    return [INVALID_SOURCE_ADDRESS]
                source_address = source
        text = ping_output(
            self.topology,
            self.facts.hostname,
            address,
            count=int(args["repeat"]),  # type: ignore[call-overload]
            size=int(args["size"]),  # type: ignore[call-overload]
            timeout=int(args["timeout"]),  # type: ignore[call-overload]
            vrf=vrf if isinstance(vrf, str) else None,
            source_address=source_address,
            df_bit=bool(args["df-bit"]),
            reach=reach,
        )
        return text.split("\n")

    def _traceroute(self, target: str) -> list[str]:
        address = self.topology.resolve(target)
        if address is None:
            return [UNRESOLVED]
        return traceroute_output(self.topology, self.facts.index, target, address).split("\n")
