"""Fan-out benchmark: `show running-config` on N lab devices, each answering after a
device delay, through the bot's device path and, in the same run, two baselines a
network engineer would write by hand.

Paths:
- bot:     chatbot.device_work.run_on_devices, as the bot runs it: Nornir + nornir-scrapli on
           the bot's transport (chatbot.ssh_transport: in-process libssh2, host keys checked
           strictly against the lab's known-hosts file), one session per device, each
           closed as soon as its output is read.
- bot-old: the same, with the code of another checkout (--old-code DIR), for a before and
           after in one run against the same lab.
- asyncssh: the lightest peer, a plain asyncio + asyncssh client written by hand: the same
           strict host-key check, an interactive shell, `enable`, the command, read up to
           the prompt, close; at most --workers sessions at once. The lab does not page,
           so it sends nothing else. asyncssh's defaults otherwise (chacha20-poly1305,
           keyboard-interactive before password).
- asyncssh-tuned: the same client offering the bot's cheap algorithms first and logging
           in by password: the floor, for the record.
- scrapli: plain Nornir + nornir-scrapli on its default transport (`system`: one OpenSSH
           process per device), the naive way: `nr.run(task=send_command, ...)`, then
           `nr.close_connections()` once at the end.
- netmiko: plain Nornir + nornir-netmiko (paramiko), the same naive way. Needs
           `pip install nornir-netmiko`; skipped with that hint when it is absent.

The lab runs in its own process (it raises its own file-descriptor limit), started once
per device count; each path runs in a fresh process of its own, so the figures are the
client's alone and peak memory is per run:
- wall time from the first session to the last output (the naive paths: to the end of
  close_connections());
- client CPU per device: this process and its children (the `ssh` processes of the
  system transport), less the memory sampler's own thread;
- peak memory: the largest SUM of the resident sizes of the process and all its
  descendants, sampled every --sample seconds (RUSAGE_CHILDREN's maxrss would give only
  the largest single child); resident pages shared between processes count once per
  process, as top shows them;
- failures: devices without their running config;
- device CPU per session: the lab process's CPU (/proc/PID/stat) from the start of the
  run until the lab is idle again after it, divided by the sessions: what the bot's
  sessions cost the devices, against the plain asyncssh client's.

    .venv/bin/python bench/fanout.py                                    # 50 200 500 1000, all paths
    .venv/bin/python bench/fanout.py --devices 200 1000 --paths bot asyncssh

Targets for the bot's path: at most 0.015 s of client CPU per device and within 1.3x of
the plain asyncssh client's in the same run, device CPU per session within 1.2x of what
that client's sessions cost, at most 150 MB peak at 1,000 devices, no failure. Each run
is killed after --run-timeout seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The netbot code a run imports: this checkout, or (path "bot-old", --old-code DIR)
# another one, such as the commit before a change, measured in the same run.
OLD_CODE_ENV = "NETBOT_FANOUT_CODE"
sys.path.insert(0, os.environ.get(OLD_CODE_ENV) or str(REPO))

PORT = 2299  # --port: the lab's devices all listen on it, each on its own 127.0.x.y
COMMAND = "show running-config"
PATHS = ("bot", "bot-old", "asyncssh", "asyncssh-tuned", "scrapli", "netmiko")
TARGET_CPU_PER_DEVICE = 0.015
TARGET_PEAK_MB_AT_1000 = 150.0
# The bot's path against the plain asyncssh client, same lab, same run.
TARGET_CLIENT_CPU_RATIO = 1.3
TARGET_DEVICE_CPU_RATIO = 1.2


# --- the lab, in its own process -------------------------------------------------------------

def start_lab(devices: int, delay: float, workdir: Path, timeout: float = 300) -> subprocess.Popen[bytes]:
    """`chatbot lab` in a private working directory, so its credential files are ours."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "lab", "--devices", str(devices), "--delay", str(delay),
         "--port", str(PORT), "--apic-port", "0"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:  # the lab prints its banner once every device listens
        if b"credentials in" in line:
            return proc
        if time.monotonic() > deadline:
            break
    stop(proc)
    raise RuntimeError("the lab did not start")


