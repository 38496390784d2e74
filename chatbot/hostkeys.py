"""Device host keys, checked the way OpenSSH checks them, before any password is sent.

Why our own check: scrapli's known-hosts lookup (scrapli/ssh_config.py) matches the bare
host name only. OpenSSH writes a host on a port other than 22 as `[host]:port` (and
`HashKnownHosts` hashes it as `|1|salt|hash`), which scrapli never finds, and it ignores
`@revoked` and `@cert-authority` lines. Matching here uses asyncssh's known-hosts parser,
which follows OpenSSH's rules for all of those (patterns, negations, hashed names, ports,
markers). The check itself runs in our scrapli transport (chatbot/ssh_transport.py) right
after the SSH handshake and before authentication.

Modes, as OpenSSH's StrictHostKeyChecking: "strict" (the key must already be in the
known-hosts file), "accept-new" (trust on first use: an unknown host's key is written to
the file, a changed key is still refused), "off" (no check at all: unsafe).

Two OpenSSH details that differ: asyncssh falls back to the port-less entry when no
`[host]:port` entry matches (OpenSSH does not); and libssh2 cannot verify host
certificates, so a host trusted only through `@cert-authority` counts as unknown.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import asyncssh
from asyncssh.public_key import SSHKey, decode_ssh_public_key

log = logging.getLogger(__name__)

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
# libssh2's host-key algorithms for plain keys (no certificates: see the docstring).
PLAIN_KEY_ALGORITHMS = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                        "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
_RSA_SIGNATURES = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]


class HostKeyMode(str, Enum):
    STRICT = "strict"
    ACCEPT_NEW = "accept-new"
    OFF = "off"


@dataclass(frozen=True)
class HostKeyPolicy:
    mode: HostKeyMode
    known_hosts: Path

    @classmethod
    def from_options(cls, options: dict[str, str]) -> HostKeyPolicy:
        return cls(HostKeyMode(options.get("host_keys", "strict")),
                   Path(options.get("known_hosts") or DEFAULT_KNOWN_HOSTS).expanduser())

    def as_options(self) -> dict[str, str]:
        """What the scrapli transport receives through `transport_options`."""
        return {"host_keys": self.mode.value, "known_hosts": str(self.known_hosts)}


class HostKeyError(Exception):
    """A host key that may not be trusted. `fingerprint` is the key the device showed."""

    def __init__(self, host: str, port: int, fingerprint: str, known_hosts: Path) -> None:
        self.host, self.port, self.fingerprint, self.known_hosts = host, port, fingerprint, known_hosts
        super().__init__(f"{known_entry_name(host, port)}: {self.problem} ({fingerprint}, {known_hosts})")

    problem = "host key not trusted"


class HostKeyUnknown(HostKeyError):
    problem = "host key unknown"


class HostKeyChanged(HostKeyError):
    problem = "host key changed"


class HostKeyRevoked(HostKeyError):
    problem = "host key revoked"


def known_entry_name(host: str, port: int | None) -> str:
    """How OpenSSH names a host in known_hosts: `host` on port 22, `[host]:port` otherwise."""
    return host if port in (None, 22) else f"[{host}]:{port}"


def fingerprint(key: SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


@dataclass(frozen=True)
class KnownKeys:
    trusted: Sequence[SSHKey]
    revoked: Sequence[SSHKey]


def known_keys(path: Path, host: str, addr: str, port: int | None) -> KnownKeys:
    """The keys the file trusts and revokes for this host; none when the file is absent."""
    parsed = _parsed(path)
    if parsed is None:
        return KnownKeys((), ())
    matched = parsed.match(host, addr, port)
    return KnownKeys(trusted=matched[0], revoked=matched[2])


_cache: dict[Path, tuple[tuple[int, int, int], asyncssh.SSHKnownHosts]] = {}
_cache_lock = threading.Lock()


def _parsed(path: Path) -> asyncssh.SSHKnownHosts | None:
    """The file parsed once per version: parsing costs more than a whole device session
    once the file has a few hundred lines (12 ms for 1,000 lines here), and every session
    needs it twice. A changed file (other inode, size or mtime) is parsed again."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    version = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
    parsed = asyncssh.read_known_hosts(str(path))
    with _cache_lock:
        _cache[path] = (version, parsed)
    return parsed


