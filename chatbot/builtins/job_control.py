"""jobs and cancel: the running and queued jobs, yours or (with jobs.all) everyone's."""

from __future__ import annotations

import time

from chatbot.args import Param, Word
from chatbot.builtins.call import Call
from chatbot.commands import command
from chatbot.results import Result, Status, Table
from chatbot.wording import plural

# Not a command: the right to see and cancel other people's jobs.
SEE_ALL_JOBS = "jobs.all"


def _sees_all_jobs(call: Call) -> bool:
    return call.bot.policy.may_run_somewhere(call.principal, call.place, SEE_ALL_JOBS)


@command("jobs", summary="running and queued jobs: yours, or everyone's with the jobs.all right",
         inline=True, public=True)
async def list_jobs(call: Call) -> Result:
    everyone = _sees_all_jobs(call)
    live = [j for j in call.bot.jobs.jobs.values() if everyone or j.user == call.principal.name]
    if not live:
        return Result(Status.OK, "no running or queued jobs" + ("" if everyone else " of yours"))
    rows = [[j.id, j.user, j.state.value, j.progress(), f"{time.time() - j.created:.0f} s", j.text[:60]]
            for j in sorted(live, key=lambda j: j.created)]
    table = Table(["job", "user", "state", "progress", "age", "command"], rows)
    return Result(Status.OK, plural(len(live), "job"), [table])


@command("cancel", summary="stop a job: queued work never starts, sessions in flight are closed",
         params=[Param("job", Word("job id"))], examples=["cancel 3fa2c1"], inline=True, public=True)
async def cancel_job(call: Call, job: str) -> Result:
    found = call.bot.jobs.jobs.get(job)
    if found is None or not (found.user == call.principal.name or _sees_all_jobs(call)):
        return Result(Status.INVALID, f"no running or queued job {job[:16]} that you may cancel")
    call.bot.jobs.cancel(job, by=call.principal.name)
    return Result(Status.OK, f"job {found.id} ({found.text}) cancelled")
