"""The built-in lab, exercised through real clients: scrapli over SSH (ssh2, system OpenSSH,
asyncssh), raw asyncssh for byte-exact terminal behaviour, nornir-scrapli through the
generated inventory, and requests against the simulated APIC. No mocks."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import requests
from ntc_templates.parse import parse_output
from scrapli.driver.core import AsyncIOSXEDriver, IOSXEDriver
from scrapli.exceptions import (
    ScrapliAuthenticationFailed,
    ScrapliConnectionError,
    ScrapliConnectionNotOpened,
    ScrapliTimeout,
)
from ssh2.exceptions import SSH2Error

from chatbot.lab import Fault, Lab, LabThread, planted_secrets
from chatbot.lab.configs import device_facts, running_config
from chatbot.lab.planted import type7_decode

pytestmark = pytest.mark.timeout(60)

DELAY = 0.01
SLOW_DELAY = 0.6


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    runner = LabThread(devices=6, delay=DELAY, slow_delay=SLOW_DELAY)
    started = runner.start()
    yield started
    runner.stop()


@pytest.fixture(autouse=True)
def _restore(lab: Lab) -> Iterator[None]:
    """Each test may break devices; put everything back afterwards."""
    yield
    for name in [*lab.devices, lab.apic.name]:
        lab.set_fault(name, None)
    for name in lab.devices:
        lab.set_delay(name, DELAY)
    lab.set_delay(lab.apic.name, 0.0)


def driver(lab: Lab, name: str, transport: str = "ssh2", **overrides: Any) -> IOSXEDriver:
    device = lab.devices[name]
    options: dict[str, Any] = dict(
        host=device.host,
        port=device.port,
        auth_username=lab.username,
        auth_password=lab.password,
        auth_secondary=lab.enable_secret,
        auth_strict_key=False,
        transport=transport,
        timeout_socket=5,
        timeout_transport=10,
        timeout_ops=10,
    )
    options.update(overrides)
    return IOSXEDriver(**options)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def r1(lab: Lab) -> Iterator[IOSXEDriver]:
    """One privileged ssh2 session to r1 shared by the read-only command tests."""
    conn = driver(lab, "r1")
    conn.open()
    yield conn
    conn.close()


# -- inventory, names, secrets (no network) -------------------------------------------------


def test_names_groups_sites_and_addresses() -> None:
    big = Lab(devices=30)
    devices = big.devices
    assert list(devices)[:4] == ["r1", "r2", "r3", "r4"]
    assert [devices[n].groups for n in ("r1", "r3", "r4")] == [["core"], ["core"], ["edge"]]
    assert (devices["r2"].site, devices["r2"].role) == ("hq", "core")
    assert devices["r4"].site == devices["r13"].site == "branch1"
    assert devices["r14"].site == devices["r23"].site == "branch2"
    assert devices["r24"].site == "branch3"
    assert devices["r1"].host == "127.0.1.1"
    assert devices["r30"].host == "127.0.1.30"
    assert {d.platform for d in devices.values()} == {"cisco_iosxe"}
    huge = Lab(devices=1000)
    assert huge.devices["r251"].host == "127.0.2.1"
    assert huge.devices["r1000"].host == "127.0.4.250"


def test_credentials_are_random_unless_given() -> None:
    first, second = Lab(devices=1), Lab(devices=1)
    assert first.password != second.password
    assert first.enable_secret != second.enable_secret
    assert len(first.password) >= 12
    fixed = Lab(devices=1, password="pw", enable_secret="en", username="bob")
    assert (fixed.username, fixed.password, fixed.enable_secret) == ("bob", "pw", "en")
    assert fixed.apic.username == "bob" and fixed.apic.password == "pw"
    # The real credentials never appear in a generated config.
    assert first.password not in running_config("r1")
    assert first.enable_secret not in running_config("r1")


def test_nornir_inventory_shape() -> None:
    lab = Lab(devices=5, username="ops", password="pw", enable_secret="en")
    inventory = lab.nornir_inventory()
    assert set(inventory) == {"hosts", "groups", "defaults"}
    assert inventory["hosts"]["r4"] == {
        "hostname": "127.0.1.4",
        "port": 0,
        "platform": "cisco_iosxe",
        "groups": ["edge"],
        "data": {"site": "branch1", "role": "edge"},
    }
    assert set(inventory["groups"]) == {"core", "edge"}
    defaults = inventory["defaults"]
    assert (defaults["username"], defaults["password"]) == ("ops", "pw")
    assert defaults["connection_options"]["scrapli"]["extras"] == {
        "auth_strict_key": False,
        "transport": "ssh2",
        "auth_secondary": "en",
    }


def test_planted_secrets_are_per_device_and_cover_every_kind() -> None:
    secrets_r1, secrets_r2 = planted_secrets("r1"), planted_secrets("r2")
    assert len(secrets_r1) == len(set(secrets_r1)) == 23
    assert not set(secrets_r1) & set(secrets_r2)
    assert planted_secrets("r1") == secrets_r1  # deterministic
    config = running_config("r1")
    for secret in secrets_r1:
        assert secret in config
    # Each planted kind sits in its realistic context.
    expectations = [
        r"^enable secret 9 \$9\$\S{14}\$\S{43}$",
        r"^username admin privilege 15 secret 9 \$9\$",
        r"^username ops password 7 [0-9A-F]+$",
        r"^snmp-server community \S+ RO",
        r"^snmp-server community \S+ RW",
        r"^key chain EIGRP-KEYS\n key 1\n  key-string \S+",
        r"^tacacs server TACACS-1\n address ipv4 \S+\n key 7 [0-9A-F]+$",
        r"^tacacs-server host \S+ key \S+$",
        r"^radius server RADIUS-1\n.*\n key 7 [0-9A-F]+$",
        r"^crypto isakmp key \S+ address \S+$",
        r"^  pre-shared-key address \S+ key \S+$",
        r"^ neighbor 10\.\d+\.\d+\.\d+ password 7 [0-9A-F]+$",
        r"^ area 0 authentication message-digest$",
        r"^ ip ospf authentication-key \S{1,8}$",
        r"^ ip ospf message-digest-key 1 md5 \S{1,16}$",
        r"^   authentication key-chain EIGRP-KEYS$",
        r"^ntp authentication-key 1 md5 [0-9A-F]+ 7$",
        r"^line vty 0 4\n exec-timeout 15 0\n password 7 [0-9A-F]+$",
        r"^aaa group server tacacs\+ TACACS-GROUP\n.*\n server-private \S+ key \S+$",
        r"^aaa group server radius RADIUS-GROUP\n.*\n server-private \S+ auth-port 1812 "
        r"acct-port 1813 key 7 [0-9A-F]+$",
        r"^radius server RADIUS-PAC\n.*\n pac key 7 [0-9A-F]+$",
        r"^wlan CORP-PSK 1 CORP-PSK\n(?: .*\n)* security wpa psk set-key ascii 0 \S+$",
        r"^event manager environment _password \S+$",
        r"^ip msdp password peer \S+ \S+$",
    ]
    for pattern in expectations:
        assert re.search(pattern, config, re.MULTILINE), pattern
    # Type-7 values decode to recognisable, per-device plain text.
    ops = re.search(r"^username ops password 7 (\S+)$", config, re.MULTILINE)
    assert ops is not None and type7_decode(ops.group(1)).startswith("ops-r1-")


# -- scrapli ssh2: show commands ------------------------------------------------------------


def test_show_version_parses_with_ntc_templates(r1: IOSXEDriver) -> None:
    response = r1.send_command("show version")
    assert not response.failed
    parsed = response.textfsm_parse_output()
    assert isinstance(parsed, list) and parsed
    row = parsed[0]
    assert row["hostname"] == "r1"
    assert row["version"] == "17.9.4a"
    assert row["serial"] == [device_facts("r1").serial]
    assert row["hardware"] == ["C8000V"]
    assert "day" in row["uptime"] and row["uptime_minutes"] != ""
    direct = parse_output(platform="cisco_ios", command="show version", data=response.result)
    assert direct[0]["hostname"] == "r1"


def test_show_version_differs_per_device(lab: Lab) -> None:
    conn = driver(lab, "r5")
    with conn:
        row = conn.send_command("show version").textfsm_parse_output()[0]
    assert row["hostname"] == "r5"  # type: ignore[index]
    assert row["serial"] == [device_facts("r5").serial] != [device_facts("r1").serial]  # type: ignore[index]


def test_show_ip_interface_brief_parses(r1: IOSXEDriver) -> None:
    response = r1.send_command("show ip interface brief")
    rows = parse_output(
        platform="cisco_ios", command="show ip interface brief", data=response.result
    )
    by_name = {row["interface"]: row for row in rows}
    assert by_name["GigabitEthernet1"]["ip_address"] == "127.0.1.1"
    assert by_name["Loopback0"]["ip_address"] == "10.0.0.1"
    assert by_name["GigabitEthernet5"]["status"] == "administratively down"
    assert by_name["GigabitEthernet2"]["proto"] == "up"


def test_other_show_commands_parse(r1: IOSXEDriver) -> None:
    clock = r1.send_command("show clock").textfsm_parse_output()
    assert clock[0]["timezone"] == "UTC"  # type: ignore[index]
    inventory = r1.send_command("show inventory").textfsm_parse_output()
    assert inventory[0]["sn"] == device_facts("r1").chassis_serial  # type: ignore[index]
    routes = r1.send_command("show ip route").textfsm_parse_output()
    networks = {(row["protocol"], row["network"]) for row in routes}  # type: ignore[index]
    assert ("C", "10.0.0.1") in networks and ("O", "10.0.0.2") in networks
    bgp = r1.send_command("show ip bgp summary").textfsm_parse_output()
    assert {row["bgp_neighbor"] for row in bgp} == {"10.0.0.2", "10.0.0.3"}  # type: ignore[index]
    interfaces = r1.send_command("show interfaces")
    assert "GigabitEthernet2 is up, line protocol is up" in interfaces.result


def test_running_config_contains_every_planted_secret(r1: IOSXEDriver) -> None:
    response = r1.send_command("show running-config")
    assert not response.failed
    assert response.result.startswith("Building configuration...")
    assert "hostname r1" in response.result
    assert response.result.rstrip().endswith("end")
    for secret in planted_secrets("r1"):
        assert secret in response.result
    assert not set(planted_secrets("r2")) & set(response.result.split())


def test_abbreviations(r1: IOSXEDriver) -> None:
    full = r1.send_command("show ip interface brief").result
    assert r1.send_command("sh ip int br").result == full
    assert r1.send_command("SH IP INT BRIEF").result == full
    assert r1.send_command("sh ver").result.splitlines()[0].startswith("Cisco IOS XE Software")
    assert "hostname r1" in r1.send_command("sh run").result
    assert r1.send_command("term len 0").result == ""


def test_parser_errors(r1: IOSXEDriver) -> None:
    invalid = r1.send_command("show foo")
    assert invalid.failed
    assert invalid.result.splitlines()[-1] == "% Invalid input detected at '^' marker."
    # The caret sits under the offending word, counted from the start of the prompt line.
    caret = invalid.result.splitlines()[0]
    assert caret.index("^") == len("r1#show ")
    ambiguous = r1.send_command("sh i")
    assert ambiguous.failed and ambiguous.result == '% Ambiguous command:  "sh i"'
    incomplete = r1.send_command("show ip")
    assert incomplete.failed and incomplete.result == "% Incomplete command."
    assert r1.send_command("configure terminal").failed  # not simulated: invalid input
    assert r1.send_command("show version extra").failed
    assert r1.send_command("terminal length 9999").failed


def test_pipes(r1: IOSXEDriver) -> None:
    include = r1.send_command("show running-config | include snmp-server community").result
    assert include.splitlines() == [
        line for line in running_config("r1").splitlines() if "snmp-server community" in line
    ]
    assert len(include.splitlines()) == 2
    exclude = r1.send_command("show ip interface brief | exclude Gigabit").result
    assert "Gigabit" not in exclude and "Loopback0" in exclude
    section = r1.send_command("show running-config | section router bgp").result.splitlines()
    assert section[0] == "router bgp 65000" and all(line.startswith(" ") for line in section[1:])
    assert any("neighbor 10.0.0.2 password 7" in line for line in section)
    begin = r1.send_command("sh run | b ^line con").result.splitlines()
    assert begin[0] == "line con 0" and begin[-1] == "end"
    regex = r1.send_command(
        "show ip int brief | i ^(Loopback|GigabitEthernet1 )"
    ).result.splitlines()
    assert [line.split()[0] for line in regex] == ["GigabitEthernet1", "Loopback0"]
    count = r1.send_command("show ip interface brief | count Ethernet").result
    assert count == "Number of lines which match regexp = 5"
    assert r1.send_command("show clock | redirect flash:x").failed
    assert r1.send_command("ping 10.0.0.1 | include !").failed


# -- ping and traceroute --------------------------------------------------------------------


def test_ping_reachable_exact_format(r1: IOSXEDriver) -> None:
    lines = r1.send_command("ping 10.0.0.2").result.splitlines()
    assert lines[:3] == [
        "Type escape sequence to abort.",
        "Sending 5, 100-byte ICMP Echos to 10.0.0.2, timeout is 2 seconds:",
        "!!!!!",
    ]
    assert re.fullmatch(
        r"Success rate is 100 percent \(5/5\), round-trip min/avg/max = (\d+)/(\d+)/(\d+) ms",
        lines[3],
    )
    assert len(lines) == 4
    assert r1.send_command("ping 10.0.0.2").result == "\n".join(lines)  # deterministic


def test_ping_loss_unreachable_repeat_and_names(lab: Lab, r1: IOSXEDriver) -> None:
    lossy = r1.send_command("ping 192.0.2.7").result.splitlines()
    assert lossy[2] == "!.!.!"
    assert lossy[3].startswith("Success rate is 60 percent (3/5), round-trip min/avg/max = ")
    dead = r1.send_command("ping 198.51.100.1").result.splitlines()
    assert dead[2:] == [".....", "Success rate is 0 percent (0/5)"]
    repeated = r1.send_command("ping 10.1.2.3 repeat 100 size 1500").result.splitlines()
    assert repeated[1] == "Sending 100, 1500-byte ICMP Echos to 10.1.2.3, timeout is 2 seconds:"
    assert repeated[2:4] == ["!" * 70, "!" * 30]
    assert repeated[4].startswith("Success rate is 100 percent (100/100)")
    by_name = r1.send_command("ping r3").result.splitlines()
    assert (
        by_name[1]
        == f"Sending 5, 100-byte ICMP Echos to {lab.devices['r3'].host}, timeout is 2 seconds:"
    )
    assert by_name[2] == "!!!!!"
    unknown = r1.send_command("ping no-such-host")
    assert unknown.result == "% Unrecognized host or address, or protocol not running."
    assert r1.send_command("ping").failed


def test_ping_to_a_down_device_fails(lab: Lab, r1: IOSXEDriver) -> None:
    lab.set_fault("r6", Fault.DOWN)
    assert r1.send_command("ping r6").result.splitlines()[2] == "....."
    lab.set_fault("r6", None)
    assert r1.send_command("ping r6").result.splitlines()[2] == "!!!!!"


def test_traceroute_formats(r1: IOSXEDriver) -> None:
    lines = r1.send_command("traceroute 10.0.0.3").result.splitlines()
    assert lines[:3] == [
        "Type escape sequence to abort.",
        "Tracing the route to 10.0.0.3",
        "VRF info: (vrf in name/id, vrf out name/id)",
    ]
    probe = r"(?:\d+ msec|\* )"
    hop_line = re.compile(rf"^  (\d+) (\d+\.\d+\.\d+\.\d+) {probe} {probe} ?{probe}?$")
    hops = [hop_line.match(line) for line in lines[3:]]
    assert all(hops), lines
    assert [int(m.group(1)) for m in hops if m] == list(range(1, len(hops) + 1))
    assert hops[-1] and hops[-1].group(2) == "10.0.0.3"
    dead = r1.send_command("traceroute 203.0.113.9").result.splitlines()
    # IOS prints "  5  *  *  * " (scrapli strips the trailing blank of each line).
    assert dead[-1].rstrip() == "  5  *  *  *"
    assert sum(1 for line in dead if line.rstrip().endswith("*  *  *")) >= 3
    named = r1.send_command("traceroute r2").result.splitlines()
    assert named[1] == "Tracing the route to r2 (127.0.1.2)"
    assert r1.send_command("traceroute nowhere").result == (
        "% Unrecognized host or address, or protocol not running."
    )


# -- privilege levels and raw terminal behaviour --------------------------------------------


def test_user_exec_mode_hides_running_config(lab: Lab) -> None:
    conn = driver(lab, "r2", default_desired_privilege_level="exec")
    with conn:
        assert conn.get_prompt() == "r2>"
        assert not conn.send_command("show version").failed
        denied = conn.send_command("show running-config")
        assert denied.failed and "% Invalid input detected at '^' marker." in denied.result
        assert denied.result.splitlines()[0].index("^") == len("r2>show ")
        assert not conn.send_command("show ip interface brief").failed


def _raw_session(lab: Lab, name: str, script: Callable[..., Any]) -> Any:
    """Run `script(write, read_until)` on a PTY session, for byte-exact assertions."""
    device = lab.devices[name]

    async def main() -> Any:
        async with asyncssh.connect(
            device.host, device.port, username=lab.username, password=lab.password, known_hosts=None
        ) as conn:
            writer, reader, _ = await conn.open_session(term_type="vt100", encoding=None)

            async def read_until(marker: bytes) -> bytes:
                data = b""
                while not data.endswith(marker):
                    chunk = await asyncio.wait_for(reader.read(4096), 5)
                    if not chunk:
                        break
                    data += chunk
                return data

            return await script(writer.write, read_until)

    return asyncio.run(main())


def test_terminal_echo_crlf_enable_and_exit(lab: Lab) -> None:
    secret = lab.enable_secret.encode()

    async def script(
        write: Callable[[bytes], None], read_until: Callable[[bytes], Any]
    ) -> list[bytes]:
        seen = [await read_until(b"r3>")]
        for text, marker in [
            (b"sh clock\n", b"r3>"),
            (b"enable\n", b"Password: "),
            (b"wrong\n", b"r3>"),
            (b"enable\r\n", b"Password: "),
            (secret + b"\r", b"r3#"),
            (b"show ip route | include Loopback0\n", b"r3#"),
            (b"disable\n", b"r3>"),
            (b"exit\n", b"never-printed"),
        ]:
            write(text)
            seen.append(await read_until(marker))
        return seen

    seen = _raw_session(lab, "r3", script)
    assert seen[0] == b"\r\nr3>"
    assert re.fullmatch(
        rb"sh clock\r\n\*\d\d:\d\d:\d\d\.\d{3} UTC \w{3} \w{3} \d+ \d{4}\r\nr3>", seen[1]
    )
    assert seen[2] == b"enable\r\nPassword: "
    assert seen[3] == b"\r\n% Access denied\r\n\r\nr3>"  # the secret is never echoed
    assert seen[4] == b"enable\r\nPassword: "
    assert seen[5] == b"\r\nr3#"
    assert (
        seen[6]
        == b"show ip route | include Loopback0\r\nC        10.0.0.3/32 is directly connected, Loopback0\r\nr3#"
    )
    assert seen[7] == b"disable\r\nr3>"
    assert seen[8] == b"exit\r\n"  # then the channel closes


def test_exec_request_runs_one_command(lab: Lab) -> None:
    device = lab.devices["r2"]

    async def main() -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect(
            device.host, device.port, username=lab.username, password=lab.password, known_hosts=None
        ) as conn:
            return await conn.run("show version | include uptime")

    result = asyncio.run(main())
    assert result.exit_status == 0
    assert str(result.stdout).startswith("r2 uptime is ")


# -- the other scrapli transports -----------------------------------------------------------


def test_system_openssh_transport(lab: Lab) -> None:
    conn = driver(lab, "r2", transport="system")
    with conn:
        parsed = conn.send_command("show version").textfsm_parse_output()
        assert parsed[0]["hostname"] == "r2"  # type: ignore[index]
        assert "hostname r2" in conn.send_command("show running-config").result
        assert conn.send_command("sh bogus").failed


def test_asyncssh_transport(lab: Lab) -> None:
    device = lab.devices["r3"]

    async def main() -> tuple[str, bool]:
        conn = AsyncIOSXEDriver(
            host=device.host,
            port=device.port,
            auth_username=lab.username,
            auth_password=lab.password,
            auth_secondary=lab.enable_secret,
            auth_strict_key=False,
            transport="asyncssh",
            timeout_ops=10,
        )
        async with conn:
            version = await conn.send_command("show version")
            ping = await conn.send_command("ping 10.0.0.1 repeat 3")
        return version.textfsm_parse_output()[0]["hostname"], "!!!" in ping.result  # type: ignore[index]

    assert asyncio.run(main()) == ("r3", True)


def test_nornir_with_the_generated_inventory(lab: Lab, tmp_path: Path) -> None:
    from nornir import InitNornir
    from nornir_scrapli.tasks import send_command
    from ruamel.yaml import YAML

    inventory = lab.nornir_inventory()
    yaml = YAML()
    for part in ("hosts", "groups", "defaults"):
        with open(tmp_path / f"{part}.yaml", "w") as handle:
            yaml.dump(inventory[part], handle)
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 3}},
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(tmp_path / "hosts.yaml"),
                "group_file": str(tmp_path / "groups.yaml"),
                "defaults_file": str(tmp_path / "defaults.yaml"),
            },
        },
        logging={"enabled": False},
    )
    try:
        edge = nr.filter(site="branch1")
        assert sorted(edge.inventory.hosts) == ["r4", "r5", "r6"]
        result = nr.filter(filter_func=lambda host: host.name in ("r1", "r4")).run(
            task=send_command, command="show version | include uptime"
        )
        assert not result.failed
        assert result["r4"][0].result.startswith("r4 uptime is")
    finally:
        nr.close_connections()


# -- delays and faults ----------------------------------------------------------------------


def _timed(conn: IOSXEDriver, command: str) -> float:
    started = time.perf_counter()
    response = conn.send_command(command)
    assert not response.failed
    return time.perf_counter() - started


def test_per_device_delay(lab: Lab) -> None:
    conn = driver(lab, "r4")
    with conn:
        assert _timed(conn, "show clock") < 0.3
        lab.set_delay("r4", 0.5)
        assert _timed(conn, "show clock") >= 0.5
        assert _timed(conn, "terminal length 0") < 0.3  # session setup is never delayed
        lab.set_delay("r4", DELAY)
        assert _timed(conn, "show clock") < 0.3


def test_fault_down_refuses_then_recovers(lab: Lab) -> None:
    device = lab.devices["r5"]
    live = driver(lab, "r5")
    live.open()
    lab.set_fault("r5", Fault.DOWN)
    started = time.perf_counter()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((device.host, device.port), timeout=2).close()
    with pytest.raises(ScrapliConnectionNotOpened):
        driver(lab, "r5").open()
    assert time.perf_counter() - started < 1.0
    # A powered-off device drops its sessions. scrapli does not wrap ssh2's write errors,
    # so which of the two a caller sees depends on whether the write or the read fails.
    with pytest.raises((ScrapliConnectionError, SSH2Error)):
        live.send_command("show clock")
    lab.set_fault("r5", None)
    conn = driver(lab, "r5")  # same address and port as before
    with conn:
        assert conn.get_prompt() == "r5#"


def test_fault_auth(lab: Lab) -> None:
    lab.set_fault("r2", Fault.AUTH)
    before = lab.devices["r2"].stats.auth_failures
    started = time.perf_counter()
    with pytest.raises(ScrapliAuthenticationFailed):
        driver(lab, "r2").open()
    assert time.perf_counter() - started < 3.0  # an answer, not a transport timeout
    with pytest.raises(ScrapliAuthenticationFailed):
        driver(lab, "r2", transport="system").open()
    assert lab.devices["r2"].stats.auth_failures > before
    lab.set_fault("r2", None)
    with driver(lab, "r2") as conn:
        assert conn.get_prompt() == "r2#"


def test_wrong_password_is_an_auth_failure_without_a_fault(lab: Lab) -> None:
    with pytest.raises(ScrapliAuthenticationFailed):
        driver(lab, "r2", auth_password="not-the-password").open()


def test_fault_hang_times_out(lab: Lab) -> None:
    lab.set_fault("r3", Fault.HANG)
    started = time.perf_counter()
    with pytest.raises(ScrapliTimeout):
        driver(lab, "r3", timeout_ops=1, timeout_transport=2).open()
    assert time.perf_counter() - started < 5
    assert wait_for(lambda: lab.devices["r3"].stats.sessions_now == 0)


def test_fault_hang_on_a_live_session(lab: Lab) -> None:
    conn = driver(lab, "r3", timeout_ops=1, timeout_transport=2)
    conn.open()
    try:
        lab.set_fault("r3", Fault.HANG)
        with pytest.raises(ScrapliTimeout):
            conn.send_command("show clock")
    finally:
        conn.transport.close()


def test_fault_disconnect(lab: Lab) -> None:
    lab.set_fault("r4", Fault.DISCONNECT)
    conn = driver(lab, "r4")
    conn.open()  # login, enable and terminal setup still work
    assert conn.get_prompt() == "r4#"
    with pytest.raises(ScrapliConnectionError):
        conn.send_command("show version")
    assert wait_for(lambda: lab.devices["r4"].stats.sessions_now == 0)


def test_fault_slow(lab: Lab) -> None:
    conn = driver(lab, "r6")
    with conn:
        normal = _timed(conn, "show clock")
        lab.set_fault("r6", Fault.SLOW)
        slow = _timed(conn, "show clock")
        assert slow >= SLOW_DELAY > normal + 0.3
        assert "!!!!!" in conn.send_command("ping 10.0.0.1").result  # slow, but it answers


def test_set_fault_rejects_unknown_names(lab: Lab) -> None:
    with pytest.raises(KeyError):
        lab.set_fault("r99", Fault.DOWN)
    with pytest.raises(ValueError):
        lab.set_fault("r1", "melting")


# -- statistics -----------------------------------------------------------------------------


def test_stats_count_sessions_and_concurrency(lab: Lab) -> None:
    stats = lab.devices["r6"].stats
    assert wait_for(lambda: stats.sessions_now == 0)
    stats.reset()
    connections = [driver(lab, "r6") for _ in range(3)]
    threads = [threading.Thread(target=conn.open) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert stats.sessions_now == 3
        assert stats.max_concurrent == 3
        commands_before = stats.commands
        connections[0].send_command("show clock")
        assert stats.commands == commands_before + 1
    finally:
        for conn in connections:
            conn.close()
    assert wait_for(lambda: stats.sessions_now == 0)
    assert stats.sessions_total == 3 and stats.max_concurrent == 3
    # Strictly one after another: never two at once, even with no pause between them.
    stats.reset()
    for _ in range(3):
        with driver(lab, "r6") as conn:
            conn.send_command("show clock")
    assert wait_for(lambda: stats.sessions_now == 0)
    assert (stats.sessions_total, stats.max_concurrent) == (3, 1)


# -- APIC -----------------------------------------------------------------------------------


def _https(lab: Lab) -> requests.Session:
    """A session that trusts the lab APIC's self-signed certificate, and nothing from the
    environment (REQUESTS_CA_BUNDLE would override a Session's verify)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(lab.apic.ca_file)
    return session


def _login(
    lab: Lab, session: requests.Session | None = None, pwd: str | None = None
) -> requests.Response:
    http = session or _https(lab)
    body = {"aaaUser": {"attributes": {"name": lab.apic.username, "pwd": pwd or lab.apic.password}}}
    return http.post(f"{lab.apic.url}/api/aaaLogin.json", json=body, timeout=5)


def test_apic_login_and_cookie(lab: Lab) -> None:
    logins = lab.apic.stats.logins
    session = _https(lab)
    response = _login(lab, session)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["totalCount"] == "1"
    attributes = body["imdata"][0]["aaaLogin"]["attributes"]
    assert attributes["refreshTimeoutSeconds"] == "600"
    assert attributes["userName"] == lab.apic.username
    assert all(isinstance(value, str) for value in attributes.values())
    token = attributes["token"]
    assert response.headers["Set-Cookie"] == f"APIC-cookie={token}; path=/; HttpOnly"
    assert session.cookies.get("APIC-cookie") == token
    health = session.get(f"{lab.apic.url}/api/class/fabricHealthTotal.json", timeout=5)
    assert health.status_code == 200
    assert lab.apic.stats.logins == logins + 1


def test_apic_wrong_password_and_missing_token(lab: Lab) -> None:
    response = _login(lab, pwd="wrong")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "totalCount": "1",
        "imdata": [
            {
                "error": {
                    "attributes": {
                        "code": "401",
                        "text": "Username or password is incorrect - FAILED local authentication",
                    }
                }
            }
        ],
    }
    anonymous = _https(lab).get(f"{lab.apic.url}/api/node/class/faultInst.json", timeout=5)
    assert anonymous.status_code == 403
    assert anonymous.json()["imdata"][0]["error"]["attributes"] == {
        "code": "403",
        "text": "Token was invalid (Error: Token timeout)",
    }
    forged = _https(lab).get(
        f"{lab.apic.url}/api/node/class/faultInst.json",
        cookies={"APIC-cookie": "forged"},
        timeout=5,
    )
    assert forged.status_code == 403


