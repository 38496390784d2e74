"""Matrix round trip: a person sends a command, and sees the answer.

Side by side in one run, on one Synapse (from its own venv, on loopback):
- the bot (`chatbot run`, its own process) answering `!ping r1` against `chatbot lab`
  (its own process), with access control and the audit log on;
- a bare matrix-nio echo bot (bench/echo_bot.py, its own process): the floor.
The person's client alternates between the two, so drift hits both alike.

    .venv/bin/python bench/matrix_roundtrip.py --rounds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from nio import AsyncClient, RoomCreateResponse  # noqa: E402
from synapse_server import SynapseServer  # noqa: E402

PASSWORD = "bench-password"
LAB_PORT = 2298


def start(cmd: list[str], cwd: Path, ready: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if ready in line:
            return proc
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"{cmd[:3]} did not start")


def write_bot_files(work: Path, hs: SynapseServer) -> Path:
    inventory = work / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text(
        "".join(f"r{i}:\n  hostname: 127.0.1.{i}\n  port: {LAB_PORT}\n  groups: [core]\n" for i in (1, 2, 3)))
    (inventory / "groups.yaml").write_text("core: {}\n")
    (inventory / "defaults.yaml").write_text("platform: cisco_iosxe\n")
    config = work / "bot.toml"
    config.write_text(f"""
[bot]
database = "sqlite:///{work}/bot.sqlite"
[inventory]
path = "{inventory}"
username = "admin"
password_file = "{work}/var/lab-secrets/password"
enable_secret_file = "{work}/var/lab-secrets/enable_secret"
strict_host_keys = false
[matrix]
homeserver = "{hs.base_url}"
user_id = "@netbot:localhost"
password = "{PASSWORD}"
store_dir = "{work}/store"
allowed_inviters = ["@human:localhost"]
[access.roles.viewer]
commands = ["ping"]
[[access.grants]]
who = ["matrix:@human:localhost"]
where = ["*"]
roles = ["viewer"]
""")
    return config


async def measure(hs: SynapseServer, rounds: int) -> dict[str, list[float]]:
    human = AsyncClient(hs.base_url, "@human:localhost")
    await human.login(PASSWORD)
    await human.sync(timeout=0)
    rooms = {}
    for bot in ("@netbot:localhost", "@echo:localhost"):
        resp = await human.room_create(invite=[bot])
        assert isinstance(resp, RoomCreateResponse)
        rooms[bot] = resp.room_id
    # wait until both bots joined
    deadline = time.monotonic() + 60
    while not all(b in human.rooms.get(r, type("x", (), {"users": {}})).users for b, r in rooms.items()):
        assert time.monotonic() < deadline, "bots did not join"
        await human.sync(timeout=500, since=human.next_batch)
    times: dict[str, list[float]] = {b: [] for b in rooms}
    for i in range(rounds + 3):  # the first three warm up caches and sessions
        for bot, room in rooms.items():
            t0 = time.perf_counter()
            sent = await human.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "!ping r1"})
            answered = False
            while not answered:
                resp = await human.sync(timeout=10000, since=human.next_batch)
                for event in resp.rooms.join.get(room, None).timeline.events if room in resp.rooms.join else []:
                    rel = (event.source.get("content") or {}).get("m.relates_to") or {}
                    if event.sender == bot and rel.get("m.in_reply_to", {}).get("event_id") == sent.event_id:
                        answered = True
            if i >= 3:
                times[bot].append((time.perf_counter() - t0) * 1000)
    await human.close()
    return times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netbot-bench-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        with SynapseServer(work / "synapse") as hs:
            for name in ("netbot", "echo", "human"):
                hs.register(name, PASSWORD)
            config = write_bot_files(work, hs)
            procs.append(start([sys.executable, "-m", "chatbot", "lab", "--port", str(LAB_PORT), "--apic-port", "0"],
                               work, "credentials in", {"PYTHONPATH": str(REPO)}))
            procs.append(start([sys.executable, str(REPO / "bench" / "echo_bot.py"), hs.base_url, "@echo:localhost",
                                PASSWORD], work, "ready"))
            bot = subprocess.Popen([sys.executable, "-m", "chatbot", "--log-level", "INFO", "run", "--config",
                                    str(config)], cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)},
                                   stdout=subprocess.DEVNULL, stderr=open(work / "bot.log", "w"))
            procs.append(bot)  # type: ignore[arg-type]
            times = asyncio.run(measure(hs, args.rounds))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    def stats(values: list[float]) -> tuple[float, float]:
        ordered = sorted(values)
        return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]

    bot_med, bot_p95 = stats(times["@netbot:localhost"])
    echo_med, echo_p95 = stats(times["@echo:localhost"])
    print(f"rounds={args.rounds}")
    print(f"echo bot  median={echo_med:6.1f} ms  p95={echo_p95:6.1f} ms")
    print(f"netbot    median={bot_med:6.1f} ms  p95={bot_p95:6.1f} ms  (!ping r1 against the lab)")
    print(f"ratio     median={bot_med / echo_med:.2f}x  (target <= 1.15x)")


if __name__ == "__main__":
    main()
