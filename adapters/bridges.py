"""Who is really behind a bridged message.

Two kinds of bridges reach the bot:
- puppeting bridges (mautrix-slack, matrix-appservice-slack) give every remote user a
  Matrix account of their own, in a namespace only the bridge may use: such a puppet
  *is* its remote identity, but only on the homeserver that hosts that bridge;
- relay bots (matterbridge) post everyone's messages from one account, prefixing the
  text with the remote nick (RemoteNickFormat). The nick is a claim anyone on the
  remote side can change: it yields a weak identity, and only from a configured relay
  account. The same prefix from anyone else is plain text.

Config, one `[bridges.NAME]` table per bridge:

    [bridges.slack]
    type = "mautrix-slack"            # or "matrix-appservice-slack"
    homeserver = "corp.example"

    [bridges.relay]
    type = "matterbridge"
    platform = "matrix"               # where the relay account posts
    accounts = ["@relaybot:corp.example"]
    nick_format = "[{PROTOCOL}] <{NICK}> "

    [bridges.other]
    type = "puppet"                   # any puppeting bridge
    homeserver = "corp.example"
    pattern = '@irc_(?P<user>[A-Za-z0-9_]+):corp\\.example'
    identity = "irc:{user}"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chatbot.config import ConfigError
from chatbot.message import Identity

# Puppet namespaces of the bridges we know (docs/architecture.md, Bridges). mautrix-slack
# lower-cases the Slack ids; Slack ids are upper case, so the identity is upper-cased back.
KNOWN_PUPPETS = {
    "mautrix-slack": (r"@slack_(?P<team>[a-z0-9]+)-(?P<user>[a-z0-9]+):{server}", "slack:{USER}"),
    "matrix-appservice-slack": (r"@slack_(?P<team>[A-Za-z0-9]+)_(?P<user>[A-Z0-9]+):{server}", "slack:{user}"),
}
MAX_NICK = 64


class BridgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mautrix-slack", "matrix-appservice-slack", "puppet", "matterbridge"]
    homeserver: str | None = None
    pattern: str | None = None
    identity: str | None = None
    platform: Literal["matrix", "mattermost", "slack"] = "matrix"
    accounts: list[str] = Field(default_factory=list)
    nick_format: str = "[{PROTOCOL}] <{NICK}> "
    team: str | None = None  # restrict a Slack puppet bridge to one workspace

    @model_validator(mode="after")
    def _complete(self) -> BridgeConfig:
        if self.type == "matterbridge":
            if not self.accounts:
                raise ValueError("a matterbridge relay needs accounts = [the relay account ids]")
            if "{NICK}" not in self.nick_format:
                raise ValueError("nick_format must contain {NICK}")
        else:
            if not self.homeserver:
                raise ValueError("a puppeting bridge needs homeserver = the server that hosts it")
            if self.type == "puppet" and not (self.pattern and self.identity):
                raise ValueError("type = puppet needs pattern (with a (?P<user>...) group) and identity")
        return self


@dataclass(frozen=True)
class Resolved:
    identity: Identity
    text: str  # the message text, relay prefix removed


@dataclass(frozen=True)
class _Puppet:
    name: str
    regex: re.Pattern[str]
    identity: str
    team: str | None
    homeserver: str


@dataclass(frozen=True)
class _Relay:
    name: str
    platform: str
    accounts: frozenset[str]
    regex: re.Pattern[str]


class BridgeResolver:
    def __init__(self, bridges: dict[str, Any] | None) -> None:
        self.puppets: list[_Puppet] = []
        self.relays: list[_Relay] = []
        for name, raw in (bridges or {}).items():
            try:
                cfg = BridgeConfig.model_validate(raw)
            except ValidationError as err:
                first = err.errors()[0]
                raise ConfigError(f"[bridges.{name}]: {first['msg'].removeprefix('Value error, ')}") from None
            if cfg.type == "matterbridge":
                self.relays.append(_Relay(name, cfg.platform, frozenset(cfg.accounts), _nick_regex(cfg.nick_format)))
            else:
                self.puppets.append(_puppet(name, cfg))

    def relay_accounts(self, platform: str) -> frozenset[str]:
        """The accounts that relay other people's messages on `platform`."""
        return frozenset(a for r in self.relays if r.platform == platform for a in r.accounts)

    def resolve(self, platform: str, account: str, text: str, display_name: str = "") -> Resolved:
        """The identity behind `account`'s message on `platform`, and the command text."""
        for relay in self.relays:
            if relay.platform == platform and account in relay.accounts:
                m = relay.regex.match(text)
                if m:
                    nick = m.group("nick")
                    protocol = (m.groupdict().get("protocol") or "relay").lower()
                    ident = Identity(user=f"{protocol}:{nick}", platform_id=f"{platform}:{account}",
                                     display_name=nick, bridge=relay.name, weak=True)
                    return Resolved(ident, text[m.end():])
                # the relay account speaking for itself: no person behind it
                return Resolved(Identity(user=f"{platform}:{account}", platform_id=f"{platform}:{account}",
                                         display_name=display_name, bridge=relay.name, weak=True), text)
        if platform == "matrix":
            for puppet in self.puppets:
                # a puppet namespace only means something on the bridge's own homeserver
                if account.partition(":")[2] != puppet.homeserver:
                    continue
                m = puppet.regex.fullmatch(account)
                if m and (puppet.team is None or m.groupdict().get("team", "").lower() == puppet.team.lower()):
                    user = m.group("user")
                    ident = Identity(user=puppet.identity.format(user=user, USER=user.upper()),
                                     platform_id=f"matrix:{account}", display_name=display_name, bridge=puppet.name)
                    return Resolved(ident, text)
        return Resolved(Identity.native(platform, account, display_name), text)


def _puppet(name: str, cfg: BridgeConfig) -> _Puppet:
    if cfg.type == "puppet":
        pattern, identity = cfg.pattern or "", cfg.identity or ""
    else:
        template, identity = KNOWN_PUPPETS[cfg.type]
        pattern = template.replace("{server}", re.escape(cfg.homeserver or ""))
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"[bridges.{name}] pattern: {err}") from None
    if "user" not in regex.groupindex:
        raise ConfigError(f"[bridges.{name}] pattern needs a (?P<user>...) group")
    return _Puppet(name, regex, identity, cfg.team, cfg.homeserver or "")


def _nick_regex(nick_format: str) -> re.Pattern[str]:
    """`[{PROTOCOL}] <{NICK}> ` -> a regex anchored at the start of the text."""
    parts = re.split(r"(\{NICK\}|\{PROTOCOL\}|\{[A-Z]+\})", nick_format)
    out = ["^"]
    for part in parts:
        if part == "{NICK}":
            out.append(rf"(?P<nick>[^\s<>\[\]]{{1,{MAX_NICK}}})")
        elif part == "{PROTOCOL}":
            out.append(r"(?P<protocol>[A-Za-z0-9_-]{1,32})")
        elif part.startswith("{") and part.endswith("}"):
            out.append(r"[^\s]{0,64}")  # other matterbridge fields (BRIDGE, GATEWAY...): not used
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))
