"""Typed command arguments: each type validates one piece of user text.

Validation happens in the router, before any task runs, so nothing unvalidated can
reach a device. Every failure is an ArgumentError with a one-line reason.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Protocol

from chatbot.config import Config
from chatbot.errors import ArgumentError
from chatbot.inventory import DeviceInfo, DeviceInventory, is_ip_address, suggest

MAX_TOKEN = 128
# RFC 1123 host names; a dot is required so that a mistyped device name is not taken for one.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+\.?$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9._:/@+-]+$")


class ParseContext(Protocol):
    """What argument types may consult: the inventory and the bot's settings."""

    @property
    def inventory(self) -> DeviceInventory: ...

    @property
    def config(self) -> Config: ...


class ArgType:
    metavar = "value"
    usage: str | None = None  # how the argument reads in a usage line, when `<metavar>` says too little

    def parse(self, raw: str, ctx: ParseContext) -> Any:
        raise NotImplementedError

    def devices_of(self, value: Any) -> list[str]:
        """The devices a parsed value names, so policy and limits see them before anything runs."""
        return []

    @staticmethod
    def check_length(raw: str) -> None:
        if len(raw) > MAX_TOKEN:
            raise ArgumentError(f"argument is longer than {MAX_TOKEN} characters")


class Word(ArgType):
    """A plain token of letters, digits and . _ : / @ + -"""

    def __init__(self, metavar: str = "word") -> None:
        self.metavar = metavar

    def parse(self, raw: str, ctx: ParseContext) -> str:
        self.check_length(raw)
        if not _SAFE_WORD.match(raw):
            raise ArgumentError(f"'{raw}' is not a valid {self.metavar}")
        return raw


class Text(ArgType):
    """Free words (already checked printable by the router), e.g. a help topic."""

    def __init__(self, metavar: str = "text") -> None:
        self.metavar = metavar

    def parse(self, raw: str, ctx: ParseContext) -> str:
        self.check_length(raw)
        return raw


class Integer(ArgType):
    def __init__(self, low: int, high: int, metavar: str = "N") -> None:
        self.low, self.high, self.metavar = low, high, metavar

    def parse(self, raw: str, ctx: ParseContext) -> int:
        if not re.fullmatch(r"\d{1,9}", raw):
            raise ArgumentError(f"'{raw[:20]}' is not a whole number")
        value = int(raw)
        if not self.low <= value <= self.high:
            raise ArgumentError(f"{self.metavar} must be between {self.low} and {self.high}")
        return value


class ProbeCount(ArgType):
    """How many echoes: one limit, `[limits] ping_count_max`, for every way of pinging."""

    metavar = "count"

    def parse(self, raw: str, ctx: ParseContext) -> int:
        return Integer(1, ctx.config.limits.ping_count_max, metavar="count").parse(raw, ctx)


class Flag(ArgType):
    """A keyword that stands alone (`df-bit`): present or not."""

    metavar = "flag"

    def parse(self, raw: str, ctx: ParseContext) -> bool:
        return True


# IOS interface names as typed on the CLI: a type, then numbers separated by / and an
# optional .subinterface or :channel (Loopback0, Gi0/0/1, Port-channel10.100, Serial0/1:0).
_INTERFACE = re.compile(r"^[A-Za-z][A-Za-z-]{0,40}\d{1,10}(?:/\d{1,10}){0,3}(?:[.:]\d{1,10})?$")
# IOS VRF names are at most 32 characters; these are the characters seen in the field.
_VRF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")


class SourceInterface(ArgType):
    """Where a device's echoes come from: one of its interfaces, or one of its addresses."""

    metavar = "interface"

    def parse(self, raw: str, ctx: ParseContext) -> str:
        self.check_length(raw)
        if is_ip_address(raw) or _INTERFACE.match(raw):
            return raw
        raise ArgumentError(f"'{raw[:40]}' is neither an interface name (e.g. Loopback0, Gi0/1) nor an IP address")


