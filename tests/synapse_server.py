"""A real Matrix homeserver (matrix-synapse from PyPI) for integration tests.

Synapse lives in its own virtual environment, apart from the project's: it is a server the
tests start, not a library the bot imports, and its pins must not leak into the bot's
dependencies. The venv is built once per machine and Python version and cached.

The server listens on 127.0.0.1 only, keeps its state in SQLite inside a work folder, and
is configured so that it never reaches out (no key servers, no federation, no stats, no
URL previews) and never rate-limits a test.

    with SynapseServer(tmp_path) as hs:
        alice = hs.register("alice", "secret")
        token = hs.login(alice, "secret")
"""

from __future__ import annotations

import base64
import contextlib
import copy
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

SYNAPSE_VERSION = "1.163.2"

_MARKER = ".netbot-synapse-version"
_CONFIG_NAME = "homeserver.yaml"
# Far above anything a test does, so no test ever waits on a rate limiter.
_UNLIMITED = {"per_second": 100000, "burst_count": 100000}


class SynapseError(RuntimeError):
    """The homeserver could not be installed, started or used."""


# --------------------------------------------------------------------------- the venv


# Venvs already found importable by this process: the import probe costs about 0.6 s.
_checked_venvs: set[Path] = set()


def synapse_venv_path() -> Path:
    override = os.environ.get("CHATBOT_SYNAPSE_VENV")
    if override:
        return Path(override).expanduser()
    tag = f"synapse-{SYNAPSE_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    return Path.home() / ".cache" / "netbot" / tag


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_is_ready(venv: Path, *, need_marker: bool = True) -> bool:
    marker = venv / _MARKER
    python = _venv_python(venv)
    if need_marker and (not marker.is_file() or marker.read_text().strip() != SYNAPSE_VERSION):
        return False
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import synapse, sys; sys.exit(synapse.__version__ != sys.argv[1])", SYNAPSE_VERSION],
        check=False,
        capture_output=True,
        timeout=120,
    )
    return probe.returncode == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def ensure_synapse_venv() -> Path:
    """Return a venv holding matrix-synapse==SYNAPSE_VERSION, building it on first use.

    A file lock beside the venv keeps two pytest processes from installing at once: the
    second waits, then finds the first one's venv ready.
    """
    venv = synapse_venv_path()
    if venv in _checked_venvs or _venv_is_ready(venv):
        _checked_venvs.add(venv)
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f"{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _venv_is_ready(venv, need_marker=False):
                # Built by hand, or an install interrupted after pip finished: adopt it.
                (venv / _MARKER).write_text(SYNAPSE_VERSION + "\n")
            elif not _venv_is_ready(venv):
                _install(venv)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _checked_venvs.add(venv)
    return venv


def _install(venv: Path) -> None:
    # A half-built venv (interrupted install, other version) is thrown away, not patched;
    # but only a venv: $CHATBOT_SYNAPSE_VENV might name a folder that holds something else.
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file() and any(venv.iterdir()):
            raise SynapseError(f"{venv} exists, is not a virtual environment, and is not empty; not touching it")
        shutil.rmtree(venv)
    log_path = venv.parent / f"{venv.name}.install.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(_venv_python(venv)),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                f"matrix-synapse=={SYNAPSE_VERSION}",
            ],
        ]
        for step in steps:
            log.write(f"$ {' '.join(step)}\n")
            log.flush()
            result = subprocess.run(step, check=False, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                log.flush()
                hint = ""
                if step[1:3] == ["-m", "venv"]:
                    hint = " (on Debian/Ubuntu system Python this needs the python3-venv package)"
                raise SynapseError(
                    f"installing matrix-synapse {SYNAPSE_VERSION} into {venv} failed at "
                    f"`{' '.join(step[:4])} ...`{hint}; log {log_path}:\n{_tail(log_path)}"
                )
    if not _venv_python(venv).exists():
        raise SynapseError(f"{venv} has no bin/python after install; log {log_path}")
    (venv / _MARKER).write_text(SYNAPSE_VERSION + "\n")
    if not _venv_is_ready(venv):
        raise SynapseError(f"matrix-synapse installed into {venv} but does not import; log {log_path}")
    with open(log_path, "a") as log:
        log.write(f"installed in {time.monotonic() - started:.1f} s\n")


# --------------------------------------------------------------------------- the server


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_json_as_yaml(path: Path, data: Any) -> None:
    # JSON is valid YAML, and the project venv needs no YAML library for it.
    path.write_text(json.dumps(data, indent=2) + "\n")


def _new_signing_key() -> str:
    # A Synapse signing key file is "ed25519 <key id> <unpadded base64 of the 32-byte
    # seed>"; any 32 random bytes are a valid ed25519 seed, so no subprocess is needed.
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}\n"


