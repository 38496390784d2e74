"""The device inventory: reading it, resolving targets, and the Nornir that device work
runs on.

The inventory is Nornir's SimpleInventory (hosts.yaml, groups.yaml, defaults.yaml), or
dicts of that shape (the lab hands its inventory over in memory). The bot reads it
itself, with Nornir's inheritance rules, so that listing devices, checking access and
resolving targets need no Nornir: Nornir, scrapli and ssh2 load with the first command
that reaches a device (`DeviceInventory.nornir`, built by chatbot/nornir_setup.py).

Credentials never live in inventory YAML: they are injected into the Nornir defaults
from the config (environment variables or secret files) when Nornir is built.
"""

from __future__ import annotations

import difflib
import ipaddress
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.errors import ArgumentError, UserError

if TYPE_CHECKING:
    from nornir.core import Nornir

# Targets named in chat are matched against this, so nothing odd reaches Nornir's filter.
MAX_TARGETS_TEXT = 200
# Attributes a host inherits from its groups, then from the defaults, as in Nornir.
INHERITED = ("hostname", "port", "username", "password", "platform")


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    address: str
    port: int | None
    platform: str | None
    groups: tuple[str, ...]
    site: str | None
    role: str | None
    # The network zone the device sits in: its work runs on that zone's workers
    # (chatbot/zones). None: the bot's own process opens its sessions.
    zone: str | None = None


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None
    enable_secret: str | None


def read_inventory(path: Path) -> dict[str, Any]:
    """A SimpleInventory directory as {"hosts", "groups", "defaults"}, read as Nornir
    reads it (ruamel.yaml, safe; groups.yaml and defaults.yaml may be absent)."""
    from ruamel.yaml import YAML, YAMLError

    yaml = YAML(typ="safe")
    data: dict[str, Any] = {}
    for key, required in (("hosts", True), ("groups", False), ("defaults", False)):
        file = path / f"{key}.yaml"
        if not required and not file.exists():
            data[key] = {}
            continue
        try:
            data[key] = yaml.load(file.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, YAMLError) as err:
            raise UserError(f"[inventory] {file}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") \
                from None
    check_inventory(data, str(path))
    return data


def check_inventory(data: Mapping[str, Any], where: str = "inventory") -> None:
    """Refuse, with one line, what Nornir would fail on later: entries that are not
    mappings, and groups that are named but not defined (or that contain themselves)."""
    groups = data.get("groups") or {}
    for key in ("hosts", "groups", "defaults"):
        if not isinstance(data.get(key) or {}, Mapping):
            raise UserError(f"[inventory] {where}: {key} must be a mapping")
    for kind, entries in (("host", data.get("hosts") or {}), ("group", groups)):
        for name, entry in entries.items():
            if not isinstance(entry or {}, Mapping):
                raise UserError(f"[inventory] {where}: {kind} {name} must be a mapping")
            parents = (entry or {}).get("groups") or []
            if not isinstance(parents, list):
                raise UserError(f"[inventory] {where}: {kind} {name}: groups must be a list")
            for parent in parents:
                if parent not in groups:
                    raise UserError(f"[inventory] {where}: {kind} {name} is in group {parent}, which is not defined")
    for name in groups:
        _lineage([name], groups, where)


def _lineage(names: list[str], groups: Mapping[str, Any], where: str, inside: tuple[str, ...] = ()) -> list[str]:
    """Nornir's `extended_groups`: each group, then its own groups depth first, no repeats."""
    out: list[str] = []
    for name in names:
        if name in inside:
            raise UserError(f"[inventory] {where}: group {name} is its own parent")
        for group in (name, *_lineage((groups[name] or {}).get("groups") or [], groups, where, (*inside, name))):
            if group not in out:
                out.append(group)
    return out


def device_infos(data: Mapping[str, Any]) -> dict[str, DeviceInfo]:
    """Each host as the bot shows and matches it, with what it inherits resolved the
    way Nornir resolves it: the host, then its groups (depth first), then the defaults."""
    groups = data.get("groups") or {}
    defaults = data.get("defaults") or {}
    devices = {}
    for name, host in (data.get("hosts") or {}).items():
        host = host or {}
        chain = [host, *((groups[g] or {}) for g in _lineage(host.get("groups") or [], groups, "inventory"))]

        def attribute(key: str, chain: list[Any] = chain) -> Any:
            return next((e[key] for e in chain if e.get(key) is not None), defaults.get(key))

        def item(key: str, chain: list[Any] = chain) -> Any:
            for element in chain:
                if key in (element.get("data") or {}):
                    return element["data"][key]
            return (defaults.get("data") or {}).get(key)

        devices[name] = DeviceInfo(
            name=name,
            address=attribute("hostname") or name,
            port=attribute("port"),
            platform=attribute("platform"),
            groups=tuple(host.get("groups") or ()),
            site=item("site"),
            role=item("role"),
            zone=_zone_text(item("zone")),
        )
    return devices


