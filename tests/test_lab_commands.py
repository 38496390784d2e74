"""The bot against the lab over real SSH and HTTP: every task, every fault kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.lab import Fault
from chatbot.lab.planted import planted_secrets
from chatbot.render import render_text
from chatbot.results import Status, Table, TextBlock
from helpers import ask

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def table(result):  # type: ignore[no-untyped-def]
    return next(p for p in result.parts if isinstance(p, Table))


def test_show_run_is_redacted(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!show run r1")
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
    result = ask(lab_bot, "!show version group:core")
    assert result.status is Status.OK, result.summary
    rows = table(result).rows
    assert [r[0] for r in rows] == ["r1", "r2", "r3"]
    assert all(r[1] == "ok" and r[2] and r[4] for r in rows)  # version and serial parsed by ntc-templates
    assert len({r[4] for r in rows}) == 3  # a serial per device


def test_ping_from_device_parsed(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 10.0.0.1 from r1 count 3")
    assert result.status is Status.OK, result.summary
    assert result.summary == "10.0.0.1 is reachable (3/3) from r1"
    row = table(result).rows[0]
    assert row[:5] == ["10.0.0.1", "r1", "3", "3", "0%"]


def test_ping_from_device_unreachable(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 203.0.113.9 from r2")
    assert result.status is Status.FAILED
    assert result.summary == "203.0.113.9 is unreachable from r2"


def test_ping_from_bot_host_to_lab_device(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping r1 count 2")
    assert result.status is Status.OK, result.summary
    row = table(result).rows[0]
    assert row[0].startswith("r1 (127.0.1.1)") and row[1] == "bot host" and row[3] == "2"


def test_lab_host_probes_stay_on_loopback(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 10.0.0.1")
    assert result.status is Status.INVALID
    assert "in lab mode the bot host only probes loopback" in result.summary


def test_ping_from_device_with_ios_options(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!ping 10.0.0.2 from r1 source Loopback0 size 1500 df-bit repeat 10")
    assert result.status is Status.OK, result.summary
    assert result.summary == "10.0.0.2 is reachable (10/10) from r1"
    assert table(result).rows[0][:4] == ["10.0.0.2", "r1 (10.0.0.1)", "10", "10"]
    too_big = ask(lab_bot, "!ping 10.0.0.2 from r1 size 1501 df-bit")
    assert too_big.status is Status.FAILED
    assert too_big.summary == ("10.0.0.2 is unreachable from r1; 3 of 5 could not be sent unfragmented (M): "
                               "the path MTU is below 1501 bytes")
    mgmt = ask(lab_bot, "!ping r2 from r1 vrf Mgmt-intf count 2")
    assert mgmt.status is Status.OK and mgmt.summary == "r2 (127.0.1.2) is reachable (2/2) from r1"
    no_vrf = ask(lab_bot, "!ping r2 from r1 vrf MGMT")
    assert no_vrf.status is Status.FAILED and no_vrf.summary == "ping from r1: % VRF MGMT does not exist."


def test_traceroute_from_device(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!traceroute 10.0.0.1 from r1")
    assert result.status is Status.OK, result.summary
    rows = table(result).rows
    assert rows[-1][1] == "10.0.0.1" and rows[0][0] == "1"


def test_generic_show_with_pipe(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!show ip int br | include up on r1,r2")
    assert result.status is Status.OK, result.summary
    blocks = [p for p in result.parts if isinstance(p, TextBlock)]
    assert [b.title for b in blocks] == ["r1: show ip interface brief | include up",
                                         "r2: show ip interface brief | include up"]
    for b in blocks:
        lines = [ln for ln in b.text.splitlines() if ln.strip()]
        assert lines and all("up" in ln for ln in lines)


def test_apic_health(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!apic health")
    assert result.status is Status.OK, result.summary
    scopes = [r[0] for r in table(result).rows]
    assert scopes[0] == "fabric" and "pod-1" in scopes
    assert result.summary.startswith("APIC apic1: fabric health ")


def test_apic_faults_by_severity(lab_bot) -> None:  # type: ignore[no-untyped-def]
    result = ask(lab_bot, "!apic faults critical")
    assert result.status is Status.OK
    assert all(r[0] == "critical" for r in table(result).rows)


def test_apic_auth_failure_and_down(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    from tasks import _apic_client

    _apic_client._clients.clear()  # force a fresh login
    lab.set_fault("apic1", Fault.AUTH)
    result = ask(lab_bot, "!apic health")
    assert result.status is Status.FAILED
    assert result.summary == "APIC apic1 rejected the login: Username or password is incorrect - FAILED local authentication"
    lab.set_fault("apic1", Fault.DOWN)
    result = ask(lab_bot, "!apic health")
    assert result.status is Status.FAILED and "unreachable" in result.summary


@pytest.mark.parametrize("fault,expected", [
    (Fault.DOWN, "unreachable: connection refused"),
    (Fault.AUTH, "authentication failed"),
    (Fault.HANG, "no answer in time"),
    (Fault.DISCONNECT, "connection lost"),
])
def test_device_faults_are_per_device_lines(lab_bot, lab, fault, expected) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r3", fault)
    result = ask(lab_bot, "!show version group:core")
    assert result.status is Status.PARTIAL, result.summary
    rows = {r[0]: r[1] for r in table(result).rows}
    assert rows["r1"] == "ok" and rows["r2"] == "ok"
    assert rows["r3"].startswith("failed: ") and expected in rows["r3"]
    assert f"1 failed (r3: " in result.summary and expected in result.summary


def test_slow_device_still_answers(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r2", Fault.SLOW)  # 1 s per command in this lab, under the 3 s device timeout
    result = ask(lab_bot, "!show version r2")
    assert result.status is Status.OK, result.summary


def test_one_device_failure_in_single_target_command(lab_bot, lab) -> None:  # type: ignore[no-untyped-def]
    lab.set_fault("r1", Fault.AUTH)
    result = ask(lab_bot, "!show run r1")
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
