"""Fan-out benchmark: `show running-config` on N lab devices through the bot's device path
(Nornir + nornir-scrapli, one session per device, closed after use).

The lab runs in its own process so the figures are the client's alone:
wall time, client CPU seconds per device (this process and its children, e.g. the
`ssh` processes of the system transport), peak memory, failures.

    .venv/bin/python bench/fanout.py --devices 50 200 --delay 0.2 --transport ssh2 system
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chatbot.config import parse_config  # noqa: E402
from chatbot.context import TaskContext  # noqa: E402
from chatbot.inventory import Credentials, DeviceInventory, build_nornir  # noqa: E402
from chatbot.lab.model import device_host  # noqa: E402
from chatbot.limits import DeviceGate  # noqa: E402
from tasks._device import run_on_devices  # noqa: E402

PORT = 2299


def start_lab(devices: int, delay: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "lab", "--devices", str(devices), "--delay", str(delay),
         "--port", str(PORT), "--apic-port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the lab prints its banner once every device listens
        if b"credentials in" in line:
            return proc
    raise RuntimeError("the lab did not start")


def inventory(devices: int) -> dict:
    hosts = {}
    for i in range(devices):
        hosts[f"r{i + 1}"] = {"hostname": device_host(i), "port": PORT, "platform": "cisco_iosxe"}
    return {"hosts": hosts}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def run_once(devices: int, transport: str, workers: int) -> None:
    secrets = REPO / "var" / "lab-secrets"
    config = parse_config({"limits": {"workers": workers, "device_timeout": 60}})
    nr = build_nornir(
        data=inventory(devices), workers=workers,
        credentials=Credentials("admin", (secrets / "password").read_text().strip(),
                                (secrets / "enable_secret").read_text().strip()),
        scrapli_extras={"transport": transport, "auth_strict_key": False, "timeout_ops": 60,
                        "timeout_socket": 30, "timeout_transport": 60},
    )
    ctx = TaskContext(DeviceInventory(nr), config, gate=DeviceGate(1, workers))
    names = list(ctx.inventory.devices)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    outputs = run_on_devices(ctx, names, "show running-config")
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    failures = [o for o in outputs if not o.ok]
    print(f"{transport:8} devices={devices:5} workers={workers:4} wall={wall:7.2f}s "
          f"cpu/device={cpu / devices:.4f}s peak_rss={peak_mb():7.1f}MB failures={len(failures)}"
          + (f" e.g. {failures[0].device}: {failures[0].error}" if failures else ""), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, nargs="+", default=[50])
    p.add_argument("--delay", type=float, default=0.2)
    p.add_argument("--transport", nargs="+", default=["ssh2"])
    p.add_argument("--workers", type=int, default=100)
    args = p.parse_args()
    for n in args.devices:
        lab = start_lab(n, args.delay)
        try:
            for transport in args.transport:
                # one process per run so peak memory is per run, not cumulative
                subprocess.run([sys.executable, __file__, "--one", str(n), transport, str(args.workers)],
                               check=False)
        finally:
            lab.send_signal(signal.SIGINT)
            lab.wait(30)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        run_once(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main()
