"""Shared test helpers: an in-memory inventory and a bot around it, no network."""

from __future__ import annotations

import asyncio
from typing import Any

from chatbot.audit import AuditLog
from chatbot.bot import Bot
from chatbot.config import Config
from chatbot.context import TaskContext
from chatbot.inventory import DeviceInventory, build_nornir
from chatbot.message import Identity, Message
from chatbot.plugins import load_registry
from chatbot.results import Result

SAMPLE_INVENTORY: dict[str, Any] = {
    "hosts": {
        "r1": {"hostname": "127.0.1.1", "port": 1, "groups": ["core"], "data": {"site": "hq", "role": "core"}},
        "r2": {"hostname": "127.0.1.2", "port": 1, "groups": ["core"], "data": {"site": "hq", "role": "core"}},
        "r3": {"hostname": "127.0.1.3", "port": 1, "groups": ["core"], "data": {"site": "hq", "role": "core"}},
        "sw10": {"hostname": "127.0.1.10", "port": 1, "groups": ["edge"], "data": {"site": "branch1", "role": "edge"}},
    },
    "groups": {"core": {}, "edge": {}},
    "defaults": {"platform": "cisco_iosxe"},
}


def sample_context(config: Config | None = None) -> TaskContext:
    nr = build_nornir(data=SAMPLE_INVENTORY)
    # Tests send far more than a person would: no rate limit unless a test sets one.
    config = config or Config.model_validate({"limits": {"commands_per_minute": 1_000_000}})
    return TaskContext(inventory=DeviceInventory(nr), config=config)


def sample_bot(config: Config | None = None, audit: AuditLog | None = None) -> Bot:
    """A bot on the sample inventory; without [access], the console may run everything."""
    from chatbot.access_config import build_policy
    from chatbot.bot import all_permissions

    registry = load_registry()
    ctx = sample_context(config)
    permissions = all_permissions(registry)
    return Bot(registry, ctx, build_policy(ctx.config, permissions, ctx.inventory), audit)


def console_message(text: str, direct: bool = False) -> Message:
    return Message(platform="console", room="console", sender=Identity.native("console", "tester"),
                   text=text, direct=direct)


def ask(bot: Bot, text: str) -> Result:
    reply = asyncio.run(bot.handle(console_message(text, direct=True)))
    assert reply is not None
    return reply.result


def chat_test_access(relayed: str) -> dict[str, Any]:
    """The grants the chat adapter tests share: everyone a viewer, alice an admin,
    relayed nicks matching `relayed` (e.g. "relayed:slack:*") may only ping."""
    return {
        "groups": {"admins": ["alice"]},
        "roles": {
            "viewer": {"commands": ["help", "whoami", "ping", "show.version"]},
            "admin": {"commands": ["*"]},
            "relayed": {"commands": ["ping"]},
        },
        "grants": [
            {"who": ["*"], "where": ["*"], "roles": ["viewer"]},
            {"who": ["group:admins"], "where": ["*"], "roles": ["admin"]},
            {"who": [relayed], "where": ["*"], "roles": ["relayed"]},
        ],
    }
