"""Write-behind: the rows the bot may write after the work they describe (a command's
outcome rows, a job's start and finish, chat sync positions) wait in a queue and are
written in batches, by one background thread, on one held connection, with one
executemany per statement. The rows that must be on disk before the work goes on (a
command's request row, a message's claim) go through `commit`, which writes them at
once, in one transaction, on the same connection. It does not carry the queued rows
along: that would put their statements on the path of every command, where waiting
half a second writes a whole burst of commands' rows in one executemany.

The queue is flushed after `interval` seconds, when it holds `max_rows` rows, by
`flush` (the bot's stop path), and at interpreter exit. A crash loses at most the rows
that waited in the queue; never a committed row.

Within a batch, rows of one statement keep their order, but statements may run in
another order than they were queued: every deferred statement must commute with the
others (append-only inserts, updates that do not depend on each other's order,
upserts keyed by `key`, of which only the latest waits).

A write that fails because the database cannot be written for now (locked, read-only,
unreachable: OperationalError) keeps its rows in the queue and is retried with a
growing pause; one warning line per burst of failures, one line when it recovers. A
row the database refuses for what it is (a constraint, a bad value) is written alone,
and dropped with an error line only if it fails alone too.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from chatbot.store import Write, writer_lock

log = logging.getLogger(__name__)

INTERVAL = 0.5  # seconds a deferred row may wait
MAX_ROWS = 100  # a queue this long is written at once
IDLE_AFTER = 10.0  # seconds without work before the thread ends and the connection goes back
MAX_PAUSE = 30.0  # longest pause between retries while the database refuses writes

Statement = Any  # a constant SQLAlchemy statement (insert/update/upsert), compiled once and cached
Params = dict[str, Any]


class WriteBehind:
    """The deferred writes of one database (one per engine: `writer_for`)."""

    def __init__(self, engine: Engine, *, interval: float = INTERVAL, max_rows: int = MAX_ROWS,
                 idle_after: float = IDLE_AFTER) -> None:
        # Only a weak reference: the registry must not keep an engine alive. While a
        # connection is held it holds the engine.
        self._engine = weakref.ref(engine)
        self.interval = interval
        self.max_rows = max_rows
        self.idle_after = idle_after
        self._queue = threading.Condition()  # guards _rows, _latest, _thread, _closed
        self._rows: list[tuple[Statement, Params]] = []
        self._latest: dict[tuple[Statement, str], Params] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._batch = threading.Lock()  # one transaction at a time, on the held connection
        self._connection: Connection | None = None
        self._failures = 0  # consecutive failed batches: the current burst
        self._last_error = ""

    # --- queueing -------------------------------------------------------------------
    def defer(self, statement: Statement, params: Params | Sequence[Params], *, key: str | None = None) -> None:
        """Queue rows; with `key`, this row replaces a queued row of the same statement
        and key (a position: only the latest matters)."""
        with self._queue:
            was_empty = not self._rows and not self._latest
            if key is not None:
                assert isinstance(params, dict)
                self._latest[(statement, key)] = params
            elif isinstance(params, dict):
                self._rows.append((statement, params))
            else:
                self._rows.extend((statement, p) for p in params)
            self._ensure_thread()
            if was_empty or len(self._rows) + len(self._latest) >= self.max_rows:
                self._queue.notify()

    def pending(self, statement: Statement, key: str) -> Params | None:
        """A keyed row still in the queue (read-your-writes for its owner)."""
        with self._queue:
            return self._latest.get((statement, key))

    def _take(self) -> tuple[list[tuple[Statement, Params]], dict[tuple[Statement, str], Params]]:
        with self._queue:
            rows, latest = self._rows, self._latest
            self._rows, self._latest = [], {}
            return rows, latest

    def _put_back(self, rows: list[tuple[Statement, Params]], latest: dict[tuple[Statement, str], Params]) -> None:
        with self._queue:
            self._rows[:0] = rows
            for slot, params in latest.items():
                self._latest.setdefault(slot, params)  # a newer value queued meanwhile wins
            self._ensure_thread()

    # --- writing --------------------------------------------------------------------
    def commit(self, writes: Iterable[Write]) -> list[list[Any]]:
        """Write `writes` now, in one transaction; what each write's RETURNING clause
        returned (its first column; [] without one), in order. Raises what the database
        raised if they cannot be written."""
        writes = list(writes)
        with self._queue:
            self._ensure_thread()  # it gives the held connection back once all is quiet
        with self._batch:
            return self._transaction(writes, [], {})

    def flush(self) -> None:
        """Write every queued row now (the caller's thread). A failure is logged and
        the rows stay queued."""
        with self._batch:
            self._write_queued()

    def close(self) -> None:
        """Flush, stop the thread and give the connection back. Rows the database still
        refuses are counted in an error line: they are lost."""
        with self._queue:
            self._closed = True
            self._queue.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
        self.flush()
        with self._batch:
            self._release()
        self.report_unwritten()

    def report_unwritten(self) -> None:
        with self._queue:
            left = len(self._rows) + len(self._latest)
        if left:
            engine = self._engine()
            where = engine.url.render_as_string(hide_password=True) if engine is not None else "a closed database"
            log.error("write-behind: %d rows for %s could not be written and are lost (%s)", left, where,
                      self._last_error or "no attempt succeeded")

    def _write_queued(self) -> bool:
        """Under the batch lock: one batch; whether it was written."""
        rows, latest = self._take()
        if not rows and not latest:
            return True
        try:
            self._transaction([], rows, latest)
        except (OperationalError, DBAPIError) as err:
            if isinstance(err, OperationalError) or err.connection_invalidated:
                self._put_back(rows, latest)
                self._failed(err, len(rows) + len(latest))
                return False
            self._one_by_one(rows, latest)  # a row refused for what it is: find it, keep the rest
        except SQLAlchemyError:
            self._one_by_one(rows, latest)
        self._recovered()
        return True

    def _one_by_one(self, rows: list[tuple[Statement, Params]], latest: dict[tuple[Statement, str], Params]) -> None:
        for statement, params in [*rows, *((s, p) for (s, _), p in latest.items())]:
            try:
                self._transaction([(statement, params)], [], {})
            except OperationalError as err:  # the database went away meanwhile: keep the row
                self._put_back([(statement, params)], {})
                self._failed(err, 1)
            except SQLAlchemyError as err:
                log.error("write-behind: a row for %s was refused and is dropped (%s: %s)",
                          _table_name(statement), type(err).__name__, _first_line(err))

    def _transaction(self, writes: list[Write], rows: list[tuple[Statement, Params]],
                     latest: dict[tuple[Statement, str], Params]) -> list[list[Any]]:
        conn = self._connect()
        try:
            with writer_lock(conn.engine), conn.begin():
                returned = [_returned(conn, statement, params) for statement, params in writes]
                for statement, many in _grouped(rows).items():
                    conn.execute(statement, many)
                for statement, many in _grouped((s, p) for (s, _), p in latest.items()).items():
                    conn.execute(statement, many)
        except BaseException:
            self._release()  # a broken connection is not kept; the next batch opens a new one
            raise
        return returned

    def _connect(self) -> Connection:
        if self._connection is None:
            engine = self._engine()
            if engine is None:
                raise RuntimeError("write-behind: the database engine is gone")
            self._connection = engine.connect()
        return self._connection

    def _release(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError:
                conn.invalidate()

    def _failed(self, err: Exception, waiting: int) -> None:
        self._failures += 1
        self._last_error = f"{type(err).__name__}: {_first_line(err)}"
        if self._failures == 1:
            log.warning("write-behind: %d rows not written yet (%s: %s); retrying until the database takes them",
                        waiting, type(err).__name__, _first_line(err))

    def _recovered(self) -> None:
        if self._failures:
            log.warning("write-behind: the database takes writes again (after %d failed attempts)", self._failures)
            self._failures = 0

    # --- the background thread ------------------------------------------------------
    def _ensure_thread(self) -> None:
        """Under the queue lock."""
        engine = self._engine()
        if self._thread is None and not self._closed and engine is not None:
            # The thread holds the engine: queued rows keep their database open.
            self._thread = threading.Thread(target=self._run, args=(engine,), name="write-behind", daemon=True)
            self._thread.start()

    def _run(self, engine: Engine) -> None:
        while True:
            with self._queue:
                idle_until = time.monotonic() + self.idle_after
                while not self._rows and not self._latest and not self._closed:
                    if not self._queue.wait(max(0.0, idle_until - time.monotonic())) and (
                            time.monotonic() >= idle_until):
                        break
                if not self._rows and not self._latest:  # idle, or closed: end, and give the connection back
                    self._thread = None
                    break
                # While the database refuses writes, pause longer each time, however long the queue.
                delay = min(self.interval * 2 ** self._failures, MAX_PAUSE) if self._failures else self.interval
                due = time.monotonic() + delay
                while ((self._failures or len(self._rows) + len(self._latest) < self.max_rows)
                       and not self._closed and (left := due - time.monotonic()) > 0):
                    self._queue.wait(left)
            with self._batch:
                try:
                    written = self._write_queued()
                except Exception:  # not the database's refusal (handled there): a bug; keep the thread
                    log.exception("write-behind: writing queued rows failed")
                    written = False
            if not written and self._closed:  # `close` flushes once more itself, and says what is left
                with self._queue:
                    self._thread = None
                break
        with self._batch:
            with self._queue:
                if self._thread is not None:  # work arrived meanwhile: a new thread owns it
                    return
            self._release()


def _returned(conn: Connection, statement: Statement, params: Params | list[Params]) -> list[Any]:
    if params == []:  # an empty executemany is an error, and nothing to do
        return []
    result = conn.execute(statement, params)
    return list(result.scalars()) if result.returns_rows else []


def _grouped(rows: Iterable[tuple[Statement, Params]]) -> dict[Statement, list[Params]]:
    groups: dict[Statement, list[Params]] = {}
    for statement, params in rows:
        groups.setdefault(statement, []).append(params)
    return groups


def _table_name(statement: Statement) -> str:
    table = getattr(statement, "table", None)
    return str(getattr(table, "name", statement))


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- one writer per database ----------------------------------------------------------

_writers: weakref.WeakKeyDictionary[Engine, WriteBehind] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(engine: Engine) -> WriteBehind:
    """The engine's writer: every store object of one database shares it, so a commit
    carries all their queued rows."""
    writer = _writers.get(engine)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(engine)
            if writer is None:
                writer = _writers[engine] = WriteBehind(engine)
    return writer


def flush_all() -> None:
    """Write every queued row of every database (interpreter exit); say what could not be."""
    for writer in list(_writers.values()):
        writer.flush()
        writer.report_unwritten()


atexit.register(flush_all)
