"""The bot's scrapli transport: scrapli's ssh2 (libssh2) transport with host keys
checked our way and connection failures raised as types that say what happened.

Why a transport subclass: scrapli loads third-party transports by name
(`transport="netbot"` imports `scrapli_netbot.transport`, its documented plugin hook), and
the transport's `open` is the one place that sits between the SSH handshake and
authentication, where a host key must be judged before any password leaves. The rest
(authentication, channel, reads, writes, close) is scrapli's own ssh2 code, unchanged.
The host-key policy arrives through scrapli's `transport_options`.

A cancelled job must be able to cut a session that is still logging in (a device that
takes the password but never shows a prompt holds scrapli's `open` until the device
timeout): `watching_sockets` lets the caller see each TCP socket as soon as it connects,
in the thread that opens the session, so it can shut it down from another thread.

scrapli's own socket helper swallows a name-resolution error and raises a bare
ScrapliConnectionNotOpened, so the bot could not tell "no such host" from anything else:
`TypedSocket` keeps the cause and names the failure.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from scrapli.exceptions import ScrapliAuthenticationFailed, ScrapliConnectionNotOpened
from scrapli.transport.base.base_socket import Socket
from scrapli.transport.plugins.ssh2.transport import PluginTransportArgs, Ssh2Transport
from ssh2.session import LIBSSH2_METHOD_HOSTKEY, Session

from chatbot.hostkeys import HostKeyMode, HostKeyPolicy, preferred_algorithms, verify_host_key

TRANSPORT_NAME = "netbot"
__all__ = ["NetbotTransport", "PluginTransportArgs", "TRANSPORT_NAME", "scan_host_key", "watching_sockets"]


class CannotResolve(ScrapliConnectionNotOpened):
    """The device's host name does not resolve."""


class ConnectTimedOut(ScrapliConnectionNotOpened):
    """Nothing answered the TCP connection attempt in time."""


class NoRoute(ScrapliConnectionNotOpened):
    """The network or host is unreachable from here."""


class CannotConnect(ScrapliConnectionNotOpened):
    """The TCP connection failed for another reason (its cause says which)."""


class HandshakeFailed(ScrapliConnectionNotOpened):
    """TCP connected, but the SSH handshake did not complete."""


class LoginRefused(ScrapliAuthenticationFailed):
    """The device refused the username and password (or key)."""


_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH}
_socket_watcher: ContextVar[Callable[[socket.socket], None] | None] = ContextVar("netbot_socket_watcher",
                                                                                default=None)


@contextmanager
def watching_sockets(watcher: Callable[[socket.socket], None]) -> Iterator[None]:
    """Call `watcher` with every session socket this thread connects inside the block."""
    token = _socket_watcher.set(watcher)
    try:
        yield
    finally:
        _socket_watcher.reset(token)


class TypedSocket(Socket):
    def open(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise CannotResolve(f"cannot resolve {self.host}") from exc
        last: BaseException | None = None
        for family, _, _, _, address in infos:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(address)
            except (TimeoutError, OSError) as exc:
                sock.close()
                last = exc
                continue
            self.sock = sock
            watcher = _socket_watcher.get()
            if watcher is not None:
                watcher(sock)
            return
        if isinstance(last, socket.timeout):
            raise ConnectTimedOut(f"connecting to {self.host}:{self.port} timed out") from last
        if isinstance(last, OSError) and last.errno in _UNREACHABLE:
            raise NoRoute(f"no route to {self.host}:{self.port}") from last
        raise CannotConnect(f"cannot connect to {self.host}:{self.port}") from last


class NetbotTransport(Ssh2Transport):
    def open(self) -> None:
        self._pre_open_closing_log(closing=False)
        args = self._base_transport_args
        policy = HostKeyPolicy.from_options(args.transport_options)
        self.socket = TypedSocket(host=args.host, port=args.port, timeout=args.timeout_socket)
        self.socket.open()
        try:
            self._open_session(policy)
        except BaseException:
            # A refused session must not leave its socket behind (scrapli's Socket.close
            # skips a socket the peer already closed).
            if self.socket.sock is not None:
                self.socket.sock.close()
            self.session = None
            raise
        self._post_open_closing_log(closing=False)

    def _open_session(self, policy: HostKeyPolicy) -> None:
        args = self._base_transport_args
        assert self.socket is not None and self.socket.sock is not None
        self.session = session = Session()
        self._set_timeout(value=args.timeout_transport)
        peer = self.socket.sock.getpeername()[0]
        if policy.mode is not HostKeyMode.OFF:
            session.method_pref(LIBSSH2_METHOD_HOSTKEY,
                                ",".join(preferred_algorithms(policy.known_hosts, args.host, peer, args.port)))
        try:
            session.handshake(self.socket.sock)
        except Exception as exc:
            raise HandshakeFailed(f"SSH handshake with {args.host}:{args.port} failed") from exc
        verify_host_key(policy, args.host, peer, args.port, session.hostkey()[0])
        self._authenticate()
        if not session.userauth_authenticated():
            raise LoginRefused(f"{args.host}:{args.port} refused the login")
        self._open_channel()


def scan_host_key(host: str, port: int, timeout: float, algorithms: list[str]) -> tuple[str, bytes]:
    """The device's host key as the bot's sessions would see it (same library; give the
    algorithm order a session would use), like ssh-keyscan: (peer address, key blob).
    Nothing is sent but the handshake."""
    sock = TypedSocket(host=host, port=port, timeout=timeout)
    sock.open()
    assert sock.sock is not None
    try:
        session = Session()
        session.set_timeout(int(timeout * 1000))
        session.method_pref(LIBSSH2_METHOD_HOSTKEY, ",".join(algorithms))
        try:
            session.handshake(sock.sock)
        except Exception as exc:
            raise HandshakeFailed(f"SSH handshake with {host}:{port} failed") from exc
        blob = session.hostkey()[0]
        with suppress(Exception):
            session.disconnect()
        return sock.sock.getpeername()[0], blob
    finally:
        sock.sock.close()


def scrapli_transport_extras(policy: HostKeyPolicy) -> dict[str, Any]:
    """What Nornir's scrapli connection options need to use this transport."""
    return {"transport": TRANSPORT_NAME, "transport_options": policy.as_options()}