def build_nornir(*, path: Path | None = None, data: dict[str, Any] | None = None,
                 credentials: Credentials | None = None, workers: int = 20,
                 scrapli_extras: dict[str, Any] | None = None) -> Nornir:
    """A Nornir on a SimpleInventory directory or on dicts of that shape, with the
    credentials injected. This imports Nornir and nornir-scrapli."""
    from chatbot.nornir_setup import open_nornir

    if path is not None:
        data = read_inventory(path)
    elif data is None:
        raise ValueError("an inventory path or inventory data is needed")
    return open_nornir(data, credentials=credentials, workers=workers, scrapli_extras=scrapli_extras or {})


def _zone_text(zone: Any) -> str | None:
    """`zone` (under `data`, inherited as site and role are); empty means the bot's own."""
    return str(zone) if zone else None


class DeviceInventory:
    """Read-only view of the inventory for validation, target resolution and `devices`."""

    def __init__(self, nr: Nornir) -> None:
        self._nornir: Nornir | None = nr
        self._open: Callable[[], Nornir] | None = None
        self._opening = threading.Lock()
        self._devices: dict[str, DeviceInfo] = {}
        for name, host in nr.inventory.hosts.items():
            self._devices[name] = DeviceInfo(
                name=name,
                address=host.hostname or name,
                port=host.port,
                platform=host.platform,
                groups=tuple(g.name for g in host.groups),
                site=host.get("site"),
                role=host.get("role"),
                zone=_zone_text(host.get("zone")),
            )

    @classmethod
    def deferred(cls, data: Mapping[str, Any], open_nornir: Callable[[], Nornir]) -> DeviceInventory:
        """The inventory of `data` (SimpleInventory's shape), whose Nornir `open_nornir`
        builds when device work first asks for it: until then nothing of Nornir loads."""
        check_inventory(data)
        inventory = cls.__new__(cls)
        inventory._nornir = None
        inventory._open = open_nornir
        inventory._opening = threading.Lock()
        inventory._devices = device_infos(data)
        return inventory

    @property
    def nornir(self) -> Nornir:
        """The Nornir that device work runs on, built on first use (once, whichever
        worker thread asks first)."""
        if self._nornir is None:
            with self._opening:
                if self._nornir is None:
                    assert self._open is not None
                    self._nornir = self._open()
        return self._nornir

    @property
    def devices(self) -> dict[str, DeviceInfo]:
        return self._devices

    def groups(self) -> set[str]:
        return {g for d in self._devices.values() for g in d.groups}

    def zones(self) -> set[str]:
        return {d.zone for d in self._devices.values() if d.zone}

    def sites(self) -> set[str]:
        return {d.site for d in self._devices.values() if d.site}

    def device(self, name: str) -> DeviceInfo:
        try:
            return self._devices[name]
        except KeyError:
            raise ArgumentError(f"unknown device '{name}'{suggest(name, self._devices)}") from None

    def resolve(self, spec: str) -> list[str]:
        """`r1`, `r1,r2`, `group:core`, `site:hq`, `all` -> device names, in inventory order."""
        if len(spec) > MAX_TARGETS_TEXT:
            raise ArgumentError(f"target list is longer than {MAX_TARGETS_TEXT} characters")
        chosen: set[str] = set()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            chosen.update(self._resolve_one(item))
        if not chosen:
            raise ArgumentError("no targets given")
        return [name for name in self._devices if name in chosen]

    def _resolve_one(self, item: str) -> list[str]:
        if item == "all":
            return list(self._devices)
        kind, sep, value = item.partition(":")
        if sep:
            if kind == "group":
                found = [d.name for d in self._devices.values() if value in d.groups]
                if not found:
                    raise ArgumentError(f"unknown group '{value}'{suggest(value, self.groups())}")
                return found
            if kind == "site":
                found = [d.name for d in self._devices.values() if d.site == value]
                if not found:
                    raise ArgumentError(f"unknown site '{value}'{suggest(value, self.sites())}")
                return found
            raise ArgumentError(f"'{item}': use a device name, group:NAME, site:NAME or all")
        return [self.device(item).name]

    def filter(self, spec: str) -> list[DeviceInfo]:
        """For `devices [filter]`: a target spec, or a substring of name, address, group or site."""
        if not spec:
            return list(self._devices.values())
        try:
            return [self._devices[n] for n in self.resolve(spec)]
        except ArgumentError:
            needle = spec.lower()
            found = [d for d in self._devices.values()
                     if needle in d.name.lower() or needle in d.address
                     or any(needle in g.lower() for g in d.groups) or needle in (d.site or "").lower()]
            if not found:
                raise
            return found


def suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def is_ip_address(text: str) -> bool:
    """A plain IPv4 or IPv6 address. IPv6 scope ids ("fe80::1%eth0") are refused:
    ipaddress accepts any text after the '%', which would then reach a device verbatim."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
