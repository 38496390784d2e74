"""The `chatbot` command: shell, lab, run, check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.config import LOG_LEVELS, Config, load_config
from chatbot.errors import UserError
from chatbot.wording import plural

if TYPE_CHECKING:
    from chatbot.app import LabAccess
    from chatbot.context import ApicEndpoint

log = logging.getLogger("chatbot")
LOG_LEVEL_ENV = "CHATBOT_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "WARNING"
LAB_SECRETS_DIR = Path("var/lab-secrets")
LAB_KNOWN_HOSTS = Path("var/lab-known_hosts")  # rewritten at every lab start: its keys are new each time
LAB_APIC_CA = Path("var/lab-apic-ca.pem")  # the lab APIC's self-signed certificate, new at every start


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        # Until a command has read its config, the level is the flag's or the environment's.
        logging.basicConfig(level=log_level(args.log_level, os.environ.get(LOG_LEVEL_ENV)),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        # Nornir and scrapli log every session at INFO; that is noise in a terminal chat.
        for noisy in ("scrapli", "asyncssh", "aiohttp.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"chatbot: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def log_level(flag: str | None, env: str | None, configured: str | None = None) -> str:
    """The log level: --log-level, else CHATBOT_LOG_LEVEL, else [bot] log_level, else WARNING."""
    if flag is not None:
        return flag
    if env:
        level = env.strip().upper()
        if level not in LOG_LEVELS:
            raise UserError(f"{LOG_LEVEL_ENV}={env}: use one of {', '.join(LOG_LEVELS)}")
        return level
    return configured or DEFAULT_LOG_LEVEL


def _level_name(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"use one of {', '.join(LOG_LEVELS)}")
    return level


def _load_config(args: argparse.Namespace) -> Config:
    """The command's config file, whose [bot] log_level applies from now on."""
    config = load_config(args.config)
    logging.getLogger().setLevel(log_level(args.log_level, os.environ.get(LOG_LEVEL_ENV), config.bot.log_level))
    return config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatbot", description="Network ChatOps bot")
    p.add_argument("--log-level", type=_level_name, metavar="LEVEL",
                   help=f"DEBUG, INFO, WARNING, ERROR or CRITICAL; wins over {LOG_LEVEL_ENV} and the "
                        f"config's [bot] log_level (default {DEFAULT_LOG_LEVEL})")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    shell = sub.add_parser("shell", help="chat with the bot in this terminal")
    shell.add_argument("--config", type=Path, help="config file (TOML)")
    shell.add_argument("--lab", action="store_true", help="start the built-in simulated network and use it")
    _lab_options(shell)
    shell.set_defaults(func=cmd_shell)

    lab = sub.add_parser("lab", help="run the simulated network alone, for a bot started separately")
    _lab_options(lab)
    lab.add_argument("--port", type=int, default=2222, help="SSH port on every device address (default 2222)")
    lab.add_argument("--apic-port", type=int, default=8443, help="APIC HTTPS port on 127.0.0.1 (default 8443)")
    lab.set_defaults(func=cmd_lab)

    run = sub.add_parser("run", help="connect to the configured chat platforms and serve")
    run.add_argument("--config", type=Path, required=True)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate config and inventory, log in to every device, reach each "
                                          "APIC and chat server; one line per problem, exit 1 on any")
    check.add_argument("--config", type=Path, required=True)
    check.add_argument("--offline", action="store_true", help="only validate the files: contact nothing")
    check.add_argument("--devices", metavar="TARGETS", help="log in to these devices only (r1,r2, group:core, site:hq)")
    check.set_defaults(func=cmd_check)

    trust = sub.add_parser("trust", help="fetch devices' SSH host keys (like ssh-keyscan) and add them "
                                          "to the known-hosts file")
    trust.add_argument("targets", help="r1 | r1,r2 | group:core | site:hq | all")
    trust.add_argument("--config", type=Path, required=True)
    trust.add_argument("--replace", action="store_true",
                       help="replace a device's known key that changed (only once you know why it changed)")
    trust.set_defaults(func=cmd_trust)

    worker = sub.add_parser("worker", help="run a zone's worker: take that zone's device work from the "
                                            "broker ([workers]) and run it inside the zone")
    worker.add_argument("--zone", required=True, help="the zone whose queue this worker serves")
    worker.add_argument("--config", type=Path, required=True, help="the worker's own config (TOML)")
    worker.set_defaults(func=cmd_worker)

    audit = sub.add_parser("audit", help="read the audit log")
    audit.add_argument("--config", type=Path, required=True)
    audit.add_argument("--since", help="a duration back from now (30m, 24h, 7d) or a date (2026-11-01)")
    audit.add_argument("--user", help="a person, or an account such as matrix:@alice:corp")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=cmd_audit)
    return p


