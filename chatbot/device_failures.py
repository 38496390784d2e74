"""Why a device session failed, in one line a network engineer believes.

Classified from exception types along the cause chain (scrapli's, libssh2's, the
socket's and our transport's), never from message text. The order matters: the first
rule that matches wins, and the more specific reasons come first.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable

import ssh2.exceptions as ssh2_errors
from nornir_scrapli.connection import PLATFORM_MAP
from nornir_scrapli.exceptions import NornirScrapliInvalidPlatform
from scrapli import Scrapli
from scrapli.exceptions import (
    ScrapliAuthenticationFailed,
    ScrapliConnectionError,
    ScrapliConnectionNotOpened,
    ScrapliPrivilegeError,
    ScrapliTimeout,
)

from chatbot.hostkeys import HostKeyChanged, HostKeyError, HostKeyRevoked, HostKeyUnknown
from chatbot.ssh_transport import (
    CannotConnect,
    CannotResolve,
    ConnectTimedOut,
    HandshakeFailed,
    LoginRefused,
    NoRoute,
)


class PlatformNotSupported(Exception):
    """The inventory gives a platform no scrapli driver handles: found before connecting."""

    def __init__(self, platform: str | None) -> None:
        self.platform = platform
        super().__init__(f"platform {platform or '(none)'} is not supported")


def unsupported_platform(platform: str | None) -> PlatformNotSupported | None:
    """None when scrapli has a driver for the platform (core, nornir-scrapli's short
    names such as `ios`, or scrapli-community), as nornir-scrapli would resolve it."""
    if not platform:
        return PlatformNotSupported(platform)
    name = PLATFORM_MAP.get(platform, platform)
    if name in Scrapli.CORE_PLATFORM_MAP:
        return None
    try:
        if importlib.util.find_spec(f"scrapli_community.{name.replace('_', '.')}") is not None:
            return None
    except ModuleNotFoundError:
        pass
    return PlatformNotSupported(platform)


SUPPORTED_HINT = "use cisco_iosxe, cisco_nxos, cisco_iosxr, arista_eos, juniper_junos or a scrapli-community platform"


def describe_failure(exc: BaseException, device: str, device_timeout: float) -> str:
    """One line for a failed session; the caller puts the device name in front of it."""
    chain = cause_chain(exc)
    for rule in _RULES:
        line = rule(chain, device, device_timeout)
        if line is not None:
            return line
    return f"session failed: {type(exc).__name__}"


def cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _find(chain: list[BaseException], *types: type[BaseException]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, types)), None)


Rule = Callable[[list[BaseException], str, float], "str | None"]


def _platform(chain: list[BaseException], device: str, timeout: float) -> str | None:
    found = _find(chain, PlatformNotSupported)
    if isinstance(found, PlatformNotSupported):
        return f"platform {found.platform or '(none)'} is not supported ({SUPPORTED_HINT})"
    if _find(chain, NornirScrapliInvalidPlatform):
        return f"platform not supported ({SUPPORTED_HINT})"
    return None


def _host_key(chain: list[BaseException], device: str, timeout: float) -> str | None:
    found = _find(chain, HostKeyError)
    if not isinstance(found, HostKeyError):
        return None
    where = found.known_hosts
    if isinstance(found, HostKeyRevoked):
        return f"host key revoked: {found.fingerprint} is marked @revoked in {where}; refused"
    if isinstance(found, HostKeyChanged):
        return (f"host key changed: the device shows {found.fingerprint}, which differs from {where}; "
                f"if the change is expected: chatbot trust {device} --replace")
    if isinstance(found, HostKeyUnknown):
        return (f"host key unknown: {found.fingerprint} is not in {where}; "
                f"check it, then: chatbot trust {device} (or ssh-keyscan)")
    return f"host key not trusted ({found.fingerprint}, {where})"


def _address(chain: list[BaseException], device: str, timeout: float) -> str | None:
    if _find(chain, CannotResolve, socket.gaierror):
        return "unreachable: cannot resolve the device's host name"
    if _find(chain, ConnectionRefusedError):
        return "unreachable: connection refused"
    if _find(chain, ConnectTimedOut):
        return "unreachable: connection timed out"
    if _find(chain, NoRoute):
        return "unreachable: no route to the device"
    failed = _find(chain, CannotConnect)
    if failed is not None:
        cause = failed.__cause__
        reason = os.strerror(cause.errno) if isinstance(cause, OSError) and cause.errno else "connection failed"
        return f"unreachable: {reason.lower()}"
    return None


def _login(chain: list[BaseException], device: str, timeout: float) -> str | None:
    if _find(chain, LoginRefused):
        return "authentication failed (check the device credentials)"
    # scrapli's privilege escalation reports a secret the device did not take as
    # ScrapliAuthenticationFailed raised from the ScrapliTimeout of the wait for the
    # privileged prompt (NetworkDriver._escalate), or as ScrapliPrivilegeError.
    if _find(chain, ScrapliPrivilegeError):
        return "enable failed (check the enable secret)"
    auth = _find(chain, ScrapliAuthenticationFailed)
    if auth is not None:
        if isinstance(auth.__cause__, ScrapliTimeout):
            return "enable failed (check the enable secret)"
        return "authentication failed (check the device credentials)"
    return None


def _silence(chain: list[BaseException], device: str, timeout: float) -> str | None:
    if _find(chain, ScrapliTimeout, ssh2_errors.Timeout, ssh2_errors.SocketTimeout, TimeoutError):
        return f"no answer in time (device timeout {timeout:g} s)"
    return None


_PEER_CLOSED = (ssh2_errors.SocketDisconnectError, ssh2_errors.SocketRecvError, EOFError, ConnectionError)


def _closed(chain: list[BaseException], device: str, timeout: float) -> str | None:
    handshake = _find(chain, HandshakeFailed)
    if handshake is not None and not isinstance(handshake.__cause__, _PEER_CLOSED):
        return "SSH handshake failed (no algorithm in common with the device?)"
    if _find(chain, ScrapliConnectionNotOpened, ScrapliConnectionError, ssh2_errors.SSH2Error, *_PEER_CLOSED):
        return "connection lost: the device closed the session"
    return None


_RULES: list[Rule] = [_platform, _host_key, _address, _login, _silence, _closed]