def test_apic_token_expires() -> None:
    with LabThread(devices=1, token_timeout=1) as small:
        session = _https(small)
        login = _login(small, session)
        assert login.json()["imdata"][0]["aaaLogin"]["attributes"]["refreshTimeoutSeconds"] == "1"
        url = f"{small.apic.url}/api/class/fabricHealthTotal.json"
        assert session.get(url, timeout=5).status_code == 200
        started = time.monotonic()
        assert wait_for(lambda: session.get(url, timeout=5).status_code == 403, timeout=5)
        assert 0.5 < time.monotonic() - started < 3
        expired = session.get(url, timeout=5).json()
        assert (
            expired["imdata"][0]["error"]["attributes"]["text"]
            == "Token was invalid (Error: Token timeout)"
        )


def test_apic_refresh_replaces_the_token_and_logout_ends_it(lab: Lab) -> None:
    refreshes = lab.apic.stats.refreshes
    session = _https(lab)
    old = _login(lab, session).json()["imdata"][0]["aaaLogin"]["attributes"]["token"]
    refreshed = session.get(f"{lab.apic.url}/api/aaaRefresh.json", timeout=5)
    assert refreshed.status_code == 200
    new = refreshed.json()["imdata"][0]["aaaLogin"]["attributes"]["token"]
    assert new != old and session.cookies.get("APIC-cookie") == new
    assert lab.apic.stats.refreshes == refreshes + 1
    url = f"{lab.apic.url}/api/class/fabricHealthTotal.json"
    assert _https(lab).get(url, cookies={"APIC-cookie": old}, timeout=5).status_code == 403
    assert _https(lab).get(url, cookies={"APIC-cookie": new}, timeout=5).status_code == 200
    logout = _https(lab).post(
        f"{lab.apic.url}/api/aaaLogout.json",
        cookies={"APIC-cookie": new},
        json={"aaaUser": {"attributes": {"name": lab.apic.username}}},
        timeout=5,
    )
    assert logout.status_code == 200
    assert _https(lab).get(url, cookies={"APIC-cookie": new}, timeout=5).status_code == 403


