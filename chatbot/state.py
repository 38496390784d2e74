"""What chat adapters must remember across restarts, in the bot's database: each
platform's sync position, and which incoming messages were already taken on (so a
restart never runs a command twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from chatbot.store import chat_positions as positions
from chatbot.store import chat_taken_messages as taken
from chatbot.store import prepare, transaction


class ChatState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        prepare(engine)

    def get(self, key: str) -> str | None:
        """A remembered value: a sync position ("matrix:@bot:hs"), or an adapter's note."""
        with self.engine.connect() as conn:
            return conn.execute(select(positions.c.position).where(positions.c.platform == key)).scalar()

    def put(self, key: str, value: str) -> None:
        now = datetime.now(UTC)
        with transaction(self.engine) as conn:
            done = conn.execute(update(positions).where(positions.c.platform == key)
                                .values(position=value, updated=now)).rowcount
            if not done:
                conn.execute(insert(positions).values(platform=key, position=value, updated=now))

    def take(self, platform: str, message_id: str) -> bool:
        """Claim a message for handling; False if it was claimed before (a replay)."""
        try:
            with transaction(self.engine) as conn:
                conn.execute(insert(taken).values(platform=platform, message_id=message_id,
                                                  at=datetime.now(UTC)))
        except IntegrityError:
            return False
        return True

    def forget_older_than(self, days: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        with transaction(self.engine) as conn:
            return conn.execute(delete(taken).where(taken.c.at < cutoff)).rowcount or 0
