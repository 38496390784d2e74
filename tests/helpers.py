"""Helpers only the bot's own chat-adapter tests share; everything a task author needs
(sample inventory, make_bot, ask, the lab) is in chatbot.testing."""

from __future__ import annotations

from typing import Any


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
