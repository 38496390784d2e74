"""The audit log: every request, decision, job start, per-device outcome and reply
failure is a row. A row that comes before work (a request that will reach a device, a
change a built-in makes) is committed before the work goes on; a row that comes after
it (outcomes, results, a failed reply) or that stands for no work at all (a denied or
invalid request) goes through the database's write-behind queue (`chatbot.write_behind`):
written within half a second, and on the bot's stop.

The table and the database live in `chatbot.store`. Writes are small and synchronous:
callers on the event loop hand them to a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from chatbot.redact import redact
from chatbot.store import Write, audit_events, make_engine, prepare, transaction, write
from chatbot.write_behind import writer_for

__all__ = ["AuditEvent", "AuditLog", "audit_events", "make_engine"]

MAX_TEXT = 2000


@dataclass
class AuditEvent:
    kind: str
    request_id: str
    user: str
    platform_id: str
    platform: str
    room: str
    bridge: str | None = None
    weak: bool = False
    command: str | None = None
    arguments: str | None = None
    decision: str | None = None
    job_id: str | None = None
    device: str | None = None
    outcome: str | None = None
    duration_ms: float | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


_INSERT = insert(audit_events)
_FIELDS = [f.name for f in fields(AuditEvent)]


def _row(event: AuditEvent) -> dict[str, Any]:
    row = {name: getattr(event, name) for name in _FIELDS}
    # Secrets never enter the log: free text passes the same redaction as chat output.
    for key in ("arguments", "outcome"):
        if row[key] is not None:
            row[key] = redact(str(row[key]))[:MAX_TEXT]
    return row


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        prepare(engine)
        self.writer = writer_for(engine)

    def record(self, *events: AuditEvent) -> None:
        """Write events in one transaction, now."""
        write(self.engine, [self.write_for(events)])

    def defer(self, *events: AuditEvent) -> None:
        """Queue events for the write-behind writer (rows that may reach the disk after
        the work they describe)."""
        if events:
            self.writer.defer(_INSERT, [_row(e) for e in events])

    def flush(self) -> None:
        """Write the queued rows now."""
        self.writer.flush()

    @staticmethod
    def write_for(events: tuple[AuditEvent, ...] | list[AuditEvent]) -> Write:
        """The events as one write for a unit of work (`chatbot.store.write`), so a
        caller can commit them with other rows of the same moment. One prepared
        statement with the rows as parameters: building `insert().values(...)` per row
        cost more than the commit."""
        return _INSERT, [_row(e) for e in events]

    def recent(self, limit: int = 20, *, since: datetime | None = None, user: str | None = None,
               kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if user is not None:
            query = query.where((audit_events.c.user == user) | (audit_events.c.platform_id == user))
        if kinds:
            query = query.where(audit_events.c.kind.in_(kinds))
        self.writer.flush()  # what was queued is part of the log
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return list(reversed(rows))

    def prune(self, older_than_days: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        self.writer.flush()
        with transaction(self.engine) as conn:
            return conn.execute(delete(audit_events).where(audit_events.c.at < cutoff)).rowcount or 0
