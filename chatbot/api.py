"""The one import a task author needs: `from chatbot.api import ...`.

Everything a command or a monitor check kind uses is here, whether it lives in tasks/ or
in a third-party package (found through the `chatbot.tasks` entry-point group); see
docs/plugins.md. Names not listed here are the core's own and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chatbot.args import (
    ArgType,
    Choice,
    Device,
    Flag,
    Integer,
    NetTarget,
    NetworkTarget,
    Param,
    ParseContext,
    ProbeCount,
    SourceInterface,
    Targets,
    Text,
    VrfName,
    Word,
)
from chatbot.checks import CheckKind, Outcome, check_kind
from chatbot.commands import command
from chatbot.context import ApicEndpoint, TaskContext
from chatbot.control import NEVER_CANCELLED, CancelToken, Progress
from chatbot.errors import ArgumentError, TaskFailure, UserError
from chatbot.inventory import DeviceInfo, is_ip_address
from chatbot.patterns import MATCH_LIMIT_TEXT, compile_pattern, is_bounded
from chatbot.redact import redact
from chatbot.results import Note, Part, Result, Status, Table, TextBlock, failed, invalid
from chatbot.wording import plural

# Device work (chatbot/device_work.py) needs Nornir, scrapli and ssh2, which a bot that
# has not yet reached a device should not load: a task module names these at import,
# and the module behind them is imported when one is first called (or, for DeviceOutput,
# first looked up).
if TYPE_CHECKING:
    from chatbot.device_work import (
        DeviceOutput,
        device_outcomes,
        failures_not_in_summary,
        outcome_summary,
        run_on_devices,
    )
else:
    def _device_work(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module("chatbot.device_work"), name)(*args, **kwargs)

        call.__name__ = call.__qualname__ = name
        call.__module__ = "chatbot.device_work"
        return call

    run_on_devices = _device_work("run_on_devices")
    outcome_summary = _device_work("outcome_summary")
    failures_not_in_summary = _device_work("failures_not_in_summary")
    device_outcomes = _device_work("device_outcomes")

    def __getattr__(name: str) -> Any:
        if name == "DeviceOutput":
            return importlib.import_module("chatbot.device_work").DeviceOutput
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    # declaring a command, and its typed parameters
    "command", "Param", "ArgType", "ParseContext",
    "Word", "Text", "Integer", "ProbeCount", "Flag", "Choice", "SourceInterface", "VrfName",
    "Device", "Targets", "NetTarget", "NetworkTarget",
    # what a command returns
    "Result", "Status", "Part", "Table", "TextBlock", "Note", "failed", "invalid",
    # what a task is given
    "TaskContext", "DeviceInfo", "ApicEndpoint", "CancelToken", "Progress", "NEVER_CANCELLED",
    # errors: a UserError (ArgumentError) is the user's mistake, a TaskFailure the network's
    "UserError", "ArgumentError", "TaskFailure",
    # device work: one command on many devices, one line per failed device
    "run_on_devices", "DeviceOutput", "outcome_summary", "failures_not_in_summary", "device_outcomes",
    # monitor check kinds
    "check_kind", "CheckKind", "Outcome",
    # helpers for safe output and user patterns
    "redact", "plural", "is_ip_address", "compile_pattern", "is_bounded", "MATCH_LIMIT_TEXT",
]
