"""The bot's database on SQLite and on a real PostgreSQL server: migrations (fresh, from
a database the pre-migration code made, models and revisions in agreement), the unit of
work that commits audit and job rows together, exactly-once claims across connections,
the write-behind writer (what is on disk before the work, what follows it, a crash, a
locked database), and the whole bot (audit, jobs, monitors, APScheduler's store) on each
backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from postgres_server import PostgresServer
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from chatbot import store
from chatbot.audit import AuditEvent, AuditLog
from chatbot.errors import UserError
from chatbot.jobs import Job, JobState, JobStore
from chatbot.state import ChatState
from chatbot.store import audit_events, include_object, jobs_table, make_engine, metadata

BACKENDS = ["sqlite", "postgresql"]
OUR_TABLES = {"audit_events", "jobs", "chat_positions", "chat_taken_messages", "monitors", "monitor_state"}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture()
def engines() -> Iterator[Callable[[str], Engine]]:
    """Engines the test opens (each one is a separate connection pool, as a second
    process would have), all disposed of afterwards."""
    opened: list[Engine] = []

    def open_engine(url: str) -> Engine:
        engine = make_engine(url)
        opened.append(engine)
        return engine

    yield open_engine
    for engine in opened:
        engine.dispose()


def schema_diff(engine: Engine) -> list[Any]:
    """What `alembic revision --autogenerate` would write: nothing, when the models and
    the migrated database agree."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        return list(compare_metadata(context, metadata))


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return store.current_revision(conn)


# --- migrations -------------------------------------------------------------------------

def test_a_fresh_database_is_migrated_to_the_newest_revision(database_url: str,
                                                             engines: Callable[[str], Engine]) -> None:
    engine = engines(database_url)
    AuditLog(engine)  # any store object prepares the database
    assert OUR_TABLES <= set(inspect(engine).get_table_names())
    assert revision(engine) == store.head_revision() is not None


def test_models_and_migrations_agree(database_url: str, engines: Callable[[str], Engine]) -> None:
    engine = engines(database_url)
    store.prepare(engine)
    # APScheduler's own table shares the database; the migrations neither own nor drop it.
    SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs").start(BackgroundScheduler(), "default")
    assert "apscheduler_jobs" in inspect(engine).get_table_names()
    assert schema_diff(engine) == []


