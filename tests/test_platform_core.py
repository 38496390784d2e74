"""What every chat platform shares: the renderers side by side, the core inbox, the
reconnect helper and the platform table that `run` and `check` loop over."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chatbot.message import Identity, Message
from chatbot.results import Note, Result, Status, Table, TextBlock
from chatbot.testing import sample_bot

HOSTILE = "<@U1> *bold* @channel & </code> ```"


def _result(status: Status = Status.FAILED) -> Result:
    return Result(status, f"r1: {HOSTILE}", [
        Note(f"note {HOSTILE}"),
        Table(["device", "state"], [["r1", "up & <ok>"]], title="peers"),
        TextBlock("line ``` still output\n@here end\n", title="show run"),
    ])


def test_every_renderer_in_one_place_defuses_what_a_user_typed() -> None:
    from chatbot.render import ZWSP, render_html, render_markdown, render_mrkdwn, render_text

    text = render_text(_result())
    assert text.startswith("[failed] r1: " + HOSTILE) and "up & <ok>" in text and "--- show run ---" in text

    html = render_html(_result())
    assert html.startswith("<strong>[failed] r1: &lt;@U1&gt;") and "</code> ```" not in html
    assert html.count("<pre><code>") == 2 and "up &amp; &lt;ok&gt;" in html

    markdown = render_markdown(_result())
    assert markdown.startswith(r"**\[failed\] r1: \<@" + ZWSP + r"U1\> \*bold\*")
    assert "@channel" not in markdown and "@here" not in markdown  # nobody is notified
    assert "````\nline ``` still output" in markdown  # a fence longer than the output's

    mrkdwn = render_mrkdwn(_result(), prefix="<@U2>: ")
    assert mrkdwn.startswith("*&lt;@U2&gt;: [failed] r1: &lt;@U1&gt;") and "<" not in mrkdwn
    assert "line `\u200b`` still output" in mrkdwn  # the block cannot be closed early
    # all went well: no bold summary anywhere
    ok = _result(Status.OK)
    assert not render_html(ok).startswith("<strong>") and not render_markdown(ok).startswith("**")
    assert not render_mrkdwn(ok).startswith("*")


class _Claims:
    def __init__(self) -> None:
        self.taken: list[tuple[str, str]] = []

    def take(self, platform: str, event_id: str) -> bool:
        if (platform, event_id) in self.taken:
            return False
        self.taken.append((platform, event_id))
        return True

    def take_many(self, platform: str, event_ids: list[str]) -> set[str]:
        return {event_id for event_id in event_ids if self.take(platform, event_id)}


def _message(text: str, *, direct: bool = False, mentioned: bool = False, message_id: str = "m1") -> Message:
    return Message(platform="chat", room="room", sender=Identity.native("chat", "alice"), text=text,
                   direct=direct, mentions_bot=mentioned, message_id=message_id)


def test_the_inbox_takes_a_command_for_us_once_and_leaves_chatter_alone() -> None:
    from chatbot.inbox import Inbox

    claims = _Claims()
    inbox = Inbox(sample_bot(), claims, "chat")

    async def go() -> list[bool]:
        return [
            await inbox.take(_message("ping r1", message_id="chatter")),  # not addressed to the bot
            await inbox.take(_message("ping r1", mentioned=True, message_id="a")),
            await inbox.take(_message("ping r1", mentioned=True, message_id="a")),  # delivered again
            await inbox.take(_message("ping r1", direct=True, message_id="b"), admit=lambda: False),
            await inbox.take(_message("!ping r1", message_id="c"), key="room:c"),
        ]
    assert asyncio.run(go()) == [False, True, False, False, True]
    # chatter and what the platform refused were never claimed: a later look may still take them
    assert claims.taken == [("chat", "a"), ("chat", "room:c")]


def test_the_inbox_drains_its_answers() -> None:
    from chatbot.inbox import Inbox

    inbox = Inbox(sample_bot(), _Claims(), "chat")
    finished: list[str] = []

    async def answer(name: str, then: str | None = None) -> None:
        await asyncio.sleep(0)
        if then is not None:
            inbox.spawn(answer(then))  # an answer that starts another (Slack's event -> answer)
        finished.append(name)

    async def go() -> int:
        inbox.spawn(answer("first", then="second"))
        assert inbox.in_flight == 1
        await inbox.drain()
        return inbox.in_flight
    assert asyncio.run(go()) == 0
    assert finished == ["first", "second"]


class _Refused(Exception):
    pass


def test_one_reconnect_loop_backs_off_resets_and_stops_on_a_fatal_error(caplog: pytest.LogCaptureFixture) -> None:
    from adapters.common import Reconnector

    connection = Reconnector("chat", logging.getLogger("test.chat"), _Refused, first=0.001, most=0.004)
    outcomes: list[object] = [OSError("down"), OSError("down"), OSError("down"), "the socket closed",
                              None, OSError("down"), _Refused("token revoked")]
    waits: list[float] = []
    pause = connection.backoff.pause

    async def recorded_pause() -> None:
        waits.append(connection.backoff.seconds)
        await pause()
    connection.backoff.pause = recorded_pause  # type: ignore[method-assign]

    async def attempt() -> str | None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    with caplog.at_level(logging.WARNING, logger="test.chat"), pytest.raises(_Refused):
        asyncio.run(connection.run(attempt, failed="sync failed ({}); retrying in {:.0f} s"))
    # doubling up to `most`; a connection that was up, or an attempt that went well, starts over
    assert waits == [0.001, 0.002, 0.004, 0.001, 0.001]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "chat: sync failed (OSError: down); retrying in 0 s"
    assert "chat: the socket closed; reconnecting in 0 s" in lines and len(lines) == 5


def test_stopping_cuts_the_attempt_in_flight_and_the_wait() -> None:
    from adapters.common import Reconnector

    async def go() -> None:
        connection = Reconnector("chat", logging.getLogger("test.chat"), _Refused, first=3600)
        started = asyncio.Event()

        async def hangs() -> str | None:
            started.set()
            await asyncio.Event().wait()  # a long-poll that never ends
            return None
        run = asyncio.create_task(connection.run(hangs))
        await started.wait()
        await asyncio.wait_for(connection.stop(), 5)
        await asyncio.wait_for(run, 5)

        # the line "retrying in 3600 s" is logged just before the wait begins
        logged = asyncio.Event()
        handler = logging.Handler()
        handler.emit = lambda record: logged.set()  # type: ignore[method-assign]
        waiting_log = logging.getLogger("test.chat.waiting")
        waiting_log.addHandler(handler)
        waiting = Reconnector("chat", waiting_log, _Refused, first=3600)

        async def fails() -> str | None:
            raise OSError("down")
        run = asyncio.create_task(waiting.run(fails))
        await logged.wait()
        await asyncio.wait_for(waiting.stop(), 5)
        await asyncio.wait_for(run, 5)  # not an hour
        waiting_log.removeHandler(handler)
    asyncio.run(go())


def test_run_and_check_loop_over_one_platform_table() -> None:
    import importlib

    from adapters import reachability
    from adapters.registry import PLATFORMS, configured, section_names
    from chatbot.config import Config, parse_config

    assert [p.name for p in PLATFORMS] == ["matrix", "mattermost", "slack"]
    for platform in PLATFORMS:
        assert platform.name in Config.model_fields
        module = importlib.import_module(platform.module)
        assert callable(getattr(module, platform.adapter_class)) and callable(getattr(module, platform.config_loader))
        assert callable(getattr(reachability, platform.probe))
    assert section_names() == "[matrix], [mattermost] or [slack]"
    slack = {"app_token": "xapp-1", "bot_token": "xoxb-1"}
    config = parse_config({"slack": slack, "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@b:x"}})
    assert [p.name for p in configured(config)] == ["matrix", "slack"]
    assert configured(config)[1].load_config(config).tokens() == ("xapp-1", "xoxb-1")


def test_a_claim_batch_the_database_refuses_fails_each_claimer() -> None:
    from chatbot.inbox import Inbox

    class Unwritable:
        def take_many(self, platform: str, event_ids: list[str]) -> set[str]:
            raise OSError("the disk is gone")

    inbox = Inbox(sample_bot(), Unwritable(), "chat")

    async def go() -> list[bool | BaseException]:
        return list(await asyncio.gather(inbox.claim("a"), inbox.claim("b"), return_exceptions=True))

    assert [type(outcome) for outcome in asyncio.run(go())] == [OSError, OSError]
