"""Finding commands and monitor check kinds: every module of the `tasks` package, and the
modules of the `chatbot.tasks` entry-point group for third-party packages. Dropping a
file in tasks/ (or installing a package with that entry point) adds its commands and its
check kinds; both are found the same way."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from types import ModuleType

from chatbot.checks import ATTRIBUTE as CHECK_ATTRIBUTE
from chatbot.checks import CheckKind
from chatbot.commands import ATTRIBUTE, Command, Registry

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "chatbot.tasks"


def commands_in(module: ModuleType) -> list[Command]:
    return [getattr(obj, ATTRIBUTE) for obj in vars(module).values() if hasattr(obj, ATTRIBUTE)]


def check_kinds_in(module: ModuleType) -> list[CheckKind]:
    return [kind for obj in vars(module).values()
            if isinstance(kind := getattr(obj, CHECK_ATTRIBUTE, None), CheckKind)]


def task_modules(package: str = "tasks", *, entry_point_group: str = ENTRY_POINT_GROUP) -> list[ModuleType]:
    """The public modules of `package`, then every module the entry points name."""
    modules = _package_modules(package)
    for ep in entry_points(group=entry_point_group):
        try:
            modules.append(ep.load())
        except Exception:  # a broken plugin must not take the bot down
            log.exception("task plugin %s failed to load; its commands and checks are unavailable", ep.name)
    return modules


def load_registry(package: str = "tasks", *, entry_point_group: str = ENTRY_POINT_GROUP) -> Registry:
    registry = Registry()
    for module in task_modules(package, entry_point_group=entry_point_group):
        for cmd in commands_in(module):
            registry.add(cmd)
    return registry


def load_check_kinds(package: str = "tasks", *, entry_point_group: str = ENTRY_POINT_GROUP) -> dict[str, CheckKind]:
    kinds: dict[str, CheckKind] = {}
    for module in task_modules(package, entry_point_group=entry_point_group):
        for kind in check_kinds_in(module):
            if kind.name in kinds and kinds[kind.name] is not kind:
                raise ValueError(f"check kind '{kind.name}' is declared twice "
                                 f"({kinds[kind.name].run.__module__} and {kind.run.__module__})")
            kinds[kind.name] = kind
    return kinds


def _package_modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    modules = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):  # private helpers shared by tasks
            continue
        modules.append(importlib.import_module(f"{package}.{info.name}"))
    return modules