# The schema exactly as the code before migrations created it (SQLAlchemy's DDL for each
# backend), one statement per table or index. {ts} and {serial} are the only differences
# between the backends.
OLD_DDL: dict[str, list[str]] = {
    "audit_events": [
        'CREATE TABLE audit_events (id {serial} NOT NULL, at {ts} NOT NULL, kind VARCHAR(16) NOT NULL, '
        'request_id VARCHAR(32) NOT NULL, "user" VARCHAR(255) NOT NULL, platform_id VARCHAR(255) NOT NULL, '
        'bridge VARCHAR(64), weak BOOLEAN NOT NULL, platform VARCHAR(32) NOT NULL, room VARCHAR(255) NOT NULL, '
        'command VARCHAR(64), arguments TEXT, decision VARCHAR(16), job_id VARCHAR(32), device VARCHAR(255), '
        'outcome TEXT, duration_ms FLOAT, PRIMARY KEY (id))',
        "CREATE INDEX ix_audit_events_at ON audit_events (at)",
        "CREATE INDEX ix_audit_events_request_id ON audit_events (request_id)",
        'CREATE INDEX ix_audit_events_user ON audit_events ("user")',
    ],
    "jobs": [
        'CREATE TABLE jobs (id VARCHAR(16) NOT NULL, "user" VARCHAR(255) NOT NULL, platform VARCHAR(32) NOT NULL, '
        'room VARCHAR(255) NOT NULL, command VARCHAR(64) NOT NULL, text TEXT NOT NULL, devices TEXT NOT NULL, '
        'state VARCHAR(16) NOT NULL, created {ts} NOT NULL, started {ts}, finished {ts}, outcome TEXT, '
        'PRIMARY KEY (id))',
        "CREATE INDEX ix_jobs_state ON jobs (state)",
        'CREATE INDEX ix_jobs_user ON jobs ("user")',
    ],
    "chat_positions": [
        "CREATE TABLE chat_positions (platform VARCHAR(255) NOT NULL, position VARCHAR(4096) NOT NULL, "
        "updated {ts} NOT NULL, PRIMARY KEY (platform))",
    ],
    "chat_taken_messages": [
        "CREATE TABLE chat_taken_messages (platform VARCHAR(64) NOT NULL, message_id VARCHAR(255) NOT NULL, "
        "at {ts} NOT NULL, PRIMARY KEY (platform, message_id))",
        "CREATE INDEX ix_chat_taken_messages_at ON chat_taken_messages (at)",
    ],
    "monitor_state": [
        "CREATE TABLE monitor_state (monitor_id VARCHAR(32) NOT NULL, target VARCHAR(255) NOT NULL, "
        "status VARCHAR(8) NOT NULL, failures INTEGER NOT NULL, first_failure FLOAT, down_since FLOAT, "
        "last_notified FLOAT, detail TEXT, PRIMARY KEY (monitor_id, target))",
    ],
    "monitors": [
        'CREATE TABLE monitors (id VARCHAR(32) NOT NULL, kind VARCHAR(32) NOT NULL, targets TEXT NOT NULL, '
        'options TEXT NOT NULL, interval FLOAT NOT NULL, room VARCHAR(255) NOT NULL, owner VARCHAR(255) NOT NULL, '
        '"after" INTEGER NOT NULL, remind_every FLOAT NOT NULL, paused BOOLEAN NOT NULL, '
        'source VARCHAR(16) NOT NULL, PRIMARY KEY (id))',
    ],
}
OLD_TYPES = {"sqlite": {"ts": "DATETIME", "serial": "INTEGER"},
             "postgresql": {"ts": "TIMESTAMP WITH TIME ZONE", "serial": "SERIAL"}}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD_ROWS: dict[str, list[str]] = {
    "audit_events": [
        "INSERT INTO audit_events (at, kind, request_id, \"user\", platform_id, weak, platform, room, command, "
        "decision) VALUES ({now}, 'decision', 'req1', 'alice', '@alice:hs', {false}, 'matrix', '!ops:hs', "
        "'show', 'allow')"],
    "jobs": [
        "INSERT INTO jobs (id, \"user\", platform, room, command, text, devices, state, created) VALUES "
        "('job1', 'alice', 'matrix', '!ops:hs', 'show', 'show version r1', 'r1', 'running', {now})",
        "INSERT INTO jobs (id, \"user\", platform, room, command, text, devices, state, created, finished, outcome) "
        "VALUES ('job0', 'alice', 'matrix', '!ops:hs', 'show', 'show clock r1', 'r1', 'done', {now}, {now}, 'ok')"],
    "chat_positions": ["INSERT INTO chat_positions (platform, position, updated) VALUES ('matrix:@bot:hs', 's42_7', {now})"],
    "chat_taken_messages": [
        "INSERT INTO chat_taken_messages (platform, message_id, at) VALUES ('matrix', '$event1', {now})"],
    "monitors": [
        "INSERT INTO monitors (id, kind, targets, options, interval, room, owner, \"after\", remind_every, paused, "
        "source) VALUES ('m1', 'ssh', 'r1', '{{}}', 60.0, 'console:ops', 'alice', 2, 3600.0, {false}, 'chat')"],
    "monitor_state": [
        "INSERT INTO monitor_state (monitor_id, target, status, failures, detail) VALUES ('m1', 'r1', 'down', 3, "
        "'connection refused')"],
}


