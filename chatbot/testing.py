"""Testing commands and check kinds: a pytest plugin for task authors (and the bot's own tests).

Installed with the bot (the `pytest11` entry point), so any test session has:

- the `lab` fixture: the built-in simulated network for the whole session (r1-r3 core
  routers in site hq, r4-r13 edge routers in site branch1, an APIC), real SSH on loopback;
- the `lab_bot` fixture: a fresh bot on that lab, with short device timeouts; faults a
  test injects are cleared afterwards;
- `make_bot(config, lab=...)`: a whole bot (router, access policy, jobs, runner, every
  command found in tasks/ and the `chatbot.tasks` entry points) from a config dict, as
  the `[section]`s of a config file would give it;
- `ask(bot, "!cmd", as_=..., room=...)`: one chat message through that bot, returning
  the `Answer` (the reply, and its Result).

Nothing here opens a connection anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from chatbot.audit import AuditLog
    from chatbot.bot import Bot
    from chatbot.config import Config
    from chatbot.context import TaskContext
    from chatbot.lab import Lab
    from chatbot.message import Message, Reply
    from chatbot.results import Result

# A small inventory that needs no lab: nothing answers on these addresses, so it suits
# commands that never reach a device (parsing, access, help).
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
# Tests send far more than a person would: no rate limit unless a test sets one.
TEST_LIMITS = {"commands_per_minute": 1_000_000}
LAB_LIMITS = {"device_timeout": 3, "connect_timeout": 3, "command_timeout": 30}


class Answer(NamedTuple):
    """What the bot answered one message: the Reply as an adapter would get it (None if
    the bot stayed silent), and its Result."""

    reply: Reply | None
    result: Result | None


def bot_config(raw: dict[str, Any] | None = None) -> Config:
    """A Config from `raw` (the config file's sections as a dict), with an in-memory
    database and no rate limit unless `raw` sets them."""
    from chatbot.config import parse_config

    raw = copy.deepcopy(raw or {})
    raw.setdefault("bot", {}).setdefault("database", "sqlite://")
    for key, value in TEST_LIMITS.items():
        raw.setdefault("limits", {}).setdefault(key, value)
    return parse_config(raw)


def sample_context(config: Config | None = None) -> TaskContext:
    """A TaskContext on SAMPLE_INVENTORY."""
    from chatbot.context import TaskContext
    from chatbot.inventory import DeviceInventory, build_nornir

    inventory = DeviceInventory.deferred(SAMPLE_INVENTORY, lambda: build_nornir(data=SAMPLE_INVENTORY))
    return TaskContext(inventory=inventory, config=config or bot_config())


def sample_bot(config: Config | None = None, audit: AuditLog | None = None) -> Bot:
    """A bot on SAMPLE_INVENTORY; without [access], the console may run everything."""
    from chatbot.access_config import build_policy
    from chatbot.bot import Bot, all_permissions
    from chatbot.plugins import load_registry

    registry = load_registry()
    ctx = sample_context(config)
    return Bot(registry, ctx, build_policy(ctx.config, all_permissions(registry), ctx.inventory), audit)


def make_bot(config: dict[str, Any] | None = None, *, lab: Lab | None = None) -> Bot:
    """A whole bot from a config dict: on the running `lab` when given (its devices, its
    APIC, its host keys), else on SAMPLE_INVENTORY. Without [access] the console may run
    everything; give `config["access"]` to test permissions."""
    if lab is None:
        return sample_bot(bot_config(config))
    from chatbot.app import build_bot
    from chatbot.cli import lab_access

    return build_bot(bot_config(config), lab_access(lab))


def message(text: str, *, as_: str = "tester", room: str = "console", platform: str = "console",
            direct: bool | None = None) -> Message:
    """A chat message from `as_` (an account on `platform`) in `room`. The console's room
    is a direct chat; elsewhere a message is direct only when `direct` says so."""
    from chatbot.message import Identity, Message

    return Message(platform=platform, room=room, sender=Identity.native(platform, as_), text=text,
                   direct=room == "console" if direct is None else direct,
                   message_id=secrets.token_hex(6))


def ask(bot: Bot, text: str, *, as_: str = "tester", room: str = "console", platform: str = "console",
        direct: bool | None = None) -> Answer:
    """Send `text` to `bot` as `as_` in `room`, and wait for the answer (from a test that
    is not itself async; in a coroutine, await `bot.handle(message(...))`)."""
    reply = asyncio.run(bot.handle(message(text, as_=as_, room=room, platform=platform, direct=direct)))
    return Answer(reply, reply.result if reply is not None else None)


def console_message(text: str, direct: bool = False) -> Message:
    """A message typed at the console by `tester`."""
    return message(text, direct=direct)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A lab for the whole session: r1-r3 (core) and r4-r13 (edge, branch1), real SSH on loopback."""
    from chatbot.lab import LabThread

    with LabThread(devices=13, delay=0.01, slow_delay=1.0, token_timeout=600) as running:
        yield running


@pytest.fixture()
def lab_bot(lab: Lab) -> Iterator[Bot]:
    """A fresh bot on the shared lab, with short timeouts so fault tests stay quick; faults
    injected by a test are cleared afterwards."""
    bot = make_bot({"limits": LAB_LIMITS}, lab=lab)
    yield bot
    for name in [*lab.devices, "apic1"]:
        lab.set_fault(name, None)
