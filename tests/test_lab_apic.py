"""The lab APIC is as unkind as the real one (sources in chatbot/lab/apic.py): HTTPS with
a self-signed certificate, 400 on unknown classes and properties, only the right methods,
token rotation with a lifetime cap, throttled failed logins, faults in every lifecycle
state, and no unpaged answer too big."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Callable, Iterator
from typing import Any

import certifi
import pytest
import requests
from cryptography import x509

from chatbot.lab import Lab, LabThread
from chatbot.lab.apic import TOO_BIG

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with LabThread(devices=1) as running:
        yield running


@pytest.fixture()
def apic(lab: Lab) -> Iterator[Any]:
    """The lab's APIC, its settings restored after the test."""
    settings = {name: getattr(lab.apic, name) for name in
                ("max_lifetime", "login_failures_allowed", "login_throttle_seconds", "max_unpaged")}
    yield lab.apic
    for name, value in settings.items():
        setattr(lab.apic, name, value)
    lab.apic._failed_logins.clear()


def https(lab: Lab) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = str(lab.apic.ca_file)
    return session


def login(lab: Lab, session: requests.Session, pwd: str | None = None) -> requests.Response:
    body = {"aaaUser": {"attributes": {"name": lab.apic.username, "pwd": pwd or lab.apic.password}}}
    return session.post(f"{lab.apic.url}/api/aaaLogin.json", json=body, timeout=5)


