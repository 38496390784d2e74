"""Finding commands: every module of the `tasks` package, and the `chatbot.tasks`
entry-point group for third-party packages. Dropping a file in tasks/ adds a command."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from types import ModuleType

from chatbot.commands import ATTRIBUTE, Command, Registry

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "chatbot.tasks"


def commands_in(module: ModuleType) -> list[Command]:
    return [getattr(obj, ATTRIBUTE) for obj in vars(module).values() if hasattr(obj, ATTRIBUTE)]


def load_registry(package: str = "tasks", *, entry_point_group: str = ENTRY_POINT_GROUP) -> Registry:
    registry = Registry()
    for module in _package_modules(package):
        for cmd in commands_in(module):
            registry.add(cmd)
    for ep in entry_points(group=entry_point_group):
        try:
            module = ep.load()
        except Exception:  # a broken plugin must not take the bot down
            log.exception("task plugin %s failed to load; its commands are unavailable", ep.name)
            continue
        for cmd in commands_in(module):
            registry.add(cmd)
    return registry


def _package_modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    modules = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):  # private helpers shared by tasks
            continue
        modules.append(importlib.import_module(f"{package}.{info.name}"))
    return modules
