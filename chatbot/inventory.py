"""The device inventory: loading Nornir, injecting credentials, resolving targets.

Credentials never live in inventory YAML: they are injected into the Nornir defaults
from the config (environment variables or secret files) after loading.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nornir import InitNornir
from nornir.core import Nornir
from nornir.core.inventory import (
    ConnectionOptions,
    Defaults,
    Group,
    Groups,
    Host,
    Hosts,
    Inventory,
    ParentGroups,
)
from nornir.core.plugins.inventory import InventoryPluginRegister

from chatbot.errors import ArgumentError

# Targets named in chat are matched against this, so nothing odd reaches Nornir's filter.
MAX_TARGETS_TEXT = 200


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


class DictInventory:
    """A Nornir inventory plugin fed from dicts shaped like SimpleInventory's YAML.

    The lab hands its inventory over in memory; this keeps it off the disk.
    """

    def __init__(self, hosts: dict[str, Any], groups: dict[str, Any] | None = None,
                 defaults: dict[str, Any] | None = None) -> None:
        self.hosts = hosts
        self.groups = groups or {}
        self.defaults = defaults or {}

    @staticmethod
    def _options(data: dict[str, Any]) -> dict[str, ConnectionOptions]:
        return {
            name: ConnectionOptions(
                hostname=o.get("hostname"), port=o.get("port"), username=o.get("username"),
                password=o.get("password"), platform=o.get("platform"), extras=o.get("extras"),
            )
            for name, o in data.get("connection_options", {}).items()
        }

    def _element(self, cls: type, name: str, data: dict[str, Any], defaults: Defaults) -> Any:
        return cls(
            name=name, hostname=data.get("hostname"), port=data.get("port"),
            username=data.get("username"), password=data.get("password"),
            platform=data.get("platform"), data=data.get("data"), defaults=defaults,
            connection_options=self._options(data),
        )

    def load(self) -> Inventory:
        d = self.defaults
        defaults = Defaults(
            hostname=d.get("hostname"), port=d.get("port"), username=d.get("username"),
            password=d.get("password"), platform=d.get("platform"), data=d.get("data"),
            connection_options=self._options(d),
        )
        groups = Groups({n: self._element(Group, n, g or {}, defaults) for n, g in self.groups.items()})
        hosts = Hosts({n: self._element(Host, n, h or {}, defaults) for n, h in self.hosts.items()})
        # Parents are named in the data and linked once every group exists.
        for elements, data in ((groups, self.groups), (hosts, self.hosts)):
            for name, element in elements.items():
                parents = (data[name] or {}).get("groups") or []
                element.groups = ParentGroups([groups[p] for p in parents])
        return Inventory(hosts=hosts, groups=groups, defaults=defaults)


InventoryPluginRegister.register("ChatbotDictInventory", DictInventory)


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None
    enable_secret: str | None


def build_nornir(*, path: Path | None = None, data: dict[str, Any] | None = None,
                 credentials: Credentials | None = None, workers: int = 20,
                 scrapli_extras: dict[str, Any] | None = None) -> Nornir:
    """Load a SimpleInventory directory (hosts.yaml, groups.yaml, defaults.yaml) or dicts."""
    if path is not None:
        inventory = {
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(path / "hosts.yaml"),
                "group_file": str(path / "groups.yaml"),
                "defaults_file": str(path / "defaults.yaml"),
            },
        }
    elif data is not None:
        inventory = {"plugin": "ChatbotDictInventory", "options": data}
    else:
        raise ValueError("an inventory path or inventory data is needed")
    # Nornir's own log file would land in the working directory, and it logs a traceback
    # per failed host: the bot logs one line per device failure instead. scrapli logs
    # every byte of a session at DEBUG, secrets included: never let it below WARNING.
    logging.getLogger("nornir").setLevel(logging.CRITICAL)
    logging.getLogger("scrapli").setLevel(logging.WARNING)
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": workers}},
        inventory=inventory,
        logging={"enabled": False},
    )
    _inject_credentials(nr, credentials, scrapli_extras or {})
    return nr


def _inject_credentials(nr: Nornir, creds: Credentials | None, extras: dict[str, Any]) -> None:
    defaults = nr.inventory.defaults
    if creds is not None:
        if creds.username:
            defaults.username = creds.username
        if creds.password:
            defaults.password = creds.password
    scrapli = defaults.connection_options.get("scrapli") or ConnectionOptions(extras={})
    merged = dict(extras)
    merged.update(scrapli.extras or {})
    if creds is not None and creds.enable_secret:
        merged["auth_secondary"] = creds.enable_secret
    scrapli.extras = merged
    defaults.connection_options["scrapli"] = scrapli


def _zone_of(host: Host) -> str | None:
    """`zone` from the host's data, else its groups' (as Nornir inherits site and role)."""
    zone = host.get("zone")
    return str(zone) if zone else None


class DeviceInventory:
    """Read-only view of the inventory for validation, target resolution and `devices`."""

    def __init__(self, nr: Nornir) -> None:
        self.nornir = nr
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
                zone=_zone_of(host),
            )

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
