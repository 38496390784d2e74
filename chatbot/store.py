"""The bot's one database: the engine, every table the bot owns, the migrations that
build them, and the transaction (unit of work) that domain modules write through.

SQLite by default; PostgreSQL by URL (`postgresql+psycopg://`, the `postgres` extra).
The domain modules (audit, jobs, state, monitoring) keep their logic and import their
tables from here. APScheduler's job store creates and owns its own table
(`apscheduler_jobs`); migrations leave it alone (`chatbot/migrations/env.py`).

Schema changes are Alembic revisions in `chatbot/migrations/versions/`; `prepare`
upgrades a database to the newest one when the bot starts.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
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
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from chatbot.errors import UserError

metadata = MetaData()

# Tables that live in the database but belong to a library, not to the bot's schema.
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})

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

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("user", String(255), nullable=False, index=True),
    Column("platform", String(32), nullable=False),
    Column("room", String(255), nullable=False),
    Column("command", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("devices", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("finished", DateTime(timezone=True)),
    Column("outcome", Text),
)

chat_positions = Table(
    "chat_positions",
    metadata,
    Column("platform", String(255), primary_key=True),  # the key, e.g. "matrix:@netbot:corp.example"
    Column("position", String(4096), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

chat_taken_messages = Table(
    "chat_taken_messages",
    metadata,
    Column("platform", String(64), primary_key=True),
    Column("message_id", String(255), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)

monitors_table = Table(
    "monitors", metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("targets", Text, nullable=False),
    Column("options", Text, nullable=False),  # JSON, as validated by the check kind
    Column("interval", Float, nullable=False),
    Column("room", String(255), nullable=False),  # platform:room
    Column("owner", String(255), nullable=False),
    Column("after", Integer, nullable=False),
    Column("remind_every", Float, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("source", String(16), nullable=False),  # chat or config
)

monitor_state_table = Table(
    "monitor_state", metadata,
    Column("monitor_id", String(32), primary_key=True),
    Column("target", String(255), primary_key=True),
    Column("status", String(8), nullable=False),  # up, down
    Column("failures", Integer, nullable=False),
    Column("first_failure", Float),
    Column("down_since", Float),
    Column("last_notified", Float),
    Column("detail", Text),
)


def make_engine(url: str) -> Engine:
    """An engine for the bot's database URL. Its schema is brought up to date by
    `prepare`, which every store object calls."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        # One shared connection, or every thread would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(url)
        except (ArgumentError, NoSuchModuleError) as err:
            raise UserError(f"[bot] database: not a database URL ({type(err).__name__}); "
                            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") from None
        except ModuleNotFoundError as err:
            raise UserError(f"[bot] database: its driver {err.name} is not installed "
                            "(for PostgreSQL: pip install 'netbot[postgres]')") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            # WAL: readers (chatbot audit) never block the bot; NORMAL is still crash-safe in WAL.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine


# --- migrations -----------------------------------------------------------------------

MIGRATIONS = "chatbot:migrations"  # Alembic's script_location, as a package resource

# The newest revision in chatbot/migrations/versions (tests/test_store.py holds the two
# equal): knowing it without Alembic lets a start on an up-to-date database skip
# importing Alembic, a tenth of a second and 10 MiB.
HEAD_REVISION = "0001"
MIGRATION_LOCK = 0x6E657462  # PostgreSQL advisory lock key ("netb"), held while migrating
_prepared: weakref.WeakSet[Engine] = weakref.WeakSet()
_prepare_lock = threading.Lock()


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's filter: APScheduler creates and alters its own table, and the bot's
    migrations (and autogenerate) never touch it."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", None)
    return table_name not in FOREIGN_TABLES


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if connection is not None:
        config.attributes["connection"] = connection  # env.py migrates through it
    return config


@cache
def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    """The database's revision, read as Alembic reads it (the one row of alembic_version)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    version: str | None = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return version


def prepare(engine: Engine) -> None:
    """Upgrade the database to the newest revision, once per engine. A database made
    before migrations existed (tables, no alembic_version) is upgraded too: the first
    revision creates only the tables that are missing (see its docstring)."""
    if engine in _prepared:
        return
    with _prepare_lock:
        if engine in _prepared:
            return
        try:
            with engine.begin() as conn:
                # Processes that start together migrate one after the other; the lock is
                # released when this transaction ends.
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                elif conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's one writer lock, taken now
                # Reading the version is cheap; importing and running Alembic is not.
                if current_revision(conn) != HEAD_REVISION:
                    from alembic import command

                    command.upgrade(alembic_config(conn), "head")
        except OperationalError as err:  # unreachable, refused, or not writable
            reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else type(err).__name__
            raise UserError(f"[bot] database {engine.url.render_as_string(hide_password=True)}: {reason}") from None
        _prepared.add(engine)


# --- the unit of work -----------------------------------------------------------------

# SQLite takes one writer at a time: the bot's writers queue here rather than in
# SQLite's busy handler. PostgreSQL locks rows itself.
_writer_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_writer_locks_lock = threading.Lock()


def writer_lock(engine: Engine) -> Any:
    if engine.dialect.name != "sqlite":
        return nullcontext()
    lock = _writer_locks.get(engine)
    if lock is None:
        with _writer_locks_lock:
            lock = _writer_locks.setdefault(engine, threading.Lock())
    return lock


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction: commits when the block ends, rolls back if it raises."""
    with writer_lock(engine), engine.begin() as conn:
        yield conn


Write = tuple[Any, Any]  # a statement and its parameters (a dict, or a list of dicts: executemany)


def write(engine: Engine, writes: Iterable[Write]) -> None:
    """Run prepared statements in one transaction: the audit rows and the job row of
    one moment commit together (one commit, not two), on the connection the database's
    write-behind writer holds (`chatbot.write_behind`). Each statement is compiled once
    and cached; its parameters come as data, which costs less than `.values(...)`."""
    from chatbot.write_behind import writer_for  # it imports this module

    writer_for(engine).commit(writes)
