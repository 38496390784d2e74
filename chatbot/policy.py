"""Who may run what, where, on which devices. Deny by default.

A grant holds when all of its conditions hold together: the sender is one of `who`,
the message came from one of `where`, and one of its roles allows the command; a role
may narrow the devices. A command runs only if, for every device it touches, some
grant allows that command on that device in this room for this sender.

Identities: one person may have several accounts (`[identities]`), so rights follow
the person across platforms. A relayed nick (a bridge's claim, not a proof) is matched
only by `relayed:` entries, never by people, groups or `*`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from chatbot.message import Identity

DIRECT = "direct"  # `where` entry: any one-to-one conversation with the bot
ANYWHERE = "*"


@dataclass(frozen=True)
class Role:
    name: str
    commands: tuple[str, ...]  # permission patterns: "ping", "show.*", "*"
    devices: frozenset[str] | None = None  # None: any device

    def allows(self, permission: str) -> bool:
        return any(fnmatch.fnmatchcase(permission, p) for p in self.commands)


@dataclass(frozen=True)
class Grant:
    who: tuple[str, ...]
    where: tuple[str, ...]
    roles: tuple[Role, ...]
    label: str = ""


@dataclass(frozen=True)
class Principal:
    """The sender as the policy sees it."""

    identity: Identity
    person: str | None
    groups: frozenset[str]

    @property
    def name(self) -> str:
        return self.person or self.identity.user


@dataclass(frozen=True)
class Place:
    platform: str
    room: str
    direct: bool

    @property
    def ref(self) -> str:
        return f"{self.platform}:{self.room}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    grants: tuple[str, ...] = ()


@dataclass
class AccessPolicy:
    grants: list[Grant] = field(default_factory=list)
    persons: dict[str, str] = field(default_factory=dict)  # account -> person
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> members (persons or accounts)

    def principal(self, identity: Identity) -> Principal:
        person = None if identity.weak else self.persons.get(identity.user)
        names = {identity.user} | ({person} if person else set())
        groups = frozenset(g for g, members in self.groups.items() if not identity.weak and names & members)
        return Principal(identity, person, groups)

    def check(self, principal: Principal, place: Place, permission: str, devices: list[str]) -> Decision:
        usable = [(g, r) for g in self._grants_for(principal, place) for r in g.roles if r.allows(permission)]
        if not usable:
            return Decision(False, "you may not run this command here")
        uncovered = [d for d in devices if not any(r.devices is None or d in r.devices for _, r in usable)]
        if uncovered:
            shown = ", ".join(uncovered[:5]) + (" ..." if len(uncovered) > 5 else "")
            return Decision(False, f"you may not run this command on {shown} here")
        return Decision(True, "allowed", tuple(dict.fromkeys(g.label for g, _ in usable)))

    def permissions(self, principal: Principal, place: Place) -> list[tuple[str, ...]]:
        """The permission patterns this sender has here (for help and whoami)."""
        return [r.commands for g in self._grants_for(principal, place) for r in g.roles]

    def may_run_somewhere(self, principal: Principal, place: Place, permission: str) -> bool:
        return any(r.allows(permission) for g in self._grants_for(principal, place) for r in g.roles)

    def _grants_for(self, principal: Principal, place: Place) -> list[Grant]:
        return [g for g in self.grants if _who_matches(g.who, principal) and _where_matches(g.where, place)]


def _who_matches(who: tuple[str, ...], p: Principal) -> bool:
    ident = p.identity
    for entry in who:
        if entry.startswith("relayed:"):
            # "relayed:*" or "relayed:irc:*": only weak identities, matched on their claimed name
            if ident.weak and fnmatch.fnmatchcase(ident.user, entry.removeprefix("relayed:")):
                return True
            continue
        if ident.weak:
            continue
        if entry == ANYWHERE:
            return True
        if entry.startswith("group:"):
            if entry.removeprefix("group:") in p.groups:
                return True
        elif ":" in entry:  # an account, possibly with wildcards: "slack:U0456*", "matrix:@*:corp"
            if fnmatch.fnmatchcase(ident.user, entry):
                return True
        elif entry == p.person:
            return True
    return False


def _where_matches(where: tuple[str, ...], place: Place) -> bool:
    for entry in where:
        if entry == ANYWHERE or (entry == DIRECT and place.direct):
            return True
        if fnmatch.fnmatchcase(place.ref, entry):
            return True
    return False
