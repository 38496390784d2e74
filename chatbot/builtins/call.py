"""What the bot's own commands are called with: who asks, where, and the bot's services.

A task gets a TaskContext, which knows no chat. The built-in commands are about the chat
itself (your rights, your jobs, the audit log, the monitors), so each gets a Call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chatbot.audit import AuditLog
from chatbot.commands import Command, Registry
from chatbot.context import TaskContext
from chatbot.jobs import JobRunner
from chatbot.message import Message
from chatbot.monitoring import MonitorService
from chatbot.policy import AccessPolicy, Place, Principal
from chatbot.router import Router


class BotServices(Protocol):
    """The parts of the bot a built-in command may use (chatbot.bot.Bot has them all)."""

    registry: Registry
    router: Router
    policy: AccessPolicy
    context: TaskContext
    prefix: str
    jobs: JobRunner
    audit: AuditLog | None
    monitors: MonitorService | None


@dataclass(frozen=True)
class Call:
    bot: BotServices
    msg: Message
    principal: Principal
    place: Place

    @property
    def prefix(self) -> str:
        return self.bot.prefix

    def may_run(self, cmd: Command) -> bool:
        """Whether the asker may run `cmd` here, on some device at least."""
        return cmd.public or self.bot.policy.may_run_somewhere(self.principal, self.place, cmd.permission)