def _lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=3, help="number of simulated devices (default 3)")
    p.add_argument("--delay", type=float, default=0.05, help="seconds each device takes per command")
    p.add_argument("--fault", action="append", default=[], metavar="DEVICE=KIND",
                   help="inject a fault: down, slow, auth, hang or disconnect (repeatable)")


def _faults(specs: list[str]) -> list[tuple[str, str]]:
    from chatbot.lab import Fault

    kinds = {f.value for f in Fault}
    out = []
    for spec in specs:
        name, _, kind = spec.partition("=")
        if kind not in kinds:
            raise UserError(f"--fault {spec}: use DEVICE=KIND with KIND one of {', '.join(sorted(kinds))}")
        out.append((name, kind))
    return out


def cmd_shell(args: argparse.Namespace) -> int:
    from adapters.console import ConsoleChat, history_path
    from chatbot.app import build_bot

    config = _load_config(args) if args.config else Config()
    if not (args.lab or config.inventory.lab):
        if args.config is None:
            raise UserError("give --lab for the built-in lab, or --config FILE for your inventory")
        return asyncio.run(ConsoleChat(build_bot(config), history_file=history_path()).run())

    lab_thread, lab = _start_lab(args.devices, args.delay, _faults(args.fault))
    try:
        bot = build_bot(config, lab_access(lab))
        return asyncio.run(ConsoleChat(bot, history_file=history_path()).run())
    finally:
        lab_thread.stop()


def _start_lab(devices: int, delay: float, faults: list[tuple[str, str]]) -> tuple[Any, Any]:
    """The simulated network in a thread of this process: (the LabThread, its Lab)."""
    from chatbot.lab import Fault, LabThread
    from chatbot.lab.apic import APIC_NAME

    try:  # a bad device count, too few file handles: one line, not a traceback
        lab_thread = LabThread(devices=devices, delay=delay)
        lab = lab_thread.start()
    except (ValueError, OSError) as err:
        raise UserError(f"lab: {err}") from None
    names = [*lab.devices, APIC_NAME]
    for name, kind in faults:
        if name not in names:
            lab_thread.stop()
            raise UserError(f"--fault {name}={kind}: the lab has no device {name} "
                            f"(it has {names[0]}-{names[-2]} and {APIC_NAME})")
        lab.set_fault(name, Fault(kind))
    return lab_thread, lab


def lab_access(lab: object) -> LabAccess:
    from chatbot.app import LabAccess

    return LabAccess(
        inventory=lab.nornir_inventory(),  # type: ignore[attr-defined]
        username=lab.username,  # type: ignore[attr-defined]
        password=lab.password,  # type: ignore[attr-defined]
        enable_secret=lab.enable_secret,  # type: ignore[attr-defined]
        apic_url=lab.apic.url,  # type: ignore[attr-defined]
        apic_username=lab.apic.username,  # type: ignore[attr-defined]
        apic_password=lab.apic.password,  # type: ignore[attr-defined]
        known_hosts=lab.known_hosts,  # type: ignore[attr-defined]
        apic_ca_file=lab.apic.ca_file,  # type: ignore[attr-defined]
    )


