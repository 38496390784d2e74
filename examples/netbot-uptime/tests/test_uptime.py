"""The plugin's own tests, written with chatbot.testing (installed with the bot as a pytest
plugin): the `lab` fixture, `make_bot` and `ask`."""

from __future__ import annotations

from typing import Any

from chatbot.api import Note, Status, Table
from chatbot.lab import Fault
from chatbot.testing import ask, make_bot
from netbot_uptime.commands import uptime_minutes


def test_uptime_phrase_in_minutes() -> None:
    assert uptime_minutes("r1 uptime is 1 week, 2 days, 3 hours, 1 minute\n") == 10080 + 2 * 1440 + 3 * 60 + 1
    assert uptime_minutes("no such line") is None


def test_uptime_lists_each_device(lab: Any) -> None:
    bot = make_bot(lab=lab)
    reply, result = ask(bot, "!uptime group:core", as_="alice")
    assert reply is not None and result is not None
    assert result.status is Status.OK, result.summary
    [table] = [p for p in result.parts if isinstance(p, Table)]
    assert sorted(row[0] for row in table.rows) == ["r1", "r2", "r3"]
    minutes = [int(row[2]) for row in table.rows]
    assert minutes == sorted(minutes, reverse=True) and min(minutes) > 0


def test_recent_reboots_are_named_in_a_note(lab: Any) -> None:
    bot = make_bot(lab=lab)
    [table] = [p for p in ask(bot, "!uptime r1").result.parts if isinstance(p, Table)]
    up_for = int(table.rows[0][2])
    assert not [p for p in ask(bot, "!uptime r1 below 1").result.parts if isinstance(p, Note)]
    [note] = [p for p in ask(bot, f"!uptime r1 below {up_for + 1}").result.parts if isinstance(p, Note)]
    assert note.text.endswith(": r1")


def test_a_bad_argument_gets_the_reason_and_the_usage() -> None:
    result = ask(make_bot(), "!uptime r1 below 0").result
    assert result is not None and result.status is Status.INVALID
    assert "minutes must be between 1 and 525600" in result.summary
    assert "uptime <targets> [below <minutes>]" in str(result.parts)


ACCESS = {
    "roles": {"viewer": {"commands": ["show.*"]}, "pinger": {"commands": ["ping"]}},
    "grants": [
        {"who": ["console:bob"], "where": ["*"], "roles": ["viewer"]},
        {"who": ["console:carol"], "where": ["*"], "roles": ["pinger"]},
    ],
}


def test_the_permission_is_show_uptime() -> None:
    bot = make_bot({"access": ACCESS})
    assert "uptime" in str(ask(bot, "!help", as_="bob").result.parts)
    assert "uptime" not in str(ask(bot, "!help", as_="carol").result.parts)
    assert ask(bot, "!uptime r1", as_="carol").result.status is Status.DENIED


def test_a_device_down_gets_its_own_line(lab_bot: Any, lab: Any) -> None:
    lab.set_fault("r2", Fault.DOWN)  # lab_bot clears it afterwards
    result = ask(lab_bot, "!uptime r1,r2").result
    assert result is not None and result.status is Status.PARTIAL
    assert "r2" in result.summary
    assert result.devices["r1"] == "ok" and result.devices["r2"] != "ok"


def test_a_bad_target_is_refused_before_any_device() -> None:
    result = ask(make_bot(), "!uptime nosuchdevice").result
    assert result is not None and result.status is Status.INVALID


def test_help_lists_the_command() -> None:
    result = ask(make_bot(), "!help").result
    assert result is not None and "uptime" in str(result.parts)


def test_the_check_kind_alerts_only_after_a_recent_reboot(lab: Any) -> None:
    bot = make_bot(lab=lab)
    kind = bot.monitors.kinds["uptime"]  # found through the entry point, like the command
    long_ago = kind.run(bot.context, kind.validate(bot.context, "r1", {"below": "1"}))
    assert long_ago["r1"].ok
    # below 100 years: every lab device "rebooted" more recently than that
    recent = kind.run(bot.context, kind.validate(bot.context, "r1", {"below": str(100 * 525600)}))
    assert not recent["r1"].ok