def error_text(response: requests.Response) -> str:
    return str(response.json()["imdata"][0]["error"]["attributes"]["text"])


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_https_with_a_self_signed_certificate(lab: Lab) -> None:
    assert lab.apic.url.startswith("https://127.0.0.1:")
    assert lab.apic.ca_file is not None and lab.apic.ca_file.is_file()
    certificate = x509.load_pem_x509_certificate(lab.apic.ca_file.read_bytes())
    assert certificate.issuer == certificate.subject  # self-signed
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert certificate.not_valid_after_utc > dt.datetime.now(dt.UTC)
    with pytest.raises(requests.exceptions.SSLError):  # the public CAs do not vouch for it
        requests.get(f"{lab.apic.url}/api/class/fabricHealthTotal.json", verify=certifi.where(), timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on the port
        requests.get(lab.apic.url.replace("https://", "http://") + "/api/class/fabricHealthTotal.json",
                     timeout=5)
    assert login(lab, https(lab)).status_code == 200


def test_unknown_classes_and_properties_are_refused(lab: Lab) -> None:
    session = https(lab)
    assert login(lab, session).status_code == 200
    faults = f"{lab.apic.url}/api/node/class/faultInst.json"
    unknown_class = session.get(f"{lab.apic.url}/api/node/class/faultInstance.json", timeout=5)
    assert unknown_class.status_code == 400
    assert error_text(unknown_class) == "Request failed, unresolved class for faultInstance"
    for params in (
        {"query-target-filter": 'eq(faultInst.lifecycle,"raised")'},  # no such attribute
        {"query-target-filter": 'eq(faultSummary.severity,"major")'},  # another class
        {"query-target-filter": 'eq(severity,"major")'},  # no class at all
        {"query-target-filter": 'and(eq(faultInst.lc,"raised"),ne(faultInst.sev,"cleared"))'},
        {"order-by": "faultInst.when|desc"},
    ):
        refused = session.get(faults, params=params, timeout=5)
        assert refused.status_code == 400, params
        assert "unresolved property" in error_text(refused)
    valid = session.get(faults, params={"query-target-filter": 'and(eq(faultInst.lc,"raised"),'
                                        'ne(faultInst.severity,"cleared"))'}, timeout=5)
    assert valid.status_code == 200


def test_only_the_right_methods(lab: Lab) -> None:
    session = https(lab)
    assert login(lab, session).status_code == 200
    url = lab.apic.url
    for method, path in (("GET", "/api/aaaLogin.json"), ("POST", "/api/aaaRefresh.json"),
                         ("GET", "/api/aaaLogout.json"), ("POST", "/api/node/class/faultInst.json"),
                         ("DELETE", "/api/class/fabricHealthTotal.json")):
        response = session.request(method, url + path, json={}, timeout=5)
        assert response.status_code == 405, (method, path)
        assert response.json()["imdata"][0]["error"]["attributes"]["code"] == "405"
    assert session.get(url + "/api/class/fabricHealthTotal.json", timeout=5).status_code == 200  # still logged in


def test_refresh_rotates_the_token_within_a_lifetime_cap(lab: Lab, apic: Any) -> None:
    apic.max_lifetime = 2
    session = https(lab)
    first = login(lab, session).json()["imdata"][0]["aaaLogin"]["attributes"]
    assert first["maximumLifetimeSeconds"] == "2"
    health = f"{lab.apic.url}/api/class/fabricHealthTotal.json"
    refreshed = session.get(f"{lab.apic.url}/api/aaaRefresh.json", timeout=5)
    assert refreshed.status_code == 200
    second = refreshed.json()["imdata"][0]["aaaLogin"]["attributes"]
    assert second["token"] != first["token"] and second["firstLoginTime"] == first["firstLoginTime"]
    old = https(lab).get(health, cookies={"APIC-cookie": first["token"]}, timeout=5)
    assert old.status_code == 403  # rotated: the old token is dead at once
    # Past the cap the token dies although refreshTimeoutSeconds (600) has not run out,
    # and a refresh cannot extend the session: only a new login helps.
    assert wait_for(lambda: session.get(health, timeout=5).status_code == 403)
    again = https(lab)
    assert login(lab, again).status_code == 200
    assert again.get(f"{lab.apic.url}/api/aaaRefresh.json", timeout=5).status_code == 200  # within the cap
    assert wait_for(lambda: again.get(f"{lab.apic.url}/api/aaaRefresh.json", timeout=5).status_code == 403)
    assert login(lab, again).status_code == 200 and again.get(health, timeout=5).status_code == 200


def test_repeated_failed_logins_are_throttled(lab: Lab, apic: Any) -> None:
    apic.login_failures_allowed = 3
    session = https(lab)
    for _ in range(3):
        assert login(lab, session, pwd="wrong").status_code == 401
    throttled = login(lab, session)  # even the right password, while throttled
    assert throttled.status_code == 503
    assert throttled.headers["Content-Type"].startswith("text/html")  # NGINX's page, not APIC JSON
    assert "503 Service Temporarily Unavailable" in throttled.text
    apic.login_throttle_seconds = 0.3  # the window passes
    assert wait_for(lambda: login(lab, session).status_code == 200)


def test_faults_in_every_lifecycle_state(lab: Lab) -> None:
    session = https(lab)
    assert login(lab, session).status_code == 200
    body = session.get(f"{lab.apic.url}/api/node/class/faultInst.json", timeout=5).json()
    faults = [item["faultInst"]["attributes"] for item in body["imdata"]]
    by_lc = {f["lc"]: f for f in faults}
    assert {"raised", "soaking", "raised-clearing", "retaining"} <= set(by_lc)
    retaining = by_lc["retaining"]
    assert retaining["severity"] == "cleared" and retaining["origSeverity"] == "critical"
    with pytest.raises(ValueError):
        lab.apic.add_fault("F0001", "major", "x", lifecycle="gone")


def test_an_unpaged_answer_too_big_is_refused(lab: Lab, apic: Any) -> None:
    apic.max_unpaged = 3
    session = https(lab)
    assert login(lab, session).status_code == 200
    url = f"{lab.apic.url}/api/node/class/faultInst.json"
    too_big = session.get(url, timeout=5)
    assert too_big.status_code == 400 and error_text(too_big) == TOO_BIG
    pages = [session.get(url, params={"page-size": "3", "page": str(n)}, timeout=5).json() for n in range(3)]
    total = int(pages[0]["totalCount"])
    assert total > 3 and all(p["totalCount"] == str(total) for p in pages)
    dns = [item["faultInst"]["attributes"]["dn"] for p in pages for item in p["imdata"]]
    assert len(dns) == len(set(dns)) == total
    bad = session.get(url, params={"page-size": "0"}, timeout=5)
    assert bad.status_code == 400
