"""Zones without a broker: the wire format, the merge of several places' results, the
split of an invocation by zone, the worker's own checks, and the [workers] config."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from chatbot.config import ConfigError
from chatbot.context import TaskContext
from chatbot.errors import ArgumentError, UserError
from chatbot.inventory import DeviceInventory, build_nornir
from chatbot.plugins import load_registry
from chatbot.results import Note, Result, Status, Table, TextBlock
from chatbot.router import Router
from chatbot.runner import Runner
from chatbot.testing import SAMPLE_INVENTORY, bot_config
from chatbot.zones.dispatch import ZoneDispatcher
from chatbot.zones.merge import Piece, merge
from chatbot.zones.wire import WireError, ZoneRequest, result_from_data, result_to_data
from chatbot.zones.worker import ZoneExecutor, zone_inventory

WORKERS = {"signing_key": "/nonexistent/key.pem", "signing_certificate": "/nonexistent/cert.pem",
           "certificate_store": "/nonexistent/trusted", "password_env": "NETBOT_TEST_BROKER_PASSWORD"}


def zoned_context(workers: dict[str, Any] | None = None) -> TaskContext:
    """SAMPLE_INVENTORY with r2 in zone dc1 and r3, sw10 in dc2 (sw10 through its group)."""
    data = copy.deepcopy(SAMPLE_INVENTORY)
    data["hosts"]["r2"]["data"]["zone"] = "dc1"
    data["hosts"]["r3"]["data"]["zone"] = "dc2"
    data["groups"]["edge"] = {"data": {"zone": "dc2"}}
    config = bot_config({"workers": workers or WORKERS})
    return TaskContext(inventory=DeviceInventory(build_nornir(data=data)), config=config)


def parse(ctx: TaskContext, text: str) -> Any:
    return Router(load_registry()).parse(text, ctx)


# -- inventory and config ---------------------------------------------------------------


def test_zone_comes_from_the_host_or_its_groups() -> None:
    devices = zoned_context().inventory.devices
    assert [devices[n].zone for n in ("r1", "r2", "r3", "sw10")] == [None, "dc1", "dc2", "dc2"]


def test_zones_without_a_workers_section_is_one_clear_error() -> None:
    ctx = zoned_context()
    ctx.config.workers = None
    with pytest.raises(UserError, match=r"zones \(dc1, dc2\) but the config has no \[workers\]"):
        Runner(ctx, 10)


@pytest.mark.parametrize(("workers", "error"), [
    ({"broker_url": "redis://:hunter2@127.0.0.1:6379/0"}, "holds a password: give it as password_env"),
    ({"broker_url": "http://127.0.0.1:6379"}, "use one of redis://"),
    ({"broker_url": "amqp://127.0.0.1:5672//"}, "result_backend must be a Redis URL"),
    ({"visibility_timeout": 60}, "visibility_timeout (60 s) must be longer than [limits] command_timeout"),
    ({"password_env": None}, "the broker needs a password"),
])
def test_bad_workers_settings_are_one_line(workers: dict[str, Any], error: str) -> None:
    section = {k: v for k, v in {**WORKERS, **workers}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        bot_config({"workers": section})
    assert error in str(caught.value) and "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_bot_without_zones_needs_no_broker() -> None:
    from chatbot.testing import sample_context

    assert Runner(sample_context(), 10).zones is None


# -- splitting an invocation ------------------------------------------------------------


def test_targets_split_by_zone_and_the_rest_stays_here() -> None:
    ctx = zoned_context()
    dispatcher = ZoneDispatcher(ctx.config.workers, ctx.inventory)  # type: ignore[arg-type]
    plan = dispatcher.plan(parse(ctx, "show version all"))
    assert plan.local is not None and plan.local.args["targets"] == ["r1"] and plan.local.devices == ["r1"]
    assert plan.zones == {"dc1": ["r2"], "dc2": ["r3", "sw10"]}
    assert plan.targets_param == "targets"


def test_a_zone_s_targets_go_in_messages_of_chunk_size() -> None:
    ctx = zoned_context({**WORKERS, "chunk_size": 1})
    dispatcher = ZoneDispatcher(ctx.config.workers, ctx.inventory)  # type: ignore[arg-type]
    inv = parse(ctx, "show version r3,sw10")  # both in dc2: still split, so several workers share it
    plan = dispatcher.plan(inv)
    assert plan.local is None and plan.zones == {"dc2": ["r3", "sw10"]} and plan.targets_param == "targets"
    sent: list[dict[str, Any]] = []

    class App:
        def send_task(self, name: str, args: list[Any], **options: Any) -> None:
            sent.append(args[0])

    dispatcher._app = App()
    dispatcher._send(inv, plan, "dc2", time.time() + 60, False)
    assert [(m["devices"], m["targets"]) for m in sent] == [(["r3"], {"targets": ["r3"]}),
                                                           (["sw10"], {"targets": ["sw10"]})]
    assert all(m["raw_args"] == {} and m["command"] == "show version" for m in sent)


def test_a_single_device_command_goes_whole_to_its_zone() -> None:
    ctx = zoned_context()
    dispatcher = ZoneDispatcher(ctx.config.workers, ctx.inventory)  # type: ignore[arg-type]
    plan = dispatcher.plan(parse(ctx, "show run r3 | include hostname"))
    assert plan.local is None and plan.zones == {"dc2": ["r3"]} and plan.targets_param is None
    assert not dispatcher.involved(parse(ctx, "show run r1"))


# -- the wire ---------------------------------------------------------------------------


def test_a_result_survives_the_wire() -> None:
    result = Result(Status.PARTIAL, "s", [Table(["a"], [["1"]], "t"), TextBlock("x", "y", "z.txt"), Note("n")],
                    {"r1": "ok", "r2": "timed out"})
    assert result_from_data(result_to_data(result)) == result


@pytest.mark.parametrize("data", [
    None, {"status": "ok"}, {"status": "bogus", "summary": "", "parts": [], "devices": {}},
    {"status": "ok", "summary": "", "parts": [{"kind": "table", "columns": [1], "rows": []}], "devices": {}},
    {"status": "ok", "summary": "", "parts": [{"kind": "script", "text": "x"}], "devices": {}},
    {"status": "ok", "summary": "", "parts": [], "devices": {"r1": 3}},
])
def test_a_malformed_result_is_refused(data: object) -> None:
    with pytest.raises(WireError):
        result_from_data(data)


def test_a_malformed_request_is_refused() -> None:
    sent = request(devices=["r2"])
    good = sent.to_data()
    assert ZoneRequest.from_data(good) == sent
    for bad in ({**good, "devices": "r2"}, {**good, "extra": 1}, {k: v for k, v in good.items() if k != "zone"},
                {**good, "targets": {"targets": [1]}}):
        with pytest.raises(WireError):
            ZoneRequest.from_data(bad)


# -- merging ----------------------------------------------------------------------------


def version_table(*rows: str) -> Table:
    return Table(["device", "status"], [[r, "ok"] for r in rows])


def test_merge_puts_rows_in_target_order_and_names_each_failure_once() -> None:
    here = Piece(["r1", "r3"], Result(Status.PARTIAL, "x", [version_table("r1"), Note("r3: timed out")],
                                      {"r1": "ok", "r3": "timed out"}))
    dc1 = Piece(["r2"], Result(Status.OK, "y", [version_table("r2")], {"r2": "ok"}))
    dc2 = Piece(["r4", "r5", "r6", "r7"], failure="zone dc2: no worker answering")
    result = merge("show version", ["r1", "r2", "r3", "r4", "r5", "r6", "r7"], [here, dc1, dc2])
    assert result.status is Status.PARTIAL
    assert result.summary == ("show version on 7 devices: 2 ok, 5 failed (r3: timed out; "
                              "r4, r5, r6 and 1 more: zone dc2: no worker answering)")
    assert result.parts == [version_table("r1", "r2")]  # one table; r3's note is in the summary
    assert list(result.devices) == ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]


def test_one_place_keeps_its_own_words_and_a_refusal_stands_for_its_devices() -> None:
    alone = Result(Status.OK, "show run on r3 (10 lines)", [TextBlock("cfg")], {"r3": "ok"})
    assert merge("show run", ["r3"], [Piece(["r3"], alone)]) is alone
    refused = Result(Status.INVALID, "refused by zone dc1's worker: r3: not a device of zone dc1")
    result = merge("show version", ["r3"], [Piece(["r3"], refused)])
    assert result.status is Status.FAILED
    assert result.summary == "show version on r3 failed: refused by zone dc1's worker: r3: not a device of zone dc1"


# -- the worker's own checks ------------------------------------------------------------


def request(**fields: Any) -> ZoneRequest:
    base: dict[str, Any] = {"command": "show version", "raw_args": {}, "targets": {"targets": ["r2"]},
                            "devices": ["r2"], "zone": "dc1", "job": "j", "deadline": time.time() + 60}
    base.update(fields)
    return ZoneRequest(**base)


def executor(zone: str = "dc1") -> ZoneExecutor:
    ctx = zoned_context()
    ctx.inventory = zone_inventory(ctx.inventory, zone)
    return ZoneExecutor(zone, ctx, load_registry(), store=None)


def test_the_worker_parses_the_request_again_by_its_own_rules() -> None:
    handler, args = executor().check(request())
    assert args == {"targets": ["r2"]} and handler.__name__ == "show_version"
    _, args = executor("dc2").check(request(zone="dc2", command="show", raw_args={"request": "ip int br | inc up"},
                                            targets={"targets": ["r3", "sw10"]}, devices=["r3", "sw10"]))
    assert args["request"].text == "show ip interface brief | include up"


@pytest.mark.parametrize(("fields", "error"), [
    ({"devices": ["r3"], "targets": {"targets": ["r3"]}}, "r3: not a device of zone dc1"),
    ({"devices": ["r2"], "targets": {"targets": ["r1"]}}, "unknown device 'r1'"),
    ({"zone": "dc2"}, "the request is for zone dc2, this worker serves dc1"),
    ({"command": "reload"}, "unknown command 'reload'"),
    ({"command": "help", "targets": {}}, "unknown command 'help'"),  # the bot's own commands never run here
    ({"command": "show", "raw_args": {"request": "tech-support"}}, "not an allowed show command"),
    ({"command": "show run", "raw_args": {"request": "r2"}, "targets": {"request": ["r2"]}}, "not a list of devices"),
    ({"raw_args": {"bogus": "1"}}, "has no argument bogus"),
])
def test_the_worker_refuses(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ArgumentError, match=error):
        executor().check(request(**fields))


def test_a_refusal_is_an_invalid_result_and_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    result = executor().run(request(devices=["r3"], targets={"targets": ["r3"]}).to_data(), "task")
    assert result.status is Status.INVALID
    assert result.summary == "refused by zone dc1's worker: r3: not a device of zone dc1"
    assert executor().run({"command": "show version"}, "task").status is Status.INVALID


def test_signing_files_missing_is_one_line(tmp_path: Path) -> None:
    from chatbot.zones.celery_app import make_app

    with pytest.raises(UserError, match=r"\[workers\] signing_key: /nonexistent/key.pem not found"):
        make_app(zoned_context().config.workers)  # type: ignore[arg-type]


def test_the_deploy_examples_are_valid_configs() -> None:
    from chatbot.config import load_config

    deploy = Path(__file__).resolve().parent.parent / "deploy" / "zones"
    bot, worker = load_config(deploy / "bot.toml"), load_config(deploy / "worker-dc1.toml")
    assert bot.workers is not None and worker.workers is not None
    assert bot.workers.broker_url == worker.workers.broker_url
    assert bot.workers.extras() == worker.workers.extras() == {"password_file": "/etc/netbot/broker-password"}


def test_chatbot_worker_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chatbot.cli import main

    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text('{"r1": {"hostname": "127.0.1.1", "data": {"zone": "dc1"}}}')
    (inventory / "groups.yaml").write_text("{}")
    (inventory / "defaults.yaml").write_text("{}")
    no_workers = tmp_path / "no-workers.toml"
    no_workers.write_text(f'[inventory]\npath = "{inventory}"\n')
    assert main(["worker", "--zone", "dc1", "--config", str(no_workers)]) == 2
    assert capsys.readouterr().err.strip() == "chatbot: a worker needs a [workers] section (the broker and the signing key)"
    config = tmp_path / "worker.toml"
    config.write_text(f'[inventory]\npath = "{inventory}"\n\n[workers]\n' + "".join(
        f'{k} = "{v}"\n' for k, v in WORKERS.items()))
    assert main(["worker", "--zone", "dc7", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == "chatbot: zone dc7: no device of the inventory sits in it (zones: dc1)"


class CancelledStore:
    """A store in which the bot already cancelled every message."""

    lease_seconds = 3.0

    def __init__(self) -> None:
        self.renewals: list[tuple[str, int, int]] = []

    def renew(self, task: str, done: int, total: int) -> bool:
        self.renewals.append((task, done, total))
        return True


def test_a_message_cancelled_while_queued_touches_no_device() -> None:
    store = CancelledStore()
    ctx = zoned_context()
    ctx.inventory = zone_inventory(ctx.inventory, "dc2")
    zone = ZoneExecutor("dc2", ctx, load_registry(), store=store)  # type: ignore[arg-type]
    started = time.monotonic()
    result = zone.run(request(zone="dc2", targets={"targets": ["r3", "sw10"]}, devices=["r3", "sw10"]).to_data(),
                      "task-1")
    assert time.monotonic() - started < 2  # no connection tried (a connect would wait for its timeout)
    assert result.devices == {"r3": "cancelled before it started", "sw10": "cancelled before it started"}
    assert store.renewals[0] == ("task-1", 0, 2)


def test_zones_without_the_zones_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "celery" else real(name, *a))
    with pytest.raises(UserError, match=r"celery is not installed: pip install 'netbot\[zones\]'"):
        Runner(zoned_context(), 10)


def test_a_bug_on_the_way_to_the_zones_is_an_error_with_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    ctx = zoned_context()
    runner = Runner(ctx, 10)
    assert runner.zones is not None

    async def broken(*args: Any, **kwargs: Any) -> Result:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner.zones, "run", broken)
    result = asyncio.run(runner.run(parse(ctx, "show version r2")))
    assert result.status is Status.ERROR and "(reference " in result.summary and "boom" not in result.summary
