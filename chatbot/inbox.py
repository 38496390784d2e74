"""The core's inbox: where every chat platform's incoming messages meet the bot.

An adapter turns a platform event into a `Message` (the sender resolved through
bridges). From there every platform is decided the same way, here:

1. is it for us: a command, addressed to the bot where the room needs that
   (`bot.router.command_text`); chatter stops here, quietly;
2. may this platform take it: the adapter's own rule, given as `admit` (an allowed
   channel, an age limit for what came while the bot was away), which logs why not;
3. is it ours alone: claimed in the database before it runs, so a replayed batch, a
   redelivered envelope or a second event for the same message never runs it twice;
   the claims that arrive together (a sync's batch, a burst of events) share one
   transaction;
4. answer it: in the background, with "working on it…" when it takes longer than the
   platform's `progress_after` and progress edits for a long job; a failed delivery is
   logged and audited, never raised into the adapter's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from chatbot.bot import Bot
from chatbot.message import Message, Reply

log = logging.getLogger(__name__)

PROGRESS_EVERY = 10.0  # seconds between progress edits of a long job's acknowledgement


class Claims(Protocol):
    """What the inbox needs of the database: claim messages once, several in one
    transaction (chatbot.state.ChatState)."""

    def take_many(self, platform: str, event_ids: list[str]) -> set[str]: ...


class Inbox:
    """One platform's way into the core, and the answers it has in flight."""

    def __init__(self, bot: Bot, claims: Claims, platform: str) -> None:
        self.bot = bot
        self.claims = claims
        self.platform = platform
        self._answers: set[asyncio.Task[None]] = set()
        self._unclaimed: list[tuple[str, asyncio.Future[bool]]] = []  # waiting for the next claim batch

    def for_us(self, msg: Message) -> bool:
        return self.bot.router.command_text(msg.text, direct=msg.direct, mentioned=msg.mentions_bot) is not None

    async def claim(self, key: str) -> bool:
        """Whether this process is the first to take on `key` (database I/O, off the
        loop). Claims made before the loop next turns go in one transaction."""
        loop = asyncio.get_running_loop()
        won = loop.create_future()
        if not self._unclaimed:
            loop.call_soon(self._claim_batch)
        self._unclaimed.append((key, won))
        if await won:
            return True
        log.debug("%s: %s was taken on before", self.platform, key)
        return False

    def _claim_batch(self) -> None:
        batch, self._unclaimed = self._unclaimed, []
        keys = [key for key, _ in batch]
        taking = asyncio.get_running_loop().run_in_executor(None, self.claims.take_many, self.platform, keys)
        taking.add_done_callback(lambda done: _settle(batch, done))

    async def take(self, msg: Message, *, key: str | None = None, admit: Callable[[], bool] | None = None) -> bool:
        """Whether `msg` is a command for us that this process alone now answers: for
        us, admitted by the platform's own rule, and claimed (by `key`, else its id)."""
        if not self.for_us(msg):
            return False
        if admit is not None and not admit():
            return False
        claim_key = key or msg.message_id
        if claim_key is None:  # nothing to claim it by: a replay could not be told apart
            log.warning("%s: a message without an id: not answered", self.platform)
            return False
        return await self.claim(claim_key)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Answer in the background; `drain` waits for it."""
        task = asyncio.create_task(work)
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    @property
    def in_flight(self) -> int:
        return len(self._answers)

    async def drain(self) -> None:
        """Let the answers in progress finish (an adapter stopping)."""
        while self._answers:
            await asyncio.gather(*self._answers, return_exceptions=True)


def _settle(batch: list[tuple[str, asyncio.Future[bool]]], done: asyncio.Future[set[str]]) -> None:
    """Tell each claimer of a batch whether it won; the database's error, if any, as if
    it had claimed alone."""
    err = done.exception()
    taken = set() if err is not None else set(done.result())
    for key, won in batch:
        if won.done():  # a claimer that was cancelled waits no more
            continue
        if err is not None:
            won.set_exception(err)
        else:
            won.set_result(key in taken)
            taken.discard(key)  # the same key twice in one batch: only the first takes it


async def answer_with_progress(
    bot: Bot,
    msg: Message,
    progress_after: float,
    acknowledge: Callable[[], Awaitable[str]],
    deliver: Callable[[Reply, str | None], Awaitable[None]],
    update: Callable[[str, str], Awaitable[None]] | None = None,
    progress_every: float = PROGRESS_EVERY,
) -> None:
    """Run the message through the core. If the answer takes longer than
    `progress_after` seconds, post an acknowledgement first (its id goes to `deliver`,
    which edits it into the answer where the platform allows); with `update`, the
    acknowledgement is edited every `progress_every` seconds with the job's progress
    ("12/40 devices done"). A failed delivery is logged and audited, never raised into
    the adapter's event loop."""
    work = asyncio.create_task(bot.handle(msg))
    done, _ = await asyncio.wait({work}, timeout=progress_after)
    ack_id = None
    if not done:
        try:
            ack_id = await acknowledge()
        except Exception as err:  # the answer may still get through
            log.warning("%s: could not acknowledge %s: %s", msg.platform, msg.message_id, short_error(err))
    if ack_id is not None and update is not None:
        shown = bot.progress_text(msg.message_id)
        while not work.done():
            done, _ = await asyncio.wait({work}, timeout=progress_every)
            now = bot.progress_text(msg.message_id)
            if not done and now != shown:
                shown = now
                try:
                    await update(ack_id, now)
                except Exception as err:
                    log.warning("%s: progress edit failed: %s", msg.platform, short_error(err))
    try:
        reply = await work
    except Exception:
        log.exception("%s: handling %s failed", msg.platform, msg.message_id)
        return
    if reply is None:
        return
    try:
        await deliver(reply, ack_id)
    except Exception as err:
        log.warning("%s: could not deliver the answer to %s: %s", msg.platform, msg.message_id, short_error(err))
        await bot.reply_failed(reply, msg, short_error(err))


def short_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:200]
