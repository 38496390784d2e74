"""`!apic faults` and the apic-faults monitor against a lab APIC that, like a real one,
lists soaking, clearing and retaining (cleared) faults next to active ones, and refuses
an unpaged answer that is too big."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chatbot.app import build_bot, build_context
from chatbot.bot import Bot
from chatbot.cli import lab_access
from chatbot.config import parse_config
from chatbot.lab import Lab, LabThread
from chatbot.results import Note, Status, Table
from chatbot.testing import ask
from tasks import monitor_checks

pytestmark = pytest.mark.timeout(60)
ACTIVE = {"F0103", "F0532", "F0467", "F1543"}  # the lab's raised faults
NOT_ACTIVE = {"F0546", "F1394", "F0321"}  # retaining (cleared), soaking, raised-clearing


@pytest.fixture()
def lab() -> Iterator[Lab]:
    with LabThread(devices=1) as running:
        yield running


@pytest.fixture()
def bot(lab: Lab) -> Bot:
    return build_bot(parse_config({}), lab_access(lab))


def codes(result: Any) -> set[str]:
    table = next(p for p in result.parts if isinstance(p, Table))
    return {row[1] for row in table.rows}


def test_only_raised_faults_that_are_not_cleared_count(lab: Lab, bot: Bot) -> None:
    everything = ask(bot, "!apic faults").result
    assert everything.status is Status.OK, everything.summary
    assert everything.summary == "APIC apic1: 4 active faults"
    assert codes(everything) == ACTIVE
    critical = ask(bot, "!apic faults critical").result
    assert critical.summary == "APIC apic1: 1 active critical fault"  # not the soaking one, not the cleared one
    assert codes(critical) == {"F0103"}
    lab.apic.clear_faults()
    lab.apic.add_fault("F0546", "critical", "Port was down", lifecycle="retaining")
    assert ask(bot, "!apic faults").result.summary == "APIC apic1: no active faults"


def test_many_faults_are_paged_and_counted(lab: Lab, bot: Bot) -> None:
    lab.apic.max_unpaged = 100  # a large fabric refuses to answer such a query unpaged
    for n in range(150):
        lab.apic.add_fault("F0532", "major", f"Port {n} is down", dn=f"topology/pod-1/node-101/sys/phys-[eth1/{n}]/fault")
    result = ask(bot, "!apic faults").result
    assert result.status is Status.OK, result.summary
    assert result.summary == "APIC apic1: 154 active faults"
    table = next(p for p in result.parts if isinstance(p, Table))
    assert len(table.rows) == 50 and table.rows[0][0] == "critical"  # the worst first
    assert [p.text for p in result.parts if isinstance(p, Note)] == ["showing 50 of 154"]
    queries = list(lab.apic.stats.queries)
    assert queries and all("page-size" in q for q in queries)
    major = ask(bot, "!apic faults major").result
    assert major.summary == "APIC apic1: 151 active major faults"


def test_the_monitor_follows_active_faults_only_and_pages(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = build_context(parse_config({}), lab_access(lab))
    outcomes = monitor_checks.apic_faults_check(ctx, {"apic": "apic1", "severity": "critical"})
    assert [key.split()[1] for key in outcomes] == ["F0103"]  # the soaking and the cleared one are not alerts
    lab.apic.max_unpaged = 100
    for n in range(130):
        lab.apic.add_fault("F0103", "critical", f"eth1/{n} down", dn=f"topology/pod-1/node-102/sys/phys-[eth1/{n}]/fault")
    monkeypatch.setattr(monitor_checks, "MAX_MONITORED_FAULTS", 120)
    outcomes = monitor_checks.apic_faults_check(ctx, {"apic": "apic1", "severity": "critical"})
    assert len(outcomes) == 121 and all(not o.ok for o in outcomes.values())
    assert outcomes["apic1 more critical faults"].detail == ("11 more not followed one by one "
                                                            "(the check follows the newest 120)")


@pytest.mark.parametrize(("section", "reason"), [
    ({"url": "apic1.example.net", "password": "x"}, 'url "apic1.example.net" needs its scheme: https://apic1.example.net'),
    ({"url": "https://apic1", "password": "x", "verify_tls": ""}, 'verify_tls = "" names no file'),
])
def test_an_apic_section_that_cannot_work_is_one_line(section: dict[str, Any], reason: str) -> None:
    from chatbot.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config({"apic": {"fabric1": section}})
    assert reason in str(err.value) and "\n" not in str(err.value)