def test_apic_health(lab: Lab) -> None:
    session = _https(lab)
    _login(lab, session)
    lab.apic.set_health(fabric=88, pods={1: 90, 2: 71})
    body = session.get(f"{lab.apic.url}/api/class/fabricHealthTotal.json", timeout=5).json()
    objects = [item["fabricHealthTotal"]["attributes"] for item in body["imdata"]]
    assert body["totalCount"] == str(len(objects)) == "3"
    by_dn = {attrs["dn"]: attrs for attrs in objects}
    assert set(by_dn) == {"topology/health", "topology/pod-1/health", "topology/pod-2/health"}
    assert by_dn["topology/health"]["cur"] == "88"
    assert by_dn["topology/pod-2/health"]["cur"] == "71"
    for attrs in objects:
        assert set(attrs) >= {
            "cur",
            "prev",
            "chng",
            "maxSev",
            "twScore",
            "updTs",
            "dn",
            "childAction",
            "status",
        }
        assert all(isinstance(value, str) for value in attrs.values())
    lab.apic.set_health(fabric=80)
    again = session.get(f"{lab.apic.url}/api/node/class/fabricHealthTotal.json", timeout=5).json()
    fabric = next(
        i["fabricHealthTotal"]["attributes"]
        for i in again["imdata"]
        if i["fabricHealthTotal"]["attributes"]["dn"] == "topology/health"
    )
    assert (fabric["cur"], fabric["prev"], fabric["chng"]) == ("80", "88", "-8")