def cmd_lab(args: argparse.Namespace) -> int:
    from chatbot.lab import Fault, Lab

    faults = _faults(args.fault)
    secrets = _lab_secrets()
    try:
        lab = Lab(devices=args.devices, delay=args.delay, port=args.port, apic_port=args.apic_port,
                  password=secrets["password"], enable_secret=secrets["enable_secret"],
                  known_hosts=LAB_KNOWN_HOSTS, apic_ca_file=LAB_APIC_CA)
    except ValueError as err:
        raise UserError(f"lab: {err}") from None
    lab.apic.password = secrets["apic_password"]

    async def serve() -> None:
        try:
            await lab.start()
        except (ValueError, OSError) as err:  # too few file handles, a port in use
            raise UserError(f"lab: {err}") from None
        try:
            for name, kind in faults:
                lab.set_fault(name, Fault(kind))
            first = list(lab.devices.values())[:3]
            print(f"lab: {len(lab.devices)} devices: " + ", ".join(f"{d.name} {d.host}:{d.port}" for d in first)
                  + (", ..." if len(lab.devices) > 3 else ""))
            print(f"lab: APIC apic1 at {lab.apic.url} (self-signed certificate in {LAB_APIC_CA})")
            print(f"lab: credentials in {LAB_SECRETS_DIR}/ (user {lab.username}), host keys in {LAB_KNOWN_HOSTS}; "
                  "a bot uses them with: chatbot shell --config deploy/lab.toml. Ctrl-C stops.", flush=True)
            await asyncio.Event().wait()
        finally:
            await lab.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def _lab_secrets() -> dict[str, str]:
    """Lab credentials live in files a config can point at, so none is printed or committed."""
    import secrets as random

    LAB_SECRETS_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(LAB_SECRETS_DIR, 0o700)
    values = {}
    for name in ("password", "enable_secret", "apic_password"):
        path = LAB_SECRETS_DIR / name
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(random.token_urlsafe(12), encoding="utf-8")
        values[name] = path.read_text(encoding="utf-8").strip()
    return values


def cmd_run(args: argparse.Namespace) -> int:
    from adapters.registry import configured, section_names

    config = _load_config(args)
    platforms = [platform.name for platform in configured(config)]
    if not platforms:
        raise UserError(f"{args.config}: no chat platform configured: add {section_names()}; "
                        f"to chat in this terminal use: chatbot shell --config {args.config}")
    if not config.inventory.lab:
        return asyncio.run(serve(config))
    # A chat platform can be tried with no network: the lab runs in this process.
    lab_thread, lab = _start_lab(devices=3, delay=0.05, faults=[])
    try:
        log.warning("[inventory] lab = true: %s answer from the built-in simulated network (%s on loopback), "
                    "not a real one", " and ".join(platforms), ", ".join(lab.devices))
        return asyncio.run(serve(config, lab_access(lab)))
    finally:
        lab_thread.stop()


async def serve(config: Config, lab: LabAccess | None = None) -> int:
    """Every configured chat adapter on one core, until SIGINT or SIGTERM."""
    import signal

    from adapters.bridges import BridgeResolver
    from adapters.registry import configured
    from chatbot.app import build_bot
    from chatbot.audit import AuditLog
    from chatbot.state import ChatState
    from chatbot.store import make_engine

    engine = make_engine(config.bot.database)
    bot = build_bot(config, lab, audit=AuditLog(engine))
    bridges = BridgeResolver(config.bridges)
    state = ChatState(engine)
    # Claims only guard against replays, which come within minutes: keep them as long as the audit.
    await asyncio.to_thread(state.forget_older_than, config.audit.retention_days)
    adapters = [p.adapter(bot, p.load_config(config), state, bridges) for p in configured(config)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bot.start()  # the monitor schedule
    runs = [asyncio.create_task(a.run()) for a in adapters]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*runs, stopper], return_when=asyncio.FIRST_COMPLETED)
    for adapter in adapters:
        await adapter.stop()
    await bot.stop()
    for task in runs:
        task.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    for finished in done:
        if finished is not stopper and (err := finished.exception()) is not None:
            raise err
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from chatbot.app import build_bot
    from chatbot.preflight import device_problems

    config = _load_config(args)
    if config.inventory.lab:
        raise UserError("[inventory] lab = true: nothing to check; use chatbot shell --lab")
    bot = build_bot(config)  # inventory, secrets, access policy and database, as `run` would
    from adapters.bridges import BridgeResolver

    BridgeResolver(config.bridges)  # bridge patterns and relay formats
    chat = _chat_configs(config)
    ctx = bot.context
    endpoints = [ctx.apic(name) for name in ctx.apic_names()]  # a missing secret is an error here
    devices = ctx.inventory.resolve(args.devices) if args.devices else list(ctx.inventory.devices)
    grants = "no [access] section: only the local terminal may run commands" if config.access is None \
        else plural(len(bot.policy.grants), "grant")
    print(f"config ok: {plural(len(ctx.inventory.devices), 'device')}, {plural(len(ctx.inventory.groups()), 'group')}, "
          f"{len(ctx.apic_names())} APIC, {plural(len(list(bot.registry)), 'command')}, {grants}", flush=True)
    problems = [f"device {name}: {line}" for name, line in
                device_problems(ctx, devices, offline=args.offline).items()]
    if not args.offline:
        problems += [line for e in endpoints if (line := _apic_problem(e))]
        problems += [f"{platform}: {line}" for platform, probe in chat if (line := probe())]
    for line in problems:
        print(line)
    if problems:
        print(f"{plural(len(problems), 'problem')} found")
        return 1
    what = "offline: config and inventory only" if args.offline else (
        f"{plural(len(devices), 'device')} logged in, {len(endpoints)} APIC and "
        f"{plural(len(chat), 'chat server')} reached")
    print(f"all checks passed ({what})")
    return 0


