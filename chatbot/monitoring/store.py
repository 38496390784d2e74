"""Monitor rows and their targets' alert states in the bot's database.

The tables and the engine are chatbot.store's; this module only reads and writes them.
Every change is one transaction under one lock, so a limit check and the insert it
allows cannot interleave with another add.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from chatbot.monitoring.alerts import Changes, TargetState
from chatbot.monitoring.model import Monitor, MonitorRefused
from chatbot.store import monitor_state_table as state_table
from chatbot.store import monitors_table, prepare, transaction
from chatbot.wording import plural


class MonitorRows:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        prepare(engine)

    def add(self, monitor: Monitor, *, max_total: int, max_per_person: int) -> None:
        """A monitor from chat: refused (MonitorRefused) when it duplicates one, or when its
        owner or the bot has as many as the limits allow. Checked and stored as one step."""
        with self._lock, transaction(self.engine) as conn:
            existing = [_monitor(r._mapping) for r in conn.execute(select(monitors_table))]
            twin = next((m for m in existing if m.same_watch(monitor)), None)
            if twin is not None:
                raise MonitorRefused(f"already watched by monitor {twin.id}")
            if len(existing) >= max_total:
                raise MonitorRefused(f"the bot already runs {plural(len(existing), 'monitor')}, its limit "
                                     "([limits] monitors_total); remove one first")
            own = sum(1 for m in existing if m.owner == monitor.owner and m.source == "chat")
            if own >= max_per_person:
                raise MonitorRefused(f"you already have {plural(own, 'monitor')}, the limit per person "
                                     "([limits] monitors_per_person); remove one first")
            _store(conn, monitor)

    def save(self, monitor: Monitor) -> None:
        """Store a monitor as is (the config's, or one changed)."""
        with self._lock, transaction(self.engine) as conn:
            _store(conn, monitor)

    def get(self, monitor_id: str) -> Monitor | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(monitors_table).where(monitors_table.c.id == monitor_id)).first()
        return _monitor(row._mapping) if row else None

    def all(self) -> list[Monitor]:
        with self.engine.connect() as conn:
            return [_monitor(r._mapping) for r in conn.execute(select(monitors_table).order_by(monitors_table.c.id))]

    def remove(self, monitor_id: str) -> None:
        """The monitor and its targets' states."""
        with self._lock, transaction(self.engine) as conn:
            conn.execute(delete(monitors_table).where(monitors_table.c.id == monitor_id))
            conn.execute(delete(state_table).where(state_table.c.monitor_id == monitor_id))

    def set_paused(self, monitor_id: str, paused: bool) -> None:
        with self._lock, transaction(self.engine) as conn:
            conn.execute(update(monitors_table).where(monitors_table.c.id == monitor_id).values(paused=paused))

    def update_states(self, monitor_id: str, step: Callable[[dict[str, TargetState]], Changes]) -> Changes:
        """Read a monitor's target states, let `step` make the next ones, store those: one
        transaction, so two runs of one monitor cannot both see the same old states."""
        with self._lock, transaction(self.engine) as conn:
            mine = state_table.c.monitor_id == monitor_id
            states = {r.target: TargetState(status=r.status, failures=r.failures, first_failure=r.first_failure,
                                            down_since=r.down_since, last_notified=r.last_notified,
                                            detail=r.detail or "")
                      for r in conn.execute(select(state_table).where(mine))}
            changes = step(states)
            conn.execute(delete(state_table).where(mine))
            for target, state in changes.states.items():
                conn.execute(insert(state_table).values(
                    monitor_id=monitor_id, target=target, status=state.status, failures=state.failures,
                    first_failure=state.first_failure, down_since=state.down_since,
                    last_notified=state.last_notified, detail=state.detail))
        return changes


def _store(conn: Connection, monitor: Monitor) -> None:
    row = {"id": monitor.id, "kind": monitor.kind, "targets": monitor.targets,
           "options": json.dumps(monitor.options), "interval": monitor.interval, "room": monitor.room,
           "owner": monitor.owner, "after": monitor.after, "remind_every": monitor.remind_every,
           "paused": monitor.paused, "source": monitor.source}
    conn.execute(delete(monitors_table).where(monitors_table.c.id == monitor.id))
    conn.execute(insert(monitors_table).values(**row))


def _monitor(row: Any) -> Monitor:
    return Monitor(id=row["id"], kind=row["kind"], targets=row["targets"], options=json.loads(row["options"]),
                   interval=row["interval"], room=row["room"], owner=row["owner"], after=row["after"],
                   remind_every=row["remind_every"], paused=row["paused"], source=row["source"])
