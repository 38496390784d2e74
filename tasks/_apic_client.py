"""A small Cisco APIC REST client: login once, reuse the token, refresh it before it
expires, log in again when the APIC says it timed out. Errors become one line."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from chatbot.context import ApicEndpoint
from chatbot.errors import TaskFailure

# Refresh when this much of the token's lifetime is used, so a slow call never races expiry.
REFRESH_AT = 0.5


class ApicClient:
    def __init__(self, endpoint: ApicEndpoint) -> None:
        self.endpoint = endpoint
        self.session = requests.Session()
        self.session.verify = endpoint.verify_tls
        self._lock = threading.Lock()
        self._token_at = 0.0
        self._token_lifetime = 0.0
        self.logged_in = False

    # --- public -------------------------------------------------------------------
    def get_class(self, cls: str, params: dict[str, str] | None = None, node: bool = False) -> list[dict[str, Any]]:
        """imdata of `GET /api/[node/]class/<cls>.json`, as a list of attribute dicts."""
        path = f"/api/{'node/' if node else ''}class/{cls}.json"
        with self._lock:
            self._ensure_token()
            resp = self._request("GET", path, params=params)
            if resp.status_code == 403:  # token expired or revoked under us: one fresh login
                self._login()
                resp = self._request("GET", path, params=params)
            body = self._json(resp)
        return [obj[cls]["attributes"] for obj in body.get("imdata", []) if cls in obj]

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
        if not self.logged_in:
            self._login()
        elif time.monotonic() - self._token_at > self._token_lifetime * REFRESH_AT:
            resp = self._request("GET", "/api/aaaRefresh.json")
            if resp.status_code == 200:
                self._accept_token(self._json(resp))
            else:
                self._login()

    def _login(self) -> None:
        self.session.cookies.clear()
        body = {"aaaUser": {"attributes": {"name": self.endpoint.username, "pwd": self.endpoint.password}}}
        resp = self._request("POST", "/api/aaaLogin.json", json=body)
        if resp.status_code == 401:
            raise TaskFailure(f"APIC {self.endpoint.name} rejected the login: {self._error_text(resp)}")
        self._accept_token(self._json(resp))

    def _accept_token(self, body: dict[str, Any]) -> None:
        try:
            attrs = body["imdata"][0]["aaaLogin"]["attributes"]
            token = attrs["token"]
        except (KeyError, IndexError, TypeError):
            raise TaskFailure(f"APIC {self.endpoint.name} answered the login with an unexpected body") from None
        # The APIC also sets this cookie; setting it ourselves covers proxies that drop Set-Cookie.
        self.session.cookies.set("APIC-cookie", token)
        self._token_lifetime = float(attrs.get("refreshTimeoutSeconds") or 600)
        self._token_at = time.monotonic()
        self.logged_in = True

    # --- HTTP ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.endpoint.url + path
        try:
            return self.session.request(method, url, timeout=self.endpoint.timeout, **kwargs)
        except requests.exceptions.SSLError:
            raise TaskFailure(f"APIC {self.endpoint.name}: TLS verification failed for {self.endpoint.url} "
                              "(set verify_tls to a CA bundle path)") from None
        except requests.exceptions.Timeout:
            raise TaskFailure(f"APIC {self.endpoint.name} did not answer within {self.endpoint.timeout:g} s") from None
        except requests.exceptions.ConnectionError:
            raise TaskFailure(f"APIC {self.endpoint.name} is unreachable at {self.endpoint.url}") from None

    def _json(self, resp: requests.Response) -> dict[str, Any]:
        if resp.status_code == 403:
            raise TaskFailure(f"APIC {self.endpoint.name} refused the request: {self._error_text(resp)}")
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
