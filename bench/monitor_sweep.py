"""Monitoring sweep benchmark: ICMP reachability of N loopback addresses per cycle with
tasks._icmp.ping_many, several cycles. Prints per-cycle wall seconds and CPU, the median,
and the socket kind used. Target: under 2 s per cycle for 5,000 addresses.

Only 127.0.0.0/8 is ever probed (the lab's device addresses, 127.0.{1+i//250}.{1+i%250}).

    .venv/bin/python bench/monitor_sweep.py                      # 5,000 addresses, 5 cycles
    .venv/bin/python bench/monitor_sweep.py --compare            # and icmplib.async_multiping
    sudo .venv/bin/python bench/monitor_sweep.py --private-netns # the unprivileged path

Which socket is used depends on the host: unprivileged ICMP ("ping") sockets where
net.ipv4.ping_group_range includes the bot's group, else raw sockets with CAP_NET_RAW.
`--private-netns` (root, Linux) re-runs the benchmark in a network namespace of its own,
with only `lo`, and sets ping_group_range there so both paths can be measured on one
machine without touching the host's sysctls. On a real host, allowing ping sockets is:

    sysctl -w net.ipv4.ping_group_range="0 2147483647"    # or the bot's gid only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import tasks._icmp as icmp  # noqa: E402
from chatbot.lab.model import device_host  # noqa: E402


def addresses(n: int) -> list[str]:
    return [device_host(i) for i in range(n)]


def socket_kind() -> str:
    probe = icmp._open_socket(4, 1)
    if isinstance(probe, str):
        return f"none ({probe})"
    probe.close()
    return "raw (CAP_NET_RAW, kernel-filtered)" if probe.privileged else "unprivileged ping socket"


async def ours(targets: list[str], count: int, timeout: float, concurrency: int) -> int:
    results = await icmp.ping_many(targets, count=count, timeout=timeout, concurrency=concurrency)
    return sum(r.alive for r in results.values())


async def icmplib_multiping(targets: list[str], count: int, timeout: float, concurrency: int) -> int:
    from icmplib import ICMPv4Socket, async_multiping
    from icmplib.exceptions import SocketPermissionError

    try:  # the same preference as ping_many: ping sockets where allowed, else raw
        ICMPv4Socket(privileged=False).close()
        privileged = False
    except SocketPermissionError:
        privileged = True
    hosts = await async_multiping(targets, count=count, interval=0, timeout=timeout,
                                  concurrent_tasks=concurrency, privileged=privileged)
    return sum(h.is_alive for h in hosts)


def run(name: str, sweep, targets: list[str], args: argparse.Namespace) -> float:
    walls, cpus = [], []
    for cycle in range(1, args.cycles + 1):
        cpu0, t0 = time.process_time(), time.perf_counter()
        alive = asyncio.run(sweep(targets, args.count, args.timeout, args.concurrency))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        walls.append(wall)
        cpus.append(cpu)
        print(f"  {name:18} cycle {cycle}: {wall:6.3f} s wall, {cpu:6.3f} s CPU, "
              f"{alive}/{len(targets)} alive", flush=True)
        if args.every and cycle < args.cycles:
            time.sleep(max(0.0, args.every - wall))
    median = statistics.median(walls)
    verdict = "meets" if median < args.target else "MISSES"
    print(f"  {name:18} median {median:.3f} s wall (max {max(walls):.3f}), median CPU "
          f"{statistics.median(cpus):.3f} s; {verdict} the {args.target:g} s target", flush=True)
    return median


def in_private_netns() -> None:
    """Re-run this script in a private network namespace with ping sockets allowed there."""
    argv = [a for a in sys.argv[1:] if a != "--private-netns"]
    inner = shlex.join([sys.executable, str(Path(__file__).resolve()), *argv])
    script = ("ip link set lo up && echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range "
              f"&& exec {inner}")
    print("private network namespace (only lo), net.ipv4.ping_group_range='0 2147483647' there")
    sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", script]).returncode)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addresses", type=int, default=5000)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--every", type=float, default=0.0,
                   help="seconds from one cycle's start to the next (0: back to back)")
    p.add_argument("--target", type=float, default=2.0)
    p.add_argument("--compare", action="store_true", help="also time icmplib.async_multiping (one socket per address)")
    p.add_argument("--private-netns", action="store_true",
                   help="run in a private netns where ping sockets are allowed (root)")
    args = p.parse_args()
    if args.private_netns:
        if os.geteuid() != 0:
            raise SystemExit("--private-netns needs root (unshare -n)")
        in_private_netns()
    targets = addresses(args.addresses)
    print(f"{len(targets)} loopback addresses ({targets[0]} .. {targets[-1]}), count={args.count}, "
          f"timeout={args.timeout:g} s, concurrency={args.concurrency}, {os.cpu_count()} CPUs; "
          f"socket: {socket_kind()}", flush=True)
    run("ping_many", ours, targets, args)
    if args.compare:
        run("async_multiping", icmplib_multiping, targets, args)


if __name__ == "__main__":
    main()
