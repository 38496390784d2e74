"""A small Cisco APIC REST client: login once, reuse the token, refresh it before it
expires, log in again when the APIC says it timed out or the session reached its maximum
lifetime, page large class queries, and stop logging in while the APIC throttles logins.
Errors become one line."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from chatbot.context import ApicEndpoint
from chatbot.errors import TaskFailure

if TYPE_CHECKING:
    import requests

# Refresh when this much of the token's lifetime is used, so a slow call never races expiry.
REFRESH_AT = 0.5
# After a throttled login (HTTP 503), no new login for this long unless the APIC says (Retry-After).
THROTTLE_BACKOFF = 60.0
PAGE_SIZE = 500


class Page:
    """One page of a class query: its objects' attributes and the APIC's totalCount."""

    def __init__(self, objects: list[dict[str, Any]], total: int) -> None:
        self.objects = objects
        self.total = total


class ApicClient:
    def __init__(self, endpoint: ApicEndpoint) -> None:
        import requests  # here, not at the top: the bot imports the apic tasks at start, APIC or not

        self.endpoint = endpoint
        self.session = requests.Session()
        self._lock = threading.Lock()
        self._token_at = 0.0
        self._token_lifetime = 0.0
        self._session_at = 0.0  # the login that started this session; refreshes keep it
        self._session_lifetime = float("inf")
        self._logins_blocked_until = 0.0
        self._last_login_attrs: dict[str, Any] = {}
        self.logged_in = False

    # --- public -------------------------------------------------------------------
    def get_class(self, cls: str, params: dict[str, str] | None = None, node: bool = False) -> list[dict[str, Any]]:
        """imdata of `GET /api/[node/]class/<cls>.json`, as a list of attribute dicts.
        For classes with few objects (health scores); faults go through get_page/get_all."""
        return self._query(cls, params, node).objects

    def get_page(self, cls: str, params: dict[str, str] | None = None, node: bool = False,
                 page_size: int = PAGE_SIZE, page: int = 0) -> Page:
        """One page (page-size, page from 0) and the total count of the query."""
        return self._query(cls, {**(params or {}), "page-size": str(page_size), "page": str(page)}, node)

    def get_all(self, cls: str, params: dict[str, str] | None = None, node: bool = False,
                limit: int = 5000, page_size: int = PAGE_SIZE) -> Page:
        """Every object of the query up to `limit`, page by page: an unpaged query of a
        large fabric is refused ("result dataset is too big"). `total` stays the APIC's."""
        first = self.get_page(cls, params, node, page_size, 0)
        objects, page = list(first.objects), 1
        while len(objects) < min(first.total, limit) and page * page_size < first.total:
            more = self.get_page(cls, params, node, page_size, page).objects
            if not more:  # the set shrank while we read it
                break
            objects += more
            page += 1
        return Page(objects[:limit], first.total)

    def _query(self, cls: str, params: dict[str, str] | None, node: bool) -> Page:
        path = f"/api/{'node/' if node else ''}class/{cls}.json"
        with self._lock:
            self._ensure_token()
            resp = self._request("GET", path, params=params)
            if resp.status_code == 403:  # token expired or revoked under us: one fresh login
                self._login()
                resp = self._request("GET", path, params=params)
            body = self._json(resp)
        objects = [obj[cls]["attributes"] for obj in body.get("imdata", []) if cls in obj]
        try:
            total = int(body.get("totalCount", len(objects)))
        except (TypeError, ValueError):
            total = len(objects)
        return Page(objects, total)

    def logout(self) -> None:
        with self._lock:
            if self.logged_in:
                try:
                    self._request("POST", "/api/aaaLogout.json",
                                  json={"aaaUser": {"attributes": {"name": self.endpoint.username}}})
                except TaskFailure:
                    pass
                self.logged_in = False

    # --- token handling -----------------------------------------------------------
    def _ensure_token(self) -> None:
        now = time.monotonic()
        if not self.logged_in or now - self._session_at >= self._session_lifetime:
            self._login()  # a session past its maximum lifetime cannot be refreshed
        elif now - self._token_at > self._token_lifetime * REFRESH_AT:
            resp = self._request("GET", "/api/aaaRefresh.json")
            if resp.status_code == 200:
                self._accept_token(self._json(resp))
            else:
                self._login()

    def _login(self) -> None:
        wait = self._logins_blocked_until - time.monotonic()
        if wait > 0:  # asking again while throttled only prolongs the throttling
            raise self._throttled(wait)
        self.logged_in = False
        self.session.cookies.clear()
        body = {"aaaUser": {"attributes": {"name": self.endpoint.username, "pwd": self.endpoint.password}}}
        resp = self._request("POST", "/api/aaaLogin.json", json=body)
        if resp.status_code == 401:
            raise TaskFailure(f"APIC {self.endpoint.name} rejected the login: {self._error_text(resp)}")
        if resp.status_code == 503:  # NGINX login throttling, an HTML page rather than APIC JSON
            wait = _retry_after(resp) or THROTTLE_BACKOFF
            self._logins_blocked_until = time.monotonic() + wait
            raise self._throttled(wait)
        self._accept_token(self._json(resp))
        self._session_at = self._token_at
        self._session_lifetime = _seconds(self._last_login_attrs.get("maximumLifetimeSeconds"), float("inf"))

    def _throttled(self, wait: float) -> TaskFailure:
        return TaskFailure(f"APIC {self.endpoint.name} throttles logins after failed attempts: no new login "
                           f"for {wait:.0f} s (check the password of [apic.{self.endpoint.name}])")

    def _accept_token(self, body: dict[str, Any]) -> None:
        try:
            attrs = body["imdata"][0]["aaaLogin"]["attributes"]
            token = attrs["token"]
        except (KeyError, IndexError, TypeError):
            raise TaskFailure(f"APIC {self.endpoint.name} answered the login with an unexpected body") from None
        # The APIC also sets this cookie; setting it ourselves covers proxies that drop Set-Cookie.
        self.session.cookies.set("APIC-cookie", token)
        self._last_login_attrs = attrs
        self._token_lifetime = _seconds(attrs.get("refreshTimeoutSeconds"), 600.0)
        self._token_at = time.monotonic()
        self.logged_in = True

    # --- HTTP ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        url = self.endpoint.url + path
        name = self.endpoint.name
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify
            return self.session.request(method, url, timeout=self.endpoint.timeout,
                                        verify=self.endpoint.verify_tls, **kwargs)
        except requests.exceptions.SSLError:
            raise TaskFailure(f"APIC {name}: its TLS certificate is not trusted ({self.endpoint.url}): set "
                              f'verify_tls = "/path/to/ca.pem" in [apic.{name}] to the certificate or CA '
                              "that signed it") from None
        except requests.exceptions.Timeout:
            raise TaskFailure(f"APIC {name} did not answer within {self.endpoint.timeout:g} s") from None
        except requests.exceptions.ConnectionError:
            raise TaskFailure(f"APIC {name} is unreachable at {self.endpoint.url}") from None
        except requests.exceptions.RequestException as err:
            raise TaskFailure(f"APIC {name}: the request failed ({type(err).__name__})") from None
        except OSError:  # requests' own error for a verify_tls path that is not there
            raise TaskFailure(f"APIC {name}: verify_tls = \"{self.endpoint.verify_tls}\" in [apic.{name}] "
                              "is not a readable certificate file") from None

    def _json(self, resp: requests.Response) -> dict[str, Any]:
        if resp.status_code == 403:
            raise TaskFailure(f"APIC {self.endpoint.name} refused the request: {self._error_text(resp)}")
        if resp.status_code == 503:
            raise TaskFailure(f"APIC {self.endpoint.name} is throttling requests (HTTP 503): try again later")
        if resp.status_code != 200:
            raise TaskFailure(f"APIC {self.endpoint.name} answered HTTP {resp.status_code}: {self._error_text(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise TaskFailure(f"APIC {self.endpoint.name} answered with something that is not JSON") from None

    @staticmethod
    def _error_text(resp: requests.Response) -> str:
        try:
            return str(resp.json()["imdata"][0]["error"]["attributes"]["text"])[:200]
        except (ValueError, KeyError, IndexError, TypeError):
            return resp.reason or f"HTTP {resp.status_code}"


def _seconds(value: Any, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def active_faults_query(severity: str | None) -> dict[str, str]:
    """Query parameters for faults that are active now, newest first.

    An APIC lists every faultInst in its lifecycle (Cisco APIC Faults, Events, and System
    Messages Management Guide, "Fault Lifecycle"): soaking (not yet confirmed), raised,
    raised-clearing and soaking-clearing (the condition has gone, the clearing interval
    runs), and retaining (cleared, kept for an hour with severity "cleared"). Only a
    raised fault whose severity is not "cleared" is active."""
    tests = ['eq(faultInst.lc,"raised")',
             f'eq(faultInst.severity,"{severity}")' if severity else 'ne(faultInst.severity,"cleared")']
    return {"query-target-filter": f"and({','.join(tests)})", "order-by": "faultInst.lastTransition|desc"}


_clients: dict[tuple[str, str], ApicClient] = {}
_clients_lock = threading.Lock()


def client_for(endpoint: ApicEndpoint) -> ApicClient:
    """One client per APIC and user, so the login token is reused across commands."""
    key = (endpoint.url, endpoint.username)
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.endpoint != endpoint:
            client = _clients[key] = ApicClient(endpoint)
        return client
