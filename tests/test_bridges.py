"""Bridged identities: puppets of configured bridges, relayed nicks, and look-alikes."""

from __future__ import annotations

import pytest

from adapters.bridges import BridgeResolver
from chatbot.config import ConfigError

BRIDGES = {
    "slack": {"type": "mautrix-slack", "homeserver": "corp.example"},
    "slack-legacy": {"type": "matrix-appservice-slack", "homeserver": "old.example"},
    "relay": {"type": "matterbridge", "platform": "matrix", "accounts": ["@relaybot:corp.example"]},
    "irc": {"type": "puppet", "homeserver": "corp.example", "pattern": r"@irc_(?P<user>[A-Za-z0-9_]+):corp\.example",
            "identity": "irc:{user}"},
}


@pytest.fixture(scope="module")
def resolver() -> BridgeResolver:
    return BridgeResolver(BRIDGES)


def test_mautrix_slack_puppet_is_its_slack_identity(resolver: BridgeResolver) -> None:
    r = resolver.resolve("matrix", "@slack_t0001abc-u0456efgh:corp.example", "!ping r1", "Alice")
    assert r.identity.user == "slack:U0456EFGH"  # Slack ids are upper case; mautrix lower-cases them
    assert r.identity.platform_id == "matrix:@slack_t0001abc-u0456efgh:corp.example"
    assert r.identity.bridge == "slack" and not r.identity.weak and r.text == "!ping r1"


def test_appservice_slack_puppet_keeps_case(resolver: BridgeResolver) -> None:
    r = resolver.resolve("matrix", "@slack_T0001_U0456EFGH:old.example", "!ping r1")
    assert r.identity.user == "slack:U0456EFGH" and r.identity.bridge == "slack-legacy"
    # lower-cased user id is not that bridge's namespace: no match, a plain Matrix user
    r = resolver.resolve("matrix", "@slack_T0001_u0456efgh:old.example", "!ping r1")
    assert r.identity.user == "matrix:@slack_T0001_u0456efgh:old.example" and r.identity.bridge is None


def test_puppet_pattern_only_counts_on_the_bridges_homeserver(resolver: BridgeResolver) -> None:
    r = resolver.resolve("matrix", "@slack_t0001-u0456efgh:evil.example", "!show run r1")
    assert r.identity.user == "matrix:@slack_t0001-u0456efgh:evil.example"
    assert r.identity.bridge is None
    r = resolver.resolve("matrix", "@irc_bob:evil.example", "!x")
    assert r.identity.user == "matrix:@irc_bob:evil.example"
    assert resolver.resolve("matrix", "@irc_bob:corp.example", "!x").identity.user == "irc:bob"


def test_relay_prefix_from_the_relay_account_is_a_weak_identity(resolver: BridgeResolver) -> None:
    r = resolver.resolve("matrix", "@relaybot:corp.example", "[slack] <alice> !show version r1")
    assert r.identity.user == "slack:alice" and r.identity.weak and r.identity.bridge == "relay"
    assert r.identity.display_name == "alice" and r.text == "!show version r1"


def test_relay_prefix_from_anyone_else_is_plain_text(resolver: BridgeResolver) -> None:
    r = resolver.resolve("matrix", "@mallory:corp.example", "[slack] <alice> !show run r1")
    assert r.identity.user == "matrix:@mallory:corp.example" and not r.identity.weak
    assert r.text == "[slack] <alice> !show run r1"  # untouched: not a command for the bot
    # and the relay account on another platform is not the relay either
    r = resolver.resolve("mattermost", "@relaybot:corp.example", "[slack] <alice> !x")
    assert r.identity.user == "mattermost:@relaybot:corp.example"


def test_relay_account_without_prefix_is_weak_and_nobody(resolver: BridgeResolver) -> None:
    r = resolver.resolve("matrix", "@relaybot:corp.example", "!show run r1")
    assert r.identity.weak and r.identity.user == "matrix:@relaybot:corp.example"


def test_custom_nick_format() -> None:
    resolver = BridgeResolver({"r": {"type": "matterbridge", "platform": "mattermost", "accounts": ["relay"],
                                     "nick_format": "{NICK}@{PROTOCOL}: "}})
    r = resolver.resolve("mattermost", "relay", "bob@irc: !ping r1")
    assert r.identity.user == "irc:bob" and r.text == "!ping r1"


@pytest.mark.parametrize("config,message", [
    ({"x": {"type": "mautrix-slack"}}, "[bridges.x]: a puppeting bridge needs homeserver"),
    ({"x": {"type": "matterbridge"}}, "[bridges.x]: a matterbridge relay needs accounts"),
    ({"x": {"type": "puppet", "homeserver": "h"}}, "[bridges.x]: type = puppet needs pattern"),
    ({"x": {"type": "puppet", "homeserver": "h", "pattern": "@irc_(.*", "identity": "irc:{user}"}},
     "[bridges.x] pattern: missing )"),
    ({"x": {"type": "puppet", "homeserver": "h", "pattern": "@irc_(.*):h", "identity": "irc:{user}"}},
     "[bridges.x] pattern needs a (?P<user>...) group"),
    ({"x": {"type": "telepathy", "homeserver": "h"}}, "[bridges.x]: Input should be"),
])
def test_bad_bridge_config(config: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        BridgeResolver(config)
    assert message in str(err.value)
