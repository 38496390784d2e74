"""Simulated Cisco APIC REST API (HTTPS on loopback, aiohttp server).

Faithful to what the bot relies on (see docs/architecture.md, "APIC REST"), including
the ways the real APIC is unkind to a client. Sources are named per behaviour:

- HTTPS only, with a self-signed certificate made at start, as a fresh APIC serves one
  it generated itself (Cisco APIC Security Configuration Guide, "Configuring Custom
  Certificate": the default key ring holds a self-signed certificate). The certificate is
  published as a PEM file (`ca_file`) for clients to trust.
- `POST /api/aaaLogin.json` {"aaaUser":{"attributes":{"name","pwd"}}} -> aaaLogin token
  and `Set-Cookie: APIC-cookie=<token>; path=/; HttpOnly`; bad credentials -> 401
  (Cisco APIC REST API Configuration Guide, "Authenticating and Maintaining an API
  Session").
- Every other /api call needs a live APIC-cookie, else 403 "Token was invalid (Error:
  Token timeout)". Tokens live `token_timeout` seconds (refreshTimeoutSeconds, default 600).
- `GET /api/aaaRefresh.json` -> a new token; the old one stops working at once. A session
  cannot be refreshed past `max_lifetime` seconds after its first login (the aaaLogin
  attribute maximumLifetimeSeconds, 86400 on a real APIC; refreshed tokens keep the
  session's firstLoginTime): then only a new login helps. The 403 text for that case is
  approximated (the same token-timeout text).
- `POST /api/aaaLogout.json` drops the session's token.
- Methods: aaaLogin and aaaLogout take POST, aaaRefresh and class queries take GET; any
  other method is refused. The real APIC's answer was not found in Cisco's documents:
  the lab answers 405 in the usual error shape (approximated).
- Failed logins are throttled: after `login_failures_allowed` failures within
  `login_throttle_seconds`, every login gets 503 until the window has passed. The APIC
  throttles aaaLogin through NGINX (Cisco ACI "Support for NGINX Rate Limit" and the REST
  API Configuration Guide, "Configuring HTTP and HTTPS Throttling"); NGINX answers a
  throttled request with its own HTML 503 page (nginx limit_req_status, default 503),
  not with APIC JSON.
- `/api/class/<cls>.json` and `/api/node/class/<cls>.json` for fabricHealthTotal,
  faultSummary and faultInst, with `query-target-filter` (eq, ne, lt, gt, le, ge, wcard,
  and, or, not), `order-by=<cls>.<attr>|asc|desc`, `page` (from 0) and `page-size`;
  `totalCount` is the count before paging. An unknown class is refused with 400 "Request
  failed, unresolved class for <cls>"; an unknown property in a filter or order-by with
  400 (text approximated). An unpaged query whose result exceeds `max_unpaged` objects
  is refused with 400 "Unable to process the query, result dataset is too big", as a
  large fabric does (seen in automateyournetwork/ACEye issue #132; the real threshold is
  not documented, so the lab's is a setting).
- Faults have a lifecycle (Cisco APIC Faults, Events, and System Messages Management
  Guide, "Fault Lifecycle"): soaking, soaking-clearing, raised, raised-clearing,
  retaining. A retaining fault's severity is "cleared" (its origSeverity keeps what it
  was) and it stays listed for the retention interval (3600 s by default). The lab
  carries soaking, raised-clearing and retaining faults next to raised ones.
- `order-by` sorts by the attributes' string values. How the real APIC orders an
  enumerated property such as severity was not found documented, so the bot never relies
  on it (it asks for each severity in turn).
- Every attribute value is a string; Content-Type is exactly `application/json`.

Faults: DOWN (socket closed, connections refused), AUTH (every login 401), SLOW (every
answer waits `slow_delay`), HANG (requests are never answered), DISCONNECT (the
connection is dropped without an answer).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hmac
import json
import re
import secrets
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from chatbot.lab.apic_filter import FilterError, UnknownProperty, parse_filter, property_name
from chatbot.lab.apic_tls import self_signed_certificate, server_context
from chatbot.lab.model import Fault

APIC_NAME = "apic1"
SEVERITIES = ("critical", "major", "minor", "warning", "info", "cleared")
LIFECYCLES = ("soaking", "soaking-clearing", "raised", "raised-clearing", "retaining")
TOO_BIG = "Unable to process the query, result dataset is too big"
# NGINX's own page for a throttled request (limit_req_status 503), as it sends it.
_THROTTLED_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_METHODS = {"/api/aaaLogin.json": "POST", "/api/aaaLogout.json": "POST", "/api/aaaRefresh.json": "GET"}
_COOKIE = "APIC-cookie"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _timestamp(moment: dt.datetime | None = None) -> str:
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


def _body(status: int, imdata: list[dict[str, Any]], total: int | None = None) -> web.Response:
    payload = {"totalCount": str(len(imdata) if total is None else total), "imdata": imdata}
    # Set the header by hand: aiohttp's json_response would add "; charset=utf-8", and
    # some clients compare the media type with exactly "application/json".
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )


def _error(status: int, text: str) -> web.Response:
    return _body(status, [{"error": {"attributes": {"code": str(status), "text": text}}}])


def _wrong_method(request: web.Request) -> web.Response:
    return _error(405, f"Method {request.method} is not allowed for {request.path}")


@dataclass
class ApicStats:
    logins: int = 0
    failed_logins: int = 0
    throttled_logins: int = 0
    refreshes: int = 0
    logouts: int = 0
    requests: int = 0
    rejected_tokens: int = 0
    # the parameters of the latest class queries (bounded: a lab may run for days)
    queries: collections.deque[dict[str, str]] = field(default_factory=lambda: collections.deque(maxlen=200))


@dataclass
class _Session:
    user: str
    expires: float  # monotonic
    first_login: float  # monotonic; the lifetime cap counts from here, across refreshes
    first_login_wall: str  # epoch seconds, as firstLoginTime


@dataclass
class _Health:
    cur: int
    prev: int
    updated: str = field(default_factory=_timestamp)


_DEFAULT_FAULTS: tuple[tuple[str, str, str, str, str], ...] = (  # raised
    (
        "F0103",
        "critical",
        "Physical Interface eth1/49 on Node 101 is now down",
        "topology/pod-1/node-101/sys/phys-[eth1/49]/phys/fault-F0103",
        "interface-physical-down",
    ),
    (
        "F0532",
        "major",
        "Port is down, reason:sfpAbsent(connected), used by:EPG, lastLinkStateChange:2024-11-20T08:12:44.112+00:00",
        "topology/pod-2/node-201/sys/phys-[eth1/12]/phys/fault-F0532",
        "port-down",
    ),
    (
        "F0467",
        "minor",
        "Configuration failed for uni/tn-Prod/ap-Web/epg-Frontend node 102 eth1/10 due to Invalid VLAN Configuration",
        "topology/pod-1/node-102/local/svc-policyelem-id-0/uni/epp/fv-[uni/tn-Prod/ap-Web/epg-Frontend]/node-102/stpathatt-[eth1/10]/nwissues/fault-F0467",
        "configuration-failed",
    ),
    (
        "F1543",
        "warning",
        "Power supply 2 in Node 202 is not receiving input power",
        "topology/pod-2/node-202/sys/ch/psuslot-2/psu/fault-F1543",
        "equipment-psu-missing",
    ),
)


# Faults in the other lifecycle states: listed by the APIC, but not active.
_QUIET_FAULTS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (
        "F0546",
        "critical",
        "retaining",
        "Port eth1/7 on node 101 was down (cleared)",
        "topology/pod-1/node-101/sys/phys-[eth1/7]/phys/fault-F0546",
        "port-down",
    ),
    (
        "F1394",
        "critical",
        "soaking",
        "Ethernet interface eth1/33 on node 102 is flapping (soaking)",
        "topology/pod-1/node-102/sys/phys-[eth1/33]/phys/fault-F1394",
        "interface-flapping",
    ),
    (
        "F0321",
        "major",
        "raised-clearing",
        "Health score of tenant Prod dropped below 80 (clearing)",
        "topology/pod-2/node-201/sys/fault-F0321",
        "health-score-low",
    ),
)

_FAULT_PROPERTIES = frozenset(
    ("ack cause changeSet childAction code created delegated descr dn domain highestSeverity "
     "lastTransition lc occur origSeverity prevSeverity rule severity status subject type").split()
)
_HEALTH_PROPERTIES = frozenset("childAction chng cur dn maxSev prev status twScore updTs".split())
_SUMMARY_PROPERTIES = frozenset(
    ("acked cause childAction code count delegated descr dn domain nonAcked nonDelegated "
     "severity status subject type").split()
)
_PROPERTIES = {"faultInst": _FAULT_PROPERTIES, "fabricHealthTotal": _HEALTH_PROPERTIES,
               "faultSummary": _SUMMARY_PROPERTIES}


class LabApic:
    """One simulated APIC, `apic1`, listening with HTTPS on 127.0.0.1."""

    name = APIC_NAME

    def __init__(
        self,
        username: str,
        password: str,
        port: int = 0,
        token_timeout: float = 600,
        slow_delay: float = 5.0,
        host: str = "127.0.0.1",
        max_lifetime: float = 86400,
        login_failures_allowed: int = 20,
        login_throttle_seconds: float = 60,
        max_unpaged: int = 10000,
    ) -> None:
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.token_timeout = token_timeout
        self.slow_delay = slow_delay
        self.delay = 0.0
        self.fault: Fault | None = None
        self.max_lifetime = max_lifetime
        self.login_failures_allowed = login_failures_allowed
        self.login_throttle_seconds = login_throttle_seconds
        self.max_unpaged = max_unpaged
        self.stats = ApicStats()
        self._tokens: dict[str, _Session] = {}
        self._failed_logins: collections.deque[float] = collections.deque()  # monotonic times
        self.certificate_pem, self._key_pem = self_signed_certificate(host)
        self._tls: ssl.SSLContext = server_context(self.certificate_pem, self._key_pem)
        self.ca_file: Path | None = None  # where the lab published certificate_pem
        self._health: dict[int | None, _Health] = {
            None: _Health(95, 95),
            1: _Health(96, 96),
            2: _Health(93, 93),
        }
        self._faults: list[dict[str, str]] = []
        self._fault_id = 0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._stopping = False
        for code, severity, descr, dn, cause in _DEFAULT_FAULTS:
            self.add_fault(code, severity, descr, dn=dn, cause=cause)
        for code, severity, lifecycle, descr, dn, cause in _QUIET_FAULTS:
            self.add_fault(code, severity, descr, dn=dn, cause=cause, lifecycle=lifecycle)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def publish_certificate(self, path: Path) -> None:
        """Write the certificate where clients can point at it; whole, then renamed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".new")
        partial.write_bytes(self.certificate_pem)
        partial.chmod(0o644)
        partial.replace(path)
        self.ca_file = path

    # -- test controls -------------------------------------------------------------------

    def set_health(self, fabric: int | None = None, pods: dict[int, int] | None = None) -> None:
        """Set the fabric-wide and/or per-pod health scores (0-100); new pods are added."""
        updates: dict[int | None, int] = {pod: score for pod, score in (pods or {}).items()}
        if fabric is not None:
            updates[None] = fabric
        for pod, score in updates.items():
            if not 0 <= score <= 100:
                raise ValueError("health scores run from 0 to 100")
            old = self._health.get(pod)
            self._health[pod] = _Health(cur=score, prev=old.cur if old else score)

    def add_fault(
        self,
        code: str,
        severity: str,
        descr: str,
        *,
        dn: str | None = None,
        cause: str = "unknown",
        ack: bool = False,
        domain: str = "infra",
        subject: str = "management",
        fault_type: str = "operational",
        lifecycle: str = "raised",
    ) -> dict[str, str]:
        """Add a faultInst in a lifecycle state (raised unless told); returns its attributes
        (all strings, as the APIC sends them). A retaining fault's severity is "cleared";
        `severity` is then the one it had (origSeverity)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        if lifecycle not in LIFECYCLES:
            raise ValueError(f"lifecycle must be one of {LIFECYCLES}")
        self._fault_id += 1
        now = _timestamp()
        attributes = {
            "ack": "yes" if ack else "no",
            "cause": cause,
            "changeSet": "",
            "childAction": "",
            "code": code,
            "created": now,
            "delegated": "no",
            "descr": descr,
            "dn": dn or f"topology/pod-1/node-101/sys/fault-{code}-{self._fault_id}",
            "domain": domain,
            "highestSeverity": severity,
            "lastTransition": now,
            "lc": lifecycle,
            "occur": "1",
            "origSeverity": severity,
            "prevSeverity": severity,
            "rule": cause.replace(" ", "-"),
            "severity": "cleared" if lifecycle == "retaining" else severity,
            "status": "",
            "subject": subject,
            "type": fault_type,
        }
        self._faults.append(attributes)
        return dict(attributes)

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- data ----------------------------------------------------------------------------

    def _max_severity(self, pod: int | None) -> str:
        prefix = "topology/" if pod is None else f"topology/pod-{pod}/"
        found = {f["severity"] for f in self._faults if f["dn"].startswith(prefix) and f["lc"] == "raised"}
        return next((severity for severity in SEVERITIES if severity in found), "cleared")

    def _health_objects(self) -> list[dict[str, str]]:
        objects = []
        for pod in sorted(self._health, key=lambda p: -1 if p is None else p):
            health = self._health[pod]
            objects.append(
                {
                    "childAction": "",
                    "chng": str(health.cur - health.prev),
                    "cur": str(health.cur),
                    "dn": "topology/health" if pod is None else f"topology/pod-{pod}/health",
                    "maxSev": self._max_severity(pod),
                    "prev": str(health.prev),
                    "status": "",
                    "twScore": str(health.cur),
                    "updTs": health.updated,
                }
            )
        return objects

    def _fault_summaries(self) -> list[dict[str, str]]:
        by_code: dict[str, list[dict[str, str]]] = {}
        for fault in self._faults:
            if fault["severity"] != "cleared":
                by_code.setdefault(fault["code"], []).append(fault)
        summaries = []
        for code, faults in by_code.items():
            worst = min(faults, key=lambda f: SEVERITIES.index(f["severity"]))
            acked = sum(1 for f in faults if f["ack"] == "yes")
            summaries.append(
                {
                    "acked": str(acked),
                    "cause": worst["cause"],
                    "childAction": "",
                    "code": code,
                    "count": str(len(faults)),
                    "delegated": "0",
                    "descr": worst["descr"],
                    "dn": f"fltSumm-{code}",
                    "domain": worst["domain"],
                    "nonAcked": str(len(faults) - acked),
                    "nonDelegated": str(len(faults)),
                    "severity": worst["severity"],
                    "status": "",
                    "subject": worst["subject"],
                    "type": worst["type"],
                }
            )
        return summaries

    def _class_objects(self, cls: str) -> list[dict[str, str]] | None:
        if cls == "fabricHealthTotal":
            return self._health_objects()
        if cls == "faultInst":
            return [dict(f) for f in self._faults]
        if cls == "faultSummary":
            return self._fault_summaries()
        return None

    # -- tokens --------------------------------------------------------------------------

    def _issue_token(self, user: str, previous: _Session | None = None) -> tuple[str, _Session]:
        """A new token; a refresh keeps the session's first login, so the cap holds."""
        now = time.monotonic()
        first = previous.first_login if previous else now
        wall = previous.first_login_wall if previous else str(int(time.time()))
        expires = min(now + self.token_timeout, first + self.max_lifetime)
        token = secrets.token_urlsafe(96)
        session = self._tokens[token] = _Session(user, expires, first, wall)
        return token, session

    def _session(self, request: web.Request) -> tuple[str, _Session] | None:
        token = request.cookies.get(_COOKIE, "")
        session = self._tokens.get(token)
        if session is None:
            return None
        if time.monotonic() >= session.expires:
            del self._tokens[token]
            return None
        return token, session

    def _login_body(self, token: str, session: _Session) -> web.Response:
        attributes = {
            "token": token,
            "siteFingerprint": "lab0fingerprint",
            "refreshTimeoutSeconds": str(int(self.token_timeout)),
            "maximumLifetimeSeconds": str(int(self.max_lifetime)),
            "guiIdleTimeoutSeconds": "1200",
            "restTimeoutSeconds": "90",
            "creationTime": str(int(time.time())),
            "firstLoginTime": session.first_login_wall,
            "userName": session.user,
            "remoteUser": "false",
            "unixUserId": "15374",
            "sessionId": secrets.token_urlsafe(16),
            "lastName": "",
            "firstName": "",
            "changePassword": "no",
            "version": "5.2(7g)",
            "buildTime": "Thu Jun 15 17:38:20 UTC 2023",
            "node": "topology/pod-1/node-1",
        }
        response = _body(200, [{"aaaLogin": {"attributes": attributes}}])
        response.headers["Set-Cookie"] = f"{_COOKIE}={token}; path=/; HttpOnly"
        return response

    # -- HTTP handlers -------------------------------------------------------------------

    def _throttled(self) -> bool:
        horizon = time.monotonic() - self.login_throttle_seconds
        while self._failed_logins and self._failed_logins[0] < horizon:
            self._failed_logins.popleft()
        return len(self._failed_logins) >= self.login_failures_allowed

    async def _login(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _wrong_method(request)
        if self._throttled():
            self.stats.throttled_logins += 1
            return web.Response(status=503, text=_THROTTLED_PAGE, content_type="text/html")
        try:
            payload = json.loads(await request.read())
            attributes = payload["aaaUser"]["attributes"]
            name, pwd = str(attributes["name"]), str(attributes["pwd"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "Failed to parse login request")
        valid = (
            self.fault is not Fault.AUTH
            and hmac.compare_digest(name.encode(), self.username.encode())
            and hmac.compare_digest(pwd.encode(), self.password.encode())
        )
        if not valid:
            self.stats.failed_logins += 1
            self._failed_logins.append(time.monotonic())
            return _error(401, "Username or password is incorrect - FAILED local authentication")
        self.stats.logins += 1
        return self._login_body(*self._issue_token(name))

    async def _authenticated(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method != _METHODS.get(path, "GET"):
            return _wrong_method(request)
        found = self._session(request)
        if found is None:
            self.stats.rejected_tokens += 1
            return _error(403, "Token was invalid (Error: Token timeout)")
        token, session = found
        if path == "/api/aaaRefresh.json":
            # No refresh past the cap: every token of the session expires there at the latest.
            del self._tokens[token]
            self.stats.refreshes += 1
            return self._login_body(*self._issue_token(session.user, session))
        if path == "/api/aaaLogout.json":
            del self._tokens[token]
            self.stats.logouts += 1
            response = _body(200, [])
            response.headers["Set-Cookie"] = f"{_COOKIE}=; path=/; HttpOnly; Max-Age=0"
            return response
        match = re.fullmatch(r"/api/(?:node/)?class/([A-Za-z0-9]+)\.json", path)
        if not match:
            return _error(400, f"Request failed, unresolved path {path}")
        return self._query(match.group(1), request.query)

    def _query(self, cls: str, query: Any) -> web.Response:
        self.stats.queries.append(dict(query))
        objects = self._class_objects(cls)
        if objects is None:
            return _error(400, f"Request failed, unresolved class for {cls}")
        properties = _PROPERTIES[cls]
        filter_text = query.get("query-target-filter")
        try:
            if filter_text:
                predicate = parse_filter(filter_text, cls, properties)
                objects = [attrs for attrs in objects if predicate(attrs)]
            order = query.get("order-by")
            if order:
                prop, _, direction = order.partition("|")
                if direction not in ("", "asc", "desc"):
                    return _error(400, f"Invalid order-by direction {direction}")
                key = property_name(prop, cls, properties)
                objects.sort(key=lambda attrs: attrs.get(key, ""), reverse=direction == "desc")
        except UnknownProperty as exc:
            return _error(400, f"Request failed, unresolved property: {exc}")
        except FilterError as exc:
            return _error(400, f"Query filter is invalid: {exc}")
        total = len(objects)
        if "page-size" in query:
            try:
                size, page = int(query["page-size"]), int(query.get("page", "0"))
            except ValueError:
                return _error(400, "Invalid paging parameters")
            if size < 1 or page < 0:
                return _error(400, "Invalid paging parameters")
            objects = objects[page * size : (page + 1) * size]
        elif total > self.max_unpaged:
            return _error(400, TOO_BIG)
        return _body(200, [{cls: {"attributes": attrs}} for attrs in objects], total=total)

    @web.middleware
    async def _faults_middleware(
        self, request: web.Request, handler: _Handler
    ) -> web.StreamResponse:
        self.stats.requests += 1
        # HANG: say nothing while the fault lasts; poll, because aiohttp does not cancel a
        # handler when its client goes away, and a stuck handler would delay stop().
        while self.fault is Fault.HANG and not self._stopping:
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # nobody is listening any more
            await asyncio.sleep(0.05)
        if self.fault is Fault.DISCONNECT:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)  # never delivered: the connection is gone
        delay = max(self.delay, self.slow_delay if self.fault is Fault.SLOW else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        return await handler(request)

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(400, f"Request failed, unresolved path {request.path}")

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults_middleware])
        app.router.add_route("*", "/api/aaaLogin.json", self._login)
        app.router.add_route("*", "/api/{tail:.*}", self._authenticated)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # -- lifecycle (call on the lab's loop thread) ---------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        if self.fault is not Fault.DOWN:
            await self._start_listening()

    def _start_listening(self) -> asyncio.Task[None]:
        if self._serve_task is not None:
            return self._serve_task
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._serve_task = asyncio.get_running_loop().create_task(self._serve(sock))
        return self._serve_task

    async def _serve(self, sock: socket.socket) -> None:
        assert self._runner is not None and self._runner.server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._runner.server, sock=sock, ssl=self._tls
        )

    def _stop_listening(self) -> None:
        if self._serve_task is not None and not self._serve_task.done():
            self._serve_task.cancel()
        self._serve_task = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        # A powered-off APIC also drops the connections clients keep alive.
        if self._runner is not None and self._runner.server is not None:
            for protocol in list(self._runner.server.connections):
                if protocol.transport is not None:
                    protocol.transport.abort()

    def apply_fault(self, fault: Fault | None) -> None:
        previous, self.fault = self.fault, fault
        if fault is Fault.DOWN and previous is not Fault.DOWN:
            self._stop_listening()
        elif previous is Fault.DOWN and fault is not Fault.DOWN and self._runner is not None:
            self._start_listening()

    async def stop(self) -> None:
        self._stopping = True
        self._stop_listening()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