def stop(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, limit: float = 60, quiet: float = 0.05) -> None:
    """Let the lab finish tearing down the last run's sessions (a naive baseline closes
    hundreds at once) so the next run does not pay for them."""

    def cpu() -> float:
        return process_cpu(pid)

    deadline = time.monotonic() + limit
    try:
        before = cpu()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu()
            if now - before < quiet * 0.5:
                return
            before = now
    except OSError:
        return


def lab_credentials(workdir: Path) -> tuple[str, str]:
    secrets = workdir / "var" / "lab-secrets"
    return (secrets / "password").read_text().strip(), (secrets / "enable_secret").read_text().strip()


def lab_known_hosts(workdir: Path) -> Path:
    from chatbot.cli import LAB_KNOWN_HOSTS

    return workdir / LAB_KNOWN_HOSTS


def hosts(devices: int, **extra: Any) -> dict[str, Any]:
    from chatbot.lab.model import device_host

    return {f"r{i + 1}": {"hostname": device_host(i), "port": PORT, **extra} for i in range(devices)}


# --- measuring ----------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss() -> tuple[int, int]:
    """(bytes resident in this process and all its descendants, number of descendants)."""
    try:
        import psutil
    except ImportError:
        kids = _descendants(os.getpid())
        return _rss(os.getpid()) + sum(_rss(k) for k in kids), len(kids)
    me = psutil.Process()
    total, kids = me.memory_info().rss, me.children(recursive=True)
    for kid in kids:
        try:
            total += kid.memory_info().rss
        except psutil.Error:
            pass
    return total, len(kids)


class MemorySampler(threading.Thread):
    """Peak of the summed RSS of the process tree; its own CPU is kept apart."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.peak = 0
        self.peak_children = 0
        self.cpu = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            total, kids = tree_rss()
            if total > self.peak:
                self.peak, self.peak_children = total, kids
            self.cpu = time.thread_time()
            if self._halt.wait(self.interval):
                break
        total, kids = tree_rss()
        if total > self.peak:
            self.peak, self.peak_children = total, kids
        self.cpu = time.thread_time()

    def finish(self) -> None:
        self._halt.set()
        self.join()


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def reap_children() -> None:
    """Collect exited children the transport did not wait for, so their CPU is counted."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --- the paths ----------------------------------------------------------------------------------

def prepare_bot(devices: int, workers: int, password: str, enable: str, transport: str,
                known_hosts: Path):  # type: ignore[no-untyped-def]
    from chatbot.app import scrapli_defaults
    from chatbot.config import parse_config
    from chatbot.context import TaskContext
    from chatbot.device_work import run_on_devices
    from chatbot.hostkeys import HostKeyMode, HostKeyPolicy
    from chatbot.inventory import Credentials, DeviceInventory, build_nornir
    from chatbot.limits import DeviceGate

    config = parse_config({"inventory": {"transport": transport},
                           "limits": {"workers": min(workers, 500), "device_timeout": 60, "connect_timeout": 30}})
    # What chatbot.app.build_context gives Nornir for the lab: host keys checked strictly.
    nr = build_nornir(
        data={"hosts": hosts(devices, platform="cisco_iosxe")}, workers=workers,
        credentials=Credentials("admin", password, enable),
        scrapli_extras=scrapli_defaults(config, HostKeyPolicy(HostKeyMode.STRICT, known_hosts)),
    )
    ctx = TaskContext(DeviceInventory(nr), config, gate=DeviceGate(1, workers))
    names = list(ctx.inventory.devices)

    def run() -> tuple[int, str]:
        outputs = run_on_devices(ctx, names, COMMAND)
        bad = [o for o in outputs if not o.ok or "hostname" not in o.output]
        return len(bad), (f"{bad[0].device}: {bad[0].error or 'no running config in the output'}" if bad else "")

    return run


def _plain_nornir(devices: int, workers: int, password: str, host_extra: dict[str, Any],
                  options: dict[str, Any]):  # type: ignore[no-untyped-def]
    import logging

    from nornir import InitNornir

    from chatbot.inventory import DictInventory  # noqa: F401  (registers the dict inventory plugin)

    logging.getLogger("nornir").setLevel(logging.CRITICAL)
    return InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": workers}},
        inventory={"plugin": "ChatbotDictInventory", "options": {
            "hosts": hosts(devices, **host_extra),
            "defaults": {"username": "admin", "password": password, "connection_options": options},
        }},
        logging={"enabled": False},
    )


