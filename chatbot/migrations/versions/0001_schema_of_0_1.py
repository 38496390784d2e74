"""The schema as the bot made it before migrations (netbot 0.1).

Until then each module created its own tables at start (`create_all`), and only when it
was used: `chatbot audit` on a fresh file made `audit_events` alone, a bot without
monitors still got their tables, and so on. A database of that time therefore holds any
subset of these tables, with no alembic_version. This revision creates the tables that
are missing and leaves existing ones (and their rows) as they are, so it serves a fresh
database and every old one alike; stamping an old database instead would have left its
missing tables missing.

The definitions are frozen copies: later schema changes go in later revisions, never
here.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _audit_events() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("platform_id", sa.String(255), nullable=False),
        sa.Column("bridge", sa.String(64)),
        sa.Column("weak", sa.Boolean(), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("room", sa.String(255), nullable=False),
        sa.Column("command", sa.String(64)),
        sa.Column("arguments", sa.Text()),
        sa.Column("decision", sa.String(16)),
        sa.Column("job_id", sa.String(32)),
        sa.Column("device", sa.String(255)),
        sa.Column("outcome", sa.Text()),
        sa.Column("duration_ms", sa.Float()),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_request_id", "audit_events", ["request_id"])
    op.create_index("ix_audit_events_user", "audit_events", ["user"])


def _jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("room", sa.String(255), nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("devices", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True)),
        sa.Column("finished", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text()),
    )
    op.create_index("ix_jobs_user", "jobs", ["user"])
    op.create_index("ix_jobs_state", "jobs", ["state"])


def _chat_positions() -> None:
    op.create_table(
        "chat_positions",
        sa.Column("platform", sa.String(255), primary_key=True),
        sa.Column("position", sa.String(4096), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )


def _chat_taken_messages() -> None:
    op.create_table(
        "chat_taken_messages",
        sa.Column("platform", sa.String(64), primary_key=True),
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_chat_taken_messages_at", "chat_taken_messages", ["at"])


def _monitors() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("interval", sa.Float(), nullable=False),
        sa.Column("room", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("after", sa.Integer(), nullable=False),
        sa.Column("remind_every", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )


def _monitor_state() -> None:
    op.create_table(
        "monitor_state",
        sa.Column("monitor_id", sa.String(32), primary_key=True),
        sa.Column("target", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure", sa.Float()),
        sa.Column("down_since", sa.Float()),
        sa.Column("last_notified", sa.Float()),
        sa.Column("detail", sa.Text()),
    )


TABLES: dict[str, Callable[[], None]] = {
    "audit_events": _audit_events,
    "jobs": _jobs,
    "chat_positions": _chat_positions,
    "chat_taken_messages": _chat_taken_messages,
    "monitors": _monitors,
    "monitor_state": _monitor_state,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:  # an old database keeps its table, and its rows
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
