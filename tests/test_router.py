"""The router: addressing, command lookup, argument validation, help, did-you-mean."""

from __future__ import annotations

import pytest

from chatbot.config import Config
from chatbot.plugins import load_registry
from chatbot.results import Status, Table
from chatbot.router import CommandRejected, Router, check_printable
from chatbot.testing import ask, sample_bot, sample_context


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_registry(), prefix="!", names=("netbot",))


@pytest.fixture(scope="module")
def ctx():  # type: ignore[no-untyped-def]
    return sample_context()


@pytest.mark.parametrize("text,direct,mentioned,expected", [
    ("!ping r1", False, False, "ping r1"),
    ("  !ping r1  ", False, False, "ping r1"),
    ("ping r1", False, False, None),  # room chatter without prefix is not for us
    ("ping r1", True, False, "ping r1"),  # direct message: no prefix needed
    ("ping r1", False, True, "ping r1"),  # platform-marked mention
    ("netbot: ping r1", False, False, "ping r1"),
    ("@netbot ping r1", False, False, "ping r1"),
    ("NetBot, !ping r1", False, False, "ping r1"),
    ("netbotter ping r1", False, False, None),
    ("netbot is great", False, False, None),  # talking about the bot is not a command
])
def test_addressing(router: Router, text: str, direct: bool, mentioned: bool, expected: str | None) -> None:
    assert router.command_text(text, direct=direct, mentioned=mentioned) == expected


def test_command_lookup_prefers_longest_and_abbreviations(router: Router, ctx) -> None:  # type: ignore[no-untyped-def]
    assert router.parse("show run r1", ctx).command.name == "show run"
    assert router.parse("sh run r1", ctx).command.name == "show run"
    assert router.parse("show running-config r1", ctx).command.name == "show run"
    assert router.parse("show ver group:core", ctx).command.name == "show version"
    inv = router.parse("show ip int br on r1", ctx)
    assert inv.command.name == "show"
    assert inv.args["request"].text == "show ip interface brief"
    assert inv.devices == ["r1"]


def test_keywords_in_any_order_and_defaults(router: Router, ctx) -> None:  # type: ignore[no-untyped-def]
    inv = router.parse("ping 10.0.0.1 count 3 from r2", ctx)
    assert inv.args["target"].address == "10.0.0.1"
    assert inv.args["source"].name == "r2"
    assert inv.args["count"] == 3
    inv = router.parse("ping r3", ctx)
    assert inv.args["source"] is None and inv.args["count"] is None  # the task picks 5, or the limit when lower
    assert inv.args["target"].device == "r3" and inv.args["target"].address == "127.0.1.3"
    assert inv.devices == []  # pinging r3 from the bot host opens no session on r3


@pytest.mark.parametrize("text,reason", [
    ("frobnicate", "unknown command 'frobnicate'"),
    ("pign r1", "Did you mean ping"),
    ("ping", "missing <target>"),
    ("ping r9", "'r9' is neither a device in the inventory nor an IP address or host name; did you mean r3, r2, r1?"),
    ("ping 10.0.0.1 from r9", "unknown device 'r9'"),
    ("ping 10.0.0.1 count 0", "count must be between 1 and 20"),
    ("ping 10.0.0.1 count lots", "'lots' is not a whole number"),
    ("ping 10.0.0.1 r1", "unexpected 'r1'"),
    ("ping 10.0.0.1 from", "'from' needs a value"),
    ("show version group:nope", "unknown group 'nope'"),
    ("show version site:mars", "unknown site 'mars'"),
    ("show version vlan:1", "use a device name, group:NAME, site:NAME or all"),
    ("show run", "missing <device>"),
    ("show tech-support on r1", "not an allowed show command"),
    ("show ip int br | redirect flash:x on r1", "'| redirect' is not an allowed filter"),
    ("show ip int br | tee x on r1", "not an allowed filter"),
    ("show ip int br | append x on r1", "not an allowed filter"),
    ("show ip int br; reload on r1", "not allowed in a show command"),
    ("show ip int br", "missing <targets>"),
    ("show ip int br | include up | include Gi on r1", "only one | filter per command"),
    ("show ip int br | include up? on r1", "printable text without '?'"),
])
def test_rejections_are_one_line(router: Router, ctx, text: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandRejected) as err:
        router.parse(text, ctx)
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["ping r1\nreload", "ping r1\r", "ping\x00r1", "ping r1\x1b[2J", "ping\u2028r1",
                                  "ping r1\u200b"])
