"""The bot's device path (Nornir + scrapli + our transport) against a REAL OpenSSH
server on a loopback port: host keys as OpenSSH writes them (`[host]:port`, hashed,
@revoked), accept-new, and the failure lines a user sees."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sshd_server import RealSshd, free_port

from chatbot.app import build_context
from chatbot.config import parse_config
from chatbot.context import TaskContext
from chatbot.device_work import DeviceOutput, run_on_devices

pytestmark = pytest.mark.slow


@pytest.fixture()
def sshd(tmp_path: Path):  # type: ignore[no-untyped-def]
    with RealSshd(tmp_path / "sshd") as server:
        yield server


def keyscan(server: RealSshd) -> str:
    """What OpenSSH's own ssh-keyscan writes for the server: `[127.0.0.1]:PORT ssh-ed25519 ...`."""
    out = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(server.port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 "), out
    return out


def context(tmp_path: Path, server: RealSshd, known_hosts: Path | None, *, host_keys: str | None = "strict",
            hostname: str = "127.0.0.1", port: int | None = None, key: Path | None = None,
            enable: str = "en-secret", platform: str = "cisco_iosxe") -> TaskContext:
    inventory = tmp_path / "inventory"
    inventory.mkdir(exist_ok=True)
    (inventory / "hosts.yaml").write_text(
        f"r1:\n  hostname: {hostname}\n  port: {port or server.port}\n  platform: {platform}\n")
    (inventory / "groups.yaml").write_text("{}\n")
    # The test sshd logs in with a key only (no system password is touched).
    (inventory / "defaults.yaml").write_text(
        f"connection_options:\n  scrapli:\n    extras:\n      auth_private_key: {key or server.client_key}\n")
    settings: dict[str, Any] = {"path": str(inventory), "username": server.user, "password": "not-used",
                                "enable_secret": enable}
    if host_keys is not None:
        settings["host_keys"] = host_keys
    if known_hosts is not None:
        settings["known_hosts"] = str(known_hosts)
    config = parse_config({"inventory": settings, "limits": {"device_timeout": 15, "connect_timeout": 5}})
    return build_context(config)


def show_version(ctx: TaskContext) -> DeviceOutput:
    [out] = run_on_devices(ctx, ["r1"], "show version")
    return out


def no_login_attempted(server: RealSshd) -> bool:
    """sshd (LogLevel VERBOSE) logs every key offered; a refused host key sends none."""
    log = server.log_text()
    return "Accepted key" not in log and "Failed publickey" not in log and "Accepted publickey" not in log


def test_strict_with_an_openssh_port_entry_connects(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd))
    out = show_version(context(tmp_path, sshd, known))
    assert out.ok, out.error
    assert "Cisco IOS XE Software" in out.output


def test_sessions_agree_on_the_cheap_algorithms_and_type_only_what_a_show_needs(tmp_path: Path,
                                                                                 sshd: RealSshd) -> None:
    """OpenSSH 9.2 offers chacha20-poly1305 first too; the bot's offer order wins, and the
    lean IOS session (no prompt hunting, no terminal width, no exit) works on a real pty."""
    from ssh2.session import LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_KEX

    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd))
    ctx = context(tmp_path, sshd, known)
    nr = ctx.inventory.nornir
    host = nr.inventory.hosts["r1"]
    session = host.open_connection("scrapli", nr.config).connection.transport.session
    try:
        assert (session.methods(LIBSSH2_METHOD_KEX), session.methods(LIBSSH2_METHOD_CRYPT_CS)) == (
            "curve25519-sha256", "aes128-gcm@openssh.com")
    finally:
        host.close_connection("scrapli")
    [out] = run_on_devices(ctx, ["r1"], "show running-config")
    assert out.ok, out.error
    assert "hostname r1" in out.output and not out.output.rstrip().endswith("#")


def test_default_settings_use_the_users_known_hosts(tmp_path: Path, sshd: RealSshd,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No host-key setting at all: strict, against ~/.ssh/known_hosts as OpenSSH wrote it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(keyscan(sshd))
    monkeypatch.setenv("HOME", str(home))
    out = show_version(context(tmp_path, sshd, None, host_keys=None))
    assert out.ok, out.error
    (home / ".ssh" / "known_hosts").write_text("")
    out = show_version(context(tmp_path, sshd, None, host_keys=None))
    assert out.error.startswith("host key unknown: ") and str(home / ".ssh" / "known_hosts") in out.error


def test_strict_with_a_hashed_entry_connects(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd))
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True, timeout=30)
    assert known.read_text().startswith("|1|") and "127.0.0.1" not in known.read_text()
    out = show_version(context(tmp_path, sshd, known))
    assert out.ok, out.error


