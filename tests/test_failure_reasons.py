"""One true line for each way a device session can fail, classified by exception type
(chatbot/device_failures.py), seen through the bot's device path against the lab.
The same reasons against a real OpenSSH server are in test_real_sshd.py."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pytest

from chatbot.app import build_context
from chatbot.cli import lab_access
from chatbot.config import parse_config
from chatbot.device_work import run_on_devices
from chatbot.lab import Fault, Lab


def lab_context(lab: Lab, **changes: Any) -> Any:
    access = lab_access(lab)
    for name, value in changes.items():
        setattr(access, name, value)
    config = parse_config({"limits": {"device_timeout": 2, "connect_timeout": 2}})
    return build_context(config, access)


def test_wrong_enable_secret_on_the_lab(lab: Lab) -> None:
    [out] = run_on_devices(lab_context(lab, enable_secret="wrong"), ["r2"], "show clock")
    assert out.error == "enable failed (check the enable secret)"


def test_unsupported_platform_never_connects(lab: Lab) -> None:
    inventory = lab.nornir_inventory()
    inventory["hosts"]["r3"]["platform"] = "linux"
    before = lab.devices["r3"].stats.connections_total
    [out] = run_on_devices(lab_context(lab, inventory=inventory), ["r3"], "show clock")
    assert out.error.startswith("platform linux is not supported (use cisco_iosxe")
    assert lab.devices["r3"].stats.connections_total == before


@pytest.mark.parametrize("fault,expected", [
    (Fault.DOWN, "unreachable: connection refused"),
    (Fault.AUTH, "authentication failed (check the device credentials)"),
    (Fault.HANG, "no answer in time (device timeout 2 s)"),
    (Fault.DISCONNECT, "connection lost: the device closed the session"),
])
def test_lab_faults_give_their_true_reason(lab: Lab, fault: Fault, expected: str) -> None:
    lab.set_fault("r4", fault)
    try:
        [out] = run_on_devices(lab_context(lab), ["r4"], "show version")
    finally:
        lab.set_fault("r4", None)
    assert out.error == expected


@pytest.mark.usefixtures("invalid_names_do_not_resolve")
def test_unresolvable_name(lab: Lab) -> None:
    inventory = lab.nornir_inventory()
    inventory["hosts"]["r5"]["hostname"] = "r5.invalid"
    [out] = run_on_devices(lab_context(lab, inventory=inventory), ["r5"], "show clock")
    assert out.error == "unreachable: cannot resolve the device's host name"


def test_connect_timeout_is_not_a_silent_device(lab: Lab) -> None:
    """A listener whose accept queue is full drops new SYNs: the TCP connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        while True:  # fill the queue until a connection attempt is no longer answered
            filler = socket.socket()
            filler.settimeout(0.5)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        inventory = lab.nornir_inventory()
        inventory["hosts"]["r6"].update(hostname="127.0.0.1", port=port)
        [out] = run_on_devices(lab_context(lab, inventory=inventory), ["r6"], "show clock")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert out.error == "unreachable: connection timed out"


def test_a_listener_that_hangs_up_at_once(lab: Lab) -> None:
    """TCP accepted, then closed before the SSH handshake (a device's session limit, an
    access list on the vty lines)."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    inventory = lab.nornir_inventory()
    inventory["hosts"]["r7"].update(hostname="127.0.0.1", port=port)
    try:
        [out] = run_on_devices(lab_context(lab, inventory=inventory), ["r7"], "show clock")
    finally:
        listener.close()
        thread.join(5)
    assert out.error == "connection lost: the device closed the session"