def _count_failures(result: Any) -> tuple[int, str]:
    """Devices without a running config, and the first reason."""
    bad, example = 0, ""
    for name, multi in result.items():
        if multi.failed or "hostname" not in str(multi[0].result):
            bad += 1
            if not example:
                exc = next((r.exception for r in multi if r.exception is not None), None)
                why = f"{type(exc).__name__}: {exc}" if exc is not None else "no running config in the output"
                example = f"{name}: {' '.join(why.split())[:160]}"
    return bad, example


def prepare_asyncssh(devices: int, workers: int, password: str, enable: str, transport: str,
                     known_hosts: Path, tuned: bool = False):  # type: ignore[no-untyped-def]
    """The lightest peer: asyncio + asyncssh by hand, what it takes to read a running
    config from an IOS device and no more. `tuned`: with the bot's cheap algorithms
    and password authentication (asyncssh tries keyboard-interactive first)."""
    import asyncio
    import re

    import asyncssh

    targets = list(hosts(devices).values())
    trusted = asyncssh.read_known_hosts(str(known_hosts))  # parsed once, not per connection
    user_prompt, privileged_prompt = re.compile(rb"\S+>\s*$"), re.compile(rb"\S+#\s*$")
    options: dict[str, Any] = {}
    if tuned:
        from chatbot.config import DEFAULT_CIPHERS, DEFAULT_KEX

        options = {"kex_algs": list(DEFAULT_KEX), "encryption_algs": list(DEFAULT_CIPHERS),
                   "preferred_auth": "password"}

    async def read_until(stdout: asyncssh.SSHReader[bytes], done: Any) -> bytes:
        buf = b""
        while not done(buf):
            chunk = await stdout.read(65536)
            if not chunk:
                raise ConnectionError("the device closed the session")
            buf += chunk
        return buf

    async def one(target: dict[str, Any]) -> str:
        async with asyncssh.connect(target["hostname"], target["port"], username="admin", password=password,
                                    known_hosts=trusted, **options) as conn:
            stdin, stdout, _ = await conn.open_session(term_type="vt100", encoding=None)
            await read_until(stdout, user_prompt.search)
            stdin.write(b"enable\n")
            await read_until(stdout, lambda buf: buf.rstrip().endswith(b"Password:"))
            stdin.write(enable.encode() + b"\n")
            await read_until(stdout, privileged_prompt.search)
            stdin.write(COMMAND.encode() + b"\n")
            return (await read_until(stdout, privileged_prompt.search)).decode()

    async def fan_out() -> tuple[int, str]:
        limit = asyncio.Semaphore(workers)

        async def limited(target: dict[str, Any]) -> str:
            async with limit:
                return await one(target)

        outputs = await asyncio.gather(*(limited(t) for t in targets), return_exceptions=True)
        bad = [(t, o) for t, o in zip(targets, outputs, strict=True) if not isinstance(o, str) or "hostname" not in o]
        if not bad:
            return 0, ""
        target, why = bad[0]
        reason = f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else "no running config"
        return len(bad), f"{target['hostname']}: {reason[:160]}"

    def run() -> tuple[int, str]:
        return asyncio.run(fan_out())

    return run


def prepare_asyncssh_tuned(devices: int, workers: int, password: str, enable: str, transport: str,
                           known_hosts: Path):  # type: ignore[no-untyped-def]
    return prepare_asyncssh(devices, workers, password, enable, transport, known_hosts, tuned=True)


def prepare_scrapli(devices: int, workers: int, password: str, enable: str, transport: str,
                    known_hosts: Path):  # type: ignore[no-untyped-def]
    from nornir_scrapli.tasks import send_command

    nr = _plain_nornir(devices, workers, password, {"platform": "cisco_iosxe"},
                       {"scrapli": {"extras": {"auth_strict_key": False, "auth_secondary": enable}}})

    def run() -> tuple[int, str]:
        result = nr.run(task=send_command, command=COMMAND)
        nr.close_connections()
        return _count_failures(result)

    return run


def prepare_netmiko(devices: int, workers: int, password: str, enable: str, transport: str,
                    known_hosts: Path):  # type: ignore[no-untyped-def]
    from nornir_netmiko.tasks import netmiko_send_command

    nr = _plain_nornir(devices, workers, password, {"platform": "cisco_xe"},
                       {"netmiko": {"extras": {"secret": enable, "use_keys": False, "allow_agent": False}}})

    def run() -> tuple[int, str]:
        result = nr.run(task=netmiko_send_command, command_string=COMMAND, enable=True)
        nr.close_connections()
        return _count_failures(result)

    return run


