"""Jobs: every command that does work becomes one, with an id, a state in the database,
and limits: per-user running jobs (excess queues, the user is told the position), a
per-user rate, a per-job timeout, and cancellation.

Device-level limits (one session per device, a global cap) live in chatbot.limits and
apply inside the job, in the worker threads. A job reaches its task only through the
task's context: the job is the task's CancelToken, and its progress callback counts the
devices done (chatbot.control), so the task never needs to know it runs in a job.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Engine

from chatbot.control import CancelFlag
from chatbot.results import Result, Status
from chatbot.store import Write, jobs_table, prepare, transaction
from chatbot.write_behind import writer_for


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the bot stopped while it ran


@dataclass
class Job:
    id: str
    user: str
    platform: str
    room: str
    command: str
    text: str
    devices: list[str]
    message_id: str | None = None
    state: JobState = JobState.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    done_devices: int = 0
    total_devices: int | None = None  # as the task counts them, once it reports progress
    cancel_flag: CancelFlag = field(default_factory=CancelFlag)  # seen by worker threads
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)  # seen by the event loop
    cancelled_by: str | None = None
    stored_state: JobState | None = None  # what the jobs table says now

    # --- the job is its task's CancelToken (chatbot.control) ------------------------
    @property
    def cancelled(self) -> bool:
        return self.cancel_flag.cancelled

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self.cancel_flag.on_cancel(callback)

    def report_progress(self, done: int, total: int) -> None:
        """The task's progress callback; called from worker threads."""
        self.done_devices, self.total_devices = done, total

    def progress(self) -> str:
        if self.state is JobState.QUEUED:
            return "queued"
        total = self.total_devices if self.total_devices is not None else len(self.devices)
        if total > 1:
            return f"{self.done_devices}/{total} devices done"
        return self.state.value


class RateLimited(Exception):
    pass


_INSERT_JOB = insert(jobs_table)
_FINISH_JOB = (update(jobs_table).where(jobs_table.c.id == bindparam("job_id"))
               .values(state=bindparam("state"), finished=bindparam("finished"), outcome=bindparam("outcome")))
# Only a queued row starts: the write-behind writer may run this after the job's finish
# (statements of one batch commute), and then it must change nothing.
_START_JOB = (update(jobs_table)
              .where((jobs_table.c.id == bindparam("job_id")) & (jobs_table.c.state == JobState.QUEUED.value))
              .values(state=JobState.RUNNING.value, started=bindparam("started")))


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        prepare(engine)
        self.writer = writer_for(engine)
        with transaction(engine) as conn:  # whatever ran when the bot stopped did not finish
            unfinished = jobs_table.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value])
            conn.execute(update(jobs_table).where(unfinished).values(state=JobState.INTERRUPTED.value))

    # Writes for the caller's unit of work (`chatbot.store.write`): the bot commits a
    # job's row together with the audit rows of the same moment (one commit, not two).
    @staticmethod
    def insert_for(job: Job, state: JobState) -> Write:
        job.stored_state = state
        now = datetime.now(UTC)
        return _INSERT_JOB, {
            "id": job.id, "user": job.user, "platform": job.platform, "room": job.room, "command": job.command,
            "text": job.text, "devices": ",".join(job.devices), "state": state.value,
            "created": datetime.fromtimestamp(job.created, UTC),
            "started": now if state is JobState.RUNNING else None, "finished": None, "outcome": None}

    @staticmethod
    def finish_for(job: Job, outcome: str) -> Write:
        job.stored_state = job.state
        return _FINISH_JOB, {"job_id": job.id, "state": job.state.value, "finished": datetime.now(UTC),
                             "outcome": outcome[:2000]}

    def started(self, job: Job) -> None:
        """A queued job starts: written behind (its request rows are on disk already)."""
        job.stored_state = JobState.RUNNING
        self.writer.defer(_START_JOB, {"job_id": job.id, "started": datetime.now(UTC)})

    def finished(self, job: Job, outcome: str) -> None:
        """A job ends: written behind, after the work it describes."""
        self.writer.defer(*self.finish_for(job, outcome))


