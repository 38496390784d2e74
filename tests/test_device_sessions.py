"""What a bot session asks of a device, and what it costs both ends: the lean IOS
session (chatbot/ios_session.py), the transport's own operation timeout and the cheap
algorithms offered first (chatbot/ssh_transport.py). Real OpenSSH: test_real_sshd.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import scrapli.decorators
from scrapli.driver.core import IOSXEDriver
from scrapli.exceptions import ScrapliPrivilegeError
from scrapli.transport.base.base_transport import BaseTransportArgs
from ssh2.session import LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC, LIBSSH2_METHOD_KEX

from chatbot.app import build_context
from chatbot.cli import lab_access
from chatbot.config import parse_config
from chatbot.context import TaskContext
from chatbot.device_work import run_on_devices
from chatbot.errors import UserError
from chatbot.ios_session import command_output, open_for_show
from chatbot.lab import Fault, Lab
from chatbot.ssh_transport import NetbotTransport, OperationTimedOut, PluginTransportArgs


def lab_context(lab: Lab, inventory: dict[str, Any] | None = None, **limits: Any) -> TaskContext:
    settings: dict[str, Any] = {"limits": {"device_timeout": 5, "connect_timeout": 5, **limits}}
    if inventory:
        settings["inventory"] = inventory
    return build_context(parse_config(settings), lab_access(lab))


def test_a_show_session_types_only_what_the_show_needs(lab: Lab) -> None:
    """enable (the lab logs in at user level), terminal length 0 (IOS pages otherwise),
    the command. No bare return to find a prompt, no terminal width, no exit."""
    stats = lab.devices["r10"].stats
    empty_before, commands_before = stats.empty_lines, stats.commands
    [out] = run_on_devices(lab_context(lab), ["r10"], "show running-config")
    assert out.ok, out.error
    assert out.output.startswith("Building configuration...") and "hostname r10" in out.output
    assert out.output.rstrip().endswith("end"), out.output[-80:]  # the prompt is not part of it
    assert stats.commands - commands_before == 3
    assert list(stats.recent_commands)[-3:] == ["enable", "terminal length 0", "show running-config"]
    assert stats.empty_lines == empty_before


def test_the_lean_session_on_the_system_transport(lab: Lab) -> None:
    """OpenSSH's client logs in inside the channel and reads the login prompt itself:
    the session asks for the prompt once rather than wait for one already read."""
    stats = lab.devices["r10"].stats
    commands_before = stats.commands
    [out] = run_on_devices(lab_context(lab, {"lab": True, "transport": "system"}), ["r10"], "show version")
    assert out.ok, out.error
    assert "Cisco IOS XE Software" in out.output
    assert stats.commands - commands_before == 3
    assert list(stats.recent_commands)[-3:] == ["enable", "terminal length 0", "show version"]


def test_the_output_is_what_the_device_printed_for_the_command() -> None:
    prompt = r"(^[\w.\-@/:]{1,63}>\s*$)|(^[\w.\-@/:]{1,63}#\s*$)"
    assert command_output(b"show clock\n*10:01:02.003 UTC Fri Dec 4 2026  \n\nr1#", "show clock", prompt) == (
        b"*10:01:02.003 UTC Fri Dec 4 2026")
    assert command_output(b"show clock\nr1#", "show clock", prompt) == b""
    # IOS scrolls the echo of a line wider than the terminal; its end is always shown.
    scrolled = b"$brief | include GigabitEthernet1|Loopback0\nGigabitEthernet1 up\nr1#"
    assert command_output(scrolled, "show ip interface brief | include GigabitEthernet1|Loopback0", prompt) == (
        b"GigabitEthernet1 up")
    # A device that echoes nothing loses no line of its output.
    assert command_output(b"line one\nline two\nr1#", "show clock", prompt) == b"line one\nline two"


def test_a_rejected_command_still_fails_as_the_device_said(lab: Lab) -> None:
    [out] = run_on_devices(lab_context(lab), ["r10"], "show bogus")
    assert not out.ok
    assert out.error == "device rejected the command: % Invalid input detected at '^' marker."


def test_a_session_starts_no_thread_per_read(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """scrapli bounds each channel operation outside the main thread by starting a
    thread pool for it; the bot's transport bounds its reads itself."""
    pools = []

    class CountedPool(scrapli.decorators.ThreadPoolExecutor):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(scrapli.decorators, "ThreadPoolExecutor", CountedPool)
    [out] = run_on_devices(lab_context(lab), ["r11"], "show version")
    assert out.ok, out.error
    assert pools == []


def test_a_slow_answer_still_times_out(lab: Lab) -> None:
    lab.set_fault("r11", Fault.SLOW)
    try:
        started = time.monotonic()
        [out] = run_on_devices(lab_context(lab, device_timeout=0.5), ["r11"], "show version")
    finally:
        lab.set_fault("r11", None)
    assert out.error == "no answer in time (device timeout 0.5 s)"
    assert time.monotonic() - started < 0.9  # the lab's slow_delay is 1 s


