"""`chatbot run` in a thread, for tests that talk to the bot through a chat server:
one adapter on its own event loop, as the real process runs it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any


def _adapter(name: str, bot: Any, config: Any, state: Any, bridges: Any) -> Any:
    """The adapter as `chatbot run` makes it, through the platform table."""
    from adapters.registry import BY_NAME

    platform = BY_NAME[name]
    return platform.adapter(bot, platform.load_config(config), state, bridges)


class BotThread:
    def __init__(self, config: dict[str, Any], lab: Any, platform: str) -> None:
        self.config = config
        self.lab = lab
        self.platform = platform
        self.loop: asyncio.AbstractEventLoop | None = None
        self.adapter: Any = None
        self.ready = threading.Event()  # connected (or failed trying: see .error)
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.run_started = self.run_ended = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # surfaced by the test through .error
            self.error = err
        finally:
            self.finished.set()
            self.ready.set()

    async def _main(self) -> None:
        from adapters.bridges import BridgeResolver
        from chatbot.app import build_bot
        from chatbot.audit import AuditLog, make_engine
        from chatbot.cli import lab_access
        from chatbot.config import parse_config
        from chatbot.state import ChatState

        self.loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        config = parse_config(self.config)
        engine = make_engine(config.bot.database)
        bot = build_bot(config, lab_access(self.lab), audit=AuditLog(engine))
        self.adapter = _adapter(self.platform, bot, config, ChatState(engine), BridgeResolver(config.bridges))
        await bot.start()
        try:
            self.run_started = time.monotonic()
            run = asyncio.create_task(self.adapter.run())
            run.add_done_callback(lambda _: setattr(self, "run_ended", time.monotonic()))
            waiter = asyncio.create_task(self.adapter.ready.wait())
            await asyncio.wait([run, waiter], return_when=asyncio.FIRST_COMPLETED)
            if run.done():
                waiter.cancel()
                await self.adapter.stop()
                run.result()  # it failed before connecting: the test sees why through .error
            self.ready.set()
            stop = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait([run, stop], return_when=asyncio.FIRST_COMPLETED)
            await self.adapter.stop()  # as `chatbot run` does on SIGTERM
            waiter.cancel()
            await run
        finally:
            await bot.stop()

    def start(self, wait_ready: bool = True) -> BotThread:
        self.thread.start()
        if wait_ready:
            assert self.ready.wait(60), "the bot did not connect in time"
            if self.error:
                raise self.error
        return self

    def is_ready(self) -> bool:
        return bool(self.adapter is not None and self.adapter.ready.is_set())

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_requested.set)
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