def preferred_algorithms(path: Path, host: str, addr: str, port: int | None) -> list[str]:
    """Host-key algorithms for libssh2, those of keys already known first: as OpenSSH
    does, so a device with several keys shows the one we know, not merely another."""
    known: list[str] = []
    for key in known_keys(path, host, addr, port).trusted:
        name = key.get_algorithm()
        for algorithm in (_RSA_SIGNATURES if name == "ssh-rsa" else [name]):
            if algorithm not in known:
                known.append(algorithm)
    return known + [a for a in PLAIN_KEY_ALGORITHMS if a not in known]


def verify_host_key(policy: HostKeyPolicy, host: str, addr: str, port: int, key_blob: bytes) -> None:
    """Raise HostKeyUnknown/Changed/Revoked unless the policy trusts this key for this host.
    In accept-new mode an unknown host's key is written to the file first."""
    if policy.mode is HostKeyMode.OFF:
        return
    key = decode_ssh_public_key(key_blob)
    if _trusted(policy, host, addr, port, key):
        return
    if policy.mode is HostKeyMode.ACCEPT_NEW:
        with _locked(policy.known_hosts):
            # Another session may have written this host meanwhile: decide again under the lock.
            if _trusted(policy, host, addr, port, key):
                return
            append_known_host(policy.known_hosts, host, port, key)
        log.warning("host key of %s accepted on first use: %s, written to %s",
                    known_entry_name(host, port), fingerprint(key), policy.known_hosts)
        return
    raise HostKeyUnknown(host, port, fingerprint(key), policy.known_hosts)


def _trusted(policy: HostKeyPolicy, host: str, addr: str, port: int, key: SSHKey) -> bool:
    known = known_keys(policy.known_hosts, host, addr, port)
    if any(k.public_data == key.public_data for k in known.revoked):
        raise HostKeyRevoked(host, port, fingerprint(key), policy.known_hosts)
    if any(k.public_data == key.public_data for k in known.trusted):
        return True
    if known.trusted:
        raise HostKeyChanged(host, port, fingerprint(key), policy.known_hosts)
    return False


def append_known_host(path: Path, host: str, port: int | None, key: SSHKey) -> None:
    """Add `host key` (or `[host]:port key`) as OpenSSH would. Callers that must not race
    other writers hold `_locked(path)`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{known_entry_name(host, port)} {key.export_public_key('openssh').decode().strip()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if handle.tell() > 0 and not _ends_with_newline(path):
            handle.write("\n")
        handle.write(line)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class _locked:
    """An exclusive lock beside the known-hosts file, so parallel sessions (threads or
    processes) never interleave their writes or add one host twice."""

    def __init__(self, path: Path) -> None:
        self._path = path.with_name(path.name + ".lock")
        self._fd = -1

    def __enter__(self) -> None:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def trust_host_key(path: Path, host: str, addr: str, port: int, key_blob: bytes, *, replace: bool) -> str:
    """For `chatbot trust`: write the key unless it is already trusted. A different known
    key for the host is kept (HostKeyChanged) unless `replace`, which drops the host's
    old entries. Returns what was done, in a few words."""
    key = decode_ssh_public_key(key_blob)
    policy = HostKeyPolicy(HostKeyMode.STRICT, path)
    with _locked(path):
        try:
            if _trusted(policy, host, addr, port, key):
                return "already trusted"
        except HostKeyChanged:
            if not replace:
                raise
            _drop_entries(path, host, port)
        append_known_host(path, host, port, key)
        return "added"


def _drop_entries(path: Path, host: str, port: int | None) -> None:
    """Remove the host's plain and hashed entries for this port (as `ssh-keygen -R`)."""
    name = known_entry_name(host, port)
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        fields = line.split()
        if fields and not line.lstrip().startswith(("#", "@")) and _names_match(fields[0], name):
            continue
        kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _names_match(patterns: str, name: str) -> bool:
    """Whether a known-hosts name field names exactly `name` (plain, or hashed as OpenSSH's
    HashKnownHosts writes it: |1|base64(salt)|base64(HMAC-SHA1(salt, name)))."""
    for pattern in patterns.split(","):
        if pattern == name:
            return True
        if pattern.startswith("|1|"):
            salt, _, digest = pattern[3:].partition("|")
            try:
                expected = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
                if hmac.compare_digest(expected, base64.b64decode(digest)):
                    return True
            except (ValueError, binascii.Error):
                continue
    return False
