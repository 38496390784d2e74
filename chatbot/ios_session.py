"""A Cisco IOS / IOS-XE session that asks the device for what a `show` needs, no more.

scrapli's IOS-XE driver opens a session for any later use: it sends a bare return to
find the prompt, escalates (then finds the prompt again), sets `terminal length 0` and
`terminal width 512`, waits for the echo of every line before it sends the return, and
on close finds the prompt once more and types `exit`. Each of those is a round trip the
device pays for (measured on the lab: 1.6x the device CPU of a plain asyncssh client).

The bot's sessions run one command and close, so here each step is one line written
whole (text and return in one write) and read up to the next prompt:
- the prompt the device prints at login is read, not asked for (the system and telnet
  transports read it while logging in: for them a return asks for it once);
- `enable` (and the secret) only when the login landed at user level (`>`), since IOS
  refuses `show running-config` and most of the bot's commands below privilege 15;
- `terminal length 0`, because IOS pages at 24 lines ("--More--") otherwise. It gets its
  own round trip rather than being typed ahead with the command: the prompt between the
  two lines may come before or after the echo of the second, and telling the command's
  output from the setup's would then rest on the device's timing;
- no `terminal width`: IOS wraps nothing of a command's output at the terminal width, it
  only scrolls the echo of an input line longer than the width ("$"), and this session
  never waits for the echo: it drops the echoed line from the output afterwards;
- no `exit` on close: closing the SSH channel ends the vty session (device_work).

Platforms other than IOS-XE keep scrapli's own driver (their setup differs per OS).
The operation timeout is the transport's (chatbot/ssh_transport.py): no thread per read.
"""

from __future__ import annotations

import re

from nornir_scrapli.connection import PLATFORM_MAP
from scrapli.driver import NetworkDriver
from scrapli.exceptions import ScrapliPrivilegeError
from scrapli.response import Response

LEAN_PLATFORM = "cisco_iosxe"
# What IOS needs before a show: no paging (the default 24-line pages wait for a key).
SETUP_LINES = ("terminal length 0",)
_FLAGS = re.MULTILINE | re.IGNORECASE


def is_lean_platform(platform: str | None) -> bool:
    """Whether this inventory platform gets the lean session (IOS and IOS-XE)."""
    return bool(platform) and PLATFORM_MAP.get(platform or "", platform) == LEAN_PLATFORM


def open_for_show(conn: NetworkDriver) -> None:
    """scrapli `on_open` for the bot's IOS sessions: privileged if need be, no paging.
    A failed open closes the transport (scrapli would leave it open: Nornir never
    registers a connection whose open raised, so nobody else would close it)."""
    try:
        levels = conn.privilege_levels
        if _login_read_by_scrapli(conn):
            conn.channel.send_return()  # the prompt is gone: ask for it once
        tail = _read_until(conn, (levels["exec"].pattern, levels["privilege_exec"].pattern))
        if _matches(levels["exec"].pattern, tail):
            _enable(conn)
        for line in SETUP_LINES:
            _write_line(conn, line)
            _read_until(conn, (conn.comms_prompt_pattern,))
    except BaseException:
        conn.transport.close()
        raise


def send_show(conn: NetworkDriver, command: str) -> Response:
    """Run one command (already validated) and return scrapli's Response for it, so that
    `failed` (IOS's "% Invalid input" and the like) and TextFSM parsing work as usual."""
    response = Response(host=conn.host, channel_input=command, textfsm_platform=conn.textfsm_platform,
                        genie_platform=conn.genie_platform, failed_when_contains=conn.failed_when_contains)
    _write_line(conn, command)
    raw = _read_until(conn, (conn.comms_prompt_pattern,), keep=True)
    response.record_response(command_output(raw, command, conn.comms_prompt_pattern))
    return response


def command_output(raw: bytes, command: str, prompt_pattern: str) -> bytes:
    """What the device printed for a command: without the echo of the line typed nor the
    prompt after it, each line right-trimmed, as scrapli's send_command returns it."""
    echo, _, text = raw.partition(b"\n")
    if not _is_echo(echo, command):  # a device that does not echo: its first line is output
        text = raw
    lines = [line.rstrip() for line in text.split(b"\n")]
    if lines and re.search(prompt_pattern.encode(), lines[-1], _FLAGS):
        lines.pop()
    return b"\n".join(lines).strip(b"\n").rstrip()


def _is_echo(line: bytes, command: str) -> bool:
    """Whether `line` is the device's echo of `command`. IOS scrolls the echo of a line
    wider than the terminal ("$" and backspaces), but its end is always shown."""
    squashed = b"".join(line.replace(b"\x08", b"").split())
    typed = b"".join(command.encode().split())
    return squashed.endswith(typed[-16:])


def _login_read_by_scrapli(conn: NetworkDriver) -> bool:
    """The system and telnet transports log in inside the channel (scrapli's
    Driver.open), reading up to the first prompt themselves; ssh2 logs in below it."""
    return not conn.auth_bypass and (conn.transport_name == "system" or "telnet" in conn.transport_name)


def _enable(conn: NetworkDriver) -> None:
    level = conn.privilege_levels["privilege_exec"]
    user = conn.privilege_levels["exec"]
    _write_line(conn, level.escalate)
    tail = _read_until(conn, (level.escalate_prompt, level.pattern, user.pattern))
    if _matches(level.escalate_prompt, tail):
        _write_line(conn, conn.auth_secondary, redacted=True)
        # A wrong secret gets "Password:" again (IOS asks three times) or "% Access denied"
        # and the user prompt: either way no privileged prompt.
        tail = _read_until(conn, (level.escalate_prompt, level.pattern, user.pattern))
    if not _matches(level.pattern, tail):
        raise ScrapliPrivilegeError("the device did not accept the enable secret")


def _write_line(conn: NetworkDriver, text: str, *, redacted: bool = False) -> None:
    # One write for the text and its return: the device answers the line at once, with
    # no round trip for the echo first.
    conn.channel.write(channel_input=text + conn.comms_return_char, redacted=redacted)


def _read_until(conn: NetworkDriver, patterns: tuple[str, ...], *, keep: bool = False) -> bytes:
    """Read until the last line matches one of `patterns` (prompts, "Password:"): that
    last line, or with `keep` everything read."""
    compiled = [re.compile(pattern.encode(), _FLAGS) for pattern in patterns]
    buf = b""
    while True:
        buf += conn.channel.read()
        tail = buf[buf.rfind(b"\n") + 1:]
        if tail and any(pattern.search(tail) for pattern in compiled):
            return buf if keep else tail


def _matches(pattern: str, tail: bytes) -> bool:
    return re.search(pattern.encode(), tail, _FLAGS) is not None
