"""A real OpenSSH server on a loopback port, started by a test, with its own host key.

It logs in one account (the user running the tests) with a key made for the test, and
its ForceCommand is the lab's IOS CLI on stdin/stdout (tests/ios_stdio_shell.py), so
scrapli sees an IOS-like device behind a genuine sshd: OpenSSH's key exchange, host
keys, authentication and pty. Nothing outside the test's directory is used, except
/run/sshd, the privilege-separation directory sshd insists on when run as root.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SHELL_SCRIPT = Path(__file__).with_name("ios_stdio_shell.py")


def require_sshd() -> None:
    # On a developer's machine these skip with the reason; in CI (CI=true, where .ci/run
    # installs sshd and runs as root) a skip would hide the real-device checks: fail.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if not os.path.exists(SSHD):
        give_up("needs OpenSSH's sshd (apt-get install openssh-server; .ci/run installs it)")
    if os.geteuid() != 0:
        give_up("needs root: sshd logs a user in only when it runs as root")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealSshd:
    def __init__(self, directory: Path, enable_secret: str = "en-secret", hostname: str = "r1") -> None:
        require_sshd()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.client_key = self._write_key("client_key")
        self.enable_secret_file = self.dir / "enable_secret"
        self.enable_secret_file.write_text(enable_secret)
        (self.dir / "authorized_keys").write_text(self._public("client_key"))
        self.hostname = hostname
        self.host_key_path = self.dir / "host_key"
        self.log = self.dir / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_at = 0
        self.new_host_key()

    def _write_key(self, name: str) -> Path:
        path = self.dir / name
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(path))
        key.write_public_key(str(path) + ".pub")
        os.chmod(path, 0o600)
        return path

    def _public(self, name: str) -> str:
        return (self.dir / f"{name}.pub").read_text()

    def new_host_key(self) -> None:
        """A fresh host key, used from the next start()."""
        self.host_key_path.unlink(missing_ok=True)
        self._write_key("host_key")

    @property
    def host_public_key(self) -> str:
        """`ssh-ed25519 AAAA...` of the current host key."""
        return " ".join(self._public("host_key").split()[:2])

    def start(self) -> RealSshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self.dir / "sshd_config"
        command = f"{sys.executable} {SHELL_SCRIPT} {self.hostname} {self.enable_secret_file}"
        config.write_text(f"""
ListenAddress 127.0.0.1
Port {self.port}
HostKey {self.host_key_path}
PidFile none
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {self.dir}/authorized_keys
PermitRootLogin prohibit-password
AllowUsers {self.user}
ForceCommand {command}
LogLevel VERBOSE
""")
        log = self.log.open("ab")
        self._proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL)
        log.close()
        self._wait_listening()
        self._ready_at = self.log.stat().st_size
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(8).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)  # sshd is still binding its socket
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        """What sshd logged since it became ready (after the harness's own probe)."""
        with self.log.open("rb") as handle:
            handle.seek(self._ready_at)
            return handle.read().decode(errors="replace")

    def __enter__(self) -> RealSshd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
