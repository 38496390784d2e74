"""A real Redis server for the zone tests: Debian's redis-server on a free loopback port,
with a password, in a temporary directory, no persistence, no Unix socket, no other
interface.

Readiness is Redis's own signal, not a guess: the server runs with `supervised systemd`
and NOTIFY_SOCKET pointing at a datagram socket in the test's directory, so it sends
READY=1 once it accepts connections (Debian builds it with systemd support; its unit is
Type=notify). A PING with the password then confirms it. Nothing sleeps.

The fixtures (registered in tests/conftest.py): `redis_server`, one server for the whole
session, and `redis_url`, its `redis://:PASSWORD@127.0.0.1:PORT/0`. Tests sharing it keep
apart by key prefix; a test that stops Redis starts a RedisServer of its own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 30.0


def require_redis() -> None:
    # On a developer's machine these skip with the reason; in CI (CI=true, where .ci/run
    # installs the server) a skip would hide the shared limits' checks: fail.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if not os.path.exists(REDIS_SERVER):
        give_up("needs a Redis server (apt-get install redis-server; .ci/run installs it)")
    try:
        import redis  # noqa: F401
    except ImportError:
        give_up("needs redis-py (pip install -e '.[test]')")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, password: str | None = None) -> None:
        require_redis()
        # A short path: the notify socket's path may not exceed about 100 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="netbot-redis-"))
        self.password = password or secrets.token_urlsafe(24)
        self.port = free_port()
        self.log = self.dir / "redis.log"
        self.config = self.dir / "redis.conf"
        self.process: subprocess.Popen[bytes] | None = None
        # The password lives in the config file, not on the command line (ps shows argv).
        self.config.write_text(f"""
bind 127.0.0.1
port {self.port}
unixsocket ""
protected-mode yes
requirepass {self.password}
daemonize no
supervised systemd
dir {self.dir}
logfile {self.log}
save ""
appendonly no
databases 4
""")
        os.chmod(self.config, 0o600)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def url_with_password(self, password: str) -> str:
        return f"redis://:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        notify_path = self.dir / "notify"
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
            self.process = subprocess.Popen([REDIS_SERVER, str(self.config)], env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
            self._wait_ready(notify)
        self._confirm_ping()
        return self

    def _wait_ready(self, notify: socket.socket) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.process.returncode}): {self._log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError(f"redis-server did not report ready: {self._log_tail()}")
            # A short bound per wait so a server that dies before READY is noticed.
            notify.settimeout(min(remaining, 0.5))
            try:
                message = notify.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in message.split(b"\n"):
                return

    def _confirm_ping(self) -> None:
        import redis

        with redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5) as client:
            if not client.ping():
                raise RuntimeError("redis-server did not answer PING")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM: no save, since persistence is off). It can start again
        on the same port with start()."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server for the whole session (tests that stop Redis start their own)."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
