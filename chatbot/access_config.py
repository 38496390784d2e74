"""Building the access policy from `[identities]` and `[access]`, checking every name.

Mistakes stop the bot with one line naming the config line: an unknown role, group,
person or command, a device scope that matches nothing, an account claimed by two
people. Without an `[access]` section only the local terminal may run commands (its
user already holds the bot's config and secrets); every chat platform is denied.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from chatbot.config import Config, ConfigError
from chatbot.errors import ArgumentError
from chatbot.inventory import DeviceInventory
from chatbot.policy import ANYWHERE, DIRECT, AccessPolicy, Grant, Role

PLATFORMS = ("console", "matrix", "mattermost", "slack")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

LOCAL_OPERATOR = Grant(
    who=("console:*",), where=("console:*",),
    roles=(Role("local-operator", ("*",)),), label="local terminal (no [access] section)",
)


def build_policy(config: Config, permissions: set[str], inventory: DeviceInventory) -> AccessPolicy:
    persons = _persons(config)
    if config.access is None:
        return AccessPolicy(grants=[LOCAL_OPERATOR], persons=persons)
    access = config.access
    groups = {name: frozenset(_members(config, name, members, persons)) for name, members in access.groups.items()}
    roles = {name: _role(config, name, role.commands, role.devices, permissions, inventory)
             for name, role in access.roles.items()}
    grants = []
    for number, grant in enumerate(access.grants, 1):
        for who in grant.who:
            _check_who(config, who, persons, groups)
        for where in grant.where:
            _check_where(config, where)
        missing = [r for r in grant.roles if r not in roles]
        if missing:
            raise ConfigError(f"{config.line_of(missing[0])}: grant {number} names unknown role '{missing[0]}'"
                              f"{_known(roles)}")
        grants.append(Grant(tuple(grant.who), tuple(grant.where), tuple(roles[r] for r in grant.roles),
                            label=f"grant {number} ({', '.join(grant.roles)})"))
    return AccessPolicy(grants=grants, persons=persons, groups=groups)


def _persons(config: Config) -> dict[str, str]:
    owner: dict[str, str] = {}
    for person, accounts in config.identities.items():
        if not _NAME.match(person):
            raise ConfigError(f"{config.line_of(person)}: [identities] '{person}' is not a valid name "
                              "(letters, digits, . _ -)")
        for account in accounts:
            _check_account(config, account, f"[identities] {person}")
            if account in owner and owner[account] != person:
                raise ConfigError(f"{config.line_of(account)}: account '{account}' is listed for both "
                                  f"{owner[account]} and {person}")
            owner[account] = person
    return owner


def _check_account(config: Config, account: str, where: str, wildcards: bool = False) -> None:
    platform, sep, ident = account.partition(":")
    if not sep or platform not in PLATFORMS or not ident:
        raise ConfigError(f"{config.line_of(account)}: {where}: '{account}' is not an account; "
                          f"write platform:id with platform one of {', '.join(PLATFORMS)}")
    if not wildcards and any(c in ident for c in "*?["):
        raise ConfigError(f"{config.line_of(account)}: {where}: '{account}' may not contain wildcards")


def _members(config: Config, group: str, members: list[str], persons: dict[str, str]) -> list[str]:
    known_persons = set(persons.values()) | set(config.identities)
    for member in members:
        if ":" in member:
            _check_account(config, member, f"group {group}")
        elif member not in known_persons:
            raise ConfigError(f"{config.line_of(member)}: group {group}: '{member}' is neither a person "
                              "in [identities] nor an account (platform:id)")
    return members


def _role(config: Config, name: str, commands: list[str], devices: list[str] | None,
          permissions: set[str], inventory: DeviceInventory) -> Role:
    for pattern in commands:
        normal = pattern.replace(" ", ".")
        if not any(fnmatch.fnmatchcase(p, normal) for p in permissions):
            raise ConfigError(f"{config.line_of(pattern)}: role {name}: '{pattern}' matches no command; "
                              f"commands are {', '.join(sorted(permissions))}")
    scope = None
    if devices is not None:
        resolved: set[str] = set()
        for spec in devices:
            try:
                resolved.update(inventory.resolve(spec))
            except ArgumentError as err:
                raise ConfigError(f"{config.line_of(spec)}: role {name}: devices: {err}") from None
        scope = frozenset(resolved)
    return Role(name, tuple(p.replace(" ", ".") for p in commands), scope)


def _check_who(config: Config, who: str, persons: dict[str, str], groups: dict[str, frozenset[str]]) -> None:
    if who == ANYWHERE or who.startswith("relayed:"):
        return
    if who.startswith("group:"):
        if who.removeprefix("group:") not in groups:
            raise ConfigError(f"{config.line_of(who)}: unknown group '{who}'{_known(groups, 'group:')}")
        return
    if ":" in who:
        _check_account(config, who, "grant who", wildcards=True)
        return
    if who not in config.identities:
        raise ConfigError(f"{config.line_of(who)}: grant who: '{who}' is not a person in [identities], "
                          "a group:NAME, an account (platform:id), relayed:NICK or *")


def _check_where(config: Config, where: str) -> None:
    if where in (ANYWHERE, DIRECT):
        return
    platform, sep, room = where.partition(":")
    if not sep or platform not in PLATFORMS or not room:
        raise ConfigError(f"{config.line_of(where)}: grant where: '{where}' is not a room; write "
                          "platform:room-id (e.g. matrix:!abc:corp.example), direct, or *")


def _known(names: Mapping[str, object], prefix: str = "") -> str:
    return f" (known: {', '.join(prefix + n for n in names)})" if names else ""