def make_old_database(engine: Engine, tables: list[str]) -> None:
    types = OLD_TYPES[engine.dialect.name]
    literals = {"now": f"'{NOW.strftime('%Y-%m-%d %H:%M:%S.%f')}" + ("+00:00'" if engine.dialect.name != "sqlite"
                                                                      else "'"),
                "false": "false" if engine.dialect.name != "sqlite" else "0"}
    with engine.begin() as conn:
        for table in tables:
            for ddl in OLD_DDL[table]:
                conn.execute(text(ddl.format(**types)))
            for row in OLD_ROWS[table]:
                conn.execute(text(row.format(**literals)))


@pytest.mark.parametrize("tables", [sorted(OLD_DDL), ["audit_events"]], ids=["every-table", "audit-only"])
def test_a_database_made_before_migrations_upgrades_and_keeps_its_rows(
        database_url: str, engines: Callable[[str], Engine], tables: list[str]) -> None:
    # "audit-only": what `chatbot audit` left on a fresh file before migrations existed.
    make_old_database(engines(database_url), tables)
    engine = engines(database_url)  # a later start of the bot
    assert "alembic_version" not in inspect(engine).get_table_names()
    audit = AuditLog(engine)
    state = ChatState(engine)
    JobStore(engine)  # marks what ran when the bot stopped as interrupted, as before
    assert revision(engine) == store.head_revision()
    assert OUR_TABLES <= set(inspect(engine).get_table_names())
    assert schema_diff(engine) == []  # the old schema is the models' schema
    assert [(r["user"], r["decision"]) for r in audit.recent()] == [("alice", "allow")]
    with engine.connect() as conn:
        counts = {t: conn.execute(select(func.count()).select_from(metadata.tables[t])).scalar() for t in OUR_TABLES}
        job_states = dict(conn.execute(select(jobs_table.c.id, jobs_table.c.state)).all())
    assert counts == {t: len(OLD_ROWS[t]) if t in tables else 0 for t in OUR_TABLES}
    if "jobs" in tables:
        assert job_states == {"job1": JobState.INTERRUPTED.value, "job0": JobState.DONE.value}
        assert state.get("matrix:@bot:hs") == "s42_7"
        assert state.take("matrix", "$event1") is False  # claimed before the upgrade: still claimed
    assert state.take("matrix", "$event2") is True


def test_preparing_twice_changes_nothing(database_url: str, engines: Callable[[str], Engine]) -> None:
    first = engines(database_url)
    AuditLog(first).record(AuditEvent("request", "r1", "alice", "@alice:hs", "matrix", "!ops:hs"))
    second = engines(database_url)  # a restart: the database is at the newest revision already
    assert len(AuditLog(second).recent()) == 1
    assert revision(second) == store.head_revision()


# --- the unit of work ---------------------------------------------------------------------

def job(job_id: str = "0123456789ab") -> Job:
    return Job(id=job_id, user="alice", platform="matrix", room="!ops:hs", command="show", text="show version r1",
               devices=["r1"])


def test_audit_and_job_rows_of_one_moment_commit_together(database_url: str,
                                                          engines: Callable[[str], Engine]) -> None:
    engine = engines(database_url)
    audit, jobs = AuditLog(engine), JobStore(engine)
    event = AuditEvent("job", "r1", "alice", "@alice:hs", "matrix", "!ops:hs", job_id="0123456789ab")
    store.write(engine, [audit.write_for([event]), jobs.insert_for(job(), JobState.RUNNING)])
    assert len(audit.recent()) == 1
    # The same job again: its row cannot go in, so neither may the audit row beside it.
    with pytest.raises(IntegrityError):
        store.write(engine, [audit.write_for([event, event]), jobs.insert_for(job(), JobState.RUNNING)])
    assert len(audit.recent()) == 1
    finished = job()
    finished.state = JobState.DONE
    store.write(engine, [audit.write_for([]), jobs.finish_for(finished, "ok: 1 device")])
    with engine.connect() as conn:
        assert conn.execute(select(jobs_table.c.state, jobs_table.c.outcome)).one() == ("done", "ok: 1 device")