PREPARE = {"bot": prepare_bot, "bot-old": prepare_bot, "asyncssh": prepare_asyncssh,
           "asyncssh-tuned": prepare_asyncssh_tuned, "scrapli": prepare_scrapli,
           "netmiko": prepare_netmiko}


def run_once(path: str, devices: int, workers: int, transport: str, labdir: Path, interval: float) -> dict[str, Any]:
    password, enable = lab_credentials(labdir)
    run = PREPARE[path](devices, workers, password, enable, transport, lab_known_hosts(labdir))
    start_rss, _ = tree_rss()
    sampler = MemorySampler(interval)
    sampler.start()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    failures, example = run()
    wall = time.perf_counter() - t0
    reap_children()
    sampler.finish()
    cpu = cpu_seconds() - cpu0 - sampler.cpu
    return {"path": path, "devices": devices, "workers": workers, "wall": wall, "cpu_per_device": cpu / devices,
            "peak_mb": sampler.peak / 2**20, "start_mb": start_rss / 2**20,
            "children_at_peak": sampler.peak_children, "failures": failures, "example": example}


# --- driving it ---------------------------------------------------------------------------------

def label(path: str, transport: str) -> str:
    return {"bot": f"bot ({transport})", "bot-old": "bot, --old-code", "asyncssh": "asyncio + asyncssh",
            "asyncssh-tuned": "asyncssh, cheap algs", "scrapli": "nornir-scrapli (system)",
            "netmiko": "nornir-netmiko"}[path]


def show(r: dict[str, Any], transport: str) -> None:
    if "error" in r:
        print(f"  {label(r['path'], transport):18} devices={r['devices']:5}  {r['error']}", flush=True)
        return
    print(f"  {label(r['path'], transport):18} devices={r['devices']:5} wall={r['wall']:7.2f} s "
          f"cpu/device={r['cpu_per_device']:.4f} s device cpu/session={r['lab_cpu_per_session']:.4f} s "
          f"peak={r['peak_mb']:7.1f} MB "
          f"(start {r['start_mb']:.0f} MB, {r['children_at_peak']} child processes at peak) "
          f"failures={r['failures']}" + (f" e.g. {r['example']}" if r.get("example") else ""), flush=True)


def measured_run(path: str, n: int, args: argparse.Namespace, labdir: Path, lab_pid: int) -> dict[str, Any]:
    """One path's run, with what it cost the lab: from its start until the lab is idle
    again (session teardown included)."""
    lab_cpu = process_cpu(lab_pid)
    result = spawn(path, n, args, labdir)
    wait_until_idle(lab_pid)
    result["lab_cpu_per_session"] = (process_cpu(lab_pid) - lab_cpu) / n
    return result


def spawn(path: str, n: int, args: argparse.Namespace, labdir: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", path, str(n), str(args.workers), args.transport, str(labdir),
           str(args.sample), str(PORT)]
    env = dict(os.environ)
    env.pop(OLD_CODE_ENV, None)
    if path == "bot-old":
        env[OLD_CODE_ENV] = str(args.old_code)
    # A session of its own, so the kill below takes its ssh children too.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)
    try:
        out, err = proc.communicate(timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"path": path, "devices": n, "error": f"TIMEOUT: killed after {args.run_timeout:g} s"}
    except BaseException:  # interrupted: leave no run behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (err.strip().splitlines() or ["no output"])[-1]
    return {"path": path, "devices": n, "error": f"FAILED (exit {proc.returncode}): {tail[:200]}"}


