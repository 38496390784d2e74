"""What the zone tests share: a signing key pair made for the test, an inventory whose
lab devices sit in zones, configs for the bot and its workers, and `chatbot worker`
processes started and stopped by the tests.

Workers are real processes (`python -m chatbot worker --zone NAME --config FILE`); a
worker counts as started once it has announced itself in the broker's store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chatbot.config import Config, parse_config
from chatbot.lab import Lab

WORKER_START_TIMEOUT = 60.0
LAB_PASSWORD_ENV = "NETBOT_TEST_LAB_PASSWORD"
LAB_ENABLE_ENV = "NETBOT_TEST_LAB_ENABLE"
BROKER_PASSWORD_ENV = "NETBOT_TEST_BROKER_PASSWORD"


def make_signing_pair(directory: Path, name: str = "netbot-test") -> tuple[Path, Path, Path]:
    """An RSA key and a self-signed certificate for it, and a directory of trusted
    certificates holding that one: (key.pem, cert.pem, trusted/)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    trusted = directory / "trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / f"{name}.pem").write_bytes(cert_path.read_bytes())
    return key_path, cert_path, trusted


def write_inventory(lab: Lab, zones: dict[str, str | None], directory: Path) -> Path:
    """The lab's devices as a SimpleInventory directory (written as JSON, which is YAML), each with its zone (None: no
    zone). Credentials stay out of it, as in a real inventory."""
    data = lab.nornir_inventory()
    directory.mkdir(parents=True, exist_ok=True)
    hosts = {}
    for name, host in data["hosts"].items():
        host = dict(host)
        if zones.get(name):
            host["data"] = {**host["data"], "zone": zones[name]}
        hosts[name] = host
    (directory / "hosts.yaml").write_text(json.dumps(hosts))
    (directory / "groups.yaml").write_text(json.dumps(data["groups"]))
    (directory / "defaults.yaml").write_text(json.dumps({"platform": "cisco_iosxe"}))
    return directory


def workers_section(redis_port: int, key: Path, cert: Path, store: Path, **more: Any) -> dict[str, Any]:
    return {"broker_url": f"redis://127.0.0.1:{redis_port}/0", "password_env": BROKER_PASSWORD_ENV,
            "signing_key": str(key), "signing_certificate": str(cert), "certificate_store": str(store),
            "lease_seconds": 1.5, "presence_seconds": 3.0, **more}


def config_dict(lab: Lab, inventory: Path, workers: dict[str, Any], **limits: Any) -> dict[str, Any]:
    return {
        "bot": {"database": "sqlite://"},
        "inventory": {"path": str(inventory), "username": lab.username, "password_env": LAB_PASSWORD_ENV,
                      "enable_secret_env": LAB_ENABLE_ENV, "known_hosts": str(lab.known_hosts),
                      "host_keys": "strict"},
        "limits": {"device_timeout": 3, "connect_timeout": 3, "command_timeout": 30,
                   "commands_per_minute": 1_000_000, **limits},
        "workers": workers,
    }


def write_toml(data: dict[str, Any], path: Path) -> Path:
    """`data`'s sections as a TOML file (tables within tables as [a.b])."""
    lines: list[str] = []
    _table(data, [], lines)
    path.write_text("\n".join(lines))
    return path


def _table(values: dict[str, Any], name: list[str], lines: list[str]) -> None:
    if name:
        lines.append(f"[{'.'.join(name)}]")
    nested = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in nested:
            lines.append(f"{key} = {_toml(value)}")
    lines.append("")
    for key, value in nested.items():
        _table(value, [*name, key], lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def environment(lab: Lab, broker_password: str) -> dict[str, str]:
    return {LAB_PASSWORD_ENV: lab.password, LAB_ENABLE_ENV: lab.enable_secret,
            BROKER_PASSWORD_ENV: broker_password}


def load(data: dict[str, Any]) -> Config:
    return parse_config(data)


class WorkerProcess:
    """`chatbot worker --zone ZONE --config FILE` in a process of its own."""

    def __init__(self, zone: str, config_path: Path, env: dict[str, str], log: Path) -> None:
        self.zone = zone
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatbot", "--log-level", "INFO", "worker", "--zone", zone,
             "--config", str(config_path)],
            env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def name_prefix(self) -> str:
        return f"{self.zone}-{self.process.pid}@"

    def wait_ready(self, store: Any, timeout: float = WORKER_START_TIMEOUT) -> float:
        """Seconds until the worker announced itself (its Celery consumer is then starting)."""
        started = time.monotonic()
        key = f"netbot:zones:presence:{self.zone}"
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker for {self.zone} exited: {self.log_text()[-3000:]}")
            names = [n.decode() for n in store.client.zrange(key, 0, -1)]
            if any(n.startswith(self.name_prefix) for n in names):
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"worker for {self.zone} not ready in {timeout:g} s: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()