def test_apic_fault_filters(lab: Lab) -> None:
    session = _https(lab)
    _login(lab, session)
    added = lab.apic.add_fault(
        "F9999", "critical", "Lab test fault", dn="topology/pod-2/node-299/sys/fault-F9999"
    )
    url = f"{lab.apic.url}/api/node/class/faultInst.json"
    everything = session.get(url, timeout=5).json()
    assert int(everything["totalCount"]) == len(everything["imdata"]) >= 5
    for severity in ("critical", "major", "minor", "warning"):
        body = session.get(
            url, params={"query-target-filter": f'eq(faultInst.severity,"{severity}")'}, timeout=5
        ).json()
        faults = [item["faultInst"]["attributes"] for item in body["imdata"]]
        assert faults and {f["severity"] for f in faults} == {severity}
        assert body["totalCount"] == str(len(faults))
        for attrs in faults:
            assert set(attrs) >= {
                "code",
                "severity",
                "descr",
                "dn",
                "lastTransition",
                "cause",
                "ack",
            }
            assert all(isinstance(value, str) for value in attrs.values())
    critical = session.get(
        url, params={"query-target-filter": 'eq(faultInst.severity,"critical")'}, timeout=5
    ).json()
    assert added["dn"] in {item["faultInst"]["attributes"]["dn"] for item in critical["imdata"]}
    combined = session.get(
        url,
        params={
            "query-target-filter": 'and(eq(faultInst.severity,"critical"),eq(faultInst.code,"F9999"))'
        },
        timeout=5,
    ).json()
    assert [item["faultInst"]["attributes"]["code"] for item in combined["imdata"]] == ["F9999"]
    bad = session.get(url, params={"query-target-filter": "eq(faultInst.severity"}, timeout=5)
    assert bad.status_code == 400
    summary = session.get(
        f"{lab.apic.url}/api/node/class/faultSummary.json",
        params={"query-target-filter": 'eq(faultSummary.severity,"critical")'},
        timeout=5,
    ).json()
    codes = {item["faultSummary"]["attributes"]["code"] for item in summary["imdata"]}
    assert "F9999" in codes
    health = session.get(f"{lab.apic.url}/api/class/fabricHealthTotal.json", timeout=5).json()
    pod2 = next(
        i["fabricHealthTotal"]["attributes"]
        for i in health["imdata"]
        if i["fabricHealthTotal"]["attributes"]["dn"] == "topology/pod-2/health"
    )
    assert pod2["maxSev"] == "critical"


