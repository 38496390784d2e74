"""Zones against a real Redis broker (password on, loopback) and real `chatbot worker`
processes: devices of zones dc1 and dc2 run on their zone's worker, r1-r2 in the bot.

Zones: r1, r2 none (the bot's own process); r3-r5 dc1; r6-r8 dc2; r9-r10 dc3 (a worker
the kill test starts and kills); r11-r12 dc9 (never any worker); r13 dc4 (two workers
of one slot each, for the shared session limit).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, free_port
from zone_harness import (
    WorkerProcess,
    config_dict,
    environment,
    load,
    make_signing_pair,
    workers_section,
    write_inventory,
    write_toml,
)

from chatbot.app import build_bot
from chatbot.bot import Bot
from chatbot.control import CancelFlag
from chatbot.lab import Lab, LabThread
from chatbot.render import render_text
from chatbot.results import Status
from chatbot.testing import message
from chatbot.zones.wire import TASK_NAME, ZoneRequest, queue_of

pytestmark = pytest.mark.slow

ZONES = {"r3": "dc1", "r4": "dc1", "r5": "dc1", "r6": "dc2", "r7": "dc2", "r8": "dc2",
         "r9": "dc3", "r10": "dc3", "r11": "dc9", "r12": "dc9", "r13": "dc4"}


class Deployment:
    def __init__(self, tmp: Path, lab: Lab, redis: RedisServer) -> None:
        self.tmp, self.lab, self.redis = tmp, lab, redis
        self.key, self.cert, self.trusted = make_signing_pair(tmp / "signing")
        self.inventory = write_inventory(lab, ZONES, tmp / "inventory")
        self.env = environment(lab, redis.password)
        self.data = config_dict(lab, self.inventory, workers_section(redis.port, self.key, self.cert, self.trusted))
        self.worker_config = write_toml(self.data, tmp / "worker.toml")
        self.workers: list[WorkerProcess] = []

    def start_worker(self, zone: str, store: Any, config: Path | None = None) -> WorkerProcess:
        worker = WorkerProcess(zone, config or self.worker_config, self.env,
                               self.tmp / f"worker-{zone}-{len(self.workers)}.log")
        self.workers.append(worker)
        worker.wait_ready(store)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def zone_lab() -> Iterator[Lab]:
    with LabThread(devices=13, delay=0.02, slow_delay=1.0) as lab:
        yield lab


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, zone_lab: Lab, redis_server: RedisServer,
               ) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("zones"), zone_lab, redis_server)
    with pytest.MonkeyPatch.context() as env:
        for name, value in deployment.env.items():
            env.setenv(name, value)
        bot = build_bot(load(deployment.data))
        for zone in ("dc1", "dc2"):
            deployment.start_worker(zone, bot.runner.zones.store)
        try:
            yield deployment
        finally:
            deployment.stop()


@pytest.fixture()
def bot(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bot]:
    for name, value in deployment.env.items():
        monkeypatch.setenv(name, value)
    yield build_bot(load(deployment.data))
    for name in deployment.lab.devices:
        deployment.lab.set_fault(name, None)
        deployment.lab.set_delay(name, 0.02)


def run(bot: Bot, text: str, *, cancel: CancelFlag | None = None,
        progress: list[tuple[int, int]] | None = None) -> Any:
    """The invocation through the bot's runner, as a job would run it."""
    from chatbot.router import Router

    inv = Router(bot.registry).parse(text, bot.context)
    seen = progress if progress is not None else []
    return asyncio.run(bot.runner.run(inv, cancel=cancel or CancelFlag(),
                                      progress=lambda done, total: seen.append((done, total))))


def sessions(lab: Lab, *names: str) -> int:
    return sum(lab.devices[n].stats.sessions_total for n in names)


def test_a_job_across_two_zones_and_the_bots_own_devices(bot: Bot, deployment: Deployment) -> None:
    progress: list[tuple[int, int]] = []
    before = {w.zone: w.log_text().count("show version on") for w in deployment.workers}
    result = run(bot, "show version r1,r3,r6,r4,r7", progress=progress)
    assert result.status is Status.OK, result.summary
    assert result.summary == "show version on 5 devices: 5 ok"
    [table] = result.parts
    assert [row[0] for row in table.rows] == ["r1", "r3", "r4", "r6", "r7"]  # inventory order, one table
    assert all(row[1] == "ok" and row[2] for row in table.rows)
    assert result.devices == dict.fromkeys(["r1", "r3", "r4", "r6", "r7"], "ok")
    # Each zone's devices went to that zone's worker, in one message each.
    after = {w.zone: w.log_text().count("show version on 2 devices") for w in deployment.workers}
    assert after["dc1"] >= 1 and after["dc2"] >= 1 and after != before
    assert progress[-1] == (5, 5)
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:], strict=False))  # never goes back


