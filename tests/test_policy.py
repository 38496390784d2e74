"""Access control and audit: the README's grant table, denials, and the rows they leave."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import select

from chatbot.audit import AuditLog, audit_events, make_engine
from chatbot.config import ConfigError, load_config
from chatbot.message import Identity, Message
from chatbot.results import Result, Status, Table
from chatbot.testing import sample_bot

REPO = Path(__file__).resolve().parent.parent
NETOPS = "!netops:corp.example"
BRIDGED = "!slack-bridged:corp.example"


def readme_access_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- access-example -->\n```toml\n(.*?)```\n<!-- /access-example -->", text, re.S)
    assert m, "README.md lost its access example"
    return m.group(1)


@pytest.fixture()
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(make_engine(f"sqlite:///{tmp_path}/audit.sqlite"))


@pytest.fixture()
def bot(tmp_path: Path, audit: AuditLog):  # type: ignore[no-untyped-def]
    path = tmp_path / "bot.toml"
    path.write_text(readme_access_example())
    bot = sample_bot(load_config(path), audit=audit)
    # No device sessions here: this file is about decisions, not devices.
    import tasks.show

    def fake_run(ctx, devices, command, **kw):  # type: ignore[no-untyped-def]
        from chatbot.device_work import DeviceOutput
        return [DeviceOutput(d, True, "ok output") for d in devices]

    original = tasks.show.run_on_devices
    tasks.show.run_on_devices = fake_run
    yield bot
    tasks.show.run_on_devices = original


def matrix_user(name: str) -> Identity:
    return Identity.native("matrix", f"@{name}:corp.example")


def slack_puppet(user_id: str) -> Identity:
    """A mautrix-slack puppet, as the Matrix adapter resolves it."""
    return Identity(user=f"slack:{user_id}", platform_id=f"matrix:@slack_t0001-{user_id.lower()}:corp.example",
                    display_name="Sam (Slack)", bridge="mautrix-slack")


def relayed_nick(nick: str) -> Identity:
    return Identity(user=f"slack:{nick}", platform_id="matrix:@relaybot:corp.example", display_name=nick,
                    bridge="matterbridge", weak=True)


def say(bot, sender: Identity, room: str, text: str, *, platform: str = "matrix",  # type: ignore[no-untyped-def]
        direct: bool = False) -> Result:
    msg = Message(platform=platform, room=room, sender=sender, text=text, direct=direct)
    reply = asyncio.run(bot.handle(msg))
    assert reply is not None
    return reply.result


def allowed(result: Result) -> bool:
    return result.status not in (Status.DENIED, Status.INVALID)


def rows(audit: AuditLog) -> list[dict]:  # type: ignore[type-arg]
    audit.flush()  # rows of no work and outcomes are written behind
    with audit.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_events).order_by(audit_events.c.id))]


def test_read_only_for_everyone_in_one_room(bot) -> None:  # type: ignore[no-untyped-def]
    dave = matrix_user("dave")  # in no [identities] entry: "*" still covers him
    assert allowed(say(bot, dave, NETOPS, "!show version all"))
    denied = say(bot, dave, NETOPS, "!show run r1")
    assert denied.status is Status.DENIED and denied.summary == "show run: you may not run this command here"
    assert say(bot, dave, "!random:corp.example", "!show version r1").status is Status.DENIED


def test_operators_on_their_own_sites_devices(bot) -> None:  # type: ignore[no-untyped-def]
    bob, carol = matrix_user("bob"), Identity.native("mattermost", "8xj3k2f9qpg7tbnyc4wzs1o5de")
    assert allowed(say(bot, bob, "!random:corp.example", "!show run r1"))
    assert allowed(say(bot, bob, "!random:corp.example", "!show ip int br on group:core"))
    denied = say(bot, bob, "!random:corp.example", "!show version all")
    assert denied.status is Status.DENIED
    assert denied.summary == "show version: you may not run this command on sw10 here"
    assert allowed(say(bot, carol, "town-square", "!show run sw10", platform="mattermost"))
    assert say(bot, carol, "town-square", "!show run r1", platform="mattermost").status is Status.DENIED


def test_admins_in_direct_messages_only(bot) -> None:  # type: ignore[no-untyped-def]
    alice = matrix_user("alice")
    assert allowed(say(bot, alice, "!dm-alice:corp.example", "!audit 5", direct=True))
    assert say(bot, alice, NETOPS, "!audit 5").status is Status.DENIED  # in a room she is a viewer
    assert allowed(say(bot, alice, NETOPS, "!show version r1"))
    # rights follow the person: her Slack account, bridged, in a direct chat is still alice
    alice_slack = slack_puppet("U0456EFGH")
    assert allowed(say(bot, alice_slack, "!dm-alice2:corp.example", "!show run sw10", direct=True))


def test_slack_users_through_a_bridge(bot) -> None:  # type: ignore[no-untyped-def]
    sam = slack_puppet("U0999SAM")
    assert allowed(say(bot, sam, BRIDGED, "!show version r1"))
    assert say(bot, sam, BRIDGED, "!show run r1").status is Status.DENIED
    # the puppet's Matrix account itself has no grant: only the resolved identity counts
    puppet_as_native = Identity.native("matrix", "@slack_t0001-u0999sam:corp.example")
    assert say(bot, puppet_as_native, BRIDGED, "!show version r1").status is Status.DENIED


def test_relayed_nicks_get_nothing_by_default(bot) -> None:  # type: ignore[no-untyped-def]
    # The same claimed identity as a real puppet, but only relayed: a claim, not a proof.
    fake_alice = relayed_nick("U0456EFGH")
    for room in (BRIDGED, NETOPS):
        assert say(bot, fake_alice, room, "!show version r1").status is Status.DENIED


def test_help_shows_only_what_the_asker_may_run(bot) -> None:  # type: ignore[no-untyped-def]
    def usages(result: Result) -> list[str]:
        table = result.parts[0]
        assert isinstance(table, Table)
        return [row[0].split()[0] + (" " + row[0].split()[1] if row[0].startswith("!show ") else "") for row in table.rows]

    dave_here = usages(say(bot, matrix_user("dave"), NETOPS, "!help"))
    assert "!show version" in dave_here and "!show run" not in dave_here and "!audit" not in dave_here
    nobody = say(bot, matrix_user("dave"), "!random:corp.example", "!help")
    assert "You may not run any network command here" in nobody.parts[1].text  # type: ignore[union-attr]
    assert "!audit" in usages(say(bot, matrix_user("alice"), "!dm:corp.example", "!help", direct=True))
    hidden = say(bot, matrix_user("dave"), NETOPS, "!help show run")
    assert hidden.status is Status.INVALID and "that you may run here" in hidden.summary


def test_whoami_through_a_bridge(bot) -> None:  # type: ignore[no-untyped-def]
    result = say(bot, slack_puppet("U0456EFGH"), BRIDGED, "!whoami")
    assert result.summary == "You are alice via mautrix-slack"
    facts = dict(result.parts[0].rows)  # type: ignore[union-attr]
    assert facts["identity"] == "slack:U0456EFGH"
    assert facts["account"] == "matrix:@slack_t0001-u0456efgh:corp.example"
    assert facts["groups"] == "admins"
    assert facts["may run here"] == "devices, ping, show version"
    weak = dict(say(bot, relayed_nick("mallory"), BRIDGED, "!whoami").parts[0].rows)  # type: ignore[union-attr]
    assert "a claim, not a proof" in weak["bridge"] and weak["may run here"] == "nothing"


def test_denial_and_success_leave_audit_rows(bot, audit) -> None:  # type: ignore[no-untyped-def]
    sam = slack_puppet("U0456EFGH")  # alice through the bridge
    say(bot, sam, BRIDGED, "!show run r1")
    denied = rows(audit)
    assert [r["kind"] for r in denied] == ["request", "decision", "result"]
    assert {r["user"] for r in denied} == {"alice"}
    assert {r["platform_id"] for r in denied} == {"matrix:@slack_t0001-u0456efgh:corp.example"}
    assert {r["bridge"] for r in denied} == {"mautrix-slack"}
    assert denied[1]["decision"] == "deny" and denied[1]["command"] == "show run"
    assert denied[1]["outcome"] == "you may not run this command here"
    assert denied[1]["room"] == BRIDGED and denied[1]["platform"] == "matrix"
    assert len({r["request_id"] for r in denied}) == 1

    say(bot, sam, BRIDGED, "!show version r1,r2")
    ran = rows(audit)[3:]
    assert [r["kind"] for r in ran] == ["request", "decision", "job", "device", "device", "result"]
    assert ran[1]["decision"] == "allow" and ran[1]["outcome"] == "grant 5 (slack-viewer)"
    assert [(r["device"], r["outcome"]) for r in ran if r["kind"] == "device"] == [("r1", "ok"), ("r2", "ok")]
    assert ran[-1]["outcome"].startswith("ok: show version on 2 devices") and ran[-1]["duration_ms"] > 0


def test_request_is_recorded_before_it_runs(bot, audit) -> None:  # type: ignore[no-untyped-def]
    import tasks.show

    seen: list[list[str]] = []

    def spy(ctx, devices, command, **kw):  # type: ignore[no-untyped-def]
        seen.append([r["kind"] for r in rows(audit)])
        raise RuntimeError("the bot crashes mid-job")

    tasks.show.run_on_devices = spy
    result = say(bot, matrix_user("bob"), NETOPS, "!show run r1")
    assert seen == [["request", "decision", "job"]]  # on disk before the device was touched
    assert result.status is Status.ERROR


def test_invalid_commands_are_audited_too(bot, audit) -> None:  # type: ignore[no-untyped-def]
    say(bot, matrix_user("dave"), NETOPS, "!show run r1\nreload")
    decision = rows(audit)[1]
    assert decision["decision"] == "invalid" and "single line" in decision["outcome"]


def test_audit_command_shows_rows(bot) -> None:  # type: ignore[no-untyped-def]
    alice = matrix_user("alice")
    say(bot, matrix_user("dave"), NETOPS, "!show run r1")
    result = say(bot, alice, "!dm:corp.example", "!audit 20", direct=True)
    table = result.parts[0]
    assert isinstance(table, Table)
    assert any(r[2] == "decision" and r[3] == "matrix:@dave:corp.example" and r[6] == "deny" for r in table.rows)


def test_audit_never_stores_secrets(audit) -> None:  # type: ignore[no-untyped-def]
    from chatbot.audit import AuditEvent

    audit.record(AuditEvent(kind="device", request_id="x", user="u", platform_id="p", platform="console",
                            room="r", outcome="enable secret 5 $1$abcd$LEAKEDHASHVALUE", arguments="snmp-server community LEAKCOMM RO"))
    text = repr(rows(audit))
    assert "LEAKEDHASHVALUE" not in text and "LEAKCOMM" not in text


def test_retention_prunes_old_rows(audit) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta

    from chatbot.audit import AuditEvent

    old = datetime.now(UTC) - timedelta(days=400)
    audit.record(AuditEvent(kind="request", request_id="old", user="u", platform_id="p", platform="c", room="r", at=old))
    audit.record(AuditEvent(kind="request", request_id="new", user="u", platform_id="p", platform="c", room="r"))
    assert audit.prune(365) == 1
    assert [r["request_id"] for r in rows(audit)] == ["new"]


def test_chat_platforms_denied_without_access_section() -> None:
    bot = sample_bot()
    result = say(bot, matrix_user("alice"), NETOPS, "!show version r1")
    assert result.status is Status.DENIED


BAD_CONFIGS = [
    ('[access.roles.v]\ncommands = ["ping"]\n[[access.grants]]\nwho = ["*"]\nwhere = ["*"]\nroles = ["viewr"]\n',
     "line 6: grant 1 names unknown role 'viewr' (known: v)"),
    ('[access.roles.v]\ncommands = ["shwo.*"]\n', "line 2: role v: 'shwo.*' matches no command"),
    ('[access.roles.v]\ncommands = ["ping"]\ndevices = ["group:nope"]\n', "line 3: role v: devices: unknown group 'nope'"),
    ('[access.roles.v]\ncommands = ["ping"]\n[[access.grants]]\nwho = ["group:neteng"]\nwhere = ["*"]\nroles = ["v"]\n',
     "line 4: unknown group 'group:neteng'"),
    ('[identities]\na = ["slack:U1"]\nb = ["matrix:@b:x", "slack:U1"]\n[access]\n',
     "line 2: account 'slack:U1' is listed for both a and b"),
    ('[identities]\na = ["U1"]\n[access]\n', "line 2: [identities] a: 'U1' is not an account"),
    ('[access.roles.v]\ncommands = ["ping"]\n[[access.grants]]\nwho = ["zed"]\nwhere = ["*"]\nroles = ["v"]\n',
     "line 4: grant who: 'zed' is not a person in [identities]"),
    ('[access.roles.v]\ncommands = ["ping"]\n[[access.grants]]\nwho = ["*"]\nwhere = ["#netops"]\nroles = ["v"]\n',
     "line 5: grant where: '#netops' is not a room"),
    ('[access.groups]\nops = ["nobody"]\n', "line 2: group ops: 'nobody' is neither a person"),
]


@pytest.mark.parametrize("body,message", BAD_CONFIGS)
def test_config_errors_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        sample_bot(load_config(path))
    assert f"{path} {message}" in str(err.value) or message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("commands", [["monitor.*"], ["monitor.list", "monitor add"]])
def test_roles_name_the_monitor_commands_as_they_name_any_other(tmp_path: Path, commands: list[str]) -> None:
    # The monitor commands' rights were once "monitor list" (with a space) while every
    # role pattern is dotted: `monitor.*` matched nothing and the config was refused.
    path = tmp_path / "bot.toml"
    path.write_text(f'[access.roles.watcher]\ncommands = {commands!r}\n'.replace("'", '"')
                    + '[[access.grants]]\nwho = ["*"]\nwhere = ["*"]\nroles = ["watcher"]\n')
    bot = sample_bot(load_config(path))
    assert allowed(say(bot, matrix_user("eve"), NETOPS, "!monitor list"))
    assert say(bot, matrix_user("eve"), NETOPS, "!monitor remove abc123").status is \
        (Status.DENIED if "monitor.*" not in commands else Status.FAILED)
    assert say(bot, matrix_user("eve"), NETOPS, "!audit").status is Status.DENIED
    listed = say(bot, matrix_user("eve"), NETOPS, "!help")
    assert "!monitor list [page <N>]" in str(listed.parts[0].rows)  # type: ignore[union-attr]
