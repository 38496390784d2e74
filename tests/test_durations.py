"""One duration grammar for monitors (chat and config) and `chatbot audit --since`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatbot.cli import _since
from chatbot.durations import format_duration, format_elapsed, parse_duration
from chatbot.errors import ArgumentError, UserError


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), (" 2H ", 7200), ("30", 30), ("999999s", 999999),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1w", "1.5h", "-1m", "1 m", "1m30s", "1000000s", "1m 2"])
def test_parse_duration_refuses_with_one_line(text: str) -> None:
    with pytest.raises(ArgumentError) as err:
        parse_duration(text)
    assert "\n" not in str(err.value) and "write 30s, 1m, 5m or 1h" in str(err.value)


def test_a_bare_number_needs_a_unit_where_it_could_mean_something_else() -> None:
    with pytest.raises(ArgumentError):
        parse_duration("2026", unit_required=True)
    assert parse_duration("2026s", unit_required=True) == 2026


@pytest.mark.parametrize("seconds", [1, 45, 60, 90, 300, 3600, 5400, 86400, 172800, 999999])
def test_format_duration_reads_back_as_the_same_duration(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_takes_the_largest_unit_that_divides() -> None:
    assert [format_duration(s) for s in (10, 60, 90, 3600, 86400, 2.5)] == ["10s", "1m", "90s", "1h", "1d", "2.5s"]


def test_format_elapsed() -> None:
    assert [format_elapsed(s) for s in (0, 89.9, 90, 5399, 5400, 7500)] == \
        ["0 s", "89 s", "1 min", "89 min", "1 h 30 min", "2 h 5 min"]


def test_audit_since_takes_the_monitors_grammar() -> None:
    # `--since` used to know m, h and d only: `30s` and `1D` were refused there and not in a monitor.
    for text, back in (("30s", timedelta(seconds=30)), ("1D", timedelta(days=1)), ("24h", timedelta(hours=24))):
        before = datetime.now(UTC)
        since = _since(text)
        assert before - back - timedelta(seconds=5) <= since <= datetime.now(UTC) - back


def test_audit_since_still_takes_a_date_and_refuses_a_bare_number() -> None:
    assert _since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    for text in ("2026", "yesterday"):
        with pytest.raises(UserError, match=f"--since {text}: use 30m, 24h, 7d"):
            _since(text)