def test_a_queued_job_start_written_behind_its_finish_changes_nothing(database_url: str,
                                                                       engines: Callable[[str], Engine]) -> None:
    """The write-behind writer may run a batch's statements in any order: a start that
    lands after the finish must not make a finished job look running."""
    engine = engines(database_url)
    jobs, queued = JobStore(engine), job()
    store.write(engine, [jobs.insert_for(queued, JobState.QUEUED)])
    jobs.started(queued)
    jobs.writer.flush()
    with engine.connect() as conn:
        assert conn.execute(select(jobs_table.c.state)).scalar() == "running"
    queued.state = JobState.DONE
    jobs.finished(queued, "ok: 1 device")
    jobs.started(queued)  # a late start, in the same batch
    jobs.writer.flush()
    with engine.connect() as conn:
        assert tuple(conn.execute(select(jobs_table.c.state, jobs_table.c.outcome)).one()) == ("done", "ok: 1 device")


def test_jobs_that_ran_when_the_bot_stopped_are_interrupted(database_url: str,
                                                            engines: Callable[[str], Engine]) -> None:
    engine = engines(database_url)
    store.write(engine, [JobStore(engine).insert_for(job("a" * 12), JobState.RUNNING),
                         JobStore.insert_for(job("b" * 12), JobState.QUEUED)])
    JobStore(engines(database_url))  # the next start
    with engine.connect() as conn:
        assert {s for (s,) in conn.execute(select(jobs_table.c.state))} == {JobState.INTERRUPTED.value}


def test_audit_prune_and_filters(database_url: str, engines: Callable[[str], Engine]) -> None:
    audit = AuditLog(engines(database_url))
    old = AuditEvent("request", "r0", "alice", "@alice:hs", "matrix", "!ops:hs",
                     at=datetime.now(UTC) - timedelta(days=40))
    audit.record(old, AuditEvent("request", "r1", "bob", "@bob:hs", "matrix", "!ops:hs", arguments="x" * 5000))
    assert [r["request_id"] for r in audit.recent(user="@bob:hs")] == ["r1"]
    assert len(audit.recent()[-1]["arguments"]) == 2000  # long text is cut, on every backend
    assert audit.prune(30) == 1
    assert [r["request_id"] for r in audit.recent()] == ["r1"]


# --- chat state: positions and exactly-once claims ------------------------------------------

def test_positions_survive_and_old_claims_are_forgotten(database_url: str,
                                                        engines: Callable[[str], Engine]) -> None:
    state = ChatState(engines(database_url))
    state.put("matrix:@bot:hs", "s1")
    state.put("matrix:@bot:hs", "s2")
    assert state.take("slack", "1700000000.000100") is True
    state.flush()  # a clean stop writes the positions queued behind
    with state.engine.begin() as conn:
        conn.execute(insert(store.chat_taken_messages).values(
            platform="slack", message_id="old", at=datetime.now(UTC) - timedelta(days=10)))
    again = ChatState(engines(database_url))  # after a restart
    assert again.get("matrix:@bot:hs") == "s2"
    assert again.take("slack", "1700000000.000100") is False
    assert again.forget_older_than(7) == 1


