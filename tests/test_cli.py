"""The `chatbot` command line: check, the standalone lab with a configured bot, errors."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.cli import main

REPO = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(body)
    return path


def test_check_accepts_a_valid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NB_DEVICE_PW", "device-pw")
    monkeypatch.setenv("NB_APIC_PW", "apic-pw")
    config = write_config(tmp_path, f"""
[inventory]
path = "{REPO / 'inventory'}"
username = "ops"
password_env = "NB_DEVICE_PW"

[apic.fabric1]
url = "https://127.0.0.1:1"
password_env = "NB_APIC_PW"
""")
    assert main(["check", "--offline", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config ok: 3 devices, 1 group, 1 APIC, ")
    assert out.endswith("all checks passed (offline: config and inventory only)\n")
    assert "device-pw" not in out and "apic-pw" not in out


@pytest.mark.parametrize("body,message", [
    ('[inventory]\npath = "{inv}"\npassword_env = "NB_UNSET_VAR"\n', "environment variable NB_UNSET_VAR is not set"),
    ('[inventory]\npath = "/nonexistent"\n', "/nonexistent/hosts.yaml not found"),
    ('[inventory]\npath = "{inv}"\n[apic.a]\nurl = "https://x"\n', "[apic.a] has no password"),
    ('[limits]\nworkers = 0\n', "limits.workers: Input should be greater than or equal to 1"),
])
def test_check_fails_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, body: str, message: str) -> None:
    monkeypatch.delenv("NB_UNSET_VAR", raising=False)
    config = write_config(tmp_path, body.format(inv=REPO / "inventory"))
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("body", ["[bot]\nname = \"netbot\"\n", "[inventory]\nlab = true\n"])
def test_run_without_chat_platform_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> None:
    config = write_config(tmp_path, body)
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no chat platform configured: add [matrix], [mattermost] or [slack]" in err and err.count("\n") == 1


@pytest.mark.slow
def test_run_with_lab_inventory_serves_chat_from_an_in_process_lab(tmp_path: Path) -> None:
    """`[inventory] lab = true` with a chat platform: `chatbot run` starts the lab itself
    and answers from it (here on the fake Slack), saying once that it is a lab."""
    import os

    from fake_slack import FakeSlack

    with FakeSlack() as slack:
        slack.add_user("U0ALICE01", "alice", im="D0ALICE01")
        config = write_config(tmp_path, f"""
[inventory]
lab = true

[slack]
base_url = "{slack.base_url}"
app_token_env = "NB_SLACK_APP"
bot_token_env = "NB_SLACK_BOT"

[access.roles.operator]
commands = ["*"]

[[access.grants]]
who = ["slack:*"]
where = ["*"]
roles = ["operator"]
""")
        env = dict(os.environ, PYTHONPATH=str(REPO), NB_SLACK_APP=slack.app_token, NB_SLACK_BOT=slack.bot_token)
        bot = subprocess.Popen([sys.executable, "-m", "chatbot", "run", "--config", str(config)], cwd=tmp_path,
                               env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            def connected() -> bool:
                assert bot.poll() is None, bot.communicate()[1]
                return slack.hellos > 0
            # as on Slack, an event sent while the app has no socket comes again only a minute later
            slack.wait_for(connected, "the bot's connection", timeout=60)
            ts = slack.user_says("U0ALICE01", "D0ALICE01", "show version all")

            def answered() -> list[dict[str, str]]:
                assert bot.poll() is None, bot.communicate()[1]  # the bot stopped: why
                return [m for m in slack.replies_to("D0ALICE01", ts) if "show version on" in m["text"]]
            answer = slack.wait_for(answered, "the answer", timeout=60)
            assert "show version on 3 devices: 3 ok" in answer[0]["text"]
        finally:
            bot.send_signal(signal.SIGINT)
            out, err = bot.communicate(timeout=30)
    assert bot.returncode == 0, err
    lab_lines = [line for line in err.splitlines() if "lab = true" in line]
    assert len(lab_lines) == 1 and "slack answer from the built-in simulated network (r1, r2, r3" in lab_lines[0]
    assert "Traceback" not in err


def test_shell_needs_lab_or_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shell"]) == 2
    assert "give --lab" in capsys.readouterr().err


def test_bad_fault_spec_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shell", "--lab", "--fault", "r1=melt"]) == 2
    assert "use DEVICE=KIND" in capsys.readouterr().err


def test_fault_on_a_device_the_lab_lacks_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shell", "--lab", "--fault", "r99=down"]) == 2
    err = capsys.readouterr().err
    assert err == "chatbot: --fault r99=down: the lab has no device r99 (it has r1-r3 and apic1)\n"


@pytest.mark.slow
def test_standalone_lab_and_configured_bot(tmp_path: Path) -> None:
    """`chatbot lab` in one process; `chatbot shell --config deploy/lab.toml` in another,
    reading the credentials the lab wrote to files."""
    shutil.copytree(REPO / "inventory", tmp_path / "inventory")
    shutil.copy(REPO / "deploy" / "lab.toml", tmp_path / "lab.toml")
    lab = subprocess.Popen([sys.executable, "-m", "chatbot", "lab"], cwd=tmp_path, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert lab.stdout is not None
        banner = [lab.stdout.readline() for _ in range(3)]
        assert "r1 127.0.1.1:2222" in banner[0], banner
        secret_dir = tmp_path / "var" / "lab-secrets"
        assert (secret_dir / "password").stat().st_mode & 0o077 == 0
        shell = subprocess.run([sys.executable, "-m", "chatbot", "shell", "--config", "lab.toml"],
                               cwd=tmp_path, input="!show version all\n!apic health\n", text=True,
                               capture_output=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert shell.returncode == 0, shell.stderr
        assert "show version on 3 devices: 3 ok" in shell.stdout
        assert "APIC apic1: fabric health" in shell.stdout
        for name in ("password", "enable_secret", "apic_password"):
            assert (secret_dir / name).read_text().strip() not in shell.stdout + shell.stderr
    finally:
        lab.send_signal(signal.SIGINT)
        lab.wait(20)
    assert lab.returncode == 0


def test_audit_cli_reads_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    from chatbot.app import build_bot
    from chatbot.config import load_config
    from chatbot.testing import console_message

    config_path = write_config(tmp_path, f"""
[bot]
database = "sqlite:///{tmp_path}/audit.sqlite"
[inventory]
path = "{REPO / 'inventory'}"
""")
    bot = build_bot(load_config(config_path))
    asyncio.run(bot.handle(console_message("!devices group:core", direct=True)))
    asyncio.run(bot.handle(console_message("!frobnicate", direct=True)))
    asyncio.run(bot.stop())  # outcomes are written behind; a clean stop writes them all
    assert main(["audit", "--config", str(config_path), "--json", "--since", "1h"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in rows] == ["request", "decision", "job", "result", "request", "decision", "result"]
    assert rows[1]["decision"] == "allow" and rows[5]["decision"] == "invalid"
    assert rows[0]["user"] == "console:tester"
    assert main(["audit", "--config", str(config_path), "--user", "console:nobody"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "--config", str(config_path), "--since", "yesterday"]) == 2
    assert "--since yesterday: use 30m" in capsys.readouterr().err
