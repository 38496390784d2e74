"""What every chat adapter does the same way around the core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chatbot.bot import Bot
from chatbot.message import Message, Reply

log = logging.getLogger(__name__)

WORKING = "working on it…"


PROGRESS_EVERY = 10.0  # seconds between progress edits of a long job's acknowledgement


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


async def pause_unless_stopped(stopping: asyncio.Event, seconds: float) -> None:
    """A reconnect backoff that a stop cuts short."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def wind_down(current: asyncio.Task[Any] | None, answers: set[asyncio.Task[None]]) -> None:
    """Stopping an adapter: cut the connection attempt or long-poll in flight, then let
    the answers in progress finish."""
    if current is not None and not current.done():
        current.cancel()
        await asyncio.gather(current, return_exceptions=True)
    if answers:
        await asyncio.gather(*answers, return_exceptions=True)
