"""Simulated Cisco APIC REST API (plain HTTP on loopback, aiohttp server).

Faithful to what the bot relies on (see docs/architecture.md, "APIC REST"):

- `POST /api/aaaLogin.json` {"aaaUser":{"attributes":{"name","pwd"}}} -> aaaLogin token
  and `Set-Cookie: APIC-cookie=<token>; path=/; HttpOnly`; bad credentials -> 401.
- Every other /api call needs a live APIC-cookie, else 403 "Token was invalid (Error:
  Token timeout)". Tokens live `token_timeout` seconds (default 600).
- `GET|POST /api/aaaRefresh.json` -> a new token; the old one stops working at once.
- `POST /api/aaaLogout.json` drops the session's token.
- `/api/class/<cls>.json` and `/api/node/class/<cls>.json` for fabricHealthTotal,
  faultSummary and faultInst, with `query-target-filter` (eq, ne, lt, gt, le, ge, wcard,
  and, or, not), `order-by=<cls>.<attr>|asc|desc`, `page` and `page-size`.
- Every attribute value is a string; Content-Type is exactly `application/json`.

Faults: DOWN (socket closed, connections refused), AUTH (every login 401), SLOW (every
answer waits `slow_delay`), HANG (requests are never answered), DISCONNECT (the
connection is dropped without an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chatbot.lab.apic_filter import FilterError, parse_filter
from chatbot.lab.model import Fault

APIC_NAME = "apic1"
SEVERITIES = ("critical", "major", "minor", "warning", "info", "cleared")
_COOKIE = "APIC-cookie"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _timestamp(moment: dt.datetime | None = None) -> str:
    moment = moment or dt.datetime.now(dt.timezone.utc)
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


@dataclass
class ApicStats:
    logins: int = 0
    failed_logins: int = 0
    refreshes: int = 0
    logouts: int = 0
    requests: int = 0
    rejected_tokens: int = 0


@dataclass
class _Health:
    cur: int
    prev: int
    updated: str = field(default_factory=_timestamp)


_DEFAULT_FAULTS: tuple[tuple[str, str, str, str, str], ...] = (
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


class LabApic:
    """One simulated APIC, `apic1`, listening on 127.0.0.1."""

    name = APIC_NAME

    def __init__(
        self,
        username: str,
        password: str,
        port: int = 0,
        token_timeout: float = 600,
        slow_delay: float = 5.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.token_timeout = token_timeout
        self.slow_delay = slow_delay
        self.delay = 0.0
        self.fault: Fault | None = None
        self.stats = ApicStats()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expiry, monotonic)
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

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
    ) -> dict[str, str]:
        """Raise a faultInst; returns its attributes (all strings, as the APIC sends them)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
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
            "lc": "raised",
            "occur": "1",
            "origSeverity": severity,
            "prevSeverity": severity,
            "rule": cause.replace(" ", "-"),
            "severity": severity,
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
        found = {f["severity"] for f in self._faults if f["dn"].startswith(prefix)}
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

    def _issue_token(self, user: str) -> str:
        token = secrets.token_urlsafe(96)
        self._tokens[token] = (user, time.monotonic() + self.token_timeout)
        return token

    def _session_user(self, request: web.Request) -> tuple[str, str] | None:
        token = request.cookies.get(_COOKIE, "")
        entry = self._tokens.get(token)
        if entry is None:
            return None
        if time.monotonic() >= entry[1]:
            del self._tokens[token]
            return None
        return token, entry[0]

    def _login_body(self, token: str, user: str) -> web.Response:
        now = str(int(time.time()))
        attributes = {
            "token": token,
            "siteFingerprint": "lab0fingerprint",
            "refreshTimeoutSeconds": str(int(self.token_timeout)),
            "maximumLifetimeSeconds": "86400",
            "guiIdleTimeoutSeconds": "1200",
            "restTimeoutSeconds": "90",
            "creationTime": now,
            "firstLoginTime": now,
            "userName": user,
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

    async def _login(self, request: web.Request) -> web.Response:
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
            return _error(401, "Username or password is incorrect - FAILED local authentication")
        self.stats.logins += 1
        return self._login_body(self._issue_token(name), name)

    async def _authenticated(self, request: web.Request) -> web.Response:
        session = self._session_user(request)
        if session is None:
            self.stats.rejected_tokens += 1
            return _error(403, "Token was invalid (Error: Token timeout)")
        token, user = session
        path = request.path
        if path == "/api/aaaRefresh.json":
            del self._tokens[token]
            self.stats.refreshes += 1
            return self._login_body(self._issue_token(user), user)
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
        objects = self._class_objects(cls)
        if objects is None:
            return _error(400, f"Request failed, unresolved class for {cls}")
        filter_text = query.get("query-target-filter")
        if filter_text:
            try:
                predicate = parse_filter(filter_text)
            except FilterError as exc:
                return _error(400, f"Query filter is invalid: {exc}")
            objects = [attrs for attrs in objects if predicate(attrs)]
        order = query.get("order-by")
        if order:
            prop, _, direction = order.partition("|")
            key = prop.split(".")[-1]
            objects.sort(key=lambda attrs: attrs.get(key, ""), reverse=direction == "desc")
        total = len(objects)
        if "page-size" in query:
            try:
                size, page = int(query["page-size"]), int(query.get("page", "0"))
            except ValueError:
                return _error(400, "Invalid paging parameters")
            objects = objects[page * size : (page + 1) * size]
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
        app.router.add_post("/api/aaaLogin.json", self._login)
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
            self._runner.server, sock=sock
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
