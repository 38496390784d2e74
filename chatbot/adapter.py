"""What the core asks of a chat adapter: run until stopped, stop cleanly, say when ready.

An adapter owns its platform's connection and formats; everything between an incoming
message and its answer goes through `chatbot.inbox.Inbox`. `chatbot run` starts one
adapter per configured platform (the table in `adapters/registry.py`) on one core.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Adapter(Protocol):
    ready: asyncio.Event  # set once connected (tests and `run` wait on it)

    async def run(self) -> None:
        """Connect, and reconnect with backoff, until `stop`; raise only when retrying
        cannot help (a refused token), with a `UserError` that says why."""

    async def stop(self) -> None:
        """Stop listening, let the answers in progress finish, close the connection."""