def test_the_whole_command_in_one_zone_reads_as_if_it_ran_here(bot: Bot) -> None:
    result = run(bot, "show run r4 | include hostname")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("show running-config | include hostname on r4")
    assert "hostname r4" in result.parts[0].text
    secret = run(bot, "show run r5")
    assert "<redacted>" in secret.parts[0].text  # redacted in the zone: no secret crossed the broker


def test_cancel_stops_zone_work_in_flight(bot: Bot, deployment: Deployment) -> None:
    lab = deployment.lab
    for name in ("r3", "r4", "r5"):
        lab.set_delay(name, 20)
    cancel = CancelFlag()
    progress: list[tuple[int, int]] = []
    before = sessions(lab, "r3", "r4", "r5")
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(result=run(bot, "show version on r3,r4,r5",
                                                                      cancel=cancel, progress=progress)))
    started = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 15
    while sessions(lab, "r3", "r4", "r5") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # until the worker holds a session on each device
    assert sessions(lab, "r3", "r4", "r5") == before + 3
    cancel.cancel()
    thread.join(timeout=15)
    assert not thread.is_alive()
    elapsed = time.monotonic() - started
    result = answer["result"]
    assert elapsed < 10, elapsed  # the 20 s delay was cut, not waited out
    assert result.status is Status.FAILED
    assert set(result.devices) == {"r3", "r4", "r5"} and "ok" not in result.devices.values()
    deadline = time.monotonic() + 5
    while any(lab.devices[n].stats.sessions_now for n in ("r3", "r4", "r5")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(lab.devices[n].stats.sessions_now for n in ("r3", "r4", "r5"))  # sessions were cut


def test_a_zone_without_a_worker_gets_one_clear_line(bot: Bot) -> None:
    started = time.monotonic()
    result = run(bot, "show version r1,r11,r12")
    assert time.monotonic() - started < 5
    assert result.status is Status.PARTIAL
    assert result.devices == {"r1": "ok", "r11": "zone dc9: no worker answering",
                              "r12": "zone dc9: no worker answering"}
    assert result.summary == "show version on 3 devices: 1 ok, 2 failed (r11, r12: zone dc9: no worker answering)"
    single = run(bot, "show run r11")
    assert single.status is Status.FAILED
    assert single.summary == "show run on r11 failed: zone dc9: no worker answering"


def test_the_broker_down_is_one_line_and_the_bots_own_devices_still_answer(
        deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in deployment.env.items():
        monkeypatch.setenv(name, value)
    data = dict(deployment.data)
    data["workers"] = {**data["workers"], "broker_url": f"redis://127.0.0.1:{free_port()}/0"}
    bot = build_bot(load(data))
    started = time.monotonic()
    reply = asyncio.run(bot.handle(message("!show version r1,r2,r3,r6")))
    assert time.monotonic() - started < 10
    result = reply.result
    assert result.status is Status.PARTIAL
    assert result.devices["r1"] == result.devices["r2"] == "ok"
    line = result.devices["r3"]
    assert line.startswith("zones: the broker at 127.0.0.1:") and line.endswith("is not answering")
    assert result.devices["r6"] == line
    assert render_text(result).count("is not answering") == 1


def test_a_worker_refuses_a_device_of_another_zone(bot: Bot, deployment: Deployment) -> None:
    app = bot.runner.zones.app
    before = sessions(deployment.lab, "r3")
    request = ZoneRequest(command="show version", raw_args={}, targets={"targets": ["r3"]}, devices=["r3"],
                          zone="dc2", job="test", deadline=time.time() + 30)
    answer = app.send_task(TASK_NAME, args=[request.to_data()], queue=queue_of("dc2")).get(timeout=20)
    assert answer["status"] == "invalid"
    assert answer["summary"] == "refused by zone dc2's worker: r3: not a device of zone dc2"
    # Named in the arguments only, not among the declared devices: refused too.
    sneaky = ZoneRequest(command="show run", raw_args={"request": "r3"}, targets={}, devices=["r6"],
                         zone="dc2", job="test", deadline=time.time() + 30)
    answer = app.send_task(TASK_NAME, args=[sneaky.to_data()], queue=queue_of("dc2")).get(timeout=20)
    assert answer["status"] == "invalid"
    assert "unknown device 'r3'" in answer["summary"]
    # An unlisted command, and an unknown one, are refused by the worker's own allowlist.
    unlisted = ZoneRequest(command="show", raw_args={"request": "tech-support"}, targets={"targets": ["r6"]},
                           devices=["r6"], zone="dc2", job="test", deadline=time.time() + 30)
    answer = app.send_task(TASK_NAME, args=[unlisted.to_data()], queue=queue_of("dc2")).get(timeout=20)
    assert answer["status"] == "invalid" and "not an allowed show command" in answer["summary"]
    assert sessions(deployment.lab, "r3") == before


def _raw_task_message(app: Any, task_id: str, request: ZoneRequest) -> tuple[dict[str, Any], Any]:
    """A task message as Celery would build it: (its headers, its body before serializing)."""
    message = app.amqp.as_task_v2(task_id, TASK_NAME, args=[request.to_data()])
    return message.headers, message.body


def _publish(app: Any, body: Any, headers: dict[str, Any], zone: str, content_type: str) -> None:
    with app.connection_for_write() as conn:
        conn.Producer().publish(body, routing_key=queue_of(zone), exchange="", headers=headers,
                                content_type=content_type, content_encoding="utf-8", serializer=None)


def _wait_for(text: str, worker: WorkerProcess, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while worker.log_text().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.log_text().count(text) >= count, worker.log_text()[-2000:]


def test_unsigned_and_tampered_messages_are_refused(bot: Bot, deployment: Deployment) -> None:
    import json

    from kombu.serialization import dumps

    app = bot.runner.zones.app
    worker = next(w for w in deployment.workers if w.zone == "dc1")
    unsigned_refusals = worker.log_text().count("Refusing to deserialize untrusted content")
    bad_signatures = worker.log_text().count("Can't decode message body")
    before = sessions(deployment.lab, "r3")
    request = ZoneRequest(command="show version", raw_args={}, targets={"targets": ["r3"]}, devices=["r3"],
                          zone="dc1", job="forged", deadline=time.time() + 30)
    unsigned_id, tampered_id = uuid.uuid4().hex, uuid.uuid4().hex
    headers, body = _raw_task_message(app, unsigned_id, request)
    _publish(app, json.dumps(body), headers, "dc1", "application/json")  # as Celery's default would send it
    headers, body = _raw_task_message(app, tampered_id, request)
    _, _, signed = dumps(body, serializer="auth")
    fields = base64.b64decode(signed)
    forged = base64.b64encode(fields.replace(b'"r3"', b'"r4"'))  # same signature, other device
    assert forged != signed
    _publish(app, forged, headers, "dc1", "application/data")
    _wait_for("Refusing to deserialize untrusted content of type json", worker, unsigned_refusals + 1)
    _wait_for("Can't decode message body", worker, bad_signatures + 1)  # the signature check failed
    # Neither ran: no answer stored, no session on either device, and the worker still serves.
    backend = app.backend
    assert backend.client.get(backend.get_key_for_task(unsigned_id)) is None
    assert backend.client.get(backend.get_key_for_task(tampered_id)) is None
    assert "job forged" not in worker.log_text()
    assert sessions(deployment.lab, "r3") == before
    assert run(bot, "show version r3").status is Status.OK


def test_a_worker_killed_mid_job_is_reported_within_the_command_timeout(bot: Bot, deployment: Deployment) -> None:
    lab = deployment.lab
    worker = deployment.start_worker("dc3", bot.runner.zones.store)
    for name in ("r9", "r10"):
        lab.set_delay(name, 20)
    before = sessions(lab, "r9", "r10")
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(result=run(bot, "show version r1,r9,r10")))
    thread.start()
    deadline = time.monotonic() + 15
    while sessions(lab, "r9", "r10") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = time.monotonic()
    worker.kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - killed < 10  # the lease lapsed (1.5 s): not the 30 s command timeout
    result = answer["result"]
    assert result.devices["r1"] == "ok"
    assert result.devices["r9"] == result.devices["r10"] == "zone dc3: the worker stopped mid-job (outcome unknown)"
    assert result.status is Status.PARTIAL


def test_one_session_per_device_holds_across_two_workers_of_a_zone(bot: Bot, deployment: Deployment) -> None:
    lab = deployment.lab
    single = dict(deployment.data, workers={**deployment.data["workers"], "concurrency": 1})
    config = write_toml(single, deployment.tmp / "worker-one-slot.toml")
    workers = [deployment.start_worker("dc4", bot.runner.zones.store, config) for _ in range(2)]
    lab.set_delay("r13", 0.5)
    lab.devices["r13"].stats.max_concurrent = 0
    jobs_before = [w.log_text().count("show version on 1 devices") for w in workers]
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(run(bot, "show version r13"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [a.status for a in answers] == [Status.OK, Status.OK]
    # One message on each worker (one slot each), and still never two sessions on r13.
    assert [w.log_text().count("show version on 1 devices") for w in workers] == [n + 1 for n in jobs_before]
    assert lab.devices["r13"].stats.max_concurrent == 1