def test_a_message_is_claimed_once_across_connections(database_url: str,
                                                      engines: Callable[[str], Engine]) -> None:
    """Two bots (two connection pools, as two processes would have) race to claim the
    same messages: each message goes to exactly one of them."""
    claimers = [ChatState(engines(database_url)) for _ in range(2)]
    threads_per_claimer, messages = 2, 25
    won: list[tuple[str, int]] = []
    won_lock = threading.Lock()
    start = threading.Barrier(len(claimers) * threads_per_claimer)
    errors: list[BaseException] = []

    def claim(state: ChatState, who: int) -> None:
        try:
            start.wait(timeout=30)
            for n in range(messages):
                if state.take("matrix", f"$event{n}"):
                    with won_lock:
                        won.append((f"$event{n}", who))
        except BaseException as err:  # surfaced below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=claim, args=(state, i * threads_per_claimer + t))
               for i, state in enumerate(claimers) for t in range(threads_per_claimer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(m for m, _ in won) == sorted(f"$event{n}" for n in range(messages))


def test_a_concurrent_claim_waits_for_the_first_and_loses(postgres: PostgresServer,
                                                          engines: Callable[[str], Engine]) -> None:
    """PostgreSQL: while one connection's claim is not yet committed, a second claim of
    the same message waits for it, then loses; it neither wins twice nor errors."""
    url = postgres.new_database()
    first, second = ChatState(engines(url)), ChatState(engines(url))
    outcome: list[bool] = []
    with first.engine.begin() as conn:
        conn.execute(insert(store.chat_taken_messages).values(platform="matrix", message_id="$race",
                                                               at=datetime.now(UTC)))
        racer = threading.Thread(target=lambda: outcome.append(second.take("matrix", "$race")))
        racer.start()
        # The racer blocks on the uncommitted row: wait until PostgreSQL shows it waiting on a lock.
        with engines(url).connect() as watcher:
            for _ in range(600):
                waiting = watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")).scalar()
                if waiting or not racer.is_alive():
                    break
                watcher.execute(text("SELECT pg_sleep(0.05)"))
        assert waiting == 1 and outcome == []
    racer.join(timeout=30)
    assert outcome == [False]


# --- the whole bot on each backend ------------------------------------------------------------

@pytest.mark.slow
def test_the_bot_keeps_audit_jobs_and_monitors_in_either_database(database_url: str, lab: Any,
                                                                  engines: Callable[[str], Engine]) -> None:
    from chatbot.app import build_bot
    from chatbot.cli import lab_access
    from chatbot.config import parse_config
    from chatbot.message import Identity, Message

    config = parse_config({"limits": {"device_timeout": 5, "connect_timeout": 3, "monitor_min_interval": 1}})

    async def ask(bot: Any, line: str) -> Any:
        msg = Message(platform="console", room="ops", sender=Identity.native("console", "noc"), text=line,
                      direct=True)
        reply = await bot.handle(msg)
        assert reply is not None
        return reply.result

    def new_bot() -> Any:
        bot = build_bot(config, lab_access(lab), audit=AuditLog(engines(database_url)))
        bot.monitors.first_run_now = False
        return bot

    async def first_life() -> str:
        bot = new_bot()
        await bot.start()  # APScheduler's job store on the same database
        try:
            assert (await ask(bot, "!devices group:core")).ok
            added = await ask(bot, "!monitor add ssh r5 every 1h")
            assert added.ok, added.summary
            monitor_id = added.summary.split()[1]
            assert await bot.monitors.run_now(monitor_id) is None  # up
            return str(monitor_id)
        finally:
            await bot.stop()

    monitor_id = asyncio.run(first_life())

    async def second_life() -> None:
        bot = new_bot()
        await bot.start()
        try:
            listed = await ask(bot, "!monitor list")
            assert monitor_id in str(listed.parts) + listed.summary
        finally:
            await bot.stop()

    asyncio.run(second_life())
    engine = engines(database_url)
    with engine.connect() as conn:
        jobs = conn.execute(select(jobs_table.c.command, jobs_table.c.state)).all()
        kinds = {k for (k,) in conn.execute(select(audit_events.c.kind))}
        scheduled = conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all()
    assert ("devices", "done") in [tuple(j) for j in jobs]
    assert {"request", "decision", "job", "result"} <= kinds
    assert scheduled  # the monitor's schedule lives in the same database


# --- bad configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["not a url", "postgresql+nosuchdriver://bot@localhost/bot"])
def test_a_bad_database_url_is_one_line(url: str) -> None:
    with pytest.raises(UserError, match=r"^\[bot\] database: not a database URL"):
        make_engine(url)


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    engine = make_engine(f"postgresql+psycopg://bot:hunter2@/bot?host={tmp_path}&port=5999")
    with pytest.raises(UserError) as caught:
        AuditLog(engine)
    assert "\n" not in str(caught.value) and "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("[bot] database postgresql+psycopg://bot:***@/bot")


PREPARE_ON_CUE = """
import sys
from chatbot.store import make_engine, prepare
engine = make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # the cue: every process is loaded, all start at once
prepare(engine)
"""


def test_processes_starting_at_once_all_migrate(database_url: str, engines: Callable[[str], Engine]) -> None:
    """Bots (or the bot and `chatbot audit`) start together on a fresh database: one
    migrates, the others wait for it and find the schema at head."""
    url = database_url
    with engines(url).connect():
        pass  # the file exists (a fresh SQLite file's switch to WAL is a race of its own)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    starters = [subprocess.Popen([sys.executable, "-c", PREPARE_ON_CUE, url], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(4)]
    for process in starters:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in starters:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    failures = [err for _, err in (process.communicate(timeout=60) for process in starters) if err]
    assert failures == [] and [process.returncode for process in starters] == [0] * len(starters)
    assert revision(engines(url)) == store.head_revision()


# --- write-behind: what must be on disk first, and what may follow -----------------------------

def queued_bot(engine: Engine, *extra: Any) -> Any:
    """A bot on SAMPLE_INVENTORY whose audit log and job table are `engine`'s, with the
    commands in `extra` besides the built-ins and tasks/."""
    from chatbot.access_config import build_policy
    from chatbot.bot import Bot, all_permissions
    from chatbot.jobs import JobRunner
    from chatbot.plugins import load_registry
    from chatbot.testing import sample_context

    registry = load_registry()
    for cmd in extra:
        registry.add(cmd)
    ctx = sample_context()
    jobs = JobRunner(max_running_per_user=4, rate_per_minute=1000, store=JobStore(engine))
    return Bot(registry, ctx, build_policy(ctx.config, all_permissions(registry), ctx.inventory),
               AuditLog(engine), jobs)


def read_back(engine: Engine) -> dict[str, Any]:
    """What another process would see through `engine`: audit kinds, job states, positions."""
    with engine.connect() as conn:
        return {"kinds": [k for (k,) in conn.execute(select(audit_events.c.kind).order_by(audit_events.c.id))],
                "jobs": [s for (s,) in conn.execute(select(jobs_table.c.state))],
                "positions": dict(conn.execute(select(store.chat_positions.c.platform,
                                                      store.chat_positions.c.position)).all())}


def test_the_request_row_is_on_disk_before_the_task_starts(database_url: str,
                                                           engines: Callable[[str], Engine]) -> None:
    from chatbot.commands import Command
    from chatbot.results import Result, Status
    from chatbot.testing import message

    seen: list[dict[str, Any]] = []
    reader = engines(database_url)  # a second connection pool, as another process would have

    def peek(ctx: Any) -> Result:  # the task: what a second connection sees as it starts
        seen.append(read_back(reader))
        return Result(Status.OK, "peeked")

    bot = queued_bot(engines(database_url), Command(name="peek", summary="read the audit log", handler=peek))
    reply = asyncio.run(bot.handle(message("!peek")))
    assert reply is not None and reply.result.ok
    assert seen == [{"kinds": ["request", "decision", "job"], "jobs": ["running"], "positions": {}}]


def test_rows_written_behind_are_on_disk_after_a_clean_stop(database_url: str,
                                                            engines: Callable[[str], Engine]) -> None:
    from chatbot.testing import message
    from chatbot.write_behind import writer_for

    engine, reader = engines(database_url), engines(database_url)
    bot = queued_bot(engine)
    writer_for(engine).interval = 3600  # only the stop writes them
    state = ChatState(engine)

    async def life() -> None:
        assert (await bot.handle(message("!devices core"))).result.ok  # a job
        assert not (await bot.handle(message("!frobnicate"))).result.ok  # no work at all
        state.put("matrix:@bot:hs", "s1")
        state.put("matrix:@bot:hs", "s2")
        assert state.get("matrix:@bot:hs") == "s2"  # its owner reads it back at once
        before = read_back(reader)
        assert before == {"kinds": ["request", "decision", "job"], "jobs": ["running"], "positions": {}}
        await bot.stop()

    asyncio.run(life())
    after = read_back(reader)
    assert sorted(after["kinds"]) == sorted(["request", "decision", "job", "result",  # the job
                                             "request", "decision", "result"])  # the invalid command
    assert after["jobs"] == ["done"] and after["positions"] == {"matrix:@bot:hs": "s2"}


CRASH = """
import asyncio, os, sys
from chatbot.state import ChatState
from chatbot.store import make_engine
from chatbot.testing import message
from chatbot.write_behind import writer_for
from test_store import queued_bot

engine = make_engine(sys.argv[1])
writer_for(engine).interval = 3600
state = ChatState(engine)
bot = queued_bot(engine)
state.put("matrix:@bot:hs", "s1")
state.flush()  # a position written before
assert state.take("matrix", "$claimed")
state.put("matrix:@bot:hs", "s2")
assert asyncio.run(bot.handle(message("!devices core"))).result.ok
os._exit(0)  # a crash: no stop, no atexit
"""


def test_a_crash_loses_rows_written_behind_never_a_claim(database_url: str,
                                                          engines: Callable[[str], Engine]) -> None:
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=f"{tests.parent}{os.pathsep}{tests}")
    crashed = subprocess.run([sys.executable, "-c", CRASH, database_url], env=env, capture_output=True,
                             text=True, timeout=120)
    assert crashed.returncode == 0, crashed.stderr
    reader = engines(database_url)
    after = read_back(reader)
    # The request rows and the job were committed before it ran; its outcome was queued.
    assert after["kinds"] == ["request", "decision", "job"] and after["jobs"] == ["running"]
    restarted = ChatState(engines(database_url))
    assert restarted.get("matrix:@bot:hs") == "s1"  # the last position written: replayed from there
    assert restarted.take("matrix", "$claimed") is False  # and the replay finds the claim
    JobStore(engines(database_url))
    assert read_back(reader)["jobs"] == ["interrupted"]


