"""Start-up cost: a bot that has not yet reached a device has loaded nothing of the device
stack (Nornir, scrapli, ssh2, asyncssh), nor the libraries of commands nobody ran
(requests for the APIC, icmplib, netutils), nor Alembic when its database is up to date.
The first device command loads what it needs, and only Nornir's one connection plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from chatbot import store
from chatbot.lab import Lab

REPO = Path(__file__).resolve().parent.parent

# Top-level packages (and the bot's own modules) that only device work, a host ping,
# the APIC or a schema upgrade need; prompt_toolkit is for a terminal, not a pipe.
NOT_AT_START = {
    "nornir", "nornir_scrapli", "nornir_utils", "scrapli", "scrapli_netbot", "scrapli_cfg", "scrapli_netconf",
    "ssh2", "asyncssh", "paramiko", "netmiko", "ntc_templates", "textfsm", "netutils", "requests", "urllib3",
    "icmplib", "alembic", "mako", "lxml", "prompt_toolkit", "re2",
    "chatbot.device_work", "chatbot.device_failures", "chatbot.nornir_setup", "chatbot.ssh_transport",
    "chatbot.hostkeys", "chatbot.lab",
}
NEEDED_FOR_A_DEVICE = {"nornir", "nornir_scrapli", "scrapli", "ssh2", "chatbot.device_work", "chatbot.nornir_setup"}

# Runs `chatbot shell --config FILE` and, after each answer, prints which of the modules
# above are loaded, and the connection plugins Nornir knows once it is loaded.
PROBE = """
import json, sys
import adapters.console as console

watched = set(json.loads(sys.argv[2]))
answer = console.ConsoleChat.handle

async def handle(self, line):
    await answer(self, line)
    loaded = sorted(m for m in sys.modules if m in watched or m.split(".")[0] in watched)
    register = sys.modules.get("nornir.core.plugins.connections")
    plugins = sorted(register.ConnectionPluginRegister.available) if register else None
    print("LOADED " + json.dumps({"modules": loaded, "connection_plugins": plugins}), flush=True)

console.ConsoleChat.handle = handle
from chatbot.cli import main
sys.exit(main(["shell", "--config", sys.argv[1]]))
"""


def write_setup(tmp_path: Path, lab: Lab) -> Path:
    """A config and an inventory on disk for the running lab, as a user would write them."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    lab_inventory = lab.nornir_inventory()
    for part in ("hosts", "groups", "defaults"):
        (inventory / f"{part}.yaml").write_text(json.dumps(lab_inventory.get(part) or {}))  # JSON is YAML
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "password").write_text(lab.password)
    (secrets / "enable").write_text(lab.enable_secret)
    config = tmp_path / "bot.toml"
    config.write_text(f"""
[bot]
database = "sqlite:///{tmp_path}/bot.sqlite"
[inventory]
path = "{inventory}"
username = "{lab.username}"
password_file = "{secrets}/password"
enable_secret_file = "{secrets}/enable"
known_hosts = "{lab.known_hosts}"
[limits]
device_timeout = 5
connect_timeout = 5
""")
    return config


def chat(config: Path, lines: list[str]) -> tuple[list[str], list[dict[str, list[str]]]]:
    """The bot's output lines, and what was loaded after each answer."""
    shell = subprocess.run([sys.executable, "-c", PROBE, str(config), json.dumps(sorted(NOT_AT_START))],
                           input="".join(f"{line}\n" for line in lines), text=True, capture_output=True,
                           timeout=60, cwd=config.parent, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert shell.returncode == 0, shell.stderr
    out = shell.stdout.splitlines()
    loaded = [json.loads(line.removeprefix("LOADED ")) for line in out if line.startswith("LOADED ")]
    assert len(loaded) == len(lines), shell.stdout
    return out, loaded


def test_the_device_stack_loads_with_the_first_device_command(lab: Lab, tmp_path: Path) -> None:
    config = write_setup(tmp_path, lab)
    store.prepare(store.make_engine(f"sqlite:///{tmp_path}/bot.sqlite"))  # as a first start leaves it
    out, loaded = chat(config, ["!help", "!whoami", "!devices", "!show version r1"])
    text = "\n".join(out)
    assert "Commands you can run here" in text and "r1" in text
    for before_any_device in loaded[:3]:
        assert before_any_device == {"modules": [], "connection_plugins": None}
    after = loaded[3]
    assert re.search(r"^show version on r1$", text, re.M) and re.search(r"^r1 +ok +\S", text, re.M), text
    assert NEEDED_FOR_A_DEVICE <= set(after["modules"])
    assert not {"paramiko", "netmiko", "alembic", "requests", "icmplib"} & set(after["modules"])
    # Not InitNornir's every installed plugin (nornir-scrapli alone brings three): the one the bot uses.
    assert after["connection_plugins"] == ["scrapli"]


def test_the_newest_revision_is_known_without_alembic() -> None:
    """store.HEAD_REVISION lets a start on an up-to-date database skip Alembic: it must
    be the newest revision of chatbot/migrations."""
    assert store.HEAD_REVISION == store.head_revision()