def test_unknown_key_is_refused_before_login(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:1 {sshd.host_public_key}\n")  # the key, but for another port
    out = show_version(context(tmp_path, sshd, known))
    assert not out.ok
    assert out.error.startswith("host key unknown: ssh-ed25519 SHA256:")
    assert "chatbot trust r1" in out.error and str(known) in out.error
    assert no_login_attempted(sshd)


def test_changed_key_is_refused(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd))
    sshd.new_host_key()
    sshd.restart()
    out = show_version(context(tmp_path, sshd, known))
    assert not out.ok and out.error.startswith("host key changed: "), out.error
    assert "chatbot trust r1 --replace" in out.error
    assert no_login_attempted(sshd)


def test_revoked_key_is_refused_even_when_also_listed(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd) + f"@revoked * {sshd.host_public_key}\n")
    out = show_version(context(tmp_path, sshd, known))
    assert not out.ok and out.error.startswith("host key revoked: "), out.error
    assert no_login_attempted(sshd)


def test_accept_new_writes_the_entry_then_refuses_a_changed_key(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # the directory does not exist yet
    ctx = context(tmp_path, sshd, known, host_keys="accept-new")
    out = show_version(ctx)
    assert out.ok, out.error
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n"
    assert show_version(ctx).ok  # known now: no second entry
    assert len(known.read_text().splitlines()) == 1
    sshd.new_host_key()
    sshd.restart()
    out = show_version(ctx)
    assert not out.ok and out.error.startswith("host key changed: "), out.error
    assert len(known.read_text().splitlines()) == 1


def test_off_connects_without_a_known_hosts_file(tmp_path: Path, sshd: RealSshd) -> None:
    out = show_version(context(tmp_path, sshd, tmp_path / "absent", host_keys="off"))
    assert out.ok, out.error
    assert not (tmp_path / "absent").exists()


def test_wrong_credentials_are_an_authentication_failure(tmp_path: Path, sshd: RealSshd) -> None:
    import asyncssh

    wrong = tmp_path / "wrong_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(wrong))
    wrong.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd))
    out = show_version(context(tmp_path, sshd, known, key=wrong))
    assert out.error == "authentication failed (check the device credentials)"


def test_wrong_enable_secret_is_an_enable_failure(tmp_path: Path, sshd: RealSshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(keyscan(sshd))
    ctx = context(tmp_path, sshd, known, enable="not-the-secret")
    ctx.config.limits.device_timeout = 3  # scrapli waits this long for the privileged prompt
    out = show_version(ctx)
    assert out.error == "enable failed (check the enable secret)"


def test_closed_port_is_connection_refused(tmp_path: Path, sshd: RealSshd) -> None:
    out = show_version(context(tmp_path, sshd, tmp_path / "known_hosts", port=free_port()))
    assert out.error == "unreachable: connection refused"


@pytest.mark.usefixtures("invalid_names_do_not_resolve")
def test_unresolvable_name(tmp_path: Path, sshd: RealSshd) -> None:
    out = show_version(context(tmp_path, sshd, tmp_path / "known_hosts", hostname="r1.invalid"))
    assert out.error == "unreachable: cannot resolve the device's host name"


def test_unsupported_platform_is_refused_before_connecting(tmp_path: Path, sshd: RealSshd) -> None:
    out = show_version(context(tmp_path, sshd, tmp_path / "known_hosts", platform="linux"))
    assert out.error.startswith("platform linux is not supported (use cisco_iosxe")
    assert "Connection from" not in sshd.log_text()


def test_chatbot_trust_then_strict_connects(tmp_path: Path, sshd: RealSshd,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from chatbot.cli import main

    known = tmp_path / "known_hosts"
    ctx = context(tmp_path, sshd, known)  # writes the inventory
    config = tmp_path / "bot.toml"
    config.write_text(f'[inventory]\npath = "{tmp_path / "inventory"}"\nknown_hosts = "{known}"\n')
    assert main(["trust", "r1", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(sshd.host_key_path) + ".pub"], capture_output=True,
                                 text=True, check=True, timeout=30).stdout.split()[1]
    assert printed.startswith(f"r1: ssh-ed25519 {fingerprint} added ([127.0.0.1]:{sshd.port} in {known})")
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n"
    assert "Accepted key" not in sshd.log_text()  # a key scan, no login
    assert show_version(ctx).ok
