"""The bot reads the inventory itself, so that it needs no Nornir until a device command:
what it reads must be what Nornir's SimpleInventory reads from the same files."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from chatbot.errors import UserError
from chatbot.inventory import Credentials, DeviceInventory, build_nornir, read_inventory

REPO = Path(__file__).resolve().parent.parent

# Inheritance in every direction Nornir has: a host's own value, its first group's over
# its second's, a group's parent (depth first), the defaults last; data keys likewise.
TANGLED: dict[str, Any] = {
    "hosts": {
        "a": {"hostname": "10.0.0.1", "groups": ["edge", "core"], "data": {"site": "own"}},
        "b": {"groups": ["core", "edge"], "port": 2200},
        "c": {"groups": ["leaf"]},
        "d": {},
    },
    "groups": {
        "core": {"platform": "cisco_iosxe", "port": 22, "data": {"role": "core"}},
        "edge": {"groups": ["region"], "data": {"role": "edge"}},
        "region": {"hostname": "region.example", "port": 830, "data": {"site": "region-site"}},
        "leaf": {"groups": ["edge", "core"]},
    },
    "defaults": {"platform": "cisco_nxos", "port": 2022, "data": {"site": "default-site", "role": "default-role"}},
}


def write_inventory(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir()
    for part in ("hosts", "groups", "defaults"):
        (directory / f"{part}.yaml").write_text(json.dumps(data[part]))  # JSON is YAML
    return directory


@pytest.mark.parametrize("data", [TANGLED, read_inventory(REPO / "inventory")], ids=["tangled", "example"])
def test_the_bot_reads_an_inventory_as_nornir_does(tmp_path: Path, data: dict[str, Any]) -> None:
    from nornir import InitNornir

    path = write_inventory(tmp_path / "inventory", data)
    nornir = InitNornir(inventory={"plugin": "SimpleInventory", "options": {
        "host_file": str(path / "hosts.yaml"), "group_file": str(path / "groups.yaml"),
        "defaults_file": str(path / "defaults.yaml")}}, logging={"enabled": False})
    by_nornir = DeviceInventory(nornir).devices
    by_the_bot = DeviceInventory.deferred(read_inventory(path), lambda: pytest.fail("Nornir was built")).devices
    assert by_the_bot == by_nornir


def test_nornir_is_built_once_on_first_use_with_the_credentials(tmp_path: Path) -> None:
    built = []

    def open_nornir() -> Any:
        built.append(threading.get_ident())
        return build_nornir(data=TANGLED, credentials=Credentials("ops", "pw", "en"))

    inventory = DeviceInventory.deferred(TANGLED, open_nornir)
    assert inventory.resolve("group:core") == ["a", "b"] and not built
    threads = [threading.Thread(target=lambda: inventory.nornir) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    host = inventory.nornir.inventory.hosts["c"]
    assert (host.hostname, host.port, host.username, host.password) == ("region.example", 830, "ops", "pw")
    assert host.get_connection_parameters("scrapli").extras["auth_secondary"] == "en"


@pytest.mark.parametrize("hosts,groups,message", [
    ({"r1": {"groups": ["nope"]}}, {}, "host r1 is in group nope, which is not defined"),
    ({"r1": {"groups": ["a"]}}, {"a": {"groups": ["b"]}, "b": {"groups": ["a"]}}, "group a is its own parent"),
    ({"r1": "10.0.0.1"}, {}, "host r1 must be a mapping"),
    ({"r1": {"groups": "core"}}, {"core": {}}, "host r1: groups must be a list"),
])
def test_a_broken_inventory_is_one_line_at_start(tmp_path: Path, hosts: dict[str, Any], groups: dict[str, Any],
                                                 message: str) -> None:
    path = write_inventory(tmp_path / "inventory", {"hosts": hosts, "groups": groups, "defaults": {}})
    with pytest.raises(UserError, match=message):
        read_inventory(path)


def test_unreadable_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory"
    path.mkdir()
    (path / "hosts.yaml").write_text("r1: {hostname: [\n")
    with pytest.raises(UserError, match=r"^\[inventory\] .*hosts.yaml: ") as err:
        read_inventory(path)
    assert "\n" not in str(err.value)
