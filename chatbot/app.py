"""Assembling the bot from a config: inventory, task context, commands, core."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.access_config import build_policy
from chatbot.audit import AuditLog
from chatbot.bot import Bot, all_permissions
from chatbot.config import DEFAULT_CIPHERS, DEFAULT_KEX, ApicConfig, Config
from chatbot.context import TaskContext
from chatbot.errors import UserError
from chatbot.inventory import Credentials, DeviceInventory, build_nornir, read_inventory
from chatbot.jobs import JobRunner, JobStore
from chatbot.limits import DeviceGate
from chatbot.monitoring import MonitorService
from chatbot.plugins import load_check_kinds, load_registry
from chatbot.secrets import resolve_secret
from chatbot.store import make_engine

if TYPE_CHECKING:
    from nornir.core import Nornir

    from chatbot.hostkeys import HostKeyPolicy

log = logging.getLogger(__name__)


@dataclass
class LabAccess:
    """How the bot reaches a running lab: its inventory and credentials, in memory."""

    inventory: dict[str, Any]
    username: str
    password: str
    enable_secret: str
    apic_url: str
    apic_username: str
    apic_password: str
    # Where the lab published its host keys; the bot checks them strictly. None (a lab
    # that was never started): every key counts as unknown.
    known_hosts: Path | None = None
    # The lab APIC's self-signed certificate: the bot verifies HTTPS against it.
    apic_ca_file: Path | None = None


def host_key_policy(config: Config) -> HostKeyPolicy:
    from chatbot.hostkeys import DEFAULT_KNOWN_HOSTS, HostKeyMode, HostKeyPolicy

    inventory = config.inventory
    return HostKeyPolicy(HostKeyMode(inventory.host_keys),
                         (inventory.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser())


def scrapli_defaults(config: Config, policy: HostKeyPolicy | None = None) -> dict[str, Any]:
    """scrapli's connection options for every device. This imports scrapli and ssh2."""
    from chatbot.hostkeys import HostKeyMode
    from chatbot.ssh_transport import AlgorithmPreference, UnknownAlgorithm, scrapli_transport_extras

    limits = config.limits
    inventory = config.inventory
    policy = policy or host_key_policy(config)
    extras: dict[str, Any] = {
        "timeout_socket": limits.connect_timeout,
        "timeout_transport": limits.device_timeout,  # longest silence a device may keep
        "timeout_ops": limits.operation_timeout,
    }
    if inventory.transport == "ssh2":
        # libssh2 through our transport, which checks host keys as OpenSSH does (chatbot/ssh_transport.py).
        algorithms = AlgorithmPreference(tuple(inventory.kex_algorithms), tuple(inventory.ciphers))
        try:
            extras.update(scrapli_transport_extras(policy, limits.operation_timeout, algorithms))
        except UnknownAlgorithm as exc:
            raise UserError(str(exc)) from None
    else:  # another scrapli transport checks keys itself; it knows "strict" and "off" only
        extras["transport"] = inventory.transport
        extras["auth_strict_key"] = policy.mode is HostKeyMode.STRICT
        extras["ssh_known_hosts_file"] = str(policy.known_hosts)
    return extras


def _check_chosen_algorithms(config: Config) -> None:
    """An algorithm list someone wrote is checked at start, so a typo is one line now and not
    a failure on every device later. The defaults are known to libssh2: checking them would
    load scrapli and ssh2 before the first device command, which start-up avoids (20 MiB)."""
    inventory = config.inventory
    chosen = (tuple(inventory.kex_algorithms), tuple(inventory.ciphers))
    if inventory.transport != "ssh2" or chosen == (DEFAULT_KEX, DEFAULT_CIPHERS):
        return
    from chatbot.ssh_transport import AlgorithmPreference, UnknownAlgorithm

    try:
        AlgorithmPreference(*chosen).check()
    except UnknownAlgorithm as exc:
        raise UserError(str(exc)) from None


def build_context(config: Config, lab: LabAccess | None = None) -> TaskContext:
    """The task context. Secrets and the inventory are read now, so a bad one stops the
    start; Nornir (and scrapli, ssh2) is built when a command first reaches a device."""
    workers = config.limits.workers
    if config.inventory.strict_host_keys is not None:
        log.warning("[inventory] strict_host_keys is deprecated: write host_keys = \"%s\"", config.inventory.host_keys)
    _check_chosen_algorithms(config)
    if lab is not None:
        data = lab.inventory
        lab_creds = Credentials(lab.username, lab.password, lab.enable_secret)
        known_hosts = lab.known_hosts or Path(os.devnull)

        def open_nornir() -> Nornir:
            from chatbot.hostkeys import HostKeyMode, HostKeyPolicy

            # The lab publishes its host keys: the bot checks them as strictly as a real device's.
            extras = scrapli_defaults(config, HostKeyPolicy(HostKeyMode.STRICT, known_hosts))
            nr = build_nornir(data=data, workers=workers, scrapli_extras=extras, credentials=lab_creds)
            # The lab's inventory disables key checks for other clients; not for the bot.
            scrapli_options = nr.inventory.defaults.connection_options["scrapli"]
            scrapli_options.extras = {**(scrapli_options.extras or {}), **extras}
            return nr

        config.apic.setdefault("apic1", ApicConfig(
            url=lab.apic_url, username=lab.apic_username, password=lab.apic_password,
            verify_tls=str(lab.apic_ca_file) if lab.apic_ca_file else True))
    else:
        if config.inventory.path is None:
            raise UserError("no inventory: set [inventory] path = \"inventory/\" (or lab = true)")
        section = config.inventory.extras()
        creds = Credentials(
            username=config.inventory.username,
            password=resolve_secret(section, "password", "inventory"),
            enable_secret=resolve_secret(section, "enable_secret", "inventory"),
        )
        path = Path(config.inventory.path)
        if not (path / "hosts.yaml").is_file():
            raise UserError(f"[inventory] path: {path}/hosts.yaml not found")
        data = read_inventory(path)

        def open_nornir() -> Nornir:
            return build_nornir(data=data, workers=workers, scrapli_extras=scrapli_defaults(config), credentials=creds)

    gate = DeviceGate(per_device=config.limits.sessions_per_device, total=workers)
    return TaskContext(inventory=DeviceInventory.deferred(data, open_nornir), config=config,
                       lab_mode=lab is not None, gate=gate)


def build_bot(config: Config, lab: LabAccess | None = None, *, audit: AuditLog | None = None) -> Bot:
    """The whole core. The audit log is the config's database unless one is given."""
    registry = load_registry()
    context = build_context(config, lab)
    permissions = all_permissions(registry)
    policy = build_policy(config, permissions, context.inventory)
    if audit is None:
        audit = open_audit(config)
    jobs = JobRunner(max_running_per_user=config.limits.running_jobs_per_user,
                     rate_per_minute=config.limits.commands_per_minute, store=JobStore(audit.engine))
    bot = Bot(registry, context, policy, audit, jobs)
    bot.monitors = MonitorService(context, audit.engine, load_check_kinds(), bot.runner.executor,
                                  min_interval=config.limits.monitor_min_interval,
                                  max_per_person=config.limits.monitors_per_person,
                                  max_total=config.limits.monitors_total)
    return bot


def open_audit(config: Config) -> AuditLog:
    audit = AuditLog(make_engine(config.bot.database))
    pruned = audit.prune(config.audit.retention_days)
    if pruned:
        log.info("audit: pruned %d rows older than %d days", pruned, config.audit.retention_days)
    return audit
