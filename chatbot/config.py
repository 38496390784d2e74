"""The bot's configuration: one TOML file, validated with pydantic.

Unknown keys are errors (a typo must not silently disable a setting). Secrets are kept
as references (`*_env`, `*_file`) and resolved only when used.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chatbot.errors import UserError

DEFAULT_SHOW_COMMANDS = [
    "show version",
    "show clock",
    "show inventory",
    "show ip interface brief",
    "show interfaces",
    "show interfaces status",
    "show ip route",
    "show ip bgp summary",
    "show ip ospf neighbor",
    "show cdp neighbors",
    "show lldp neighbors",
    "show logging",
    "show processes cpu",
    "show vlan brief",
    "show ip arp",
    "show mac address-table",
]
DEFAULT_PIPES = ["include", "exclude", "section", "begin", "count"]


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretSection(Section):
    """A section that may carry secrets as `x`, `x_env` or `x_file`."""

    model_config = ConfigDict(extra="allow")

    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BotConfig(Section):
    name: str = "netbot"
    prefix: str = Field(default="!", min_length=1, max_length=3)
    database: str = "sqlite:///var/chatbot.sqlite"
    # The chatbot command's --log-level and CHATBOT_LOG_LEVEL win over this (chatbot.cli.log_level).
    log_level: LogLevel = "WARNING"

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


# Cheapest first for both ends: curve25519 is the cheapest key exchange (one X25519 each),
# ECDH P-256 next (what IOS-XE offers without curve25519); AES-GCM is one call a packet
# (AES-NI in libssh2's OpenSSL, one AEAD call in a Python device), AES-CTR + HMAC next
# (all IOS releases with SSHv2). Anything else libssh2 knows follows these
# (chatbot/ssh_transport.py).
DEFAULT_KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256")
DEFAULT_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


class InventoryConfig(SecretSection):
    path: Path | None = None
    lab: bool = False
    username: str | None = None
    transport: str = "ssh2"  # in-process libssh2: lowest client CPU measured here
    # As OpenSSH's StrictHostKeyChecking: "strict", "accept-new" (trust on first use), "off" (unsafe).
    host_keys: Literal["strict", "accept-new", "off"] = "strict"
    known_hosts: Path | None = None  # default: the user's ~/.ssh/known_hosts
    # Deprecated alias of host_keys (true = "strict", false = "off"), still honoured.
    strict_host_keys: bool | None = None
    # SSH algorithms offered first (transport "ssh2"), cheapest first for the bot and the
    # device; every other algorithm libssh2 knows is still offered after these.
    kex_algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_KEX))
    ciphers: list[str] = Field(default_factory=lambda: list(DEFAULT_CIPHERS))

    @model_validator(mode="after")
    def _host_key_settings(self) -> InventoryConfig:
        if self.strict_host_keys is not None:
            if "host_keys" in self.model_fields_set:
                raise ValueError("strict_host_keys is the old name of host_keys: keep only host_keys")
            self.host_keys = "strict" if self.strict_host_keys else "off"
        if self.transport != "ssh2" and self.host_keys == "accept-new":
            raise ValueError(f'host_keys = "accept-new" needs transport = "ssh2" (not "{self.transport}")')
        if self.transport in ("asyncssh", "paramiko") and self.host_keys == "strict":
            # scrapli checks keys itself for these, matching the bare host name only.
            raise ValueError(f'transport "{self.transport}" cannot read [host]:port or hashed known-hosts '
                             'entries: use transport = "ssh2" (the default) or "system"')
        return self


class ApicConfig(SecretSection):
    url: str
    username: str = "admin"
    # True (the system's CAs), a PEM file (a private CA, or a fresh APIC's self-signed
    # certificate), or False (no check: unsafe).
    verify_tls: bool | str = True
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _reachable_settings(self) -> ApicConfig:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f'url "{self.url}" needs its scheme: https://{self.url.split("://")[-1]}')
        if isinstance(self.verify_tls, str) and not self.verify_tls.strip():
            raise ValueError('verify_tls = "" names no file: give a CA file path, true or false')
        return self


class LimitsConfig(Section):
    command_timeout: float = Field(default=120.0, gt=0)
    device_timeout: float = Field(default=30.0, gt=0)  # per device operation
    connect_timeout: float = Field(default=10.0, gt=0)
    workers: int = Field(default=20, ge=1, le=500)  # device sessions at once, all jobs together
    sessions_per_device: int = Field(default=1, ge=1, le=10)
    running_jobs_per_user: int = Field(default=3, ge=1)  # more queue, and the user sees the position
    commands_per_minute: int = Field(default=30, ge=1)  # per user; more are refused
    monitor_min_interval: float = Field(default=10.0, gt=0)  # seconds between runs of one monitor, at least
    monitors_per_person: int = Field(default=20, ge=0)  # monitors one person may add in chat
    monitors_total: int = Field(default=500, ge=0)  # monitors in all, [[monitor]] ones included
    ping_count_max: int = Field(default=20, ge=1, le=1000)
    # Addresses the bot host itself may ping or trace; empty = any.
    host_probe_networks: list[str] = Field(default_factory=list)

    @property
    def operation_timeout(self) -> float:
        """scrapli's whole-operation limit. It must exceed the transport's read timeout
        (device_timeout): a silent device then fails inside the reading thread. When the
        operation limit fires first, scrapli closes the libssh2 session from a second
        thread while the first still reads from it, which can hang both (seen here)."""
        return self.device_timeout + 5


class ShowConfig(Section):
    # Allowed `show` commands per platform; "default" applies to platforms not listed.
    allowed: dict[str, list[str]] = Field(default_factory=lambda: {"default": list(DEFAULT_SHOW_COMMANDS)})
    pipes: list[str] = Field(default_factory=lambda: list(DEFAULT_PIPES))
    attachment_lines: int = Field(default=40, ge=1)


class RoleConfig(Section):
    commands: list[str] = Field(min_length=1)  # permissions, wildcards allowed: "show.*"
    devices: list[str] | None = None  # targets: "group:core", "site:hq", "r1"; None = any


class GrantConfig(Section):
    who: list[str] = Field(min_length=1)
    where: list[str] = Field(min_length=1)
    roles: list[str] = Field(min_length=1)


class AccessConfig(Section):
    groups: dict[str, list[str]] = Field(default_factory=dict)
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    grants: list[GrantConfig] = Field(default_factory=list)


class WorkersConfig(SecretSection):
    """Zones (chatbot/zones): the broker in the DMZ that the bot and every zone's workers
    connect to. Its password comes from `password`, `password_env` or `password_file`,
    never from inside the URL."""

    # Redis by default; RabbitMQ by an amqp:// URL; rediss:// / amqps:// for TLS.
    broker_url: str = "redis://127.0.0.1:6379/0"
    # Where results, progress, cancels and worker presence live; must be Redis. Default:
    # the broker, when it is Redis.
    result_backend: str | None = None
    # Task messages are signed (Celery's "auth" serializer): the deployment's private
    # key and certificate, and the certificates a process accepts signatures from (a
    # directory or a glob of PEM files).
    signing_key: Path
    signing_certificate: Path
    certificate_store: str
    # Seconds before the broker hands a message a worker took but never acknowledged
    # (the worker died) to another worker. Longer than any command may run: work that
    # outlives it would be delivered twice.
    visibility_timeout: float = Field(default=3600.0, gt=0)
    chunk_size: int = Field(default=50, ge=1, le=10_000)  # devices per task message
    concurrency: int = Field(default=4, ge=1, le=256)  # task messages a worker runs at once
    # Seconds a running task's lease lasts (renewed every third of it): a task whose
    # lease lapsed without an answer was on a worker that died, and its devices are
    # reported failed then, not at the command timeout.
    lease_seconds: float = Field(default=3.0, gt=0)
    # Seconds a zone's worker may stay silent before the zone counts as having none.
    presence_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _broker_settings(self) -> WorkersConfig:
        for name, url in (("broker_url", self.broker_url), ("result_backend", self.result_backend)):
            if url is None:
                continue
            parsed = urlsplit(url)
            if parsed.scheme not in BROKER_SCHEMES:
                raise ValueError(f"{name} \"{url.split('@')[-1]}\": use one of "
                                 f"{', '.join(s + '://' for s in BROKER_SCHEMES)}")
            if parsed.password:
                raise ValueError(f"{name} holds a password: give it as password_env or password_file instead")
        if not any(self.extras().get(k) for k in ("password", "password_env", "password_file")):
            raise ValueError("the broker needs a password: give password_env or password_file")
        if self.store_url_without_password.split("://")[0] not in REDIS_SCHEMES:
            raise ValueError("result_backend must be a Redis URL (redis:// or rediss://) when the broker is not Redis")
        return self

    @property
    def store_url_without_password(self) -> str:
        return self.result_backend or self.broker_url


BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")
REDIS_SCHEMES = ("redis", "rediss")


class AuditConfig(Section):
    retention_days: int = Field(default=365, ge=1)


class Config(Section):
    bot: BotConfig = Field(default_factory=BotConfig)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    apic: dict[str, ApicConfig] = Field(default_factory=dict)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    show: ShowConfig = Field(default_factory=ShowConfig)
    # Later issues fill these in; accepted now so one config file serves every version.
    matrix: dict[str, Any] | None = None
    mattermost: dict[str, Any] | None = None
    slack: dict[str, Any] | None = None
    identities: dict[str, list[str]] = Field(default_factory=dict)  # person -> accounts
    access: AccessConfig | None = None
    audit: AuditConfig = Field(default_factory=AuditConfig)
    workers: WorkersConfig | None = None  # present = devices with a `zone` run on that zone's workers
    bridges: dict[str, Any] | None = None
    monitor: list[dict[str, Any]] = Field(default_factory=list)
    # Where the config came from, for error messages that name a line.
    source: str = Field(default="config", exclude=True)
    source_text: str = Field(default="", exclude=True, repr=False)

    @model_validator(mode="after")
    def _static_monitors_within_limit(self) -> Config:
        # Static monitors cannot be refused one by one at start: too many is a config error.
        if self.workers is not None and self.workers.visibility_timeout <= self.limits.command_timeout:
            raise ValueError(f"[workers] visibility_timeout ({self.workers.visibility_timeout:g} s) must be longer "
                             f"than [limits] command_timeout ({self.limits.command_timeout:g} s): work still "
                             "running would be handed to a second worker")
        if len(self.monitor) > self.limits.monitors_total:
            raise ValueError(f"{len(self.monitor)} [[monitor]] entries, more than [limits] monitors_total = "
                             f"{self.limits.monitors_total}")
        return self

    def line_of(self, needle: str) -> str:
        """'bot.toml line 12' for the first line holding `needle`, or just the file name."""
        for number, line in enumerate(self.source_text.splitlines(), 1):
            if needle in line:
                return f"{self.source} line {number}"
        return self.source


class ConfigError(UserError):
    pass


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from None
    config = parse_config(data, source=str(path))
    config.source, config.source_text = str(path), text
    return config


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    try:
        config = Config.model_validate(data)
        config.source = source
        return config
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"{p}: " for p in [".".join(str(p) for p in first["loc"])] if p)
        # a validator's own ValueError reads better without pydantic's "Value error, " prefix
        message = str(first["ctx"]["error"]) if first["type"] == "value_error" and "ctx" in first else first["msg"]
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{source}: {where}{message}{more}") from None
