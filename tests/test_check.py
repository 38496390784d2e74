"""`chatbot check` logs in to every device, reaches each APIC and chat server, and says
what is wrong one line per problem; `chatbot trust` records host keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.cli import main
from chatbot.lab import Fault, Lab


@pytest.fixture()
def clean(lab: Lab) -> Iterator[Lab]:
    yield lab
    for name in list(lab.devices) + ["apic1"]:
        lab.set_fault(name, None)


def write_setup(tmp_path: Path, lab: Lab, *, known_hosts: Path | None = None, platforms: dict[str, str] | None = None,
                extra: str = "", apic_password: str | None = None) -> Path:
    """A config and inventory on disk, as a user would have them, for the running lab."""
    inventory = tmp_path / "inventory"
    inventory.mkdir(exist_ok=True)
    hosts = lab.nornir_inventory()["hosts"]
    for name, platform in (platforms or {}).items():
        hosts[name]["platform"] = platform
    (inventory / "hosts.yaml").write_text(json.dumps(hosts))  # JSON is YAML
    (inventory / "groups.yaml").write_text(json.dumps(lab.nornir_inventory()["groups"]))
    (inventory / "defaults.yaml").write_text("{}\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "password").write_text(lab.password)
    (secrets / "enable").write_text(lab.enable_secret)
    (secrets / "apic").write_text(apic_password or lab.apic.password)
    config = tmp_path / "bot.toml"
    config.write_text(f"""
[bot]
database = "sqlite:///{tmp_path}/bot.sqlite"
[inventory]
path = "{inventory}"
username = "{lab.username}"
password_file = "{secrets}/password"
enable_secret_file = "{secrets}/enable"
known_hosts = "{known_hosts or lab.known_hosts}"
[limits]
device_timeout = 3
connect_timeout = 3
[apic.apic1]
url = "{lab.apic.url}"
verify_tls = "{lab.apic.ca_file}"
username = "{lab.apic.username}"
password_file = "{secrets}/apic"
{extra}
""")
    return config


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["check", *args])
    return code, capsys.readouterr().out.splitlines()


def test_everything_fine(clean: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_setup(tmp_path, clean)
    before = clean.devices["r1"].stats.sessions_total
    edge_before = clean.devices["r4"].stats.connections_total
    code, lines = run_check(capsys, "--config", str(config), "--devices", "group:core")
    assert code == 0, lines
    assert lines[0].startswith("config ok: 13 devices")
    assert lines[1:] == ["all checks passed (3 devices logged in, 1 APIC and 0 chat servers reached)"]
    assert clean.devices["r1"].stats.sessions_total == before + 1  # really logged in
    assert clean.devices["r4"].stats.connections_total == edge_before  # not in --devices


def test_one_line_per_problem_and_exit_1(clean: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_setup(tmp_path, clean, platforms={"r4": "linux"}, apic_password="wrong")
    clean.set_fault("r2", Fault.AUTH)
    clean.set_fault("r3", Fault.DOWN)
    code, lines = run_check(capsys, "--config", str(config), "--devices", "r1,r2,r3,r4")
    assert code == 1
    assert lines[1:] == [
        "device r2: authentication failed (check the device credentials)",
        "device r3: unreachable: connection refused",
        "device r4: platform linux is not supported (use cisco_iosxe, cisco_nxos, cisco_iosxr, arista_eos, "
        "juniper_junos or a scrapli-community platform)",
        "APIC apic1 rejected the login: Username or password is incorrect - FAILED local authentication",
        "4 problems found",
    ]


def test_offline_contacts_nothing_but_still_checks_platforms(clean: Lab, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = write_setup(tmp_path, clean, platforms={"r5": "linux"}, apic_password="wrong")
    before = sum(d.stats.connections_total for d in clean.devices.values())
    code, lines = run_check(capsys, "--offline", "--config", str(config))
    assert code == 1
    assert lines[1:] == [lines[1], "1 problem found"] and lines[1].startswith("device r5: platform linux is not")
    assert sum(d.stats.connections_total for d in clean.devices.values()) == before


def test_unknown_host_key_then_trust(clean: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = tmp_path / "known_hosts"
    config = write_setup(tmp_path, clean, known_hosts=known)
    code, lines = run_check(capsys, "--config", str(config), "--devices", "r1")
    assert code == 1
    assert lines[1].startswith("device r1: host key unknown: ssh-ed25519 SHA256:")
    assert lines[1].endswith(f"is not in {known}; check it, then: chatbot trust r1 (or ssh-keyscan)")

    assert main(["trust", "r1,r2", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    r1 = clean.devices["r1"]
    assert out[0].startswith("r1: ssh-ed25519 SHA256:")
    assert out[0].endswith(f" added ([{r1.host}]:{r1.port} in {known})")
    assert len(out) == 2 and len(known.read_text().splitlines()) == 2
    assert main(["trust", "r1", "--config", str(config)]) == 0
    assert capsys.readouterr().out.split(" ")[3] == "already"

    code, lines = run_check(capsys, "--config", str(config), "--devices", "r1,r2")
    assert code == 0, lines


def test_trust_refuses_a_changed_key_unless_replace(clean: Lab, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import asyncssh

    r1 = clean.devices["r1"]
    known = tmp_path / "known_hosts"
    stale = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    known.write_text(f"[{r1.host}]:{r1.port} {stale}\n")
    config = write_setup(tmp_path, clean, known_hosts=known)
    code, lines = run_check(capsys, "--config", str(config), "--devices", "r1")
    assert code == 1 and lines[1].startswith("device r1: host key changed: the device shows ssh-ed25519 SHA256:")
    assert lines[1].endswith("if the change is expected: chatbot trust r1 --replace")
    assert main(["trust", "r1", "--config", str(config)]) == 1
    assert "kept (add --replace once you know why)" in capsys.readouterr().out
    assert stale in known.read_text()
    assert main(["trust", "r1", "--replace", "--config", str(config)]) == 0
    capsys.readouterr()
    assert stale not in known.read_text()
    assert run_check(capsys, "--config", str(config), "--devices", "r1")[0] == 0


def test_chat_servers_are_reached(clean: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fake_mattermost import FakeMattermost
    from fake_slack import FakeSlack

    with FakeMattermost() as mm, FakeSlack() as slack:
        bot = mm.add_user("netbot", bot=True)
        token = mm.create_token(bot)
        good = f"""
