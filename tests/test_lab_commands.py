"""The bot against the lab over real SSH and HTTP: every task, every fault kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.config import DEFAULT_SHOW_COMMANDS
from chatbot.lab import Fault
from chatbot.lab.configs import device_facts, running_config
from chatbot.lab.planted import planted_secrets
from chatbot.render import render_text
from chatbot.results import Status, Table, TextBlock
from chatbot.testing import ask

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def table(result):  # type: ignore[no-untyped-def]
    return next(p for p in result.parts if isinstance(p, Table))


def test_show_run_is_redacted(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!show run r1").result
    assert result.status is Status.OK, result.summary
    block = next(p for p in result.parts if isinstance(p, TextBlock))
    assert "hostname r1" in block.text and block.filename == "r1-running-config.txt"
    secrets = planted_secrets("r1")
    assert len(secrets) >= 10
    rendered = render_text(result)
    leaked = [s for s in secrets if s in rendered]
    assert leaked == []
    assert "enable secret 9 <redacted>" in block.text


def test_show_version_group_rows(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!show version group:core").result
    assert result.status is Status.OK, result.summary
    rows = table(result).rows
    assert [r[0] for r in rows] == ["r1", "r2", "r3"]
    assert all(r[1] == "ok" and r[2] and r[4] for r in rows)  # version and serial parsed by ntc-templates
    assert len({r[4] for r in rows}) == 3  # a serial per device


def test_ping_from_device_parsed(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 10.0.0.1 from r1 count 3").result
    assert result.status is Status.OK, result.summary
    assert result.summary == "10.0.0.1 is reachable (3/3) from r1"
    row = table(result).rows[0]
    assert row[:5] == ["10.0.0.1", "r1", "3", "3", "0%"]


def test_ping_from_device_unreachable(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 203.0.113.9 from r2").result
    assert result.status is Status.FAILED
    assert result.summary == "203.0.113.9 is unreachable from r2"


def test_ping_from_bot_host_to_lab_device(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping r1 count 2").result
    assert result.status is Status.OK, result.summary
    row = table(result).rows[0]
    assert row[0].startswith("r1 (127.0.1.1)") and row[1] == "bot host" and row[3] == "2"


def test_lab_host_probes_stay_on_loopback(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 10.0.0.1").result
    assert result.status is Status.INVALID
    assert "in lab mode the bot host only probes loopback" in result.summary


def test_ping_from_device_with_ios_options(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 10.0.0.2 from r1 source Loopback0 size 1500 df-bit repeat 10").result
    assert result.status is Status.OK, result.summary
    assert result.summary == "10.0.0.2 is reachable (10/10) from r1"
    assert table(result).rows[0][:4] == ["10.0.0.2", "r1 (10.0.0.1)", "10", "10"]
    too_big = ask(lab_bot, "!ping 10.0.0.2 from r1 size 1501 df-bit").result
    assert too_big.status is Status.FAILED
    assert too_big.summary == ("10.0.0.2 is unreachable from r1; 3 of 5 could not be sent unfragmented (M): "
                               "the path MTU is below 1501 bytes")
    mgmt = ask(lab_bot, "!ping r2 from r1 vrf Mgmt-intf count 2").result
    assert mgmt.status is Status.OK and mgmt.summary == "r2 (127.0.1.2) is reachable (2/2) from r1"
    no_vrf = ask(lab_bot, "!ping r2 from r1 vrf MGMT").result
    assert no_vrf.status is Status.FAILED and no_vrf.summary == "ping from r1: % VRF MGMT does not exist."


def test_traceroute_from_device(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!traceroute 10.0.0.1 from r1").result
    assert result.status is Status.OK, result.summary
    rows = table(result).rows
    assert rows[-1][1] == "10.0.0.1" and rows[0][0] == "1"


def test_generic_show_with_pipe(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!show ip int br | include up on r1,r2").result
    assert result.status is Status.OK, result.summary
    blocks = [p for p in result.parts if isinstance(p, TextBlock)]
    assert [b.title for b in blocks] == ["r1: show ip interface brief | include up",
                                         "r2: show ip interface brief | include up"]
    for b in blocks:
        lines = [ln for ln in b.text.splitlines() if ln.strip()]
        assert lines and all("up" in ln for ln in lines)


def test_apic_health(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!apic health").result
    assert result.status is Status.OK, result.summary
    scopes = [r[0] for r in table(result).rows]
    assert scopes[0] == "fabric" and "pod-1" in scopes
    assert result.summary.startswith("APIC apic1: fabric health ")


def test_apic_faults_by_severity(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!apic faults critical").result
    assert result.status is Status.OK
    assert all(r[0] == "critical" for r in table(result).rows)


def test_apic_auth_failure_and_down(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    from tasks import _apic_client

    _apic_client._clients.clear()  # force a fresh login
    lab.set_fault("apic1", Fault.AUTH)
    result = ask(lab_bot, "!apic health").result
    assert result.status is Status.FAILED
    assert result.summary == "APIC apic1 rejected the login: Username or password is incorrect - FAILED local authentication"
    lab.set_fault("apic1", Fault.DOWN)
    result = ask(lab_bot, "!apic health").result
    assert result.status is Status.FAILED and "unreachable" in result.summary


@pytest.mark.parametrize("fault,expected", [
    (Fault.DOWN, "unreachable: connection refused"),
    (Fault.AUTH, "authentication failed"),
    (Fault.HANG, "no answer in time"),
    (Fault.DISCONNECT, "connection lost"),
])
def test_device_faults_are_per_device_lines(lab_bot, lab, fault, expected) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r3", fault)
    result = ask(lab_bot, "!show version group:core").result
    assert result.status is Status.PARTIAL, result.summary
    rows = {r[0]: r[1] for r in table(result).rows}
    assert rows["r1"] == "ok" and rows["r2"] == "ok"
    assert rows["r3"].startswith("failed: ") and expected in rows["r3"]
    assert "1 failed (r3: " in result.summary and expected in result.summary


def test_slow_device_still_answers(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r2", Fault.SLOW)  # 1 s per command in this lab, under the 3 s device timeout
    result = ask(lab_bot, "!show version r2").result
    assert result.status is Status.OK, result.summary


def test_one_device_failure_in_single_target_command(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r1", Fault.AUTH)
    result = ask(lab_bot, "!show run r1").result
    assert result.status is Status.FAILED
    assert result.summary == "show running-config on r1 failed: authentication failed (check the device credentials)"


def test_shell_reads_commands_from_stdin() -> None:
    script = "!help\n!ping 10.0.0.1 from r1 count 2\n!show run r1\n!frobnicate\n"
    proc = subprocess.run([sys.executable, "-m", "chatbot", "shell", "--lab"], input=script,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "> !help" in out and "Commands you can run here:" in out
    assert "10.0.0.1 is reachable (2/2) from r1" in out
    assert "show running-config on r1" in out and "<redacted>" in out
    assert "[error] unknown command 'frobnicate'" in out
    assert "Traceback" not in out + proc.stderr


# -- every default allowlisted show command, through the bot, parsed by ntc-templates ---------


def _output(result) -> str:  # type: ignore[no-untyped-def]
    assert result.status is Status.OK, result.summary
    [block] = [p for p in result.parts if isinstance(p, TextBlock)]
    return block.text


def _parsed(lab_bot, command: str, device: str = "r1") -> list[dict]:  # type: ignore[no-untyped-def]
    from ntc_templates.parse import parse_output

    text = _output(ask(lab_bot, f"!{command} on {device}").result)
    return parse_output(platform="cisco_ios", command=command, data=text)


# `show version` has its own command, whose table test_show_version_group_rows checks.
@pytest.mark.parametrize("command", [c for c in DEFAULT_SHOW_COMMANDS if c != "show version"])
def test_every_default_show_command_answers_and_parses(lab_bot, command) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, f"!{command} on r1").result
    text = _output(result)
    assert not any(line.startswith("% ") for line in text.splitlines()), text
    assert _parsed(lab_bot, command), f"ntc-templates found no rows in {command!r}"


PEERS = [f"r{n}" for n in range(2, 14)]  # the session lab: r1-r13 share the OSPF segments


def test_show_ip_ospf_neighbor_is_the_segment(lab_bot) -> None:  # type: ignore[no-untyped-def]
    rows = _parsed(lab_bot, "show ip ospf neighbor")
    expected = {(device_facts(p).loopback, device_facts(p).interfaces_by_name[i].address, i)
                for p in PEERS for i in ("GigabitEthernet2", "GigabitEthernet3")}
    assert {(r["neighbor_id"], r["ip_address"], r["interface"]) for r in rows} == expected
    states = {r["neighbor_id"]: r["state"] for r in rows}
    # Equal priorities: the highest router IDs are DR and BDR; two DROTHERs stay in 2WAY.
    assert states["10.0.0.13"] == "FULL/DR" and states["10.0.0.12"] == "FULL/BDR"
    assert states["10.0.0.2"] == "2WAY/DROTHER"


def test_a_down_device_leaves_every_table(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r3", Fault.DOWN)
    assert "10.0.0.3" not in {r["neighbor_id"] for r in _parsed(lab_bot, "show ip ospf neighbor")}
    assert "r3.lab.example.net" not in {r["neighbor_name"] for r in _parsed(lab_bot, "show cdp neighbors")}
    assert "10.1.0.3" not in {r["ip_address"] for r in _parsed(lab_bot, "show ip arp")}
    bgp = {r["bgp_neighbor"]: r["state_or_prefixes_received"] for r in _parsed(lab_bot, "show ip bgp summary")}
    assert bgp == {"10.0.0.2": "1", "10.0.0.3": "Idle"}
    logs = [" ".join(r["message"]) for r in _parsed(lab_bot, "show logging") if r["mnemonic"] == "ADJCHG"]
    assert any("Nbr 10.0.0.3" in m and "FULL to DOWN" in m for m in logs)


def test_show_ip_arp_agrees_with_the_neighbours_interfaces(lab_bot) -> None:  # type: ignore[no-untyped-def]
    arp = {r["ip_address"]: r for r in _parsed(lab_bot, "show ip arp")}
    assert arp["10.1.0.1"]["age"] == "-" and arp["10.1.0.1"]["interface"] == "GigabitEthernet2"
    [r2_gi2] = _parsed(lab_bot, "show interfaces GigabitEthernet2", device="r2")
    assert arp["10.1.0.2"]["mac_address"] == r2_gi2["mac_address"]
    assert arp["10.1.0.254"]["interface"] == "GigabitEthernet2"  # the default gateway
    assert "127.0.1.1" not in arp  # GigabitEthernet1 is in vrf Mgmt-intf


def test_show_interfaces_status_and_one_interface(lab_bot) -> None:  # type: ignore[no-untyped-def]
    status = {r["port"]: r for r in _parsed(lab_bot, "show interfaces status")}
    assert list(status) == ["Gi1", "Gi2", "Gi3", "Gi4", "Gi5"]
    assert status["Gi5"]["status"] == "disabled" and status["Gi2"]["vlan_id"] == "routed"
    assert status["Gi4"]["name"] == "Legacy DC (EIGRP)"
    for spelling in ("show interfaces GigabitEthernet1", "show int gi1", "sh int Gi 1"):
        [row] = _parsed(lab_bot, spelling)
        assert (row["interface"], row["ip_address"], row["prefix_length"]) == ("GigabitEthernet1", "127.0.1.1", "24")
    result = ask(lab_bot, "!show int lo0 | include address on r2").result
    assert _output(result).strip() == "Internet address is 10.0.0.2/32"


def test_cdp_and_lldp_neighbours(lab_bot) -> None:  # type: ignore[no-untyped-def]
    cdp = _parsed(lab_bot, "show cdp neighbors")
    assert {(r["neighbor_name"], r["local_interface"]) for r in cdp} == {
        (f"{p}.lab.example.net", f"Gig {n}") for p in PEERS for n in (2, 3)}
    assert {r["platform"] for r in cdp} == {"C8000V"}
    lldp = _parsed(lab_bot, "show lldp neighbors")
    assert {(r["neighbor_name"], r["local_interface"], r["neighbor_interface"]) for r in lldp} == {
        (f"{p}.lab.example.net", f"Gi{n}", f"Gi{n}") for p in PEERS for n in (2, 3)}
    assert "lldp run" in running_config("r1").splitlines()


def test_show_ip_route_tables_agree(lab_bot) -> None:  # type: ignore[no-untyped-def]
    routes = _parsed(lab_bot, "show ip route")
    ospf = {(r["network"], r["nexthop_ip"], r["nexthop_if"]) for r in routes if r["protocol"] == "O"}
    assert ospf == {(device_facts(p).loopback, device_facts(p).interfaces_by_name[i].address, i)
                    for p in PEERS for i in ("GigabitEthernet2", "GigabitEthernet3")}
    bgp = {(r["network"], r["nexthop_ip"]) for r in routes if r["protocol"] == "B"}
    assert bgp == {("10.100.1.0", "10.0.0.2"), ("10.100.2.0", "10.0.0.3")}
    only_ospf = _parsed(lab_bot, "show ip route ospf")
    assert {r["protocol"] for r in only_ospf} == {"O"} and len(only_ospf) == len(ospf)


@pytest.mark.parametrize("command, first_lines", [
    # ntc-templates has no template for the "Routing entry" form: checked line by line.
    ("show ip route 10.0.0.2", ["Routing entry for 10.0.0.2/32",
                                '  Known via "ospf 1", distance 110, metric 2, type intra area']),
    ("show ip route 10.1.0.0 255.255.255.0", [
        "Routing entry for 10.1.0.0/24",
        '  Known via "connected", distance 0, metric 0 (connected, via interface)',
        "  Routing Descriptor Blocks:", "  * directly connected, via GigabitEthernet2"]),
    ("show ip route 10.100.2.0", ["Routing entry for 10.100.2.0/24",
                                  '  Known via "bgp 65000", distance 200, metric 0, type internal']),
    ("show ip route 10.9.9.9", ["% Subnet not in table"]),
    ("show ip route 192.0.2.1", ["% Network not in table"]),
])
def test_show_ip_route_for_a_prefix(lab_bot, command, first_lines) -> None:  # type: ignore[no-untyped-def]
    lines = _output(ask(lab_bot, f"!{command} on r1").result).splitlines()
    assert lines[:len(first_lines)] == first_lines


def test_show_ip_route_major_network_lists_its_subnets(lab_bot) -> None:  # type: ignore[no-untyped-def]
    text = _output(ask(lab_bot, "!show ip route 10.0.0.0 on r1").result)
    full = [r for r in _parsed(lab_bot, "show ip route") if r["network"] != "0.0.0.0"]
    subnets = {(r["network"], r["prefix_length"]) for r in full}
    assert text.splitlines()[0] == f"Routing entry for 10.0.0.0/8, {len(subnets)} known subnets"
    assert "C        10.0.0.1/32 is directly connected, Loopback0" in text.splitlines()


def test_show_logging_holds_the_boot_adjacencies(lab_bot) -> None:  # type: ignore[no-untyped-def]
    rows = _parsed(lab_bot, "show logging")
    mnemonics = {(r["facility"], r["mnemonic"]) for r in rows}
    assert {("OSPF", "ADJCHG"), ("BGP", "ADJCHANGE"), ("DUAL", "NBRCHANGE"), ("LINK", "UPDOWN")} <= mnemonics
    bgp_up = {" ".join(r["message"]) for r in rows if r["facility"] == "BGP"}
    assert bgp_up == {"neighbor 10.0.0.2 Up", "neighbor 10.0.0.3 Up"}


# -- a device's error is printed once ------------------------------------------------------


def _error_count(result) -> int:  # type: ignore[no-untyped-def]
    return render_text(result).count("% Invalid input detected")


def test_device_error_is_printed_once(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!show ip route bogus on r1").result
    assert result.status is Status.FAILED
    assert "device rejected the command: % Invalid input" in result.summary
    assert _error_count(result) == 1, render_text(result)
    several = ask(lab_bot, "!show ip route bogus on r1,r2").result
    assert _error_count(several) == 2, render_text(several)  # one per device


def test_command_the_lab_lacks_fails_once(lab) -> None:  # type: ignore[no-untyped-def]
    from chatbot.app import build_bot
    from chatbot.cli import lab_access
    from chatbot.config import parse_config

    allowed = [*DEFAULT_SHOW_COMMANDS, "show ip cef"]
    bot = build_bot(parse_config({"show": {"allowed": {"default": allowed}}}), lab_access(lab))
    result = ask(bot, "!show ip cef on r1").result
    assert result.status is Status.FAILED and _error_count(result) == 1, render_text(result)


def test_only_failures_beyond_the_summary_are_listed_again() -> None:
    from chatbot.device_work import SUMMARY_FAILURES, DeviceOutput, failures_not_in_summary, outcome_summary

    outputs = [DeviceOutput(f"r{n}", False, error=f"error {n}") for n in range(1, SUMMARY_FAILURES + 3)]
    _, summary = outcome_summary("show x", outputs)
    again = failures_not_in_summary(outputs)
    assert [o.device for o in again] == [f"r{n}" for n in range(SUMMARY_FAILURES + 1, SUMMARY_FAILURES + 3)]
    assert all(o.error not in summary for o in again)
    assert all(o.error in summary for o in outputs if o not in again)