REMEMBER_THEN_CRASH = """
import os, sys
from chatbot.state import ChatState
from chatbot.store import make_engine
from chatbot.write_behind import writer_for

engine = make_engine(sys.argv[1])
writer_for(engine).interval = 3600
state = ChatState(engine)
state.put("matrix:@bot:hs", "s9")  # a position: may be lost
state.remember("matrix-room:!ops:hs", "@alice:hs")  # a note: must not be
os._exit(0)  # a crash: no stop, no atexit
"""


def test_a_note_remembered_survives_a_crash_at_once(database_url: str, engines: Callable[[str], Engine]) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    crashed = subprocess.run([sys.executable, "-c", REMEMBER_THEN_CRASH, database_url], env=env,
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 0, crashed.stderr
    assert ChatState(engines(database_url)).get("matrix-room:!ops:hs") == "@alice:hs"


EXIT_WITHOUT_STOP = """
import sys
from chatbot.audit import AuditEvent, AuditLog
from chatbot.store import make_engine
from chatbot.write_behind import writer_for

engine = make_engine(sys.argv[1])
writer_for(engine).interval = 3600
AuditLog(engine).defer(AuditEvent("result", "r1", "alice", "@alice:hs", "matrix", "!ops:hs"))
# the script ends without stopping anything: the exit hook writes the queue
"""


def test_rows_queued_at_a_normal_exit_are_written(database_url: str, engines: Callable[[str], Engine]) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run([sys.executable, "-c", EXIT_WITHOUT_STOP, database_url], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "write-behind" not in done.stderr, done.stderr
    assert read_back(engines(database_url))["kinds"] == ["result"]


def short_waiting_engine(url: str) -> Engine:
    """An engine that gives up on a lock after 0.1 s rather than SQLite's 5 s (or
    PostgreSQL's forever)."""
    from sqlalchemy import create_engine

    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 0.1})
    return create_engine(url, connect_args={"options": "-c lock_timeout=100"})


