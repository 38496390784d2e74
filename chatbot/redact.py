"""Curated secret redaction for device configs, command output and chat text.

netutils' ``sanitize_config`` ships no patterns of its own (1.19.2 returns the config
unchanged without filters) and only takes string replacements, so we keep our own list
and apply it with plain ``re``: a callable replacement lets every rule replace exactly
the secret's span (keeping keyword, type number, quotes and trailing options), and
precompiled patterns plus a per-line keyword prefilter keep ``redact()`` cheap enough to
run on every reply as a safety net.

Conventions every rule follows:
- the secret is the named group ``secret``; everything else in the match is kept as is;
- a value is either one token, or (for commands whose grammar makes the secret the last
  argument, where IOS allows plaintext with spaces) the rest of the line; a hashed/
  encrypted type number (5, 7, 8, 9, sha512...) means a single token, since such
  values never contain spaces and NX-OS puts options after them (``role ...``);
- a double-quoted value keeps its quotes: ``"<redacted>"``;
- REDACTED is itself a value every rule leaves as it is, which makes redact()
  idempotent.

Decisions: descriptions, remarks and banners are free text and keep their words (a
crypt hash in one is still redacted); certificates (``crypto pki certificate chain``)
and public keys (``ip ssh pubkey-chain`` key-hash/key-string, ``crypto key pubkey-chain``,
``username ... sshkey``, Junos ``ssh-rsa``) are public and kept, private key (PEM)
blocks are redacted; names of key chains, keyrings, users and profiles are kept, but a
Junos SNMP ``trap-group`` name is redacted (Junos sends it as the trap community); EEM
variables are redacted when their name says secret (pass, pw, secret, key, community,
psk, cred, token, auth). The forms covered, per platform, are listed with their
expected result in tests/redaction_corpus.txt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

__all__ = ["REDACTED", "redact", "redaction_patterns"]

REDACTED = "<redacted>"

IOS = frozenset({"cisco_ios", "cisco_iosxe"})
NXOS = frozenset({"cisco_nxos"})
EOS = frozenset({"arista_eos"})
JUNOS = frozenset({"juniper_junos"})
# Cisco-style syntax is shared closely enough by NX-OS and EOS that one rule serves all
# three; a rule for a command a platform lacks simply never matches there.
CISCO_LIKE = IOS | NXOS | EOS
ALL = CISCO_LIKE | JUNOS

_FLAGS = re.IGNORECASE | re.MULTILINE

# Building blocks. [^\r\n] / \S never cross a line end, CRLF included.
_QUOTED = r'"(?:[^"\\\r\n]|\\.)*"'
# A quoted value ends at a space or the line end, or at the ';' that ends a Junos
# statement (so a Junos line seen by a Cisco rule, with platform=None, keeps its
# quotes); anything else after the closing quote is part of the value.
_END_QUOTED = r"(?=;?(?:\s|$))"
_TOKEN = rf"(?:{_QUOTED}{_END_QUOTED}|\S+)"
_REST = rf"(?:{_QUOTED}{_END_QUOTED}|\S(?:[^\r\n]*\S)?)"
# Junos shows secrets quoted and ends statements with ';' (not part of the value).
# Requiring a quote or a ';' keeps Junos rules off Cisco lines such as "enable secret 9
# $9$..." when every platform's rules run; a malformed quoted value runs to the ';'.
_JTOKEN = rf'(?:{_QUOTED}{_END_QUOTED}|"\S*?{_END_QUOTED}|[^\s;]+(?=;))'
# SNMP community names are plain words in Junos, quoted only when they need it.
_JNAME = rf"(?:{_QUOTED}(?=\s|$)|\S+)"
# Optional type number, then the value: one token after a hashed/encrypted type,
# otherwise the rest of the line (type 0 and untyped plaintext may contain spaces).
_TYPED = (
    r"(?:(?P<hashed>10|[1-9]|sha512) |0 )?"
    rf"(?P<secret>(?(hashed){_TOKEN}|{_REST}))"
)
# A command anywhere on a line (after indentation or an echoed prompt such as
# "r1(config)#"), unless the line is free text an engineer wrote: descriptions and
# remarks often mention "password" or "key-string" and must survive intact.
# The empty "head" group marks where the command's keyword starts (see _redact_line).
_CMD = (
    r"^(?![ \t]*(?:\d+[ \t]+)?(?:description|remark|banner|alias)\b)"
    r"[^\r\n]*?(?<![\w-])(?P<head>)"
)
# A Junos statement's secret is quoted or ends with ';': a line with neither is left at
# the first look, which keeps these rules cheap on Cisco configs (platform=None).
_JCMD = r"^(?=[^\r\n]*[\";])" + _CMD.removeprefix("^")
# What may follow a key-string's value: HSRP "[compatibility] [timeout <s>]", MACsec
# algorithm.
_KEY_STRING_TAIL = (
    r"(?:compatibility(?: timeout \d+)?|timeout \d+|cryptographic-algorithm \S+)"
)
# End of line, spelled so that a pattern means the same on one line as on a whole
# multi-line text (a bare \s* would reach into the next line).
_EOL = r"[ \t\r]*$"


# Junos statements whose value is a secret (shown as "$9$..." or a crypt hash). The
# bare "password" (archive sites, outbound-ssh) never has a value in "{" or "[ ... ]".
_JUNOS_SECRET_WORDS = (
    r"(?:encrypted-password|plain-text-password-value|secret|authentication-key"
    r"|hello-authentication-key|simple-password|ascii-text|hexadecimal|community-name"
    r"|authentication-password|privacy-password|privacy-key|chap-secret|default-chap-secret"
    r"|pap-password|default-pap-password|local-password|shared-secret|cak"
    r"|password(?= [^\s{\[\]])(?! (?:minimum|maximum|format|change-type)\S*(?: |$)))"
)


def _cmd_once(head: str) -> str:
    """_CMD + head, committed to head's first occurrence on the line.

    For rules that scan on after their head ("username <u> ... secret"): letting the
    engine retry every later occurrence of the head makes a long line of repeated
    words quadratic (a 34 kB line took 2 s); the atomic group keeps it linear.
    """
    return f"(?>{_CMD}{head})"


def _type_unless(follower: str) -> str:
    """An optional type digit, unless what follows it is ``follower``, the keyword that
    comes after the value: then the digit is the value itself ("key 3 format ascii")."""
    return rf"(?:[0-9] (?!{follower}))?"


def _secret(value: str = _TOKEN) -> str:
    return f"(?P<secret>{value})"


@dataclass(frozen=True)
class _Rule:
    platforms: frozenset[str]
    # Lower-case literals of which at least one must be on a line for the pattern to
    # have a chance: a substring test costs far less than running the regex.
    needles: tuple[str, ...]
    regex: str

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        # Compiled when a line first wakes the rule: compiling them all took 40 ms at
        # every start, and most replies (help, jobs, tables) wake none.
        return re.compile(self.regex, _FLAGS)


def _rule(platforms: frozenset[str], needles: str | tuple[str, ...], regex: str) -> _Rule:
    if isinstance(needles, str):
        needles = (needles,)
    return _Rule(platforms, needles, regex)


# "key" as a word of its own: "message-digest-key 1" lines (hundreds in a config with
# per-interface OSPF keys) do not wake the rules that need it.
_WORD_KEY = (" key ", "\tkey ")

# On a line the leftmost command is redacted first (see _redact_line); rules whose
# commands start at the same place run in this order: specific rules first, catch-alls
# last, so a catch-all only sees values a specific rule has already made REDACTED.
_LINE_RULES: tuple[_Rule, ...] = (
    # "show snmp community" output; first, so that the Junos "community <name> {" rule
    # cannot take "name:" for the community when every platform's rules run.
    _rule(CISCO_LIKE, "community", r"^[ \t]*community (?:name|securityname): " + _secret()),
    # --- Junos (before the Cisco rules so a Junos line keeps its quotes and ';') ---
    _rule(
        JUNOS,
        ("password", "secret", "key", "ascii-text", "hexadecimal", "community-name"),
        _JCMD + _JUNOS_SECRET_WORDS + " " + _secret(_JTOKEN),
    ),
    # "set" lines typed by hand may carry a plaintext value with neither quote nor ';'.
    _rule(
        JUNOS,
        ("password", "secret", "key", "ascii-text", "hexadecimal", "community-name"),
        r"^[ \t]*set [^\r\n]*?(?<![\w-])" + _JUNOS_SECRET_WORDS
        + r" (?![\[\]{}]|\d+ type )" + _secret(rf"{_QUOTED}{_END_QUOTED}|[^\s;]+"),
    ),
    _rule(JUNOS, "md5", _JCMD + r"md5 \d+ key " + _secret(_JTOKEN)),
    _rule(
        JUNOS,
        "md5",
        r"^[ \t]*set [^\r\n]*?(?<![\w-])md5 \d+ key "
        + _secret(rf"{_QUOTED}{_END_QUOTED}|[^\s;]+"),
    ),
    # NTP keys: "authentication-key <id> type md5 value <key>".
    _rule(
        JUNOS,
        "authentication-key",
        _CMD + r"authentication-key \d+ type \S+ value "
        + _secret(rf"{_JTOKEN}|{_QUOTED}|[^\s;]+"),
    ),
    # The trap-group name is the community v1/v2c traps are sent with.
    _rule(
        JUNOS,
        "trap-group",
        r"^[ \t]*(?:set snmp )?trap-group "
        + _secret(rf"{_QUOTED}|[^\s;{{]+")
        + r"(?=[ \t]*\{|;|[ \t]|[\r]?$)",
    ),
    # "community <name> {" or "community <name>;" inside "snmp {"; a policy-options
    # "community <name> members ..." line has neither right after the name.
    _rule(
        JUNOS,
        "community",
        r"^[ \t]*community "
        + _secret(rf"{_QUOTED}|\S+?")
        + rf"(?=[ \t]*\{{|;{_EOL})",
    ),
    _rule(JUNOS, "snmp community", _CMD + r"snmp community " + _secret(_JNAME)),
    # --- Cisco IOS / IOS-XE / NX-OS / EOS ---
    _rule(
        CISCO_LIKE,
        "enable",
        _CMD + r"enable (?:algorithm-type \S+ )?(?:secret|password)(?: level \d+)? "
        + _TYPED,
    ),
    # 9800 AP profile: two single-token secrets on one line, which the "username" rule
    # (value = rest of line) would merge into one.
    _rule(
        CISCO_LIKE,
        "mgmtuser username",
        _CMD + r"mgmtuser username \S+ password " + _type_unless("secret ") + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "mgmtuser username",
        _cmd_once("mgmtuser username ") + r"[^\r\n]*? secret (?:[0-9] )?" + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "username",
        _cmd_once(r"(?<!mgmtuser )username \S+ ") + r"(?:[^\r\n]*? )?(?:secret|password) "
        r"(?:(?P<hashed>10|[1-9]|sha512) |0 )?"
        rf"(?P<secret>(?(hashed){_TOKEN}|(?:{_QUOTED}{_END_QUOTED}|\S(?:[^\r\n]*?\S)?"
        rf"(?=(?: realm \S+)?{_EOL}))))",
    ),
    # "password" opening a line is the line/vty password or an NX-OS BGP neighbor's;
    # the exclusions are global settings that start with the same word.
    _rule(
        CISCO_LIKE,
        "password",
        r"^[ \t]*password (?!(?:encryption|strength-check|policy|prompt|minimum"
        r"|history|\{)(?:[ \t\r]|$))" + _TYPED,
    ),
    _rule(
        CISCO_LIKE,
        "password",
        _CMD + r"(?:neighbor \S+|ppp (?:chap|pap|eap|ms-chap)|sent-username \S+|ip ftp"
        r"|ip http client|l2tp tunnel|wccp(?: [^\r\n]*?)?) password " + _TYPED,
    ),
    # LDP fallback and per-ACL passwords ("... for <acl> key-chain <name>" names one).
    _rule(
        CISCO_LIKE,
        "password",
        _CMD + r"mpls ldp (?:vrf \S+ )?password (?:fallback|option \d+ for \S+) "
        r"(?!key-chain )" + _TYPED,
    ),
    # VTP options ("hidden", "secret") follow the value; "show vtp password" output.
    _rule(CISCO_LIKE, "vtp password", _CMD + r"vtp password(?::)? " + _secret()),
    # MSDP: IOS "ip msdp [vrf V] password peer <addr> [type] <value>", NX-OS without "peer".
    _rule(
        CISCO_LIKE,
        "password",
        _CMD + r"msdp (?:vrf \S+ )?password (?:peer )?\S+ " + _TYPED,
    ),
    # LDAP bind DN password (IOS "bind authenticate root-dn", NX-OS "rootDN"); options
    # such as "port 389" may follow, hence one token.
    _rule(
        CISCO_LIKE,
        "password",
        _CMD + rf"root-?dn (?:{_QUOTED}|\S+) password "
        + _type_unless(r"(?:port|timeout) ") + _secret(),
    ),
    _rule(CISCO_LIKE, "password", _CMD + r"pkcs12 (?:[^\r\n]*? )?password " + _secret()),
    # IS-IS passwords take options after the value ("level-2", "authenticate snp").
    _rule(
        CISCO_LIKE,
        "password",
        _CMD + r"(?:isis password|area-password|domain-password) " + _secret(),
    ),
    # IOS-XE 17 may print a type ("community 8 <hash> RO"); a community named "0" or "8"
    # is told apart by the access keyword following it.
    _rule(
        CISCO_LIKE,
        "snmp-server community",
        _CMD + r"snmp-server community (?:[08] (?!(?:ro|rw|view|group)\b))?" + _secret(),
    ),
    # v1/v2c trap host: the community follows the optional keywords. v3 hosts name a
    # user there instead, which is not a secret, hence the lookahead on "version".
    _rule(
        CISCO_LIKE,
        "snmp-server host",
        _CMD + r"snmp-server host \S+(?: (?:informs|traps|vrf \S+|version (?:1|2c)))* "
        r"(?!(?:version|informs|traps|vrf|use-vrf|filter-vrf)\s)" + _secret(),
    ),
    # auth before priv: once the auth secret is gone, a value that happens to read
    # "priv" cannot mislead the priv rule.
    _rule(
        CISCO_LIKE,
        "snmp-server user",
        _cmd_once("snmp-server user ") + r"[^\r\n]*? auth (?:md5|sha\S*) " + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "snmp-server user",
        _cmd_once("snmp-server user ") + r"[^\r\n]*? priv (?:(?:3des|des|aes)(?:[- ]?\d+)? )?"
        + _secret(),
    ),
    # HSRP may follow the key with "timeout <s>", MACsec key chains with
    # "cryptographic-algorithm <name>"; neither is part of it.
    _rule(
        CISCO_LIKE,
        "key-string",
        _CMD + rf"key-string (?:(?:(?P<hashed>10|[1-9])|0) (?!{_KEY_STRING_TAIL}{_EOL}))?"
        rf"(?P<secret>(?(hashed){_TOKEN}|\S(?:[^\r\n]*?\S)?"
        rf"(?=(?: {_KEY_STRING_TAIL})?{_EOL})))",
    ),
    # " key ..." inside a "tacacs server" / "radius server" block. An indented bare
    # number is a key-chain key id ("key 1"), and "key 0 {" a Junos key id, not secrets.
    # EOS MACsec profile "key <ckn> [type] <cak> [fallback]": the CKN names the key.
    _rule(
        CISCO_LIKE,
        _WORD_KEY,
        r"^[ \t]+key [0-9a-f]{2,64} (?:[07] (?!fallback" + _EOL + "))?"
        r"(?!\{" + _EOL + r")(?=\S+(?: fallback)?" + _EOL + ")"
        + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "key ",
        r"^[ \t]+key (?!(?:chain|config-key) )(?!\d+[ \t]*\{?" + _EOL + ")"
        r"(?![0-9a-f]{2,64} (?:[07] )?\S+(?: fallback)?" + _EOL + ")" + _TYPED,
    ),
    _rule(
        CISCO_LIKE,
        ("tacacs-server", "radius-server"),
        _cmd_once(r"(?:tacacs|radius)-server ") + r"(?:host \S+ (?:[^\r\n]*? )?)?key " + _TYPED,
    ),
    _rule(CISCO_LIKE, "server-key", _CMD + r"server-key " + _TYPED),
    # "server-private <addr> [auth-port n] [acct-port n] [timeout n] key [type] <value>"
    # in "aaa group server radius|tacacs+" blocks.
    _rule(
        CISCO_LIKE,
        "server-private",
        _cmd_once(r"server-private \S+ ") + r"(?:[^\r\n]*? )?key " + _TYPED,
    ),
    _rule(CISCO_LIKE, "pac key", _CMD + r"pac key " + _TYPED),
    # RADIUS key wrap: two keys, then "format ascii|hex".
    _rule(
        CISCO_LIKE,
        "key-wrap",
        _CMD + r"key-wrap encryption-key " + _type_unless("message-auth-code-key ") + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "key-wrap",
        _cmd_once("key-wrap ") + r"[^\r\n]*? message-auth-code-key "
        + _type_unless("format ") + _secret(),
    ),
    # A server block's "address ipv4 <addr> ... key [type] <value>"; anchored at the line
    # start, so the many other lines holding "key " cost one failed look.
    _rule(
        CISCO_LIKE,
        _WORD_KEY,
        r"^[ \t]*(?P<head>)address ipv[46] \S+ (?:[^\r\n]*? )?key " + _TYPED,
    ),
    # Autonomous AP local RADIUS server: "nas <addr> key <value>", "user <u> password
    # <value> [group <g>]".
    _rule(CISCO_LIKE, _WORD_KEY, r"^[ \t]*(?P<head>)nas \S+ key " + _TYPED),
    _rule(
        CISCO_LIKE,
        "password",
        r"^[ \t]*(?P<head>)user \S+ password (?:[0-9] (?!group \S+" + _EOL + "))?"
        + _secret(),
    ),
    # LISP "etr map-server <addr> key [type] <value> [proxy-reply]".
    _rule(
        CISCO_LIKE,
        "map-server",
        _CMD + r"map-server \S+ key " + _type_unless(r"(?:proxy-reply|hash-function)\b") + _secret(),
    ),
    # Call-home "mail-server user:pass@host", EEM "action n mail server "user:pass@host""
    # and its usual source, "event manager environment _email_server user:pass@host".
    _rule(
        CISCO_LIKE,
        ("mail-server", "mail server", "_email_server"),
        r'(?:mail[- ]server|_email_server) "?[^\s:@"/]+:' + _secret(r'[^\s@"]+') + "@",
    ),
    _rule(
        CISCO_LIKE,
        "config-key",
        _CMD + r"key config-key (?:password-encrypt|1) " + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "isakmp key",
        _CMD + r"crypto isakmp key (?:[0-9] )?" + _secret()
        + r"(?= (?:address|hostname)\b|" + _EOL + ")",
    ),
    _rule(
        CISCO_LIKE,
        "pre-shared-key",
        _cmd_once(r"pre-shared-key (?:address|hostname) ") + r"(?:[^\r\n]*? )?key " + _TYPED,
    ),
    _rule(
        CISCO_LIKE,
        "pre-shared-key",
        _CMD + r"pre-shared-key (?:(?:local|remote) )?"
        r"(?!(?:address|hostname|ascii-text|hexadecimal|key-chain|ckn) )" + _TYPED,
    ),
    _rule(CISCO_LIKE, "pre-share key", _CMD + r"pre-share key " + _TYPED),
    # "ntp authentication-key <n> md5 ..." has its own grammar (rule below).
    _rule(
        CISCO_LIKE,
        ("authentication-key", "message-digest-key"),
        _CMD + r"(?:(?<!ntp )authentication-key(?! \d+ type )|message-digest-key \d+ md5) "
        + _TYPED,
    ),
    # EOS IS-IS ("[isis] authentication key [type] <value> [level-n]"), IOS RSVP.
    _rule(
        CISCO_LIKE,
        "authentication key",
        _CMD + r"authentication key " + _type_unless(r"level-\d") + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "authentication mode",
        _CMD + r"authentication mode hmac-sha-256 " + _TYPED,
    ),
    _rule(
        CISCO_LIKE,
        "authentication ipsec",
        _CMD + r"authentication ipsec spi \d+ (?:md5|sha\S*) (?:passphrase )?" + _TYPED,
    ),
    # OSPFv3 ESP: an encryption key (unless "null"), then an authentication key.
    _rule(
        CISCO_LIKE,
        "encryption ipsec",
        _CMD + r"encryption ipsec spi \d+ esp (?!null )\S+(?: (?:128|192|256))? "
        r"(?:passphrase )?" + _type_unless(r"(?:md5|sha\S*) ") + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "encryption ipsec",
        _cmd_once("encryption ipsec spi ") + r"[^\r\n]*? (?:md5|sha\S*) (?:passphrase )?"
        r"(?:[0-9] )?" + _secret(),
    ),
    # IPsec manual keys in "crypto map ... ipsec-manual".
    _rule(
        CISCO_LIKE,
        "session-key",
        _CMD + r"session-key (?:inbound|outbound) (?:esp|ah) \d+ (?:cipher )?" + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "session-key",
        _cmd_once("session-key ") + r"[^\r\n]*? authenticator " + _secret(),
    ),
    _rule(CISCO_LIKE, "authentication text", _CMD + r"authentication text " + _secret()),
    _rule(
        CISCO_LIKE,
        ("standby", "vrrp", "glbp"),
        _CMD + r"(?:standby|vrrp|glbp)(?: \d+)? authentication "
        r"(?!(?:md5|ietf-md5|key-chain|text) )" + _secret(),
    ),
    _rule(CISCO_LIKE, "nhrp authentication", _CMD + r"nhrp authentication " + _secret()),
    _rule(CISCO_LIKE, "wpa-psk", _CMD + r"wpa-psk (?:ascii|hex) " + _TYPED),
    # 9800 WLAN "security wpa psk set-key ascii|hex 0|8 <value>", multi-PSK
    # "priority n set-key ascii 0 <value>".
    _rule(CISCO_LIKE, "set-key", _CMD + r"set-key (?:ascii|hex) " + _TYPED),
    # Autonomous AP WEP key: "encryption [vlan n] key n size 128bit [type] <hex> ...".
    _rule(
        CISCO_LIKE,
        "encryption",
        _CMD + r"encryption (?:vlan \d+ )?key \d+ size \S+ "
        + _type_unless("transmit-key") + _secret(),
    ),
    _rule(
        CISCO_LIKE,
        "ah-md5",
        _CMD + r"hello-authentication ah-md5 " + _TYPED,
    ),
    # NX-OS BFD "authentication keyed-sha1 key-id n key|hex-key <value>".
    _rule(CISCO_LIKE, "key-id", _CMD + r"key-id \d+ (?:hex-key|key) " + _secret()),
    # NX-OS MACsec key chains: "key-octet-string [type] <cak> [cryptographic-algorithm x]".
    _rule(CISCO_LIKE, "key-octet-string", _CMD + r"key-octet-string "
        + _type_unless("cryptographic-algorithm ") + _secret()),
    # TrustSec SXP default password; "cts credentials id <id> password <value>".
    _rule(
        CISCO_LIKE,
        "password",
        _CMD + r"(?:cts sxp default|cts credentials id \S+) password " + _TYPED,
    ),
    # Smart Licensing tokens: "license smart register|trust idtoken <token> ...".
    _rule(CISCO_LIKE, "idtoken", _CMD + r"idtoken " + _secret()),
    _rule(CISCO_LIKE, "community-map", _CMD + r"snmp mib community-map " + _secret()),
    # EEM variables whose name says they hold a secret (scripts read them as $_name).
    _rule(
        CISCO_LIKE,
        "event manager environment",
        _CMD + r"event manager environment "
        r"(?=\S*(?:pass|pw|secret|key|communit|psk|cred|token|auth))\S+ " + _secret(_REST),
    ),
    _rule(
        CISCO_LIKE,
        "crypto key",
        _cmd_once(r"crypto key (?:import|export) rsa ")
        + r"(?:[^\r\n]*? )?(?:3des|des|aes|terminal|url \S+) "
        + _secret() + _EOL,
    ),
    _rule(CISCO_LIKE, "shared-secret", _CMD + r"cable shared-secret (?:[0-9] )?" + _secret()),
    _rule(CISCO_LIKE, "ldap-login-password", _CMD + r"ldap-login-password " + _secret()),
    _rule(
        CISCO_LIKE,
        "digest secret",
        _CMD + r"digest secret (?:[0-9] (?!hash \S+" + _EOL + "))?" + _secret(),
    ),
    # EOS TerminAttr "-cvauth=key,<value>" in "daemon TerminAttr" exec lines.
    _rule(CISCO_LIKE, "auth=key,", r"auth=key," + _secret(r"[^\s,]+")),
    # NTP: IOS and NX-OS put the type after the key ("md5 <x> 7"), EOS before it
    # ("md5 7 <x>"). A leading digit counts as the EOS type only if one token follows and
    # that token is not itself a lone digit, so "md5 3 7" stays the IOS reading (key 3).
    _rule(
        CISCO_LIKE,
        "ntp authentication-key",
        _CMD + r"s?ntp authentication-key \d+ (?!type )\S+ "
        rf"(?:(?:[0-9]|8a) (?=\S+{_EOL})(?![0-9]{_EOL}))?" + _secret(),
    ),
    # EOS "management security / session shared-secret profile": "secret <id> <type>
    # <value> receive-lifetime ... transmit-lifetime ...".
    _rule(
        CISCO_LIKE,
        "secret",
        r"^[ \t]*secret \d+ [0-9] " + _secret() + r"(?= (?:receive|transmit)-lifetime)",
    ),
    # Catch-all: any "secret/password <type> <value>" not covered above (the EOS
    # "secret <id> <type> <value> ...-lifetime" is the rule above).
    _rule(
        CISCO_LIKE,
        ("secret", "password"),
        _CMD + r"(?:secret|password) (?:10|[0-9]|sha512) "
        r"(?![0-9] \S+ (?:receive|transmit)-lifetime)" + _secret(),
    ),
    _rule(CISCO_LIKE, ("key 6", "key 7"), _CMD + r"key [67] " + _secret()),
    # --- every platform ---
    # Unix crypt hashes ($1$ md5, $5$/$6$ sha, $8$ pbkdf2, $9$ scrypt / Junos) are
    # worth hiding wherever they show up: a hash can be cracked offline.
    _rule(
        ALL,
        ("$1$", "$5$", "$6$", "$8$", "$9$"),
        r'(?<![^\s"])' + _secret(r'\$(?:1|5|6|8|9)\$[^\s";]+'),
    ),
    # Credentials in URLs: "copy ftp://user:pass@host/...", archive paths.
    _rule(ALL, "://", r"[a-z][a-z0-9+.-]*://[^\s/:@]+:" + _secret(r"[^\s@/]+") + r"@"),
)

# Private keys span lines, so they are redacted on the whole text, body line by line
# (line count kept). A truncated block (no END line) is redacted to the end.
_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?P<secret>.*?)(?=-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)

# Every needle contains one of these. A line with none of them (interface addressing,
# routing, ACLs: most of a config) skips every rule after these substring tests, which
# is what keeps redact() fast; a case-insensitive regex alternation of the same words
# was several times slower, and testing all ~60 needles on every line twice as slow.
_GATES = (
    "key", "pass", "secret", "communit", "auth", "server", "enable", "username",
    "standby", "vrrp", "glbp", "psk", "md5", "ascii", "hex", "$", "://", "environment",
    "encryption", "trap-group", "token",
)
_UNGATED = sorted({n for r in _LINE_RULES for n in r.needles if not any(g in n for g in _GATES)})
if _UNGATED:  # a rule nothing could wake would silently never run
    raise RuntimeError(f"redaction needles outside every gate: {_UNGATED}")
_LINE_VALUE = re.compile(r"[^\r\n]+")


def _masked(value: str) -> str:
    if "\n" in value:
        return _LINE_VALUE.sub(REDACTED, value)
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return f'"{REDACTED}"'
    return REDACTED


def _mask(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    offset = match.start()
    whole = match.group(0)
    return whole[: start - offset] + _masked(match.group("secret")) + whole[end - offset :]


def _redact_line(line: str, patterns: list[re.Pattern[str]]) -> str:
    """Apply each pattern once to ``line``, the leftmost command first.

    A secret may hold another rule's keyword ("crypto isakmp key 0 SERVER-KEY address
    ..." holds "server-key"): redacting the leftmost command first removes that
    secret, keyword and all, before any rule can read it as a command of its own. Ties
    go to table order, which is how "auth" is redacted before "priv" on one
    "snmp-server user" line.
    """
    while patterns:
        matching: list[re.Pattern[str]] = []
        best, best_head = -1, len(line) + 1
        for pattern in patterns:
            match = pattern.search(line)
            if match is None:
                # Dropped: only redaction happens below, which cannot make a
                # command appear where there was none.
                continue
            head = match.start("head") if "head" in pattern.groupindex else match.start()
            if head < best_head:
                best, best_head = len(matching), head
            matching.append(pattern)
        if best < 0:
            break
        line = matching.pop(best).sub(_mask, line)
        patterns = matching
    return line


@lru_cache(maxsize=64)
def _rules_for(platform: str | None) -> tuple[_Rule, ...]:
    # An unknown platform name gets every rule: over-redacting is the safe mistake.
    name = platform.lower() if platform else None
    if name is not None and name not in ALL:
        name = None
    return tuple(r for r in _LINE_RULES if name is None or name in r.platforms)


_NeedleIndex = tuple[tuple[str, tuple[tuple[str, frozenset[int]], ...]], ...]


@lru_cache(maxsize=64)
def _needle_index(platform: str | None) -> _NeedleIndex:
    """Per gate, its needles, each with the positions (in _rules_for order) of the
    rules it wakes."""
    positions: dict[str, set[int]] = {}
    for position, rule in enumerate(_rules_for(platform)):
        for needle in rule.needles:
            positions.setdefault(needle, set()).add(position)
    index = (
        (gate, tuple((n, frozenset(p)) for n, p in positions.items() if gate in n))
        for gate in _GATES
    )
    # A gate none of this platform's needles holds is not worth testing on every line.
    return tuple((gate, needles) for gate, needles in index if needles)


def redaction_patterns(platform: str | None = None) -> list[re.Pattern[str]]:
    """The patterns redact() applies for ``platform`` (None or unknown = all), in order.

    Each has a ``secret`` group. Substituting that group's span in each pattern's
    matches, one pattern after another, gives redact()'s result on ordinary configs;
    redact() also takes the leftmost command of a line first, so that a secret holding
    another rule's keyword cannot mislead it. The last pattern (private key blocks) is
    the only multi-line one.
    """
    return [*(r.pattern for r in _rules_for(platform)), _PEM]


def redact(text: str, platform: str | None = None) -> str:
    """Replace every secret value in ``text`` by REDACTED, keeping everything else.

    ``platform`` is a netmiko-style name ("cisco_iosxe", "cisco_nxos", "arista_eos",
    "juniper_junos"...); None applies every platform's rules (for chat text and output
    whose origin is unknown). Line count and all non-secret bytes are preserved.
    """
    rules = _rules_for(platform)
    gates = _needle_index(platform)
    # Split on "\n" only: "\r" stays on its line, so CRLF text comes back byte for byte.
    lines = text.split("\n")
    for index, line in enumerate(lines):
        lowered = line.lower()
        woken: set[int] = set()
        for gate, needles in gates:
            if gate in lowered:
                for needle, positions in needles:
                    if needle in lowered:
                        woken |= positions
        if woken:
            # A substitution only removes text: no rule is woken by another's output.
            lines[index] = _redact_line(line, [rules[p].pattern for p in sorted(woken)])
    result = "\n".join(lines)
    if "PRIVATE KEY-----" in result:
        result = _PEM.sub(_mask, result)
    return result
