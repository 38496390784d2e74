"""Config, secrets, inventory loading, rendering and the runner's error handling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatbot.commands import Command, command
from chatbot.config import ConfigError, load_config, parse_config
from chatbot.errors import ArgumentError, TaskFailure
from chatbot.inventory import Credentials, DeviceInventory, build_nornir
from chatbot.render import render_text
from chatbot.results import Note, Result, Status, Table, TextBlock
from chatbot.router import Invocation
from chatbot.runner import Runner
from chatbot.secrets import SecretError, resolve_secret
from chatbot.testing import SAMPLE_INVENTORY, sample_bot, sample_context

REPO = Path(__file__).resolve().parent.parent


def test_config_rejects_unknown_keys_with_location(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('[bot]\nprefx = "!"\n')
    with pytest.raises(ConfigError, match=r"bot\.prefx: Extra inputs are not permitted"):
        load_config(path)


def test_config_reports_toml_syntax_errors(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text("[bot\n")
    with pytest.raises(ConfigError, match="bot.toml"):
        load_config(path)


def test_config_type_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"limits\.device_timeout"):
        parse_config({"limits": {"device_timeout": -1}})


def test_example_lab_config_is_valid() -> None:
    config = load_config(REPO / "deploy" / "lab.toml")
    assert config.inventory.path == Path("inventory")
    assert "apic1" in config.apic


def test_secret_from_env_file_and_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB_TEST_PW", "from-env")
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    assert resolve_secret({"password_env": "NB_TEST_PW"}, "password", "x") == "from-env"
    assert resolve_secret({"password_file": str(secret_file)}, "password", "x") == "from-file"
    assert resolve_secret({"password": "inline"}, "password", "x") == "inline"
    assert resolve_secret({}, "password", "x") is None


def test_secret_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NB_MISSING", raising=False)
    with pytest.raises(SecretError, match="environment variable NB_MISSING is not set"):
        resolve_secret({"password_env": "NB_MISSING"}, "password", "inventory")
    with pytest.raises(SecretError, match="cannot read"):
        resolve_secret({"password_file": str(tmp_path / "none")}, "password", "inventory")
    with pytest.raises(SecretError, match="give only one"):
        resolve_secret({"password": "a", "password_env": "B"}, "password", "inventory")


def test_example_inventory_loads_and_credentials_are_injected() -> None:
    nr = build_nornir(path=REPO / "inventory", credentials=Credentials("ops", "pw", "en"),
                      scrapli_extras={"transport": "ssh2"})
    inv = DeviceInventory(nr)
    assert list(inv.devices) == ["r1", "r2", "r3"]
    assert inv.devices["r2"].address == "127.0.1.2" and inv.devices["r2"].site == "hq"
    host = nr.inventory.hosts["r1"]
    assert host.username == "ops" and host.password == "pw" and host.platform == "cisco_iosxe"
    extras = host.get_connection_parameters("scrapli").extras
    assert extras["auth_secondary"] == "en" and extras["transport"] == "ssh2"


def test_inventory_filter_and_suggestions() -> None:
    inv = DeviceInventory(build_nornir(data=SAMPLE_INVENTORY))
    assert [d.name for d in inv.filter("branch")] == ["sw10"]
    assert [d.name for d in inv.filter("group:core")] == ["r1", "r2", "r3"]
    with pytest.raises(ArgumentError, match="unknown device 'r4'; did you mean r3, r2, r1"):
        inv.filter("r4")
    with pytest.raises(ArgumentError, match="did you mean core"):
        inv.resolve("group:cor")


def test_render_text_aligns_tables_and_marks_status() -> None:
    result = Result(Status.PARTIAL, "2 ok, 1 failed", [
        Table(["device", "status"], [["r1", "ok"], ["r10", "failed: timeout"]]),
        TextBlock("line1\nline2\n", title="r1 output"),
        Note("a note"),
    ])
    assert render_text(result) == (
        "[partial] 2 ok, 1 failed\n\n"
        "device  status\n"
        "------  ---------------\n"
        "r1      ok\n"
        "r10     failed: timeout\n\n"
        "--- r1 output ---\nline1\nline2\n\n"
        "a note"
    )


def _invocation(handler, timeout: float | None = None) -> Invocation:  # type: ignore[no-untyped-def]
    cmd = Command(name="t", summary="", handler=handler, timeout=timeout)
    return Invocation(cmd, {}, "t")


def test_runner_turns_failures_into_results(caplog: pytest.LogCaptureFixture) -> None:
    runner = Runner(context=sample_context(), command_timeout=5)

    def user_error(ctx):  # type: ignore[no-untyped-def]
        raise ArgumentError("bad thing")

    def task_failure(ctx):  # type: ignore[no-untyped-def]
        raise TaskFailure("device said no")

    def bug(ctx):  # type: ignore[no-untyped-def]
        raise KeyError("secret-internal-detail")

    def not_a_result(ctx):  # type: ignore[no-untyped-def]
        return "oops"

    async def slow(ctx):  # type: ignore[no-untyped-def]
        await asyncio.sleep(10)

    assert asyncio.run(runner.run(_invocation(user_error))).status is Status.INVALID
    failed = asyncio.run(runner.run(_invocation(task_failure)))
    assert failed.status is Status.FAILED and failed.summary == "device said no"
    crashed = asyncio.run(runner.run(_invocation(bug)))
    assert crashed.status is Status.ERROR and "secret-internal-detail" not in crashed.summary
    assert "secret-internal-detail" in caplog.text  # the operator gets the traceback in the log
    assert asyncio.run(runner.run(_invocation(not_a_result))).status is Status.ERROR
    timed_out = asyncio.run(runner.run(_invocation(slow, timeout=0.2)))
    assert timed_out.status is Status.FAILED and "within 0.2 s" in timed_out.summary


def test_redaction_safety_net_covers_device_text_not_prose() -> None:
    from chatbot.bot import scrub

    leaked = Result(Status.FAILED, "APIC apic1 rejected the login: Username or password is incorrect", [
        Table(["cfg"], [["snmp-server community TABLELEAK RO"]]),
        TextBlock("username admin secret 9 $9$BLOCKLEAK"),
        Note("the password is wrong"),
    ])
    text = render_text(scrub(leaked))
    for word in ("TABLELEAK", "BLOCKLEAK"):
        assert word not in text
    assert "Username or password is incorrect" in text and "the password is wrong" in text


def test_task_plugins_discovered_from_package_and_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from chatbot import plugins

    module = types.ModuleType("third_party_tasks")

    @command("hello", summary="say hello")
    def hello(ctx):  # type: ignore[no-untyped-def]
        return Result(Status.OK, "hello")

    module.hello = hello  # type: ignore[attr-defined]

    class EntryPoint:
        name = "third-party"

        def load(self):  # type: ignore[no-untyped-def]
            return module

    monkeypatch.setattr(plugins, "entry_points", lambda group: [EntryPoint()] if group == plugins.ENTRY_POINT_GROUP else [])
    registry = plugins.load_registry()
    names = {c.name for c in registry}
    assert {"hello", "ping", "traceroute", "show run", "show version", "show", "apic health", "devices"} <= names


def test_duplicate_command_names_are_refused() -> None:
    from chatbot.commands import Registry

    registry = Registry()
    registry.add(Command(name="ping", summary="", handler=lambda ctx: None))
    with pytest.raises(ValueError, match="declared twice"):
        registry.add(Command(name="pong", summary="", handler=lambda ctx: None, aliases=("ping",)))


def test_devices_command_table() -> None:
    from chatbot.testing import ask

    result = ask(sample_bot(), "devices group:core").result
    assert result.summary == "3 devices matching 'group:core'"
    table = result.parts[0]
    assert isinstance(table, Table)
    assert [row[0] for row in table.rows] == ["r1", "r2", "r3"]
    assert table.rows[0][1] == "127.0.1.1:1"


def test_example_matrix_config_is_valid() -> None:
    from adapters.bridges import BridgeResolver
    from adapters.matrix import load_matrix_config
    from chatbot.testing import sample_bot

    config = load_config(REPO / "deploy" / "matrix.toml")
    matrix = load_matrix_config(config.matrix or {})
    assert matrix.user_id == "@netbot:corp.example" and matrix.progress_after == 2.0
    assert BridgeResolver(config.bridges).puppets[0].name == "slack"
    assert len(sample_bot(config).policy.grants) == 2  # roles and grants name real commands


def test_matrix_config_errors_are_one_line() -> None:
    from adapters.matrix import load_matrix_config

    with pytest.raises(ConfigError, match=r"\[matrix\] user_id: Field required"):
        load_matrix_config({"homeserver": "https://x"})
    with pytest.raises(ConfigError, match=r"\[matrix\] unknown setting pasword"):
        load_matrix_config({"homeserver": "https://x", "user_id": "@b:x", "pasword": "typo"})


def test_example_mattermost_and_slack_configs_are_valid() -> None:
    from adapters.mattermost import load_mattermost_config
    from adapters.slack import load_slack_config
    from chatbot.testing import sample_bot

    mm = load_config(REPO / "deploy" / "mattermost.toml")
    assert load_mattermost_config(mm.mattermost or {}).team == "corp"
    slack = load_config(REPO / "deploy" / "slack.toml")
    assert load_slack_config(slack.slack or {}).slash_command == "/netbot"
    for config in (mm, slack):
        assert len(sample_bot(config).policy.grants) == 1
