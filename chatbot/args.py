"""Typed command arguments: each type validates one piece of user text.

Validation happens in the router, before any task runs, so nothing unvalidated can
reach a device. Every failure is an ArgumentError with a one-line reason.
"""

from __future__ import annotations

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
    """What to ping or trace: a device (by its management address), an IP, or a host name."""

    text: str
    device: str | None = None
    address: str | None = None  # None for a host name not yet resolved

    @property
    def label(self) -> str:
        return f"{self.device} ({self.address})" if self.device else self.text


class NetworkTarget(ArgType):
    metavar = "target"

    def parse(self, raw: str, ctx: ParseContext) -> NetTarget:
        self.check_length(raw)
        if raw in ctx.inventory.devices:
            info = ctx.inventory.devices[raw]
            return NetTarget(raw, device=raw, address=info.address)
        if is_ip_address(raw):
            return NetTarget(raw, address=raw)
        if _HOSTNAME.match(raw) and not raw.replace(".", "").isdigit():
            return NetTarget(raw.rstrip("."))
        raise ArgumentError(
            f"'{raw}' is neither a device in the inventory nor an IP address or host name"
            + suggest(raw, ctx.inventory.devices)
        )


@dataclass(frozen=True)
class Param:
    """One argument of a command.

    Positional parameters are filled in order; keyword parameters are written as
    `<keyword> <value>` anywhere after the command (`from r1`, `count 3`). A keyword
    parameter with `bare_ok` may also be given without its keyword (`show version r1`
    as well as `show version on r1`). A `greedy` positional takes every word up to the
    next keyword.
    """

    name: str
    type: ArgType
    keyword: str | None = None
    optional: bool = False
    default: Any = None
    greedy: bool = False
    bare_ok: bool = False

    def usage(self) -> str:
        meta = self.type.usage or f"<{self.type.metavar}>"
        text = f"{self.keyword} {meta}" if self.keyword and not self.bare_ok else meta
        if self.keyword and self.bare_ok:
            text = f"[{self.keyword}] {meta}"
        return f"[{text}]" if self.optional else text