def test_control_characters_rejected(text: str) -> None:
    with pytest.raises(CommandRejected):
        check_printable(text)


def test_overlong_command_rejected(router: Router, ctx) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandRejected, match="longer than"):
        router.parse("ping " + "a" * 2000, ctx)
    with pytest.raises(CommandRejected, match="longer than 128"):
        router.parse("ping " + "a." * 100 + "com", ctx)


def test_allowed_pipes_pass_canonically(router: Router, ctx) -> None:  # type: ignore[no-untyped-def]
    inv = router.parse("show ip int br | inc up on group:core", ctx)
    assert inv.args["request"].text == "show ip interface brief | include up"
    assert inv.devices == ["r1", "r2", "r3"]


def test_targets_resolution(router: Router, ctx) -> None:  # type: ignore[no-untyped-def]
    assert router.parse("show version r2,r1", ctx).devices == ["r1", "r2"]
    assert router.parse("show version all", ctx).devices == ["r1", "r2", "r3", "sw10"]
    assert router.parse("show version site:branch1", ctx).devices == ["sw10"]
    assert router.parse("show version on group:edge", ctx).devices == ["sw10"]


def test_host_name_targets_need_a_dot(router: Router, ctx) -> None:  # type: ignore[no-untyped-def]
    assert router.parse("ping core1.example.net from r1", ctx).args["target"].address is None
    with pytest.raises(CommandRejected):
        router.parse("ping -rf from r1", ctx)


def test_help_lists_every_command_with_usage() -> None:
    result = ask(sample_bot(), "help").result
    assert result.status is Status.OK
    table = result.parts[0]
    assert isinstance(table, Table)
    usages = [row[0] for row in table.rows]
    for expected in ("!ping <target> [options]", "!show run [on] <device> [interface <name>] [| <filter> <regex>]",
                     "!show version [on] <targets>", "!show <command> on <targets>", "!apic health [<apic>]",
                     "!devices [<filter>]", "!traceroute <target> [from <device>]"):
        assert expected in usages


def test_help_for_one_command() -> None:
    result = ask(sample_bot(), "help ping").result
    assert result.summary.startswith("ping: ")
    texts = [p.text for p in result.parts]  # type: ignore[union-attr]
    assert ("usage: !ping <target> [from <device>] [count <count>] [size <size>] [source <interface>] [vrf <vrf>] "
            "[df-bit]") in texts
    assert any("!ping 10.0.0.1 from r1" in t for t in texts)
    assert ask(sample_bot(), "help sh run").result.summary.startswith("show run:")
    bad = ask(sample_bot(), "help frobnicate").result
    assert bad.status is Status.INVALID and "unknown command" in bad.summary


def test_unknown_command_reply_suggests() -> None:
    result = ask(sample_bot(), "!shwo version r1").result
    assert result.status is Status.INVALID
    assert "Did you mean show version" in result.summary


def test_bad_argument_reply_carries_usage() -> None:
    result = ask(sample_bot(), "!ping r9").result
    assert result.status is Status.INVALID
    assert [p.text for p in result.parts] == [  # type: ignore[union-attr]
        "usage: !ping <target> [from <device>] [count <count>] [size <size>] [source <interface>] [vrf <vrf>] [df-bit]"]


def test_prefix_is_configurable() -> None:
    bot = sample_bot(Config.model_validate({"bot": {"prefix": "?"}}))
    assert bot.router.command_text("?ping r1") == "ping r1"
    assert bot.router.command_text("!ping r1") is None
