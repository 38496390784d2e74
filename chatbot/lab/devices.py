"""Simulated IOS-XE devices served over real SSH (asyncssh), one listening socket each.

Accepted by scrapli's three transports: ssh2 (libssh2 1.11 in ssh2-python 1.2 negotiates
curve25519-sha256, ssh-ed25519 and aes*-ctr/gcm or chacha20-poly1305 with asyncssh's
defaults; an ecdsa-sha2-nistp256 host key is offered too for older libssh2 builds),
system (OpenSSH) and asyncssh. Host keys are generated in memory once per Lab start and
shared by its devices; the Lab publishes them in a known-hosts file (`Lab.known_hosts`)
so clients such as the bot check them strictly.

Listening sockets are created synchronously, so a fault change made from any thread is
in force when `set_fault` returns: DOWN closes the socket (clients get "connection
refused") and drops live sessions; clearing it binds the same address and port again,
and connections queue in the backlog until asyncssh serves them a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from functools import partial

import asyncssh
from asyncssh.constants import MSG_USERAUTH_FAILURE
from asyncssh.packet import Boolean, NameList

from chatbot.lab.model import Fault, LabDevice
from chatbot.lab.ssh_session import DeviceSession, SessionContext

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 128


def generate_host_keys() -> list[asyncssh.SSHKey]:
    return [
        asyncssh.generate_private_key("ssh-ed25519"),
        asyncssh.generate_private_key("ecdsa-sha2-nistp256"),
    ]


def base_server_options(host_keys: list[asyncssh.SSHKey]) -> asyncssh.SSHServerConnectionOptions:
    return asyncssh.SSHServerConnectionOptions(
        server_host_keys=host_keys,
        # We echo and edit lines ourselves, exactly as IOS does; asyncssh's editor differs.
        line_editor=False,
        encoding=None,
        # An IOS-ish identification string; some tools log it.
        server_version="Cisco-1.25",
        login_timeout=60,
        keepalive_interval=0,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
    )


class _DeviceSshServer(asyncssh.SSHServer):
    """Per-connection callbacks: session counting and authentication."""

    def __init__(self, owner: DeviceServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None
        self._logged_in = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner.connections.add(conn)
        self._owner.device.stats.connections_total += 1

    def auth_completed(self) -> None:
        self._logged_in = True
        self._owner.device.stats.session_opened()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner.connections.discard(self._conn)
            self._conn = None
        if self._logged_in:
            self._logged_in = False
            self._owner.device.stats.session_closed()

    def begin_auth(self, username: str) -> bool:
        return True  # always ask for credentials

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ok = self._owner.check_credentials(username, password)
        if not ok:
            self._answer_libssh2_kbdint_fallback()
        return ok

    def _answer_libssh2_kbdint_fallback(self) -> None:
        """Pre-answer the keyboard-interactive attempt scrapli's ssh2 transport makes next.

        After a rejected password, scrapli (transport "ssh2") always tries
        keyboard-interactive, and ssh2-python 1.2 holds the GIL for the whole of that
        blocking call. With the lab in the same process (the shell, the tests) our server
        thread could then never answer: the process froze for `timeout_transport` and
        the caller got ssh2's Timeout instead of ScrapliAuthenticationFailed.

        So, for libssh2 clients only and only after a failure, we queue two identical
        USERAUTH_FAILURE packets in ONE socket write (a write per packet would release
        the GIL in between, and the client would win the race). The first answers the
        password, the second is already in the socket for the keyboard-interactive try;
        asyncssh's own failure follows and is never read. Price: a libssh2 client that
        retried a password on the same connection would read a stale failure.
        """
        conn = self._conn
        if conn is None or "libssh2" not in str(conn.get_extra_info("client_version", "")):
            return
        send = getattr(conn, "_send", None)  # asyncssh internal; skip the trick if it moved
        if send is None:
            return
        chunks: list[bytes] = []
        conn._send = chunks.append  # type: ignore[method-assign,assignment]
        try:
            for _ in range(2):
                conn.send_packet(MSG_USERAUTH_FAILURE, NameList([b"password"]), Boolean(False))
        finally:
            del conn._send  # back to the class's method
        send(b"".join(chunks))


class DeviceServer:
    """The listening socket and live connections of one device."""

    def __init__(
        self,
        device: LabDevice,
        context: SessionContext,
        options: asyncssh.SSHServerConnectionOptions,
        username: str,
        password: str,
    ) -> None:
        self.device = device
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._context = context
        self._options = options
        self._username = username
        self._password = password
        self._sock: socket.socket | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._listen_task: asyncio.Task[None] | None = None

    def check_credentials(self, username: str, password: str) -> bool:
        ok = (
            self.device.fault is not Fault.AUTH
            and hmac.compare_digest(username.encode(), self._username.encode())
            and hmac.compare_digest(password.encode(), self._password.encode())
        )
        if not ok:
            self.device.stats.auth_failures += 1
        return ok

    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        await DeviceSession(process, self.device, self._context).run()

    # -- listening (call on the lab's loop thread) ---------------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.device.host, self.device.port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        # With port 0 the kernel picks one; keep it so a later re-listen reuses it.
        self.device.port = sock.getsockname()[1]
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        self._acceptor = await asyncssh.listen(
            sock=sock,
            options=self._options,
            server_factory=partial(_DeviceSshServer, self),
            process_factory=self._process,
        )

    def start_listening(self) -> asyncio.Task[None]:
        """Bind now (connections queue from this instant) and serve once asyncssh is ready."""
        if self._sock is not None:
            assert self._listen_task is not None
            return self._listen_task
        self._sock = self._bind()
        self._listen_task = asyncio.get_running_loop().create_task(self._serve(self._sock))
        self._listen_task.add_done_callback(self._log_listen_failure)
        return self._listen_task

    def _log_listen_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("lab device %s could not listen: %s", self.device.name, task.exception())

    def stop_listening(self, drop_sessions: bool) -> None:
        if self._listen_task is not None and not self._listen_task.done():
            self._listen_task.cancel()
        self._listen_task = None
        if self._acceptor is not None:
            self._acceptor.close()  # closes the listening socket synchronously
            self._acceptor = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if drop_sessions:
            for conn in list(self.connections):
                conn.abort()

    def apply_fault(self, fault: Fault | None) -> None:
        previous, self.device.fault = self.device.fault, fault
        if fault is Fault.DOWN and previous is not Fault.DOWN:
            self.stop_listening(drop_sessions=True)
        elif previous is Fault.DOWN and fault is not Fault.DOWN:
            self.start_listening()

    async def close(self) -> None:
        self.stop_listening(drop_sessions=True)
        if self.connections:
            await asyncio.gather(
                *(conn.wait_closed() for conn in list(self.connections)), return_exceptions=True
            )