class SynapseServer:
    """One Synapse process on loopback, with its state in `workdir`.

    The port is chosen once and kept across restarts, so clients can reconnect to the
    same URL. Application services given at construction are registered with the
    homeserver; the completed registrations (tokens filled in) are in `appservices`.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        server_name: str = "localhost",
        *,
        appservices: list[dict[str, Any]] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / _CONFIG_NAME
        self.log_path = self.workdir / "homeserver.log"
        self.output_path = self.workdir / "homeserver.out"
        self.server_name = server_name
        previous = self._previous_config()
        # A work folder that already holds a server keeps its secret and port, so a new
        # SynapseServer on an old folder still talks to the users registered there.
        self.registration_shared_secret: str = previous.get("registration_shared_secret") or secrets.token_hex(32)
        if port is None:
            port = previous.get("_netbot_port") or _free_loopback_port()
        self.port = int(port)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.appservices = [self._complete_appservice(i, spec) for i, spec in enumerate(appservices or [])]
        self.process: subprocess.Popen[bytes] | None = None
        self.venv: Path | None = None
        self.last_start_seconds: float | None = None

    # ----------------------------------------------------------------- config

    def _previous_config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _complete_appservice(self, index: int, spec: dict[str, Any]) -> dict[str, Any]:
        registration: dict[str, Any] = {
            "id": f"appservice{index}",
            "url": None,  # no transactions pushed: the tests poll with /sync instead
            "as_token": secrets.token_hex(24),
            "hs_token": secrets.token_hex(24),
            "sender_localpart": f"appservice{index}bot",
            "rate_limited": False,
            "namespaces": {"users": [], "aliases": [], "rooms": []},
        }
        registration.update(copy.deepcopy(spec))  # the caller's dict stays as it was
        namespaces = registration["namespaces"]
        for kind in ("users", "aliases", "rooms"):
            namespaces.setdefault(kind, [])
        return registration

    def _homeserver_config(self) -> dict[str, Any]:
        workdir = self.workdir
        appservice_files = [str(workdir / f"appservice-{reg['id']}.yaml") for reg in self.appservices]
        return {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(workdir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(workdir / "homeserver.db")},
            },
            "log_config": str(workdir / "log.yaml"),
            "media_store_path": str(workdir / "media_store"),
            "signing_key_path": str(workdir / "signing.key"),
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": self._stable_secret("macaroon"),
            "form_secret": self._stable_secret("form"),
            "report_stats": False,
            "enable_metrics": False,
            "enable_registration": False,
            # No outbound traffic at all: this machine reaches no other homeserver.
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "allow_public_rooms_over_federation": False,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "app_service_config_files": appservice_files,
            # bcrypt at its lowest cost: logins and registrations take ms, not 100s of ms.
            "bcrypt_rounds": 4,
            "rc_message": _UNLIMITED,
            "rc_registration": _UNLIMITED,
            "rc_registration_token_validity": _UNLIMITED,
            "rc_login": {
                "address": _UNLIMITED,
                "account": _UNLIMITED,
                "failed_attempts": _UNLIMITED,
            },
            "rc_admin_redaction": _UNLIMITED,
            "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
            "rc_joins_per_room": _UNLIMITED,
            "rc_3pid_validation": _UNLIMITED,
            "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
            "rc_third_party_invite": _UNLIMITED,
            "rc_media_create": _UNLIMITED,
            "rc_room_creation": _UNLIMITED,
            "rc_reports": _UNLIMITED,
            "rc_presence": {"per_user": _UNLIMITED},
            "rc_delayed_event_mgmt": _UNLIMITED,
            "rc_key_requests": _UNLIMITED,
            "rc_user_directory": _UNLIMITED,
            "rc_profile": _UNLIMITED,
            # Not read by Synapse; lets a later SynapseServer on this folder keep the port.
            "_netbot_port": self.port,
        }

    def _stable_secret(self, name: str) -> str:
        return hashlib.sha256(f"{name}\0{self.registration_shared_secret}".encode()).hexdigest()

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "plain",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "loggers": {
                # Startup and shutdown lines, without one line per request.
                "synapse.app": {"level": "INFO"},
                "synapse.storage.prepare_database": {"level": "INFO"},
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def _write_config(self) -> None:
        key_path = self.workdir / "signing.key"
        if not key_path.exists():
            key_path.write_text(_new_signing_key())
            key_path.chmod(0o600)
        (self.workdir / "media_store").mkdir(exist_ok=True)
        _write_json_as_yaml(self.workdir / "log.yaml", self._log_config())
        for registration in self.appservices:
            _write_json_as_yaml(self.workdir / f"appservice-{registration['id']}.yaml", registration)
        # Rewritten on every start (same secret, same port, same paths): only the signing
        # key and the database carry state.
        _write_json_as_yaml(self.config_path, self._homeserver_config())

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> None:
        if self.running:
            return
        self.venv = ensure_synapse_venv()
        self._write_config()
        started = time.monotonic()
        with open(self.output_path, "ab") as output:
            output.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                [str(_venv_python(self.venv)), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals the group
            )
        self._wait_ready(started, timeout)
        self.last_start_seconds = time.monotonic() - started

    def _wait_ready(self, started: float, timeout: float) -> None:
        assert self.process is not None
        deadline = started + timeout
        url = f"{self.base_url}/_matrix/client/versions"
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise SynapseError(f"synapse exited with code {code} while starting\n{self._logs_tail()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SynapseError(f"synapse not ready on {url} after {timeout:.0f} s\n{self._logs_tail()}")
            time.sleep(0.05)

    def _logs_tail(self) -> str:
        return f"--- {self.output_path} ---\n{_tail(self.output_path)}\n--- {self.log_path} ---\n{_tail(self.log_path)}"

    def stop(self, timeout: float = 15) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process (Linux), for reports."""
        if not self.running:
            return None
        assert self.process is not None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- users

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def register(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API; return the full user id."""
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce_reply = requests.get(url, timeout=10)
        _check(nonce_reply, "register: nonce")
        nonce = nonce_reply.json()["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        role = b"admin" if admin else b"notadmin"
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), role]))
        reply = requests.post(
            url,
            json={"nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac.hexdigest()},
            timeout=10,
        )
        _check(reply, f"register {localpart}")
        return str(reply.json()["user_id"])

    def login(self, user_id: str, password: str) -> str:
        """Log in with a password; return the access token."""
        reply = requests.post(
            f"{self.base_url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
                "initial_device_display_name": "synapse test harness",
            },
            timeout=10,
        )
        _check(reply, f"login {user_id}")
        return str(reply.json()["access_token"])


def _check(reply: requests.Response, what: str) -> None:
    if reply.status_code != 200:
        raise SynapseError(f"{what}: HTTP {reply.status_code} {reply.text[:500]}")
