"""matrix-nio's key store, without the database round trip it makes on every sync.

After each sync nio hands the store the rooms that batch showed to be encrypted, to
remember them across restarts (`save_encrypted_rooms`). It does so in a transaction of
its own (BEGIN, a look-up of the account, COMMIT) even when the set is empty, which it
is on nearly every sync, and rewrites rooms already saved (INSERT OR IGNORE) whenever a
batch repeats a room's encryption event. That was a third of the bot's CPU per command
in unencrypted rooms. This store writes a room once and skips the call otherwise; every
other write (Olm account, sessions, device keys) happens only when keys change, as nio
makes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from nio.store import DefaultStore


@dataclass
class KeyStore(DefaultStore):
    # The encrypted rooms known to be in the database: loaded at start, then added to.
    _saved_encrypted_rooms: set[str] = field(init=False, default_factory=set)

    def load_encrypted_rooms(self) -> set[str]:
        rooms: set[str] = super().load_encrypted_rooms()
        self._saved_encrypted_rooms |= rooms
        return rooms

    def save_encrypted_rooms(self, rooms: Iterable[str]) -> None:
        new = set(rooms) - self._saved_encrypted_rooms
        if not new:
            return  # nothing would change: no transaction at all
        super().save_encrypted_rooms(new)
        self._saved_encrypted_rooms |= new
