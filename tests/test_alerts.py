"""The alert state machine on its own: states and outcomes in, states and changes out,
with the clock given by the test (no database, no scheduler, no device)."""

from __future__ import annotations

from collections.abc import Mapping

from chatbot.checks import Outcome
from chatbot.monitoring.alerts import DOWN, UP, Changes, TargetState, alert, dark_sites, step
from chatbot.results import Result, Status, Table

T0 = 1_000_000.0  # an epoch second, far from zero
HOUR = 3600.0


def run(states: Mapping[str, TargetState], outcomes: Mapping[str, Outcome], now: float, *,
        after: int = 2, remind_every: float = HOUR) -> Changes:
    return step(states, outcomes, now, after=after, remind_every=remind_every)


def fail(detail: str = "no answer") -> Outcome:
    return Outcome(False, detail)


def table(result: Result) -> list[list[str]]:
    [part] = result.parts
    assert isinstance(part, Table)
    return part.rows


def rows(changes: Changes, sites: Mapping[str, str | None] | None = None) -> list[list[str]]:
    result = alert("monitor m1 (ssh all every 1m)", changes, sites or {})
    assert result is not None
    return table(result)


def test_down_only_after_n_failures_in_a_row_and_dated_from_the_first() -> None:
    first = run({}, {"r1": fail()}, T0, after=3)
    assert not first and first.states["r1"] == TargetState(failures=1, first_failure=T0, detail="no answer")
    second = run(first.states, {"r1": fail("timed out")}, T0 + 60, after=3)
    assert not second and second.states["r1"].status == UP and second.states["r1"].failures == 2
    third = run(second.states, {"r1": fail("timed out")}, T0 + 120, after=3)
    assert [(d.target, d.detail) for d in third.downs] == [("r1", "timed out")]
    assert third.states["r1"] == TargetState(status=DOWN, failures=3, first_failure=T0, down_since=T0,
                                             last_notified=T0 + 120, detail="timed out")
    assert not run(third.states, {"r1": fail()}, T0 + 180, after=3)  # still down: no storm


def test_a_success_between_failures_damps_a_flap() -> None:
    states: Mapping[str, TargetState] = {}
    for now, outcome in [(T0, fail()), (T0 + 60, Outcome(True)), (T0 + 120, fail()), (T0 + 180, Outcome(True))]:
        changes = run(states, {"r1": outcome}, now, after=2)
        assert not changes
        states = changes.states
    assert states["r1"] == TargetState()


def test_recovery_reports_the_outage_from_its_first_failure() -> None:
    down = run(run({}, {"r1": fail()}, T0).states, {"r1": fail()}, T0 + 60)
    up = run(down.states, {"r1": Outcome(True)}, T0 + 300)
    assert [(u.target, u.after_seconds) for u in up.ups] == [("r1", 300.0)]
    assert up.states["r1"] == TargetState() and not up.downs and not up.reminders
    result = alert("monitor m1 (ssh r1 every 1m)", up, {})
    assert result is not None and result.status is Status.OK
    assert result.summary == "monitor m1 (ssh r1 every 1m): 1 back up"
    assert table(result) == [["r1", "up", "back after 5 min"]]


def test_still_down_is_repeated_once_per_reminder_interval() -> None:
    states = run({}, {"r1": fail()}, T0, after=1).states  # down at T0
    seen = []
    for minutes in range(30, 241, 30):
        changes = run(states, {"r1": fail("refused")}, T0 + minutes * 60, after=1)
        states = changes.states
        seen += [(minutes, r.target, r.for_seconds) for r in changes.reminders]
        if changes.reminders:
            result = alert("monitor m1 (ssh r1 every 30m)", changes, {})
            assert result is not None and result.status is Status.FAILED
            assert result.summary == "monitor m1 (ssh r1 every 30m): 1 still down"
    assert seen == [(60, "r1", HOUR), (120, "r1", 2 * HOUR), (180, "r1", 3 * HOUR), (240, "r1", 4 * HOUR)]
    assert rows(run(states, {"r1": fail("refused")}, T0 + 300 * 60, after=1)) == \
        [["r1", "still down", "for 5 h 0 min: refused"]]


def test_a_vanished_target_is_back_up_and_forgotten() -> None:
    """A fault that cleared is no longer reported by the check: its target recovers and
    leaves no state behind, nor does a healthy target that vanished."""
    states = {"fault F0001": TargetState(status=DOWN, failures=4, first_failure=T0, down_since=T0,
                                         last_notified=T0, detail="critical"),
              "fault F0002": TargetState()}
    changes = run(states, {}, T0 + 90)
    assert [(u.target, u.after_seconds) for u in changes.ups] == [("fault F0001", 90.0)]
    assert changes.states == {}


def test_a_dark_site_is_one_line_and_other_downs_their_own() -> None:
    sites = {"r1": "hq", "r2": "hq", "r3": "branch", "r4": "branch", "r5": "lab", "r6": None}
    outcomes = {name: fail(f"{name} silent") for name in ("r2", "r1", "r3", "r5", "r6")}
    changes = run({}, outcomes, T0, after=1)
    assert [d.target for d in changes.downs] == ["r1", "r2", "r3", "r5", "r6"]
    result = alert("monitor m1 (ssh all every 1m)", changes, sites)
    assert result is not None and result.status is Status.FAILED
    assert result.summary == "monitor m1 (ssh all every 1m): 5 down (site hq dark)"
    # branch has r4 still up; lab has one device only: neither is a site outage
    assert table(result) == [["site hq", "DOWN", "all 2 devices: r1, r2"],
                                    ["r3", "DOWN", "r3 silent"], ["r5", "DOWN", "r5 silent"],
                                    ["r6", "DOWN", "r6 silent"]]


def test_dark_sites_needs_every_device_of_a_site_of_two_or_more() -> None:
    sites = {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "c2": "c"}
    assert dark_sites({"a1", "a2", "b1", "c1"}, sites) == {"a"}
    assert dark_sites({"a1", "a2", "c1", "c2"}, sites) == {"a", "c"}
    assert dark_sites(set(), sites) == set()


def test_one_run_with_every_kind_of_change_is_one_message() -> None:
    states = {"r1": TargetState(status=DOWN, failures=9, first_failure=T0, down_since=T0, last_notified=T0),
              "r2": TargetState(status=DOWN, failures=9, first_failure=T0, down_since=T0, last_notified=T0),
              "r3": TargetState(failures=1, first_failure=T0 + HOUR)}
    changes = run(states, {"r1": Outcome(True), "r2": fail("still off"), "r3": fail("off")}, T0 + 2 * HOUR)
    result = alert("monitor m1 (ssh r1,r2,r3 every 1h)", changes, {})
    assert result is not None and result.status is Status.FAILED
    assert result.summary == "monitor m1 (ssh r1,r2,r3 every 1h): 1 down, 1 still down, 1 back up"
    assert table(result) == [["r3", "DOWN", "off"], ["r2", "still down", "for 2 h 0 min: still off"],
                                    ["r1", "up", "back after 2 h 0 min"]]


def test_nothing_changed_is_no_alert() -> None:
    changes = run({"r1": TargetState()}, {"r1": Outcome(True)}, T0)
    assert not changes and alert("monitor m1", changes, {}) is None
