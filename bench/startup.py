"""Start-up cost of the bot: `chatbot shell --config FILE` on a lab started apart.

Starts `chatbot lab` in its own process (free ports on loopback) and writes, in a
temporary directory, an inventory and a config that use it (as deploy/lab.toml does).
Then, for each round, starts the bot in a fresh process with its stdin a pipe, and
measures:
- imports: a separate process's time to import what `chatbot shell` imports before it
  can answer (chatbot.cli, chatbot.app, adapters.console and every task module);
- first reply: wall time from starting the process to the first line of its answer to
  `!help`, the process's CPU time and resident memory (VmRSS) at that moment;
- device: the wall time of the answer to `!show version r1` that follows, and the RSS
  after it (Nornir, scrapli and ssh2 load with the first device command).
The first start of each checkout, which creates and migrates its database, is not counted.

`--repo PATH` (repeatable) measures other checkouts with this venv's packages, the
rounds interleaved, so that an older commit can be compared in one run:

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/startup.py --repo /tmp/before --repo . --rounds 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPORTS = ("import time; t = time.perf_counter(); import chatbot.cli, chatbot.app, adapters.console; "
           "from chatbot.plugins import load_registry; load_registry(); print(time.perf_counter() - t)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_lab(workdir: Path) -> tuple[subprocess.Popen[str], int]:
    port, apic_port = free_port(), free_port()
    lab = subprocess.Popen([sys.executable, "-m", "chatbot", "lab", "--port", str(port), "--apic-port", str(apic_port)],
                           cwd=workdir, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert lab.stdout is not None
    banner = [lab.stdout.readline() for _ in range(3)]
    if "r1 127.0.1.1:" not in banner[0]:
        lab.kill()
        sys.exit(f"the lab did not start: {''.join(banner)}")
    return lab, port


def write_config(workdir: Path, repo: Path, port: int) -> Path:
    """An inventory and config for the lab, in a directory of the checkout's own."""
    botdir = workdir / f"bot-{abs(hash(str(repo)))}"
    botdir.mkdir()
    shutil.copytree(REPO / "inventory", botdir / "inventory")
    hosts = botdir / "inventory" / "hosts.yaml"
    hosts.write_text(hosts.read_text().replace("port: 2222", f"port: {port}"))
    config = botdir / "bot.toml"
    config.write_text(f"""
[bot]
database = "sqlite:///{botdir}/bot.sqlite"
[inventory]
path = "inventory"
username = "admin"
password_file = "{workdir}/var/lab-secrets/password"
enable_secret_file = "{workdir}/var/lab-secrets/enable_secret"
known_hosts = "{workdir}/var/lab-known_hosts"
""")
    return config


def process_figures(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MiB) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return cpu, rss_kib / 1024


def read_until(stdout: object, start: str) -> tuple[str, float]:
    """Lines of the bot's output up to and including the first that starts with
    `start`, and the moment that line came."""
    lines = []
    while True:
        line = stdout.readline()  # type: ignore[attr-defined]
        if not line:
            sys.exit("the bot stopped:\n" + "".join(lines))
        lines.append(line)
        if line.startswith(start):
            return "".join(lines), time.perf_counter()


def one_start(repo: Path, config: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    imports = subprocess.run([sys.executable, "-c", IMPORTS], cwd=config.parent, env=env, text=True,
                             capture_output=True, check=True)
    started = time.perf_counter()
    bot = subprocess.Popen([sys.executable, "-m", "chatbot", "shell", "--config", str(config)], cwd=config.parent,
                           env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert bot.stdin is not None and bot.stdout is not None
    try:
        # Piped, the bot answers one line after the other, each after an echo ("> !help").
        bot.stdin.write("!help\n!show version r1\n")
        bot.stdin.flush()
        _, answered = read_until(bot.stdout, "Commands you can run")
        cpu, rss = process_figures(bot.pid)
        _, asked = read_until(bot.stdout, "> !show version r1")
        answer, device_answered = read_until(bot.stdout, "r1 ")
        if not answer.splitlines()[-1].split()[1:2] == ["ok"]:
            sys.exit(f"{repo}: unexpected answer to !show version r1:\n{answer}")
        _, rss_device = process_figures(bot.pid)
    finally:
        bot.stdin.close()
        bot.wait(30)
    return {"imports": float(imports.stdout), "first_reply": answered - started, "cpu": cpu, "rss": rss,
            "device": device_answered - asked, "rss_device": rss_device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, action="append", help="a checkout to measure (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    repos = [r.resolve() for r in args.repo or [REPO]]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        lab, port = start_lab(workdir)
        try:
            configs = {repo: write_config(workdir, repo, port) for repo in repos}
            for repo in repos:  # the first start creates and migrates the database
                one_start(repo, configs[repo])
            rounds: dict[Path, list[dict[str, float]]] = {repo: [] for repo in repos}
            for _ in range(args.rounds):
                for repo in repos:
                    rounds[repo].append(one_start(repo, configs[repo]))
        finally:
            lab.send_signal(signal.SIGINT)
            lab.wait(30)
    print(f"chatbot shell --config, lab in another process; median of {args.rounds} starts (min-max)")
    print(f"{'checkout':<32} {'imports s':>14} {'first reply s':>14} {'CPU s':>14} {'RSS MiB':>12} "
          f"{'device s':>14} {'RSS after MiB':>14}")
    for repo in repos:
        cells = []
        for key, digits in (("imports", 2), ("first_reply", 2), ("cpu", 2), ("rss", 0), ("device", 2),
                            ("rss_device", 0)):
            values = [r[key] for r in rounds[repo]]
            cells.append(f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})")
        name = str(repo)[-32:]
        print(f"{name:<32} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14} {cells[3]:>12} {cells[4]:>14} {cells[5]:>14}")


if __name__ == "__main__":
    main()
