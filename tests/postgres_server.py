"""A real PostgreSQL server for the storage tests: initdb into a temporary directory and
a postmaster that listens on a Unix socket there only (no TCP port at all).

PostgreSQL refuses to run as root: as root (CI) the directory is handed to the
`postgres` user that Debian's package creates, and the server runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SERVER_USER = "postgres"  # made by Debian's postgresql package; used when the tests run as root
DB_USER = "netbot"
START_TIMEOUT = 60.0


def server_binaries() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def require_postgres() -> Path:
    # On a developer's machine these skip with the reason; in CI (CI=true, where .ci/run
    # installs the server and runs as root) a skip would hide PostgreSQL's checks: fail.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    bindir = server_binaries()
    if bindir is None:
        give_up("needs a PostgreSQL server (apt-get install postgresql; .ci/run installs it)")
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            give_up(f"PostgreSQL refuses to run as root and there is no '{SERVER_USER}' user to run it")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        give_up("needs psycopg (pip install -e '.[test]')")
    return bindir


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = require_postgres()
        # A short path: a Unix socket's path may not exceed about 100 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="netbot-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir
        self.port = 5432  # only names the socket file (.s.PGSQL.5432); nothing listens on TCP
        self._databases = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "server.log"
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", DB_USER, "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale", "C")

    def _command(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SERVER_USER, "--", *argv]
        return list(argv)

    def _run(self, *argv: str) -> None:
        done = subprocess.run(self._command(*argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        log = open(self.log, "ab")
        self.process = subprocess.Popen(self._command(
            str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir), "-p", str(self.port),
            "-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off", "-c", "max_connections=50"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # pg_isready waits on the server; this loop only bounds how long
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir),
                                    "-p", str(self.port), "-t", "5"])
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections: {self.log.read_text()[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{DB_USER}@/{database}?host={self.socket_dir}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._databases += 1
        name = f"netbot_{self._databases}"
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=DB_USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGINT: PostgreSQL's fast shutdown (disconnects clients, no waiting on them).
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
