"""Zones benchmark: `show running-config` on N lab devices (0.2 s device delay) run three
ways through the bot's runner: in the bot's process, on 1 zone worker, on 2 zone workers
(real `chatbot worker` processes, a real Redis broker with a password, signed messages).

For each run it prints:
- devices per second (wall time from the command to the merged Result);
- client CPU per device: the bot's process plus every worker's (the lab runs in a
  process of its own and is not counted; Redis is shown apart);
- the broker path's CPU per device: client CPU per device on workers, less the
  in-process figure of the same run (what sending, checking, signing, leases and merging
  add; target: under 2 ms);
- the bot's own CPU per device (with workers, it opens no session);
- each worker's peak resident memory (VmHWM).

The session cap is the same in every mode ([limits] workers, shared through Redis across
workers), so the modes differ only in where sessions run.

    .venv/bin/python bench/zones.py                    # 200 and 1000 devices
    .venv/bin/python bench/zones.py --devices 200 --modes here 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from fanout import PORT, lab_credentials, start_lab, stop, wait_until_idle  # noqa: E402

COMMAND = "show running-config"
TARGET_BROKER_CPU_PER_DEVICE = 0.002
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_inventory(directory: Path, devices: int, zone: str | None) -> Path:
    from chatbot.lab.model import device_host

    directory.mkdir(parents=True, exist_ok=True)
    data = {"zone": zone} if zone else {}
    hosts = {f"r{i + 1}": {"hostname": device_host(i), "port": PORT, "platform": "cisco_iosxe", "data": data}
             for i in range(devices)}
    (directory / "hosts.yaml").write_text(json.dumps(hosts))  # JSON is YAML
    (directory / "groups.yaml").write_text("{}")
    (directory / "defaults.yaml").write_text("{}")
    return directory


def config_data(inventory: Path, labdir: Path, workers: dict[str, Any] | None, sessions: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "bot": {"database": "sqlite://"},
        "inventory": {"path": str(inventory), "username": "admin", "password_env": "BENCH_LAB_PASSWORD",
                      "enable_secret_env": "BENCH_LAB_ENABLE", "known_hosts": str(labdir / "var/lab-known_hosts")},
        "limits": {"workers": sessions, "device_timeout": 60, "command_timeout": 600,
                   "commands_per_minute": 1_000_000},
        "show": {"allowed": {"default": [COMMAND]}},
    }
    if workers is not None:
        data["workers"] = workers
    return data


def run_command(bot: Any, devices: int) -> tuple[float, float, Any]:
    from chatbot.control import CancelFlag
    from chatbot.router import Invocation, parse_values

    # `show running-config` typed in chat is `show run` (one device, filters); the generic
    # `show` command (allowlisted here) sends it to many, as the router would have parsed it.
    cmd = bot.registry.commands["show"]
    raw = {"request": "running-config", "targets": "all"}
    args, names = parse_values(cmd, raw, bot.context)
    inv = Invocation(cmd, args, "show running-config on all", names, raw)
    assert len(inv.devices) == devices
    cpu0, t0 = own_cpu(), time.perf_counter()
    result = asyncio.run(bot.runner.run(inv, cancel=CancelFlag()))
    return time.perf_counter() - t0, own_cpu() - cpu0, result


def one_mode(mode: str, devices: int, labdir: Path, work: Path, redis: Any, signing: tuple[Path, Path, Path],
             sessions: int) -> dict[str, Any]:
    from zone_harness import WorkerProcess, write_toml

    from chatbot.app import build_bot
    from chatbot.config import parse_config

    zoned = mode != "here"
    inventory = write_inventory(work / f"inventory-{mode}-{devices}", devices, "z1" if zoned else None)
    workers_cfg = None
    if zoned:
        key, cert, trusted = signing
        workers_cfg = {"broker_url": f"redis://127.0.0.1:{redis.port}/0", "password_env": "BENCH_BROKER_PASSWORD",
                       "signing_key": str(key), "signing_certificate": str(cert), "certificate_store": str(trusted),
                       "chunk_size": 50, "concurrency": 4}
    data = config_data(inventory, labdir, workers_cfg, sessions)
    bot = build_bot(parse_config(data))
    procs: list[WorkerProcess] = []
    if zoned:
        config = write_toml(data, work / f"worker-{mode}-{devices}.toml")
        for i in range(int(mode)):
            proc = WorkerProcess("z1", config, {}, work / f"worker-{mode}-{devices}-{i}.log")
            procs.append(proc)
        for proc in procs:
            proc.wait_ready(bot.runner.zones.store)
        bot.runner.zones.app  # noqa: B018 (a running bot built its Celery app at its first zone command)
    try:
        worker_cpu0 = [proc_cpu(p.process.pid) for p in procs]
        redis_cpu0 = proc_cpu(redis.process.pid)
        wall, bot_cpu, result = run_command(bot, devices)
        worker_cpu = sum(proc_cpu(p.process.pid) - c for p, c in zip(procs, worker_cpu0, strict=True))
        redis_cpu = proc_cpu(redis.process.pid) - redis_cpu0
        memory = [peak_rss_mb(p.process.pid) for p in procs]
    finally:
        for proc in procs:
            proc.stop()
    failed = [d for d, outcome in result.devices.items() if outcome != "ok"]
    return {"mode": mode, "devices": devices, "wall": wall, "rate": devices / wall,
            "bot_cpu_per_device": bot_cpu / devices, "client_cpu_per_device": (bot_cpu + worker_cpu) / devices,
            "redis_cpu_per_device": redis_cpu / devices, "worker_peak_mb": memory, "failed": len(failed),
            "first_failure": result.devices[failed[0]] if failed else ""}


def label(mode: str) -> str:
    return {"here": "in-process"}.get(mode, f"{mode} worker{'s' if mode != '1' else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--modes", nargs="+", default=["here", "1", "2"], choices=["here", "1", "2"])
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--sessions", type=int, default=50, help="[limits] workers: the session cap in every mode")
    args = parser.parse_args()

    from redis_server import RedisServer
    from zone_harness import make_signing_pair

    with tempfile.TemporaryDirectory(prefix="netbot-zones-bench-") as tmp, RedisServer() as redis:
        work = Path(tmp)
        signing = make_signing_pair(work / "signing")
        os.environ["BENCH_BROKER_PASSWORD"] = redis.password
        for devices in args.devices:
            labdir = work / f"lab-{devices}"
            labdir.mkdir()
            lab = start_lab(devices, args.delay, labdir)
            try:
                password, enable = lab_credentials(labdir)
                os.environ["BENCH_LAB_PASSWORD"], os.environ["BENCH_LAB_ENABLE"] = password, enable
                rows = []
                for mode in args.modes:
                    wait_until_idle(lab.pid)
                    row = one_mode(mode, devices, labdir, work, redis, signing, args.sessions)
                    rows.append(row)
                    print(f"{devices:5d} devices {label(row['mode']):11s} {row['rate']:6.1f} devices/s "
                          f"wall={row['wall']:6.2f} s client cpu/device={row['client_cpu_per_device'] * 1000:5.2f} ms "
                          f"(bot {row['bot_cpu_per_device'] * 1000:5.2f} ms) redis cpu/device="
                          f"{row['redis_cpu_per_device'] * 1000:5.2f} ms worker peak="
                          f"{', '.join(f'{m:.0f} MB' for m in row['worker_peak_mb']) or '-'} failed={row['failed']}"
                          + (f" ({row['first_failure']})" if row["failed"] else ""), flush=True)
                here = next((r for r in rows if r["mode"] == "here"), None)
                if here is not None:
                    for row in rows:
                        if row["mode"] == "here":
                            continue
                        added = row["client_cpu_per_device"] - here["client_cpu_per_device"]
                        verdict = "within" if added < TARGET_BROKER_CPU_PER_DEVICE else "OVER"
                        print(f"{devices:5d} devices {label(row['mode']):11s} broker path adds "
                              f"{added * 1000:+.2f} ms CPU per device ({verdict} the "
                              f"{TARGET_BROKER_CPU_PER_DEVICE * 1000:.0f} ms target)", flush=True)
            finally:
                stop(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