[mattermost]
url = "{mm.url}"
token = "{token}"
[slack]
base_url = "{slack.base_url}"
app_token = "{slack.app_token}"
bot_token = "{slack.bot_token}"
"""
        config = write_setup(tmp_path, clean, extra=good)
        code, lines = run_check(capsys, "--config", str(config), "--devices", "r1")
        assert code == 0, lines
        assert lines[-1] == "all checks passed (1 device logged in, 1 APIC and 2 chat servers reached)"

        mm.revoke_token(token)
        slack.revoked.add(slack.bot_token)
        code, lines = run_check(capsys, "--config", str(config), "--devices", "r1")
    assert code == 1
    assert lines[1:] == ["mattermost: the server refused the bot's token",
                         "slack: auth.test refused the bot token: invalid_auth", "2 problems found"]
    for secret in (token, slack.bot_token, slack.app_token):
        assert secret not in "\n".join(lines)


def test_bad_targets_are_one_line(clean: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_setup(tmp_path, clean)
    assert main(["check", "--config", str(config), "--devices", "group:nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chatbot: unknown group 'nope'") and err.count("\n") == 1


def test_matrix_token_is_checked_with_whoami(clean: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A homeserver stand-in that knows one token (the real Synapse runs in test_matrix.py)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Homeserver(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            good = self.headers.get("Authorization") == "Bearer syt_good"
            ok = self.path == "/_matrix/client/v3/account/whoami" and good
            body = json.dumps({"user_id": "@netbot:corp.example"} if ok else
                              {"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Homeserver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        results = []
        for token in ("syt_good", "syt_revoked"):
            config = write_setup(tmp_path, clean, extra=f"""
[matrix]
homeserver = "http://127.0.0.1:{server.server_address[1]}"
user_id = "@netbot:corp.example"
access_token = "{token}"
store_dir = "{tmp_path}/store"
""")
            results.append(run_check(capsys, "--config", str(config), "--devices", "r1"))
    finally:
        server.shutdown()
        server.server_close()
    (good_code, _), (bad_code, bad_lines) = results
    assert good_code == 0
    assert bad_code == 1 and bad_lines[1:] == ["matrix: the homeserver refused the access token", "1 problem found"]
