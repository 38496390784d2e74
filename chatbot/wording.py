"""Small pieces of English the bot's replies share."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 device', '2 devices', '0 devices'; `many` for irregular words ('1 entry', '2 entries')."""
    return f"{count} {word if count == 1 else many or word + 's'}"
