"""The APIC client against the lab APIC: token reuse, refresh, expiry, the session's
lifetime cap, throttled logins, TLS verification, paging, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import certifi
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


def endpoint(lab, password: str | None = None, verify: bool | str | None = None) -> ApicEndpoint:  # type: ignore[no-untyped-def]
    return ApicEndpoint("apic1", lab.apic.url, lab.apic.username, password or lab.apic.password,
                        str(lab.apic.ca_file) if verify is None else verify, 5.0)


@pytest.fixture()
def system_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on many hosts: REQUESTS_CA_BUNDLE names the system's CAs. requests lets it
    override a Session's verify, so a client that sets only that trusts the wrong CAs."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    yield


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
        with pytest.raises(TaskFailure, match="APIC apic1 is unreachable at https://127.0.0.1:"):
            ApicClient(endpoint(short_token_lab)).get_class("fabricHealthTotal")
    finally:
        short_token_lab.set_fault("apic1", None)


def test_verify_tls_file_is_used_whatever_the_environment(short_token_lab, system_ca_bundle) -> None:  # type: ignore[no-untyped-def]
    assert ApicClient(endpoint(short_token_lab)).get_class("fabricHealthTotal")


def test_an_untrusted_certificate_says_how_to_trust_it(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskFailure) as err:
        ApicClient(endpoint(short_token_lab, verify=True)).get_class("fabricHealthTotal")
    assert str(err.value) == (f"APIC apic1: its TLS certificate is not trusted ({short_token_lab.apic.url}): "
                              'set verify_tls = "/path/to/ca.pem" in [apic.apic1] to the certificate or CA '
                              "that signed it")


def test_a_missing_ca_file_is_one_line(short_token_lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TaskFailure) as err:
        ApicClient(endpoint(short_token_lab, verify=str(missing))).get_class("fabricHealthTotal")
    assert str(err.value) == f'APIC apic1: verify_tls = "{missing}" in [apic.apic1] is not a readable certificate file'


def test_throttled_logins_are_reported_and_not_repeated(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    apic = short_token_lab.apic
    apic.login_failures_allowed = 2
    apic._failed_logins.clear()  # earlier tests' failures
    try:
        client = ApicClient(endpoint(short_token_lab, password="wrong"))
        for _ in range(2):
            with pytest.raises(TaskFailure, match="rejected the login"):
                client.get_class("fabricHealthTotal")
        with pytest.raises(TaskFailure) as err:
            client.get_class("fabricHealthTotal")
        assert str(err.value) == ("APIC apic1 throttles logins after failed attempts: no new login for 60 s "
                                  "(check the password of [apic.apic1])")
        throttled, requests_seen = apic.stats.throttled_logins, apic.stats.requests
        for _ in range(3):  # a monitor running every few seconds must not keep the throttle on
            with pytest.raises(TaskFailure, match="throttles logins"):
                client.get_class("fabricHealthTotal")
        assert (apic.stats.throttled_logins, apic.stats.requests) == (throttled, requests_seen)
    finally:
        apic.login_failures_allowed = 20
        apic._failed_logins.clear()


def test_the_session_lifetime_cap_leads_to_a_fresh_login(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    apic = short_token_lab.apic
    apic.max_lifetime = 3
    try:
        client = ApicClient(endpoint(short_token_lab))
        client.get_class("fabricHealthTotal")
        logins, refreshes = apic.stats.logins, apic.stats.refreshes
        deadline = time.monotonic() + 10
        while apic.stats.logins == logins:  # every call answers, through refreshes and the cap
            assert client.get_class("fabricHealthTotal")
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert apic.stats.refreshes > refreshes  # the token was refreshed (rotated) before the cap
        assert client.get_class("fabricHealthTotal")
    finally:
        apic.max_lifetime = 86400


def test_large_queries_are_read_page_by_page(short_token_lab) -> None:  # type: ignore[no-untyped-def]
    apic = short_token_lab.apic
    apic.max_unpaged = 3
    try:
        client = ApicClient(endpoint(short_token_lab))
        with pytest.raises(TaskFailure, match="result dataset is too big"):
            client.get_class("faultInst", node=True)
        everything = client.get_all("faultInst", node=True, page_size=2)
        assert everything.total == len(apic._faults) == len({f["dn"] for f in everything.objects})
        assert [q.get("page") for q in list(apic.stats.queries)[-4:]] == ["0", "1", "2", "3"]
        capped = client.get_all("faultInst", node=True, page_size=2, limit=3)
        assert (len(capped.objects), capped.total) == (3, len(apic._faults))
    finally:
        apic.max_unpaged = 10000
