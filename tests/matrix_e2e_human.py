"""A person with an end-to-end encrypted client, in a process of its own.

nio's key store binds its peewee models process-wide, so two encrypted clients (the
bot and this person) cannot share a process; the bot under test never runs beside
another client in production. Prints one JSON line: the bot's answer as received.

    python matrix_e2e_human.py HOMESERVER USER PASSWORD STORE BOT COMMAND

With COMMAND "--backlog N" it talks with the test on stdin and stdout instead: it
creates the encrypted room and prints {"room": ...}; on a line "send" (the bot is down
by then) it sends N commands and prints {"sent": [event ids]}; on a line "collect" it
waits for an answer to each and prints {"answers": [[event id, body], ...]} in the
order the answers arrived.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, RoomSendResponse


async def main(homeserver: str, user: str, password: str, store: str, bot: str, command: str) -> None:
    client = AsyncClient(homeserver, user, store_path=store,
                         config=AsyncClientConfig(store_sync_tokens=False, encryption_enabled=True))
    await client.login(password, device_name="e2e-test")

    async def sync() -> list:
        # a timeline limit above any burst of answers: none may be missed
        resp = await client.sync(timeout=500, since=client.next_batch,
                                 sync_filter={"room": {"timeline": {"limit": 1000}}})
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
    if command.startswith("--backlog "):
        await backlog(client, sync, room, bot, int(command.split()[1]))
        return
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


async def backlog(client: AsyncClient, sync: Any, room: str, bot: str, count: int) -> None:
    say({"room": room})
    await expect("send")
    sent = []
    for n in range(1, count + 1):
        resp = await client.room_send(room, "m.room.message",
                                      {"msgtype": "m.text", "body": f"!ping 10.0.0.{n} from r1 count 1"},
                                      ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        sent.append(resp.event_id)
    say({"sent": sent})
    await expect("collect")
    answers: dict[str, str] = {}
    order: list[str] = []
    deadline = time.monotonic() + 60
    while len(answers) < count:
        assert time.monotonic() < deadline, f"only {len(answers)} of {count} answers"
        for event in await sync():
            rel = (event.source.get("content") or {}).get("m.relates_to") or {}
            answered = rel.get("m.in_reply_to", {}).get("event_id")
            if event.sender == bot and answered in sent:
                assert getattr(event, "decrypted", False), "an answer came unencrypted"
                order.append(answered)
                answers.setdefault(answered, getattr(event, "body", ""))
    say({"answers": [[event_id, answers[event_id]] for event_id in order]})
    await client.close()


def say(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


async def expect(word: str) -> None:
    line = await asyncio.to_thread(sys.stdin.readline)
    assert line.strip() == word, line


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
