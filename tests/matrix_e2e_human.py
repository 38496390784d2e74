"""A person with an end-to-end encrypted client, in a process of its own.

nio's key store binds its peewee models process-wide, so two encrypted clients (the
bot and this person) cannot share a process; the bot under test never runs beside
another client in production. Prints one JSON line: the bot's answer as received.

    python matrix_e2e_human.py HOMESERVER USER PASSWORD STORE BOT COMMAND
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse


async def main(homeserver: str, user: str, password: str, store: str, bot: str, command: str) -> None:
    client = AsyncClient(homeserver, user, store_path=store,
                         config=AsyncClientConfig(store_sync_tokens=False, encryption_enabled=True))
    await client.login(password, device_name="e2e-test")

    async def sync() -> list:
        resp = await client.sync(timeout=500, since=client.next_batch)
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        return [e for info in resp.rooms.join.values() for e in info.timeline.events]

    await sync()
    created = await client.room_create(invite=[bot], initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert isinstance(created, RoomCreateResponse), created
    room = created.room_id
    deadline = time.monotonic() + 40
    while not (room in client.rooms and bot in client.rooms[room].users):
        assert time.monotonic() < deadline, "the bot did not join"
        await sync()
    await sync()
    sent = await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": command},
                                  ignore_unverified_devices=True)
    while time.monotonic() < deadline:
        for event in await sync():
            rel = (event.source.get("content") or {}).get("m.relates_to") or {}
            if event.sender == bot and rel.get("m.in_reply_to", {}).get("event_id") == sent.event_id:
                print(json.dumps({"decrypted": bool(getattr(event, "decrypted", False)),
                                  "body": getattr(event, "body", None),
                                  "room_encrypted": client.rooms[room].encrypted}))
                await client.close()
                return
    raise SystemExit("no answer")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
