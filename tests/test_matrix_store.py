"""The bot's Matrix key store costs nothing per sync: it is touched only when keys or
encrypted rooms change. No homeserver needed: the syncs are fed to the bot's own nio
client as the homeserver would return them (the Synapse tests in test_matrix.py show
that encrypted rooms still work end to end)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nio import AsyncClient, SyncResponse

from adapters.matrix import MatrixConfig, new_client

BOT = "@netbot:localhost"
ROOM = "!plain:localhost"
SECRET_ROOM = "!secret:localhost"


def _client(store: Path) -> AsyncClient:
    client = new_client(MatrixConfig(homeserver="http://127.0.0.1:9", user_id=BOT, store_dir=store))
    store.mkdir(exist_ok=True)
    client.restore_login(BOT, "DEVICE", "token")  # opens the key store, creates the Olm account
    return client


def _event(n: int, kind: str = "m.room.message", **extra: Any) -> dict[str, Any]:
    content = {"msgtype": "m.text", "body": f"!whoami {n}"} if kind == "m.room.message" else \
        {"algorithm": "m.megolm.v1.aes-sha2"}
    return {"type": kind, "event_id": f"$e{n}{kind}", "sender": "@alice:localhost", "origin_server_ts": n,
            "content": content, "unsigned": {"age": 1}, **extra}


def _sync(n: int, room: str, *events: dict[str, Any]) -> SyncResponse:
    return SyncResponse.from_dict({
        "next_batch": f"s{n}",
        "rooms": {"join": {room: {"timeline": {"events": list(events), "limited": False},
                                  "state": {"events": []}, "ephemeral": {"events": []},
                                  "account_data": {"events": []}}}},
        "device_one_time_keys_count": {"signed_curve25519": 50},
    })


def _statements(client: AsyncClient) -> list[str]:
    """Every SQL statement the key store runs from now on (nio runs them in this thread)."""
    seen: list[str] = []
    assert client.store is not None
    client.store.database.connection().set_trace_callback(seen.append)
    return seen


def test_syncs_in_an_unencrypted_room_do_not_touch_the_key_store(tmp_path: Path) -> None:
    client = _client(tmp_path / "store")
    seen = _statements(client)

    async def syncs() -> None:
        for n in range(20):
            await client.receive_response(_sync(n, ROOM, _event(n)))
    asyncio.run(syncs())
    assert client.rooms[ROOM].encrypted is False
    assert seen == []  # nio's own store ran BEGIN, a SELECT and COMMIT on each of the 20


def test_an_encrypted_room_is_saved_once_and_remembered(tmp_path: Path) -> None:
    client = _client(tmp_path / "store")
    seen = _statements(client)

    async def syncs() -> None:
        encryption = _event(0, "m.room.encryption", state_key="")
        await client.receive_response(_sync(0, SECRET_ROOM, encryption))
        writes = [s for s in seen if s.startswith("INSERT")]
        assert len(writes) == 1 and "encryptedrooms" in writes[0]
        seen.clear()
        await client.receive_response(_sync(1, SECRET_ROOM, encryption))  # repeated: changes nothing
        for n in range(2, 12):
            await client.receive_response(_sync(n, SECRET_ROOM, _event(n)))
    asyncio.run(syncs())
    assert client.rooms[SECRET_ROOM].encrypted is True
    assert seen == []
    assert client.store is not None
    client.store.database.close()

    again = _client(tmp_path / "store")  # a restart knows the room is encrypted before any sync
    assert again.encrypted_rooms == {SECRET_ROOM}
