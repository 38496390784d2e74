"""What chat adapters must remember across restarts, in the bot's database: each
platform's sync position, and which incoming messages were already taken on (so a
restart never runs a command twice)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

positions = Table(
    "chat_positions",
    metadata,
    Column("platform", String(255), primary_key=True),  # the key, e.g. "matrix:@netbot:corp.example"
    Column("position", String(4096), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

taken = Table(
    "chat_taken_messages",
    metadata,
    Column("platform", String(64), primary_key=True),
    Column("message_id", String(255), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)


class ChatState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """A remembered value: a sync position ("matrix:@bot:hs"), or an adapter's note."""
        with self.engine.connect() as conn:
            return conn.execute(select(positions.c.position).where(positions.c.platform == key)).scalar()

    def put(self, key: str, value: str) -> None:
        now = datetime.now(timezone.utc)
        with self._lock, self.engine.begin() as conn:
            done = conn.execute(update(positions).where(positions.c.platform == key)
                                .values(position=value, updated=now)).rowcount
            if not done:
                conn.execute(insert(positions).values(platform=key, position=value, updated=now))

    def take(self, platform: str, message_id: str) -> bool:
        """Claim a message for handling; False if it was claimed before (a replay)."""
        try:
            with self._lock, self.engine.begin() as conn:
                conn.execute(insert(taken).values(platform=platform, message_id=message_id,
                                                  at=datetime.now(timezone.utc)))
        except IntegrityError:
            return False
        return True

    def forget_older_than(self, days: int) -> int:
        cutoff = datetime.now(timezone.utc) - timedelta(days=days)
        with self._lock, self.engine.begin() as conn:
            return conn.execute(delete(taken).where(taken.c.at < cutoff)).rowcount or 0
