"""What chat adapters must remember across restarts, in the bot's database: each
platform's sync position, and which incoming messages were already taken on (so a
restart never runs a command twice).

A claim is the exactly-once guard: it is committed before its message is answered. A
position only saves work after a restart (what came after it is fetched again, and
its claims stop a replay), so positions go through the database's write-behind queue
(`chatbot.write_behind`): written at most once per flush, the latest one per key, and
on the bot's stop. A crash loses at most the last positions, never a claim.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from chatbot.store import chat_positions as positions
from chatbot.store import chat_taken_messages as taken
from chatbot.store import prepare, transaction
from chatbot.write_behind import writer_for


def _claim_statement(dialect: str) -> Any | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: a lost claim returns nothing instead
    of raising, so claims share a transaction with each other and with other rows."""
    if dialect == "sqlite":
        return sqlite.insert(taken).on_conflict_do_nothing().returning(taken.c.message_id)
    if dialect == "postgresql":
        return postgresql.insert(taken).on_conflict_do_nothing().returning(taken.c.message_id)
    return None


def _position_statement(dialect: str) -> Any | None:
    """An upsert of one position, so that positions go in one executemany."""
    if dialect == "sqlite":
        lite = sqlite.insert(positions)
        return lite.on_conflict_do_update(index_elements=[positions.c.platform], set_={
            "position": lite.excluded.position, "updated": lite.excluded.updated})
    if dialect == "postgresql":
        pg = postgresql.insert(positions)
        return pg.on_conflict_do_update(index_elements=[positions.c.platform], set_={
            "position": pg.excluded.position, "updated": pg.excluded.updated})
    return None


class ChatState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        prepare(engine)
        self.writer = writer_for(engine)
        self._claim = _claim_statement(engine.dialect.name)
        self._put = _position_statement(engine.dialect.name)

    def get(self, key: str) -> str | None:
        """A remembered value: a sync position ("matrix:@bot:hs"), or an adapter's note."""
        if self._put is not None and (queued := self.writer.pending(self._put, key)) is not None:
            return str(queued["position"])
        with self.engine.connect() as conn:
            return conn.execute(select(positions.c.position).where(positions.c.platform == key)).scalar()

    def put(self, key: str, value: str) -> None:
        """Remember a value: written behind (see the module's docstring); `get` sees it at once."""
        row = {"platform": key, "position": value, "updated": datetime.now(UTC)}
        if self._put is None:  # a database without an upsert: written now
            with transaction(self.engine) as conn:
                conn.execute(delete(positions).where(positions.c.platform == key))
                conn.execute(insert(positions), row)
            return
        self.writer.defer(self._put, row, key=key)

    def remember(self, key: str, value: str) -> None:
        """Remember a value that a crash must not lose (an adapter's note that a room was
        allowed, that it ran here before): on disk when this returns. Blocks: call it
        off the event loop."""
        self.put(key, value)
        self.writer.flush()
        if self._put is not None and self.writer.pending(self._put, key) is not None:
            raise OSError(f"the database did not take {key!r} (see the log)")

    def flush(self) -> None:
        """Write the queued positions now (a clean stop does it through the bot)."""
        self.writer.flush()

    def take(self, platform: str, message_id: str) -> bool:
        """Claim a message for handling; False if it was claimed before (a replay)."""
        return message_id in self.take_many(platform, [message_id])

    def take_many(self, platform: str, message_ids: Iterable[str]) -> set[str]:
        """Claim several messages in one transaction (a sync's batch); the ids this
        call won. Committed before it returns."""
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return set()
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = [{"platform": platform, "message_id": m, "at": now} for m in ids]
        if self._claim is None:
            return {row["message_id"] for row in rows if self._take_alone(row)}
        (won,) = self.writer.commit([(self._claim, rows)])
        return set(won)

    def _take_alone(self, row: dict[str, Any]) -> bool:
        try:
            with transaction(self.engine) as conn:
                conn.execute(insert(taken), row)
        except IntegrityError:
            return False
        return True

    def forget_older_than(self, days: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        with transaction(self.engine) as conn:
            return conn.execute(delete(taken).where(taken.c.at < cutoff)).rowcount or 0