@contextmanager
def audit_table_locked(url: str, engines: Callable[[str], Engine]) -> Iterator[None]:
    """Another connection holds the lock that writing the audit table needs."""
    if url.startswith("sqlite"):
        import sqlite3

        locker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:
        with engines(url).begin() as conn:
            conn.execute(text("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))
            yield


def test_the_writer_waits_out_a_locked_database_with_one_line(database_url: str, engines: Callable[[str], Engine],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from chatbot.write_behind import WriteBehind

    reader = engines(database_url)
    store.prepare(reader)
    engine = short_waiting_engine(database_url)
    writer = WriteBehind(engine, interval=0.05)
    audit = AuditLog(engines(database_url))
    rows = [AuditEvent("result", f"r{n}", "alice", "@alice:hs", "matrix", "!ops:hs") for n in range(3)]
    with caplog.at_level("WARNING", logger="chatbot.write_behind"), audit_table_locked(database_url, engines):
        writer.defer(*audit.write_for(rows))
        writer.flush()
        writer.flush()  # still locked: the rows wait, and the burst has its one line already
        assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["write-behind: 3 rows not written yet"]
    deadline = time.monotonic() + 30
    while len(read_back(reader)["kinds"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the background thread retries on its own
    assert read_back(reader)["kinds"] == ["result"] * 3
    assert len(caplog.records) == 2 and "takes writes again" in caplog.records[1].getMessage()
    writer.close()
    engine.dispose()


def test_a_row_the_database_refuses_is_dropped_with_a_line_and_the_rest_written(
        database_url: str, engines: Callable[[str], Engine], caplog: pytest.LogCaptureFixture) -> None:
    from chatbot.write_behind import WriteBehind

    engine = reader = engines(database_url)
    store.write(engine, [JobStore(engine).insert_for(job(), JobState.RUNNING)])
    writer = WriteBehind(engine, interval=3600)
    audit = AuditLog(engine)
    writer.defer(*audit.write_for([AuditEvent("result", "r1", "alice", "@alice:hs", "matrix", "!ops:hs")]))
    writer.defer(*JobStore.insert_for(job(), JobState.RUNNING))  # the same job id again
    writer.defer(*audit.write_for([AuditEvent("result", "r2", "alice", "@alice:hs", "matrix", "!ops:hs")]))
    with caplog.at_level("WARNING", logger="chatbot.write_behind"):
        writer.flush()
    assert read_back(reader)["kinds"] == ["result", "result"]
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "a row for jobs was refused and is dropped (IntegrityError" in caplog.records[0].getMessage()
    writer.close()


def test_claims_that_arrive_together_share_one_transaction(database_url: str,
                                                           engines: Callable[[str], Engine]) -> None:
    from chatbot.inbox import Inbox
    from chatbot.testing import sample_bot

    state = ChatState(engines(database_url))
    assert state.take("matrix", "$before")
    batches: list[list[str]] = []
    take_many = state.take_many

    def counted(platform: str, keys: list[str]) -> set[str]:
        batches.append(list(keys))
        return take_many(platform, keys)

    state.take_many = counted  # type: ignore[method-assign]
    inbox = Inbox(sample_bot(), state, "matrix")

    async def burst() -> list[bool]:
        return list(await asyncio.gather(*(inbox.claim(k) for k in ["$a", "$b", "$before", "$a"])))

    assert asyncio.run(burst()) == [True, True, False, False]
    assert batches == [["$a", "$b", "$before", "$a"]]
    assert ChatState(engines(database_url)).take_many("matrix", ["$a", "$b", "$c"]) == {"$c"}