def _chat_configs(config: Config) -> list[tuple[str, Callable[[], str | None]]]:
    """Each configured chat platform, its settings validated and its secrets read now,
    with its reachability probe."""
    import functools

    from adapters.registry import configured

    probes: list[tuple[str, Callable[[], str | None]]] = []
    for platform in configured(config):
        settings = platform.load_config(config)
        platform.read_secrets(settings)
        probes.append((platform.name, functools.partial(platform.problem, settings)))
    return probes


def _apic_problem(endpoint: ApicEndpoint) -> str | None:
    """Log in and read the fabric health, as `!apic health` does; then log out.
    The line names the APIC ("APIC fabric1 rejected the login: ...")."""
    from chatbot.errors import TaskFailure
    from tasks._apic_client import ApicClient

    client = ApicClient(endpoint)
    try:
        client.get_class("fabricHealthTotal")
    except TaskFailure as err:
        return str(err)
    finally:
        client.logout()
    return None


def cmd_trust(args: argparse.Namespace) -> int:
    from asyncssh.public_key import decode_ssh_public_key

    from chatbot.app import build_context, host_key_policy
    from chatbot.device_failures import describe_failure
    from chatbot.hostkeys import (
        HostKeyChanged,
        HostKeyError,
        fingerprint,
        known_entry_name,
        preferred_algorithms,
        trust_host_key,
    )
    from chatbot.ssh_transport import scan_host_key

    config = _load_config(args)
    ctx = build_context(config)
    path = host_key_policy(config).known_hosts
    failed = 0
    for name in ctx.inventory.resolve(args.targets):
        info = ctx.inventory.devices[name]
        port = info.port or 22
        try:
            addr, blob = scan_host_key(info.address, port, config.limits.connect_timeout,
                                       preferred_algorithms(path, info.address, info.address, port))
            shown = fingerprint(decode_ssh_public_key(blob))
            done = trust_host_key(path, info.address, addr, port, blob, replace=args.replace)
        except HostKeyChanged as err:
            failed += 1
            print(f"{name}: host key changed: the device shows {err.fingerprint}, {path} has another key "
                  f"for {known_entry_name(info.address, port)}; kept (add --replace once you know why)")
            continue
        except HostKeyError as err:
            failed += 1
            print(f"{name}: {err.problem}: {err.fingerprint} (see {path}); not added")
            continue
        except Exception as err:  # any session failure: one classified line per device
            failed += 1
            print(f"{name}: {describe_failure(err, name, config.limits.connect_timeout)}")
            continue
        print(f"{name}: {shown} {done} ({known_entry_name(info.address, port)} in {path})")
    return 1 if failed else 0


def cmd_worker(args: argparse.Namespace) -> int:
    from chatbot.zones.worker import run_worker

    config = _load_config(args)
    return run_worker(config, args.zone, log_level=logging.getLevelName(logging.getLogger().level))


def cmd_audit(args: argparse.Namespace) -> int:
    import json

    from chatbot.audit import AuditLog
    from chatbot.store import make_engine

    config = _load_config(args)
    audit = AuditLog(make_engine(config.bot.database))
    rows = audit.recent(args.limit, since=_since(args.since) if args.since else None, user=args.user)
    for row in rows:
        if args.json:
            print(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}))
        else:
            at = row["at"].strftime("%Y-%m-%d %H:%M:%S")
            fields = [at, row["request_id"], row["kind"], row["user"], f"{row['platform']}:{row['room']}",
                      row["command"] or row["arguments"] or "", row["decision"] or "", row["device"] or "",
                      row["outcome"] or ""]
            print("  ".join(f for f in fields if f))
    return 0


def _since(text: str) -> datetime:
    from datetime import timedelta

    from chatbot.durations import parse_duration
    from chatbot.errors import ArgumentError

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text, unit_required=True))
    except ArgumentError:
        pass  # not a duration: a date, then
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since {text}: use 30m, 24h, 7d or a date such as 2026-11-01") from None
    return day if day.tzinfo else day.replace(tzinfo=UTC)
