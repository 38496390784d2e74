"""Building the Nornir that device work runs on, from inventory dicts.

Imported only when a command first reaches a device (chatbot.inventory.DeviceInventory
builds it then): Nornir, nornir-scrapli, scrapli and ssh2 cost the bot about 40 MiB and
a quarter of a second, which a chat that never touches a device should not pay.

Nornir is assembled here rather than through `InitNornir`, because InitNornir imports
every connection plugin installed in the environment (its `nornir.plugins.connections`
entry points): with nornir-netmiko installed, that is netmiko and paramiko too. The bot
uses one connection plugin, scrapli's, and registers only that one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nornir.core import Nornir
from nornir.core.configuration import Config
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
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.core.state import GlobalState
from nornir.plugins.runners import ThreadedRunner
from nornir_scrapli.connection import CONNECTION_NAME, ScrapliCore

from chatbot.inventory import Credentials

ConnectionPluginRegister.register(CONNECTION_NAME, ScrapliCore)


class DictInventory:
    """A Nornir inventory from dicts shaped like SimpleInventory's YAML (the same
    fields SimpleInventory reads)."""

    def __init__(self, hosts: Mapping[str, Any], groups: Mapping[str, Any] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.hosts = hosts
        self.groups = groups or {}
        self.defaults = defaults or {}

    @staticmethod
    def _options(data: Mapping[str, Any]) -> dict[str, ConnectionOptions]:
        return {
            name: ConnectionOptions(
                hostname=o.get("hostname"), port=o.get("port"), username=o.get("username"),
                password=o.get("password"), platform=o.get("platform"), extras=o.get("extras"),
            )
            for name, o in (data.get("connection_options") or {}).items()
        }

    def _element(self, cls: type, name: str, data: Mapping[str, Any], defaults: Defaults) -> Any:
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


def open_nornir(data: Mapping[str, Any], *, credentials: Credentials | None = None, workers: int = 20,
                scrapli_extras: dict[str, Any] | None = None) -> Nornir:
    """Nornir on `data` ({"hosts", "groups", "defaults"}), threaded, with the
    credentials and scrapli's connection options in its defaults."""
    # Nornir's own log file would land in the working directory, and it logs a traceback
    # per failed host: the bot logs one line per device failure instead. scrapli logs
    # every byte of a session at DEBUG, secrets included: never let it below WARNING.
    logging.getLogger("nornir").setLevel(logging.CRITICAL)
    logging.getLogger("scrapli").setLevel(logging.WARNING)
    config = Config.from_dict(runner={"plugin": "threaded", "options": {"num_workers": workers}},
                              logging={"enabled": False})
    inventory = DictInventory(data.get("hosts") or {}, data.get("groups"), data.get("defaults")).load()
    nr = Nornir(inventory=inventory, runner=ThreadedRunner(num_workers=workers), config=config,
                data=GlobalState(dry_run=False))
    _inject_credentials(nr, credentials, scrapli_extras or {})
    return nr


def _inject_credentials(nr: Nornir, creds: Credentials | None, extras: dict[str, Any]) -> None:
    defaults = nr.inventory.defaults
    if creds is not None:
        if creds.username:
            defaults.username = creds.username
        if creds.password:
            defaults.password = creds.password
    scrapli = defaults.connection_options.get(CONNECTION_NAME) or ConnectionOptions(extras={})
    merged = dict(extras)
    merged.update(scrapli.extras or {})
    if creds is not None and creds.enable_secret:
        merged["auth_secondary"] = creds.enable_secret
    scrapli.extras = merged
    defaults.connection_options[CONNECTION_NAME] = scrapli
