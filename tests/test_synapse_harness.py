"""The Synapse test harness itself: a real homeserver on loopback that the Matrix adapter
tests can rely on (users, rooms, messages, restart with state kept, and an application
service that may act only as the puppets in its namespace)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from synapse_server import SynapseServer

# The first run on a machine installs Synapse into its own cached venv (about a minute).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PUPPET_REGEX = "@slack_.*:localhost"
BRIDGE = {
    "id": "slack",
    "sender_localpart": "slackbot",
    "namespaces": {"users": [{"exclusive": True, "regex": PUPPET_REGEX}]},
}


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse"), appservices=[BRIDGE])
    with server:
        yield server


@pytest.fixture(scope="module")
def alice(synapse: SynapseServer) -> dict[str, str]:
    user_id = synapse.register("alice", "alice-pass", admin=True)
    return {"user_id": user_id, "password": "alice-pass", "token": synapse.login(user_id, "alice-pass")}


@pytest.fixture(scope="module")
def bob(synapse: SynapseServer) -> dict[str, str]:
    user_id = synapse.register("bob", "bob-pass")
    return {"user_id": user_id, "password": "bob-pass", "token": synapse.login(user_id, "bob-pass")}


class Client:
    """Just enough of the client-server API, over plain requests."""

    def __init__(self, server: SynapseServer, token: str, user_id: str | None = None) -> None:
        self.base = f"{server.base_url}/_matrix/client/v3"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        # An application service names the puppet it acts as on every request.
        self.params = {"user_id": user_id} if user_id else {}

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        params = {**self.params, **kwargs.pop("params", {})}
        reply = self.session.request(method, self.base + path, params=params, timeout=10, **kwargs)
        assert reply.status_code == expect, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def create_room(self, **body: Any) -> str:
        return str(self.call("POST", "/createRoom", json=body)["room_id"])

    def send_text(self, room_id: str, text: str) -> str:
        path = f"/rooms/{quote(room_id)}/send/m.room.message/{uuid.uuid4().hex}"
        return str(self.call("PUT", path, json={"msgtype": "m.text", "body": text})["event_id"])

    def texts(self, room_id: str) -> list[str]:
        reply = self.call("GET", f"/rooms/{quote(room_id)}/messages", params={"dir": "b", "limit": 50})
        return [e["content"].get("body") for e in reply["chunk"] if e["type"] == "m.room.message"]


def test_listens_on_loopback_only(synapse: SynapseServer) -> None:
    assert synapse.base_url.startswith("http://127.0.0.1:")
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == "0A" and int(port, 16) == synapse.port:  # 0A = LISTEN
                listening.add(address)
    assert listening == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_registered_users_log_in(synapse: SynapseServer, alice: dict[str, str], bob: dict[str, str]) -> None:
    assert alice["user_id"] == "@alice:localhost"
    assert bob["user_id"] == "@bob:localhost"
    assert Client(synapse, alice["token"]).call("GET", "/account/whoami")["user_id"] == alice["user_id"]
    wrong = requests.post(
        f"{synapse.base_url}/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "nope"},
        timeout=10,
    )
    assert wrong.status_code == 403


def test_message_round_trip(synapse: SynapseServer, alice: dict[str, str], bob: dict[str, str]) -> None:
    sender, reader = Client(synapse, alice["token"]), Client(synapse, bob["token"])
    room_id = sender.create_room(name="netops", invite=[bob["user_id"]])
    reader.call("POST", f"/join/{quote(room_id)}", json={})
    event_id = sender.send_text(room_id, "!ping 10.1.1.1 from r1")

    assert reader.texts(room_id) == ["!ping 10.1.1.1 from r1"]
    timeline = reader.call("GET", "/sync", params={"timeout": 0})["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline if e["type"] == "m.room.message"] == [event_id]
    assert [e["sender"] for e in timeline if e["type"] == "m.room.message"] == [alice["user_id"]]


def test_no_rate_limit_on_bursts(synapse: SynapseServer, alice: dict[str, str]) -> None:
    client = Client(synapse, alice["token"])
    room_id = client.create_room()
    for n in range(30):  # Synapse's default rc_message allows a burst of 10
        client.send_text(room_id, f"burst {n}")
    assert len(client.texts(room_id)) == 30


def test_appservice_acts_only_as_its_puppets(synapse: SynapseServer, alice: dict[str, str]) -> None:
    as_token = synapse.appservices[0]["as_token"]
    bridge = Client(synapse, as_token)
    assert bridge.call("GET", "/account/whoami")["user_id"] == "@slackbot:localhost"

    reply = bridge.call("POST", "/register", json={"type": "m.login.application_service", "username": "slack_t1-u1"})
    assert reply["user_id"] == "@slack_t1-u1:localhost"
    puppet = Client(synapse, as_token, user_id="@slack_t1-u1:localhost")
    assert puppet.call("GET", "/account/whoami")["user_id"] == "@slack_t1-u1:localhost"

    # The puppet speaks in a room like any user, and the room sees the puppet as sender.
    owner = Client(synapse, alice["token"])
    room_id = owner.create_room(preset="public_chat")
    puppet.call("POST", f"/join/{quote(room_id)}", json={})
    puppet.send_text(room_id, "!whoami")
    chunk = owner.call("GET", f"/rooms/{quote(room_id)}/messages", params={"dir": "b"})["chunk"]
    assert [e["sender"] for e in chunk if e["type"] == "m.room.message"] == ["@slack_t1-u1:localhost"]

    # Outside the namespace: refused, whether or not that user exists.
    synapse.register("mallory", "mallory-pass")
    impostor = Client(synapse, as_token, user_id="@mallory:localhost")
    assert impostor.call("GET", "/account/whoami", expect=403)["errcode"] == "M_FORBIDDEN"
    impostor.call("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/x1", expect=403, json={"body": "hi"})
    # Nor may anyone else register in the bridge's exclusive namespace.
    squatter = requests.post(
        f"{synapse.base_url}/_matrix/client/v3/register",
        json={"type": "m.login.application_service", "username": "slack_t1-u2"},
        headers={"Authorization": f"Bearer {alice['token']}"},
        timeout=10,
    )
    assert squatter.status_code in (401, 403)


def test_restart_keeps_users_and_rooms(synapse: SynapseServer, alice: dict[str, str], bob: dict[str, str]) -> None:
    client = Client(synapse, alice["token"])
    room_id = client.create_room(name="survives restart")
    client.send_text(room_id, "before restart")
    url = synapse.base_url

    synapse.restart()

    assert synapse.base_url == url  # same port: clients reconnect to the same address
    token = synapse.login(bob["user_id"], bob["password"])
    assert Client(synapse, token).call("GET", "/account/whoami")["user_id"] == bob["user_id"]
    # The old access token still works, and the room and its history are still there.
    assert room_id in client.call("GET", "/joined_rooms")["joined_rooms"]
    assert client.texts(room_id) == ["before restart"]
    client.send_text(room_id, "after restart")
    assert client.texts(room_id) == ["after restart", "before restart"]
    # The application service survives too.
    puppet = Client(synapse, synapse.appservices[0]["as_token"], user_id="@slack_t1-u1:localhost")
    assert puppet.call("GET", "/account/whoami")["user_id"] == "@slack_t1-u1:localhost"