class ChattyChannel:
    """A device that never stops printing and never shows a prompt."""

    def read(self, size: int) -> tuple[int, bytes]:
        time.sleep(0.01)
        return 5, b"more\n"

    def write(self, data: bytes) -> tuple[int, int]:
        return 0, len(data)


class FakeSession:
    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def set_timeout(self, milliseconds: float) -> None:
        self.timeouts.append(milliseconds)


@pytest.fixture()
def chatty_transport() -> Iterator[NetbotTransport]:
    transport = NetbotTransport(BaseTransportArgs(transport_options={}, host="r1", timeout_transport=30),
                                PluginTransportArgs(auth_username="admin"))
    transport.session, transport.session_channel = FakeSession(), ChattyChannel()  # type: ignore[assignment]
    yield transport


def test_a_device_that_never_stops_talking_times_out(chatty_transport: NetbotTransport) -> None:
    chatty_transport.operation_timeout = 0.2
    chatty_transport.write(b"show tech-support\n")
    started = time.monotonic()
    with pytest.raises(OperationTimedOut):
        while True:
            chatty_transport.read()
    assert 0.2 <= time.monotonic() - started < 1
    # Each read was bounded by the time left, then the next input restores the full limit.
    session = chatty_transport.session
    assert isinstance(session, FakeSession) and session.timeouts and max(session.timeouts) <= 200
    chatty_transport.write(b"\n")
    assert session.timeouts[-1] == 30_000


def negotiated(ctx: TaskContext, device: str) -> dict[str, str]:
    """Open one session the bot's way (its inventory and transport) and ask libssh2 what
    the handshake agreed on."""
    nr = ctx.inventory.nornir
    host = nr.inventory.hosts[device]
    conn = host.open_connection("scrapli", nr.config).connection
    try:
        session = conn.transport.session
        return {"kex": session.methods(LIBSSH2_METHOD_KEX), "cipher": session.methods(LIBSSH2_METHOD_CRYPT_CS),
                "cipher back": session.methods(LIBSSH2_METHOD_CRYPT_SC)}
    finally:
        host.close_connection("scrapli")


def test_the_lab_agrees_on_the_cheapest_algorithms(lab: Lab) -> None:
    """The lab (asyncssh) offers chacha20-poly1305 first, as libssh2 does: 14 us a packet
    in Python against 2 us for AES-GCM. The bot offers AES-GCM and curve25519 first."""
    assert negotiated(lab_context(lab), "r12") == {
        "kex": "curve25519-sha256", "cipher": "aes128-gcm@openssh.com", "cipher back": "aes128-gcm@openssh.com"}


def test_the_algorithm_order_is_configurable(lab: Lab) -> None:
    ctx = lab_context(lab, {"lab": True, "kex_algorithms": ["ecdh-sha2-nistp256"], "ciphers": ["aes256-ctr"]})
    assert negotiated(ctx, "r12") == {"kex": "ecdh-sha2-nistp256", "cipher": "aes256-ctr",
                                      "cipher back": "aes256-ctr"}


def test_an_algorithm_libssh2_does_not_know_is_a_clear_error(lab: Lab) -> None:
    with pytest.raises(UserError, match=r"^\[inventory\] ciphers: aes128-gmc unknown to libssh2 \(it knows "):
        lab_context(lab, {"lab": True, "ciphers": ["aes128-gmc", "aes256-ctr"]})


class ScriptedIos:
    """A device's answers to each line the session writes, for the cases the lab does
    not play: a login already privileged, IOS asking for the enable secret again."""

    def __init__(self, login: bytes, answers: dict[str, bytes]) -> None:
        self.pending, self.answers, self.written = [login], answers, []
        self.closed = False

    def read(self) -> bytes:
        assert self.pending, "the session waits for an answer that will never come"
        return self.pending.pop(0)

    def write(self, channel_input: str, redacted: bool = False) -> None:
        self.written.append(channel_input)
        self.pending.append(self.answers[channel_input])

    def close(self) -> None:
        self.closed = True


def scripted_conn(device: ScriptedIos) -> Any:
    conn = IOSXEDriver(host="r1", auth_secondary="s3cret", transport="ssh2")
    conn.channel, conn.transport = device, device  # type: ignore[assignment]
    return conn


def test_a_login_at_privilege_15_skips_enable() -> None:
    device = ScriptedIos(b"\nr1#", {"terminal length 0\n": b"terminal length 0\nr1#"})
    open_for_show(scripted_conn(device))
    assert device.written == ["terminal length 0\n"]


def test_ios_asking_for_the_secret_again_is_an_enable_failure() -> None:
    device = ScriptedIos(b"\nr1>", {"enable\n": b"enable\nPassword: ", "s3cret\n": b"\nPassword: "})
    with pytest.raises(ScrapliPrivilegeError):
        open_for_show(scripted_conn(device))
    assert device.written == ["enable\n", "s3cret\n"]
    assert device.closed  # nobody else would close a session whose open failed