def test_apic_faults_down_auth_slow(lab: Lab) -> None:
    lab.set_fault("apic1", Fault.AUTH)
    assert _login(lab).status_code == 401
    lab.set_fault("apic1", Fault.DOWN)
    with pytest.raises(requests.ConnectionError):
        _login(lab)
    lab.set_fault("apic1", None)
    assert _login(lab).status_code == 200
    lab.set_fault("apic1", Fault.SLOW)
    started = time.perf_counter()
    assert _login(lab).status_code == 200
    assert time.perf_counter() - started >= SLOW_DELAY
    lab.set_fault("apic1", Fault.HANG)
    with pytest.raises(requests.Timeout):
        _https(lab).post(f"{lab.apic.url}/api/aaaLogin.json", json={}, timeout=0.5)
    lab.set_fault("apic1", Fault.DISCONNECT)
    with pytest.raises(requests.ConnectionError):
        _login(lab)


# -- lifecycle ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.1.1", 0))
        return int(probe.getsockname()[1])


def test_shared_port_and_fault_set_before_start() -> None:
    port = _free_port()
    runner = LabThread(devices=3, port=port)
    runner.lab.set_fault("r3", Fault.DOWN)  # not started yet: start() honours it
    lab = runner.start()
    try:
        assert {device.port for device in lab.devices.values()} == {port}
        with driver(lab, "r2") as conn:
            assert conn.get_prompt() == "r2#"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.1.3", port), timeout=2).close()
        lab.set_fault("r3", None)
        with driver(lab, "r3") as conn:
            assert conn.get_prompt() == "r3#"
    finally:
        runner.stop()


