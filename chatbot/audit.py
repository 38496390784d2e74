"""The audit log: every request, decision, job start, per-device outcome and reply
failure is a row, written before the work it describes goes on (a crash loses nothing).

SQLAlchemy Core on SQLite by default; PostgreSQL works by URL. Writes are small and
synchronous: callers on the event loop hand them to a thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from chatbot.redact import redact

metadata = MetaData()

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # request, decision, job, device, result, reply_failure
    Column("request_id", String(32), nullable=False, index=True),
    Column("user", String(255), nullable=False, index=True),  # the person or resolved identity
    Column("platform_id", String(255), nullable=False),  # the account that delivered it
    Column("bridge", String(64)),
    Column("weak", Boolean, nullable=False, default=False),
    Column("platform", String(32), nullable=False),
    Column("room", String(255), nullable=False),
    Column("command", String(64)),
    Column("arguments", Text),
    Column("decision", String(16)),  # allow, deny, invalid
    Column("job_id", String(32)),
    Column("device", String(255)),
    Column("outcome", Text),
    Column("duration_ms", Float),
)

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
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


_INSERT = insert(audit_events)
_FIELDS = [f.name for f in fields(AuditEvent)]


def _row(event: AuditEvent) -> dict[str, Any]:
    row = {name: getattr(event, name) for name in _FIELDS}
    # Secrets never enter the log: free text passes the same redaction as chat output.
    for key in ("arguments", "outcome"):
        if row[key] is not None:
            row[key] = redact(str(row[key]))[:MAX_TEXT]
    return row


def make_engine(url: str) -> Engine:
    if url in ("sqlite://", "sqlite:///:memory:"):
        # One shared connection, or every thread would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            # WAL: readers (chatbot audit) never block the bot; NORMAL is still crash-safe in WAL.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[audit_events])
        self._lock = threading.Lock()  # SQLite allows one writer; keep ours in line

    def record(self, *events: AuditEvent, also: tuple[tuple[Any, dict[str, Any]], ...] = ()) -> None:
        """Write events (and `also`: other statements with their parameters, such as a
        job's row) in one transaction. One prepared statement with the rows as
        parameters: building `insert().values(...)` per row cost more than the commit."""
        rows = [_row(e) for e in events]
        with self._lock, self.engine.begin() as conn:
            if rows:
                conn.execute(_INSERT, rows)
            for statement, params in also:
                conn.execute(statement, params)

    def recent(self, limit: int = 20, *, since: datetime | None = None, user: str | None = None,
               kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if user is not None:
            query = query.where((audit_events.c.user == user) | (audit_events.c.platform_id == user))
        if kinds:
            query = query.where(audit_events.c.kind.in_(kinds))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return list(reversed(rows))

    def prune(self, older_than_days: int) -> int:
        cutoff = datetime.now(timezone.utc) - timedelta(days=older_than_days)
        with self._lock, self.engine.begin() as conn:
            return conn.execute(delete(audit_events).where(audit_events.c.at < cutoff)).rowcount or 0
