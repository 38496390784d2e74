"""Host keys as OpenSSH checks them (chatbot/hostkeys.py), and the lab's published keys."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from chatbot.app import LabAccess, build_context
from chatbot.cli import lab_access
from chatbot.config import ConfigError, parse_config
from chatbot.device_work import run_on_devices
from chatbot.hostkeys import (
    HostKeyChanged,
    HostKeyMode,
    HostKeyPolicy,
    HostKeyRevoked,
    HostKeyUnknown,
    preferred_algorithms,
    trust_host_key,
    verify_host_key,
)
from chatbot.lab import Lab

HOST, PORT = "10.9.8.7", 2222


def new_key(kind: str = "ssh-ed25519") -> asyncssh.SSHKey:
    return asyncssh.generate_private_key(kind).convert_to_public()


def line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def policy(path: Path, mode: str = "strict") -> HostKeyPolicy:
    return HostKeyPolicy(HostKeyMode(mode), path)


# -- matching, as OpenSSH does --------------------------------------------------------------


def test_a_port_entry_is_found_where_scrapli_finds_nothing(tmp_path: Path) -> None:
    from scrapli.ssh_config import SSHKnownHosts

    key = new_key()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{HOST}]:{PORT} {line(key)}\n")
    assert SSHKnownHosts(str(known)).lookup(HOST) == {}  # scrapli's lookup: the bare host only
    verify_host_key(policy(known), HOST, HOST, PORT, key.public_data)  # trusted: no exception
    with pytest.raises(HostKeyUnknown):  # the same key is not trusted for another port
        verify_host_key(policy(known), HOST, HOST, 2223, key.public_data)


def test_hashed_entries_written_by_ssh_keygen(tmp_path: Path) -> None:
    key = new_key()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{HOST}]:{PORT} {line(key)}\n{HOST} {line(new_key())}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True, timeout=30)
    assert HOST not in known.read_text()
    verify_host_key(policy(known), HOST, HOST, PORT, key.public_data)
    with pytest.raises(HostKeyChanged):
        verify_host_key(policy(known), HOST, HOST, PORT, new_key().public_data)


def test_unknown_changed_and_revoked(tmp_path: Path) -> None:
    key, other = new_key(), new_key()
    known = tmp_path / "known_hosts"
    with pytest.raises(HostKeyUnknown) as unknown:  # no file at all
        verify_host_key(policy(known), HOST, HOST, PORT, key.public_data)
    assert unknown.value.fingerprint.startswith("ssh-ed25519 SHA256:")
    known.write_text(f"[{HOST}]:{PORT} {line(other)}\n")
    with pytest.raises(HostKeyChanged):
        verify_host_key(policy(known), HOST, HOST, PORT, key.public_data)
    known.write_text(f"[{HOST}]:{PORT} {line(key)}\n@revoked * {line(key)}\n")
    with pytest.raises(HostKeyRevoked):
        verify_host_key(policy(known), HOST, HOST, PORT, key.public_data)
    with pytest.raises(HostKeyRevoked):  # revoked wins in accept-new too
        verify_host_key(policy(known, "accept-new"), HOST, HOST, PORT, key.public_data)


def test_a_cert_authority_line_is_not_a_host_key(tmp_path: Path) -> None:
    key = new_key()
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority * {line(key)}\n")
    with pytest.raises(HostKeyUnknown):  # libssh2 cannot check host certificates
        verify_host_key(policy(known), HOST, HOST, PORT, key.public_data)


def test_off_checks_nothing(tmp_path: Path) -> None:
    verify_host_key(policy(tmp_path / "absent", "off"), HOST, HOST, PORT, new_key().public_data)
    assert not (tmp_path / "absent").exists()


def test_accept_new_writes_openssh_lines_and_refuses_a_change(tmp_path: Path) -> None:
    known = tmp_path / "dir" / "known_hosts"
    key, key22 = new_key(), new_key("ecdsa-sha2-nistp256")
    verify_host_key(policy(known, "accept-new"), HOST, HOST, PORT, key.public_data)
    verify_host_key(policy(known, "accept-new"), "r9.example", "10.0.0.9", 22, key22.public_data)
    assert known.read_text() == f"[{HOST}]:{PORT} {line(key)}\nr9.example {line(key22)}\n"
    assert known.stat().st_mode & 0o077 == 0
    with pytest.raises(HostKeyChanged):
        verify_host_key(policy(known, "accept-new"), HOST, HOST, PORT, new_key().public_data)
    assert len(known.read_text().splitlines()) == 2


def test_accept_new_from_many_threads_writes_each_host_once(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    keys = {f"10.0.0.{i}": new_key() for i in range(8)}
    start = threading.Barrier(16)

    def connect(host: str) -> None:
        start.wait()
        verify_host_key(policy(known, "accept-new"), host, host, PORT, keys[host].public_data)

    threads = [threading.Thread(target=connect, args=(host,)) for host in list(keys) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = known.read_text().splitlines()
    assert sorted(lines) == sorted(f"[{host}]:{PORT} {line(key)}" for host, key in keys.items())


def test_known_key_types_are_negotiated_first(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[{HOST}]:{PORT} {line(new_key('ecdsa-sha2-nistp256'))}\n")
    algorithms = preferred_algorithms(known, HOST, HOST, PORT)
    assert algorithms[0] == "ecdsa-sha2-nistp256" and "ssh-ed25519" in algorithms
    assert not any("cert" in a for a in algorithms)


def test_trust_replace_drops_only_that_hosts_entries(tmp_path: Path) -> None:
    old, new, elsewhere = new_key(), new_key(), new_key()
    known = tmp_path / "known_hosts"
    known.write_text(f"# mine\n[{HOST}]:{PORT} {line(old)}\n{HOST} {line(elsewhere)}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True, timeout=30)
    with pytest.raises(HostKeyChanged):
        trust_host_key(known, HOST, HOST, PORT, new.public_data, replace=False)
    assert trust_host_key(known, HOST, HOST, PORT, new.public_data, replace=True) == "added"
    assert trust_host_key(known, HOST, HOST, PORT, new.public_data, replace=False) == "already trusted"
    verify_host_key(policy(known), HOST, HOST, PORT, new.public_data)
    verify_host_key(policy(known), HOST, HOST, 22, elsewhere.public_data)  # port 22 entry kept
    with pytest.raises(HostKeyChanged):
        verify_host_key(policy(known), HOST, HOST, PORT, old.public_data)


# -- settings ----------------------------------------------------------------------------------


def test_host_key_settings() -> None:
    assert parse_config({}).inventory.host_keys == "strict"
    assert parse_config({"inventory": {"strict_host_keys": False}}).inventory.host_keys == "off"
    assert parse_config({"inventory": {"strict_host_keys": True}}).inventory.host_keys == "strict"
    with pytest.raises(ConfigError, match="strict_host_keys is the old name of host_keys"):
        parse_config({"inventory": {"strict_host_keys": False, "host_keys": "strict"}})
    with pytest.raises(ConfigError, match="inventory.host_keys: Input should be 'strict', 'accept-new' or 'off'"):
        parse_config({"inventory": {"host_keys": "yes"}})
    with pytest.raises(ConfigError, match='accept-new" needs transport = "ssh2"'):
        parse_config({"inventory": {"host_keys": "accept-new", "transport": "system"}})
    with pytest.raises(ConfigError, match='transport "paramiko" cannot read'):
        parse_config({"inventory": {"transport": "paramiko"}})
    assert parse_config({"inventory": {"transport": "system"}}).inventory.host_keys == "strict"


# -- the lab, checked strictly -------------------------------------------------------------------


def lab_context(lab: Lab, **changes: Any) -> Any:
    access = lab_access(lab)
    inventory = changes.pop("inventory", None)
    if inventory is not None:
        access.inventory = inventory
    for name, value in changes.items():
        setattr(access, name, value)
    config = parse_config({"limits": {"device_timeout": 2, "connect_timeout": 2}})
    return build_context(config, access)


def test_the_lab_publishes_its_keys_and_the_bot_checks_them(lab: Lab, tmp_path: Path) -> None:
    assert lab.known_hosts is not None
    published = lab.known_hosts.read_text()
    device = lab.devices["r1"]
    assert f"[{device.host}]:{device.port} ssh-ed25519 " in published
    [ok] = run_on_devices(lab_context(lab), ["r1"], "show clock")
    assert ok.ok, ok.error
    failures_before, sessions_before = device.stats.auth_failures, device.stats.sessions_total
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    [refused] = run_on_devices(lab_context(lab, known_hosts=empty), ["r1"], "show clock")
    assert refused.error.startswith("host key unknown: ssh-ed25519 SHA256:"), refused.error
    assert "chatbot trust r1" in refused.error
    assert device.stats.auth_failures == failures_before  # no password was tried
    assert device.stats.sessions_total == sessions_before


def test_lab_access_without_published_keys_is_still_strict(lab: Lab) -> None:
    access: LabAccess = lab_access(lab)
    access.known_hosts = None
    [out] = run_on_devices(build_context(parse_config({}), access), ["r7"], "show clock")
    assert out.error.startswith("host key unknown: ")