class VrfName(ArgType):
    metavar = "vrf"

    def parse(self, raw: str, ctx: ParseContext) -> str:
        if _VRF.match(raw):
            return raw
        raise ArgumentError(f"'{raw[:40]}' is not a VRF name (letters, digits and _ . : -, at most 32)")


class Choice(ArgType):
    def __init__(self, *choices: str, metavar: str | None = None) -> None:
        self.choices = choices
        self.metavar = metavar or "|".join(choices)

    def parse(self, raw: str, ctx: ParseContext) -> str:
        if raw.lower() in self.choices:
            return raw.lower()
        raise ArgumentError(f"'{raw[:40]}' is not one of: {', '.join(self.choices)}")


class Device(ArgType):
    """One inventory device, by name."""

    metavar = "device"

    def parse(self, raw: str, ctx: ParseContext) -> DeviceInfo:
        self.check_length(raw)
        return ctx.inventory.device(raw)

    def devices_of(self, value: Any) -> list[str]:
        return [value.name]


class Targets(ArgType):
    """`r1`, `r1,r2`, `group:core`, `site:hq` or `all`: a list of device names."""

    metavar = "targets"

    def parse(self, raw: str, ctx: ParseContext) -> list[str]:
        return ctx.inventory.resolve(raw)

    def devices_of(self, value: Any) -> list[str]:
        return list(value)


@dataclass(frozen=True)
class NetTarget:
    """What to ping or trace: a device (by its management address), an IP, or a host name.

    Exactly one of `address` and `hostname` is set: an IP address as written, or a DNS
    name still to be resolved (typed by the user, or a device's inventory address)."""

    text: str
    device: str | None = None
    address: str | None = None
    hostname: str | None = None

    @property
    def host(self) -> str:
        """The address or name, as a device would be told it."""
        return self.address or self.hostname or self.text

    @property
    def label(self) -> str:
        return f"{self.device} ({self.host})" if self.device else self.text


class NetworkTarget(ArgType):
    metavar = "target"

    def parse(self, raw: str, ctx: ParseContext) -> NetTarget:
        self.check_length(raw)
        if raw in ctx.inventory.devices:
            address = ctx.inventory.devices[raw].address
            if is_ip_address(address):
                return NetTarget(raw, device=raw, address=address)
            return NetTarget(raw, device=raw, hostname=address)
        if is_ip_address(raw):
            return NetTarget(raw, address=raw)
        if _HOSTNAME.match(raw) and not raw.replace(".", "").isdigit():
            return NetTarget(raw.rstrip("."), hostname=raw.rstrip("."))
        if _is_prefix(raw):
            raise ArgumentError(f"'{raw}' is a network, not a host: give one address")
        raise ArgumentError(
            f"'{raw}' is neither a device in the inventory nor an IP address or host name"
            + suggest(raw, ctx.inventory.devices)
        )


def _is_prefix(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


@dataclass(frozen=True)
class Param:
    """One argument of a command.

    Positional parameters are filled in order; keyword parameters are written as
    `<keyword> <value>` anywhere after the command (`from r1`, `count 3`), or by one of
    its `aliases` (`repeat 3`); a `flag` is a keyword alone (`df-bit`) and parses to
    True when present. A keyword given twice is refused. A keyword parameter with
    `bare_ok` may also be given without its keyword (`show version r1` as well as
    `show version on r1`). A `greedy` positional takes every word up to the next keyword.
    """

    name: str
    type: ArgType
    keyword: str | None = None
    optional: bool = False
    default: Any = None
    greedy: bool = False
    bare_ok: bool = False
    aliases: tuple[str, ...] = ()
    flag: bool = False

    @property
    def keywords(self) -> tuple[str, ...]:
        return (self.keyword, *self.aliases) if self.keyword else ()

    def usage(self) -> str:
        if self.flag:
            return f"[{self.keyword}]" if self.optional else str(self.keyword)
        meta = self.type.usage or f"<{self.type.metavar}>"
        text = f"{self.keyword} {meta}" if self.keyword and not self.bare_ok else meta
        if self.keyword and self.bare_ok:
            text = f"[{self.keyword}] {meta}"
        return f"[{text}]" if self.optional else text