class JobRunner:
    """Admits, queues, runs and cancels jobs. Runs on the event loop."""

    def __init__(self, *, max_running_per_user: int, rate_per_minute: int, store: JobStore | None = None) -> None:
        self.max_running_per_user = max_running_per_user
        self.rate_per_minute = rate_per_minute
        self.store = store
        self.jobs: dict[str, Job] = {}  # live jobs: queued and running
        self._by_message: dict[str, Job] = {}
        self._recent: dict[str, deque[float]] = {}
        self._slots: dict[str, asyncio.Condition] = {}
        # The loop keeps only weak references to tasks: a wake-up must not be collected mid-way.
        self._wakers: set[asyncio.Task[None]] = set()

    def new_job(self, *, user: str, platform: str, room: str, command: str, text: str, devices: list[str],
                message_id: str | None) -> Job:
        """Admit a job (or raise RateLimited with the reason)."""
        now = time.monotonic()
        recent = self._recent.setdefault(user, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.rate_per_minute:
            wait = 60 - (now - recent[0])
            raise RateLimited(f"at most {self.rate_per_minute} commands a minute; try again in {wait:.0f} s")
        recent.append(now)
        job = Job(id=secrets.token_hex(6), user=user, platform=platform, room=room, command=command,
                  text=text, devices=devices, message_id=message_id)
        self.jobs[job.id] = job
        if message_id:
            self._by_message[message_id] = job
        return job

    def job_for_message(self, message_id: str | None) -> Job | None:
        return self._by_message.get(message_id or "")

    def position(self, job: Job) -> int:
        """How many of the same user's jobs are queued ahead of this one (0: next)."""
        queued = [j for j in self.jobs.values() if j.user == job.user and j.state is JobState.QUEUED]
        return queued.index(job) if job in queued else 0

    def running_for(self, user: str) -> int:
        return sum(1 for j in self.jobs.values() if j.user == user and j.state is JobState.RUNNING)

    async def run(self, job: Job, work: Callable[[Job], Any]) -> Result:
        """Wait for a slot among the user's running jobs, then run `work(job)` (a
        coroutine factory that hands the job to its task); a cancel answers at once."""
        slot = self._slots.setdefault(job.user, asyncio.Condition())
        try:
            async with slot:
                await slot.wait_for(lambda: job.cancelled or (
                    self.running_for(job.user) < self.max_running_per_user and self.position(job) == 0))
                if job.cancelled:
                    return self._finish(job, JobState.CANCELLED, self._cancel_result(job))
                job.state = JobState.RUNNING
                job.started = time.time()
            if self.store is not None and job.stored_state is not JobState.RUNNING:
                self.store.started(job)  # queued, not written: no thread hop
            result = await self._until_cancelled(job, work(job))
            if job.cancelled:
                return self._finish(job, JobState.CANCELLED, self._cancel_result(job))
            return self._finish(job, JobState.DONE if result.ok else JobState.FAILED, result)
        finally:
            self.jobs.pop(job.id, None)
            if job.message_id:
                self._by_message.pop(job.message_id, None)
            async with slot:
                slot.notify_all()

    async def _until_cancelled(self, job: Job, coro: Any) -> Result:
        work = asyncio.ensure_future(coro)
        cancelled = asyncio.ensure_future(job.cancel_event.wait())
        done, _ = await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            cancelled.cancel()
            return work.result()
        # Cancelled: answer now. The worker thread stops at its next device, and the
        # sessions it holds were cut by cancel().
        work.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._cancel_result(job)

    def cancel(self, job_id: str, by: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        job.cancelled_by = by
        job.cancel_event.set()
        job.cancel_flag.cancel()  # the task cuts its sessions in flight; queued devices never start
        slot = self._slots.get(job.user)
        if slot is not None:
            waker = asyncio.ensure_future(self._wake(slot))
            self._wakers.add(waker)
            waker.add_done_callback(self._wakers.discard)
        return job

    @staticmethod
    async def _wake(slot: asyncio.Condition) -> None:
        async with slot:
            slot.notify_all()

    def _finish(self, job: Job, state: JobState, result: Result) -> Result:
        job.state = state  # the caller stores it with its audit rows (JobStore.finish_for)
        return result

    def starts_at_once(self, job: Job) -> bool:
        """Whether `job` will start without queueing (so it can be stored as running)."""
        return self.running_for(job.user) < self.max_running_per_user and self.position(job) == 0

    @staticmethod
    def _cancel_result(job: Job) -> Result:
        return Result(Status.FAILED, f"job {job.id} ({job.text}) was cancelled by {job.cancelled_by}",
                      devices={})

