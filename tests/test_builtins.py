"""The bot's own commands are ordinary @commands: the pipeline serves them by what they
declare (inline, public), never by their names."""

from __future__ import annotations

import asyncio
import sys
import threading

from chatbot.access_config import build_policy
from chatbot.audit import AuditLog, make_engine
from chatbot.bot import Bot, all_permissions
from chatbot.builtins import builtin_commands
from chatbot.builtins.call import Call
from chatbot.commands import ATTRIBUTE, command
from chatbot.config import Config
from chatbot.message import Identity, Message
from chatbot.plugins import commands_in, load_registry
from chatbot.results import Result, Status
from chatbot.router import Invocation
from chatbot.runner import Runner
from chatbot.testing import ask, sample_bot, sample_context

BUILTIN_NAMES = {"help", "whoami", "jobs", "cancel", "audit",
                 "monitor add", "monitor list", "monitor remove", "monitor pause", "monitor resume"}


def test_every_builtin_is_a_registered_inline_command() -> None:
    bot = sample_bot()
    builtins = {c.name: c for c in builtin_commands()}
    assert set(builtins) == BUILTIN_NAMES
    for name, cmd in builtins.items():
        assert bot.registry.lookup(name) == cmd and cmd.inline
        assert asyncio.iscoroutinefunction(cmd.handler), name  # they run on the loop, next to the jobs
    assert {n for n, c in builtins.items() if c.public} == {"help", "whoami", "jobs", "cancel"}
    assert {"monitor.add", "monitor.list", "jobs.all", "audit"} <= all_permissions(load_registry())


def test_builtins_run_as_no_job_and_under_no_rate_limit() -> None:
    bot = sample_bot(Config.model_validate({"limits": {"commands_per_minute": 1}}))
    assert ask(bot, "!devices").result.status is Status.OK
    assert ask(bot, "!devices").result.status is Status.DENIED  # the one command a minute is spent
    for text in ("!help", "!whoami", "!jobs", "!audit", "!monitor list", "!help monitor add"):
        assert ask(bot, text).result.status is not Status.DENIED, text
    assert not bot.jobs.jobs


def test_a_failing_builtin_answers_with_a_reference_instead_of_crashing() -> None:
    # Built-ins once ran beside the runner: an exception in one went up into the adapter.
    audit = AuditLog(make_engine("sqlite://"))
    bot = sample_bot(audit=audit)

    def recent(count: int) -> list[dict[str, object]]:
        raise RuntimeError("database went away")

    audit.recent = recent  # type: ignore[method-assign,assignment]
    result = ask(bot, "!audit 5").result
    assert result.status is Status.ERROR and result.summary.startswith("audit failed inside the bot (reference ")


@command("mine", summary="what the asker is called", inline=True, public=True)
async def mine(call: Call) -> Result:
    return Result(Status.OK, f"{call.principal.name} in {call.place.ref}, {len(call.bot.jobs.jobs)} jobs")


def test_a_plugin_may_declare_an_inline_public_command_as_the_builtins_do() -> None:
    registry = load_registry()
    for cmd in commands_in(sys.modules[__name__]):
        registry.add(cmd)
    ctx = sample_context()
    bot = Bot(registry, ctx, build_policy(ctx.config, all_permissions(registry), ctx.inventory))
    # From a chat platform without [access], only public commands are allowed.
    msg = Message(platform="matrix", room="!r:x", sender=Identity.native("matrix", "@eve:x"), text="!mine")
    reply = asyncio.run(bot.handle(msg))
    assert reply is not None and reply.result.status is Status.OK, reply
    assert reply.result.summary == "matrix:@eve:x in matrix:!r:x, 0 jobs"


def test_the_runner_times_out_async_and_threaded_commands_alike() -> None:
    release = threading.Event()
    never = asyncio.Event()

    @command("stuck thread", summary="blocks its thread", timeout=0.05)
    def stuck_thread(ctx: object) -> Result:
        release.wait(30)
        return Result(Status.OK, "released")

    @command("stuck loop", summary="waits on the loop", timeout=0.05, inline=True)
    async def stuck_loop(call: object) -> Result:
        await never.wait()
        return Result(Status.OK, "never")

    runner = Runner(sample_context(), command_timeout=60)
    try:
        for func in (stuck_thread, stuck_loop):
            cmd = getattr(func, ATTRIBUTE)
            result = asyncio.run(runner.run(Invocation(cmd, {}, cmd.name)))
            assert result.status is Status.FAILED and result.summary == f"{cmd.name} did not finish within 0.05 s"
    finally:
        release.set()
        runner.executor.shutdown(wait=True)
