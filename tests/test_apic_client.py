"""The APIC client against the lab APIC: token reuse, refresh, expiry, errors."""

from __future__ import annotations

import time

import pytest

from chatbot.context import ApicEndpoint
from chatbot.errors import TaskFailure
from chatbot.lab import Fault, LabThread
from tasks._apic_client import ApicClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_token_lab():  # type: ignore[no-untyped-def]
    with LabThread(devices=1, token_timeout=2) as lab:
        yield lab


def endpoint(lab, password: str | None = None) -> ApicEndpoint:  # type: ignore[no-untyped-def]
    return ApicEndpoint("apic1", lab.apic.url, lab.apic.username, password or lab.apic.password, True, 5.0)


def test_token_is_reused_across_calls(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    stats = short_token_lab.apic.stats
    before = stats.logins
    client = ApicClient(endpoint(short_token_lab))
    for _ in range(3):
        assert client.get_class("fabricHealthTotal")
    assert stats.logins - before == 1


def test_token_is_refreshed_before_it_expires(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    stats = short_token_lab.apic.stats
    client = ApicClient(endpoint(short_token_lab))
    client.get_class("fabricHealthTotal")
    logins, refreshes = stats.logins, stats.refreshes
    deadline = time.monotonic() + 5
    while time.monotonic() - client._token_at <= client._token_lifetime * 0.5:  # past half the lifetime
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get_class("fabricHealthTotal")
    assert stats.refreshes == refreshes + 1 and stats.logins == logins


def test_expired_token_leads_to_one_fresh_login(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    stats = short_token_lab.apic.stats
    client = ApicClient(endpoint(short_token_lab))
    client.get_class("fabricHealthTotal")
    client._token_lifetime = 1e9  # pretend we think the token is fresh, as after a clock jump
    deadline = time.monotonic() + 6
    rejected = stats.rejected_tokens
    while True:  # wait until the lab really expired the token
        logins = stats.logins
        assert client.get_class("fabricHealthTotal")
        if stats.rejected_tokens > rejected:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert stats.logins == logins + 1


def test_wrong_password_is_one_clear_line(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    client = ApicClient(endpoint(short_token_lab, password="wrong"))
    with pytest.raises(TaskFailure) as err:
        client.get_class("fabricHealthTotal")
    assert str(err.value) == ("APIC apic1 rejected the login: "
                              "Username or password is incorrect - FAILED local authentication")


def test_down_apic_is_unreachable(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    short_token_lab.set_fault("apic1", Fault.DOWN)
    try:
        with pytest.raises(TaskFailure, match="APIC apic1 is unreachable at http://127.0.0.1:"):
            ApicClient(endpoint(short_token_lab)).get_class("fabricHealthTotal")
    finally:
        short_token_lab.set_fault("apic1", None)
