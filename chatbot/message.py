"""The platform-neutral message model: what adapters hand the core and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatbot.results import Result


@dataclass(frozen=True)
class Identity:
    """Who sent a message, as far as the bot can tell.

    `platform_id` is the account on the chat platform that delivered the message
    (for a bridged message: the puppet or relay account); `user` is the person behind
    it as resolved through bridges, e.g. ``slack:U0456EFGH``. `bridge` names the bridge
    that vouched for the resolution, or is None for a native sender.
    """

    user: str
    platform_id: str
    display_name: str = ""
    bridge: str | None = None
    weak: bool = False  # a relayed nick: a claim, not a proof

    @classmethod
    def native(cls, platform: str, account: str, display_name: str = "") -> Identity:
        ref = f"{platform}:{account}"
        return cls(user=ref, platform_id=ref, display_name=display_name)


@dataclass(frozen=True)
class Message:
    """One chat message that may hold a command."""

    platform: str  # "console", "matrix", "mattermost", "slack"
    room: str  # platform room/channel id; for a direct message, the DM room
    sender: Identity
    text: str
    direct: bool = False  # a one-to-one conversation with the bot: no prefix needed
    mentions_bot: bool = False  # the platform marked this message as addressed to the bot
    thread: str | None = None  # thread root id, when the message was sent in a thread
    message_id: str | None = None


@dataclass
class Reply:
    """What the core answers: a structured result, rendered by the adapter for its platform."""

    room: str
    result: Result
    thread: str | None = None
    in_reply_to: str | None = None
    job_id: str | None = None
    mention: str | None = field(default=None)  # address a relayed nick by name