def test_start_fails_cleanly_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.1.2", 0))  # r2's address: r1 binds first and must be released
        taken.listen()
        port = taken.getsockname()[1]
        runner = LabThread(devices=3, port=port)
        with pytest.raises(OSError):
            runner.start()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.1.1", port), timeout=2).close()


def test_run_lab_forever_serves_until_cancelled() -> None:
    from chatbot.lab import run_lab_forever

    async def main() -> tuple[bool, bool]:
        lab = Lab(devices=1)
        task = asyncio.create_task(run_lab_forever(lab))
        while lab.apic.port == 0 or lab.devices["r1"].port == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.1.1", lab.devices["r1"].port)
        banner = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await asyncio.open_connection("127.0.1.1", lab.devices["r1"].port)
        except ConnectionRefusedError:
            refused = True
        else:
            refused = False
        return banner.startswith(b"SSH-2.0-"), refused

    assert asyncio.run(main()) == (True, True)


# -- scale ----------------------------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_thousand_devices_start_and_stop() -> None:
    rss_before = _rss_mb()
    started = time.perf_counter()
    runner = LabThread(devices=1000)
    big = runner.start()
    start_seconds = time.perf_counter() - started
    rss_after = _rss_mb()
    try:
        last = big.devices["r1000"]
        assert last.host == "127.0.4.250" and last.port > 0
        for name in ("r1", "r500", "r1000"):
            with driver(big, name) as conn:
                assert (
                    conn.send_command("show version").textfsm_parse_output()[0]["hostname"] == name
                )  # type: ignore[index]
    finally:
        stopping = time.perf_counter()
        runner.stop()
        stop_seconds = time.perf_counter() - stopping
    print(
        f"\n1000 devices: start {start_seconds:.2f} s, stop {stop_seconds:.2f} s, "
        f"RSS +{rss_after - rss_before:.0f} MB"
    )
    assert start_seconds < 10
    assert stop_seconds < 10
    assert rss_after - rss_before < 300
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((last.host, last.port), timeout=2).close()
