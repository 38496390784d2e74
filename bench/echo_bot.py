"""A bare matrix-nio echo bot: the floor any bot on this stack can reach. It answers
every `!` message with an m.notice replying to it, and does nothing else.

    python bench/echo_bot.py HOMESERVER USER_ID PASSWORD
"""

from __future__ import annotations

import asyncio
import sys

from nio import AsyncClient, RoomMessageText


async def main(homeserver: str, user_id: str, password: str) -> None:
    client = AsyncClient(homeserver, user_id)
    await client.login(password)
    first = await client.sync(timeout=0, full_state=True)  # the backlog is not ours to answer
    for room_id in first.rooms.invite:
        await client.join(room_id)

    async def on_message(room, event) -> None:  # type: ignore[no-untyped-def]
        if event.sender == client.user_id or not event.body.startswith("!"):
            return
        await client.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.notice", "body": event.body,
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}}})

    async def on_invite(room, event) -> None:  # type: ignore[no-untyped-def]
        if event.state_key == client.user_id:
            await client.join(room.room_id)

    from nio import InviteMemberEvent

    client.add_event_callback(on_message, RoomMessageText)
    client.add_event_callback(on_invite, InviteMemberEvent)
    print("ready", flush=True)
    await client.sync_forever(timeout=30000, since=first.next_batch)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