def netmiko_installed() -> bool:
    try:
        import nornir_netmiko  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    global PORT
    # `timeout` and CI send SIGTERM: unwind, so the lab and the current run are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[50, 200, 500, 1000])
    p.add_argument("--delay", type=float, default=0.2, help="device delay per command, seconds")
    p.add_argument("--paths", nargs="+", choices=PATHS, default=[p for p in PATHS if p != "bot-old"])
    p.add_argument("--transport", default="ssh2",
                   help="the bot path's [inventory] transport (the bot's default: ssh2, its own libssh2 transport)")
    p.add_argument("--workers", type=int, default=100, help="Nornir worker threads, every path")
    p.add_argument("--sample", type=float, default=0.1, help="memory sampling interval, seconds")
    p.add_argument("--run-timeout", type=float, default=900, help="kill one run after this many seconds")
    p.add_argument("--old-code", type=Path, metavar="DIR",
                   help='another checkout of netbot (e.g. `git worktree add DIR <commit>`): path "bot-old" runs '
                        "the bot's path with that code, against the same lab, in the same run")
    p.add_argument("--port", type=int, default=2299, help="the lab's SSH port (another run may hold the default)")
    args = p.parse_args()
    PORT = args.port
    paths = list(args.paths)
    if "bot-old" in paths and not (args.old_code and (args.old_code / "chatbot" / "device_work.py").is_file()):
        p.error('path "bot-old" needs --old-code DIR, a checkout of netbot')
    if "netmiko" in paths and not netmiko_installed():
        print("nornir-netmiko is not installed: skipping that baseline (pip install nornir-netmiko)")
        paths.remove("netmiko")
    print(f"{COMMAND!r}, device delay {args.delay:g} s, {args.workers} workers, {os.cpu_count()} CPUs, "
          f"lab in its own process on 127.0.x.y:{PORT}", flush=True)
    results = []
    for n in args.devices:
        with tempfile.TemporaryDirectory(prefix="netbot-fanout-") as tmp:
            labdir = Path(tmp)
            started = time.perf_counter()
            lab = start_lab(n, args.delay, labdir)
            print(f"{n} devices (lab ready in {time.perf_counter() - started:.1f} s):", flush=True)
            try:
                wait_until_idle(lab.pid)
                for path in paths:
                    r = measured_run(path, n, args, labdir, lab.pid)
                    show(r, args.transport)
                    results.append(r)
            finally:
                stop(lab)
    verdict(results, args.transport)


def verdict(results: list[dict[str, Any]], transport: str) -> None:
    print("targets for the bot's path:")
    peers = {r["devices"]: r for r in results if r["path"] == "asyncssh" and "error" not in r}
    tuned_peers = {r["devices"]: r for r in results if r["path"] == "asyncssh-tuned" and "error" not in r}
    for r in results:
        if r["path"] not in ("bot", "bot-old"):
            continue
        who = "" if r["path"] == "bot" else " (old code)"
        if "error" in r:
            print(f"  {r['devices']:5} devices{who}: {r['error']}")
            continue
        checks = [f"cpu/device {r['cpu_per_device']:.4f} s "
                  f"{'<=' if r['cpu_per_device'] <= TARGET_CPU_PER_DEVICE else 'MISSES'} {TARGET_CPU_PER_DEVICE}",
                  f"failures {r['failures']}" + ("" if r["failures"] == 0 else " MISSES 0")]
        peer = peers.get(r["devices"])
        if peer is not None:
            for what, key, target in (("client cpu", "cpu_per_device", TARGET_CLIENT_CPU_RATIO),
                                      ("device cpu", "lab_cpu_per_session", TARGET_DEVICE_CPU_RATIO)):
                ratio = r[key] / peer[key] if peer[key] > 0 else float("inf")
                checks.append(f"{what} bot/asyncssh {ratio:.2f}x {'<=' if ratio <= target else 'MISSES'} {target}x")
        tuned = tuned_peers.get(r["devices"])
        if tuned is not None:  # no target: the floor, for the record
            checks.append("bot/asyncssh-tuned client {:.2f}x, device {:.2f}x".format(
                *(r[key] / tuned[key] if tuned[key] > 0 else float("inf")
                  for key in ("cpu_per_device", "lab_cpu_per_session"))))
        if r["devices"] >= 1000:
            verdict = "<=" if r["peak_mb"] <= TARGET_PEAK_MB_AT_1000 else "MISSES"
            checks.append(f"peak {r['peak_mb']:.0f} MB {verdict} {TARGET_PEAK_MB_AT_1000:.0f} MB")
        print(f"  {r['devices']:5} devices{who}: " + "; ".join(checks))


if __name__ == "__main__":
    if len(sys.argv) == 9 and sys.argv[1] == "--one":
        _, _, path, n, workers, transport, labdir, interval, port = sys.argv
        PORT = int(port)
        result = run_once(path, int(n), int(workers), transport, Path(labdir), float(interval))
        print("RESULT " + json.dumps(result), flush=True)
    else:
        main()
