"""The bot's own commands: help, whoami, jobs, cancel, audit and monitor add/list/remove/
pause/resume. Each is an ordinary @command (inline: answered at once, not as a job), so
the pipeline in chatbot.bot treats them as it treats any task's command.
"""

from __future__ import annotations

from chatbot.builtins import audit_rows, help_topics, job_control, monitor_commands, whoami
from chatbot.builtins.job_control import SEE_ALL_JOBS
from chatbot.commands import Command
from chatbot.plugins import commands_in

# Rights a role may name that are not commands.
EXTRA_PERMISSIONS = frozenset({SEE_ALL_JOBS})


def builtin_commands() -> list[Command]:
    return [cmd for module in (help_topics, whoami, job_control, audit_rows, monitor_commands)
            for cmd in commands_in(module)]
