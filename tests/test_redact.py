"""Secret redaction: every planted secret goes, every other byte stays.

Secrets are written in templates as {{value}}: the config fed to redact() has the value,
the expected output has REDACTED in its place (quotes around it stay), so each test
compares whole texts and a single changed byte anywhere fails it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chatbot.redact import REDACTED, redact, redaction_patterns

_MARK = re.compile(r"\{\{(.*?)\}\}")


def _plain(template: str) -> str:
    return _MARK.sub(lambda m: m.group(1), template)


def _expected(template: str) -> str:
    return _MARK.sub(REDACTED, template)


def _planted(template: str) -> list[str]:
    return _MARK.findall(template)


# A realistic IOS-XE running config with every secret kind we cover, each with a value
# that appears nowhere else, next to look-alike lines that must not change.
IOS_XE_CONFIG = """\
Building configuration...

Current configuration : 9876 bytes
!
! Last configuration change at 10:11:12 UTC Mon Jan 6 2025 by admin
!
version 17.9
service timestamps debug datetime msec
service timestamps log datetime msec
service password-encryption
no service password-recovery
platform qfp utilization monitor load 80
!
hostname r1
!
boot-start-marker
boot-end-marker
!
enable secret 9 {{$9$Plant3d-EnableSecret9$QWxzb/2.Zm9v=}}
enable password 7 {{Plant3d-EnablePw7}}
!
aaa new-model
aaa group server tacacs+ TACACS-GRP
 server name TAC1
aaa authentication login default group tacacs+ local
aaa authorization exec default group tacacs+ local
aaa server radius dynamic-author
 client 10.0.0.40 server-key 7 {{Plant3d-DynAuthKey}}
!
key config-key password-encrypt {{Plant3d-MasterKey}}
password encryption aes
!
username admin privilege 15 secret 9 {{$9$Plant3d-AdminScrypt$abc.def/ghi=}}
username netops privilege 15 secret 5 {{$1$Plant3d-Md5$Xy.z/}}
username legacy password 7 {{Plant3d-Legacy7}}
username plain password 0 {{Plant3d-Plain With Spaces}}
username backup algorithm-type scrypt secret {{Plant3d-Scrypt-Plain}}
username nopw nopassword
!
ip domain name example.net
ip ssh version 2
ip ftp username archive
ip ftp password 7 {{Plant3d-FtpPw}}
ip http client password 0 {{Plant3d-HttpClientPw}}
!
key chain OSPF-KC
 key 1
  key-string 7 {{Plant3d-KeyString7}}
  cryptographic-algorithm hmac-sha-256
 key 2
  key-string {{Plant3d-KeyStringPlain}}
key chain EIGRP-KC
 key 10
  key-string 7 {{Plant3d-EigrpKey}}
!
crypto keyring KR-BRANCH
 pre-shared-key address 192.0.2.10 key {{Plant3d-KeyringPsk}}
 pre-shared-key address 192.0.2.11 255.255.255.255 key 6 {{Plant3d-KeyringPsk6}}
!
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key 6 {{Plant3d-IsakmpKey6}} address 192.0.2.20
crypto isakmp key {{Plant3d-IsakmpKey0}} address 192.0.2.21 no-xauth
!
crypto ikev2 keyring IKEV2-KR
 peer HUB
  address 192.0.2.30
  pre-shared-key local {{Plant3d-Ikev2Local}}
  pre-shared-key remote 6 {{Plant3d-Ikev2Remote6}}
!
crypto ikev2 profile IKEV2-PROF
 match identity remote address 192.0.2.30 255.255.255.255
 authentication remote pre-share key {{Plant3d-Ikev2ProfKey}}
 authentication local pre-share
 keyring local IKEV2-KR
!
crypto pki trustpoint TP-self-signed-1234
 enrollment selfsigned
 revocation-check none
!
interface GigabitEthernet0/0/0
 description password change window
 ip address 10.1.1.1 255.255.255.0
 ip ospf authentication message-digest
 ip ospf message-digest-key 1 md5 7 {{Plant3d-OspfMd5Key}}
 standby 1 ip 10.1.1.254
 standby 1 authentication md5 key-string 7 {{Plant3d-HsrpKey}}
 negotiation auto
!
interface GigabitEthernet0/0/1
 description key-string docs, see wiki
 ip address 10.1.2.1 255.255.255.0
 ip ospf authentication-key 7 {{Plant3d-OspfAuthKey}}
 ip authentication mode eigrp 100 md5
 ip authentication key-chain eigrp 100 EIGRP-KC
 vrrp 2 authentication text {{Plant3d-VrrpText}}
!
interface Dialer1
 encapsulation ppp
 ppp chap hostname r1-dsl
 ppp chap password 7 {{Plant3d-PppChap}}
 ppp pap sent-username r1-dsl password 0 {{Plant3d-PppPap}}
!
interface Tunnel10
 ip nhrp authentication {{Plant3d-Nhrp}}
 tunnel key 100
!
interface Dot11Radio0
 ssid CORP
  authentication key-management wpa
  wpa-psk ascii 0 {{Plant3d-WpaPsk}}
!
router ospf 1
 area 0 authentication message-digest
 area 1 virtual-link 10.255.255.2 authentication-key {{Plant3d-VlinkAuthKey}}
 area 1 virtual-link 10.255.255.3 message-digest-key 1 md5 {{Plant3d-VlinkMd5}}
 network 10.0.0.0 0.255.255.255 area 0
!
router bgp 65000
 bgp log-neighbor-changes
 neighbor 10.0.0.2 remote-as 65001
 neighbor 10.0.0.2 password 7 {{Plant3d-BgpPw7}}
 neighbor 10.0.0.3 remote-as 65002
 neighbor 10.0.0.3 password {{Plant3d-BgpPwPlain}}
!
ip access-list extended MGMT
 10 remark password reset jump host
 20 permit tcp host 10.9.9.9 any eq 22
!
snmp-server engineID local 800000090300AABBCCDDEEFF
snmp-server community {{Plant3d-Community-RO}} RO 10
snmp-server community {{Plant3d-Community-RW}} RW SNMP-ACL
snmp-server location DC1 row 4
snmp-server user v3user V3GROUP v3 auth sha {{Plant3d-SnmpAuth}} priv aes 128 {{Plant3d-SnmpPriv}}
snmp-server enable traps snmp authentication linkdown linkup
snmp-server host 10.0.0.50 version 2c {{Plant3d-TrapCommunity}}
snmp-server host 10.0.0.51 vrf Mgmt-intf version 2c {{Plant3d-TrapVrf}} config bgp
snmp-server host 10.0.0.52 version 3 priv v3user
!
tacacs-server host 10.0.0.60 key 7 {{Plant3d-TacHostKey}}
tacacs-server key {{Plant3d-TacGlobalKey}}
tacacs server TAC1
 address ipv4 10.0.0.61
 key 7 {{Plant3d-TacBlockKey}}
 timeout 5
radius-server host 10.0.0.70 auth-port 1645 acct-port 1646 key 7 {{Plant3d-RadHostKey}}
radius-server key 0 {{Plant3d-RadGlobalKey}}
radius server RAD1
 address ipv4 10.0.0.71 auth-port 1812 acct-port 1813
 key {{Plant3d-RadBlockKey}}
!
ntp authentication-key 1 md5 {{Plant3d-NtpKey}} 7
ntp authenticate
ntp trusted-key 1
ntp server 10.0.0.80 key 1
!
archive
 path ftp://backup:{{Plant3d-UrlPw}}@10.0.0.90/r1-config
!
banner motd ^C
Authorized access only. Your password is your responsibility.
^C
!
line con 0
 password 7 {{Plant3d-ConPw}}
 logging synchronous
line vty 0 4
 exec-timeout 15 0
 password {{Plant3d-VtyPw}}
 transport input ssh
!
end
"""


def test_every_planted_secret_goes_and_every_other_byte_stays() -> None:
    config = _plain(IOS_XE_CONFIG)
    result = redact(config, "cisco_iosxe")

    assert result == _expected(IOS_XE_CONFIG)
    assert "Plant3d" not in result
    # The same on a per-line view, for a readable failure message.
    for template, line in zip(
        IOS_XE_CONFIG.splitlines(), result.splitlines(), strict=True
    ):
        if not _planted(template):
            assert line == template


def test_config_secrets_counted() -> None:
    # Guards the fixture itself: a secret kind dropped from it would go unnoticed.
    planted = _planted(IOS_XE_CONFIG)
    assert len(planted) == 49
    assert len(set(planted)) == len(planted)  # unique, so each can be traced


@pytest.mark.parametrize("platform", [None, "cisco_ios", "cisco_iosxe", "no_such_os"])
def test_config_any_cisco_platform(platform: str | None) -> None:
    assert redact(_plain(IOS_XE_CONFIG), platform) == _expected(IOS_XE_CONFIG)


def test_crlf_text_is_kept_byte_for_byte() -> None:
    config = _plain(IOS_XE_CONFIG).replace("\n", "\r\n")
    expected = _expected(IOS_XE_CONFIG).replace("\n", "\r\n")
    assert redact(config, "cisco_iosxe") == expected


def test_idempotent_on_config() -> None:
    once = redact(_plain(IOS_XE_CONFIG))
    assert redact(once) == once


def test_patterns_applied_in_order_give_redact() -> None:
    # redaction_patterns() promises: substitute each pattern's "secret" span in turn.
    def mask(m: re.Match[str]) -> str:
        value = m.group("secret")
        quoted = len(value) >= 2 and value[0] == value[-1] == '"'
        if "\n" in value:
            new = re.sub(r"[^\r\n]+", REDACTED, value)
        else:
            new = f'"{REDACTED}"' if quoted else REDACTED
        s, e = m.span("secret")
        return m.group(0)[: s - m.start()] + new + m.group(0)[e - m.start() :]

    text = _plain(IOS_XE_CONFIG) + PEM_KEY
    for pattern in redaction_patterns("cisco_iosxe"):
        assert "secret" in pattern.groupindex
        text = pattern.sub(mask, text)
    assert text == redact(_plain(IOS_XE_CONFIG) + PEM_KEY, "cisco_iosxe")


def test_platform_selects_patterns() -> None:
    everything = redaction_patterns(None)
    junos = redaction_patterns("juniper_junos")
    ios = redaction_patterns("cisco_iosxe")
    assert set(junos) < set(everything) and set(ios) < set(everything)
    assert redaction_patterns("no_such_os") == everything
    assert redaction_patterns("CISCO_IOSXE") == ios


# (platform, template): each line alone, for every rule and platform form.
CASES: list[tuple[str, str]] = [
    # IOS / IOS-XE
    ("cisco_iosxe", "enable secret 9 {{$9$nhEmQVczB7dqsO$X.HsgL6x1il0RxkOSSvyQYwucySCt7qF}}"),
    ("cisco_iosxe", "enable secret 5 {{$1$mERr$hx5rVt7rPNoS4wqbXKX7m0}}"),
    ("cisco_iosxe", "enable secret 8 {{$8$dsYGNam3K1SIJO$7nv/35M/qr6t.dVc7UY9zrJDWRVq}}"),
    ("cisco_iosxe", "enable secret 0 {{Plain-Enable}}"),
    ("cisco_iosxe", "enable secret {{Plain-Enable}}"),
    ("cisco_iosxe", "enable secret level 5 5 {{$1$abcd$efgh}}"),
    ("cisco_iosxe", "enable password 7 {{0822455D0A16}}"),
    ("cisco_iosxe", "enable password {{my enable pass}}"),
    ("cisco_iosxe", "username bob privilege 15 secret 9 {{$9$a/b.c=d}}"),
    ("cisco_iosxe", "username bob secret 8 {{$8$x$y}}"),
    ("cisco_iosxe", "username carol password 7 {{070C285F4D06}}"),
    ("cisco_iosxe", "username dave password 0 {{dave pass}}"),
    ("cisco_iosxe", "username eve password {{eve=pass}}"),
    ("cisco_iosxe", "username password secret 5 {{user-called-password}}"),
    ("cisco_iosxe", "snmp-server community {{Comm-RO}} RO"),
    ("cisco_iosxe", "snmp-server community {{Comm-RW}} RW 99"),
    ("cisco_iosxe", "snmp-server community {{Comm.View}} view V1 RO SNMP-ACL"),
    ("cisco_iosxe", "snmp-server host 10.0.0.9 {{V1Comm}}"),
    ("cisco_iosxe", "snmp-server host 10.0.0.9 version 2c {{V2Comm}}"),
    ("cisco_iosxe", "snmp-server host 10.0.0.9 informs version 2c {{InfComm}} bgp"),
    ("cisco_iosxe", "snmp-server host 10.0.0.9 vrf MGMT version 2c {{VrfComm}}"),
    ("cisco_iosxe", "snmp-server user u G v3 auth sha {{AuthPw}} priv aes 128 {{PrivPw}}"),
    ("cisco_iosxe", "snmp-server user u G v3 auth md5 {{AuthPw}} priv des {{PrivPw}} access 10"),
    ("cisco_iosxe", "  key-string 7 {{01100F175804}}"),
    ("cisco_iosxe", "  key-string {{plain key string}}"),
    ("cisco_iosxe", " key 7 {{0822455D0A16}}"),
    ("cisco_iosxe", " key 0 {{tacacs plain}}"),
    ("cisco_iosxe", " key 6 {{AES$Key$Here==}}"),
    ("cisco_iosxe", " key {{TacBlock}}"),
    ("cisco_iosxe", "tacacs-server host 10.0.0.5 key 7 {{TacHost7}}"),
    ("cisco_iosxe", "tacacs-server host 10.0.0.5 port 49 timeout 5 key {{TacHostPlain}}"),
    ("cisco_iosxe", "tacacs-server key 7 {{TacGlobal7}}"),
    ("cisco_iosxe", "tacacs-server key {{tac global with spaces}}"),
    ("cisco_iosxe", "radius-server host 10.0.0.6 auth-port 1645 acct-port 1646 key 7 {{RadHost}}"),
    ("cisco_iosxe", "radius-server key {{RadGlobal}}"),
    ("cisco_iosxe", " client 10.0.0.40 server-key {{DynAuth}}"),
    ("cisco_iosxe", "crypto isakmp key 0 {{Isakmp0}} address 192.0.2.1"),
    ("cisco_iosxe", "crypto isakmp key {{Isa/kmp.=}} address 192.0.2.1 255.255.255.255"),
    ("cisco_iosxe", "crypto isakmp key {{IsakmpHost}} hostname peer.example.net"),
    ("cisco_iosxe", "crypto isakmp key 6 {{Isakmp6}} address ipv6 2001:db8::1/128"),
    ("cisco_iosxe", " pre-shared-key address 192.0.2.2 key {{KeyringPsk}}"),
    ("cisco_iosxe", " pre-shared-key hostname peer.example.net key 0 {{KeyringHost}}"),
    ("cisco_iosxe", "  pre-shared-key {{Ikev2Both}}"),
    ("cisco_iosxe", "  pre-shared-key remote 6 {{Ikev2Remote}}"),
    ("cisco_iosxe", " authentication local pre-share key {{ProfLocal}}"),
    ("cisco_iosxe", " authentication remote pre-share key 6 {{ProfRemote6}}"),
    ("cisco_iosxe", " neighbor 10.0.0.2 password 7 {{BgpPw7}}"),
    ("cisco_iosxe", " neighbor PEERS password 0 {{bgp plain pw}}"),
    ("cisco_iosxe", "mpls ldp neighbor 10.0.0.2 password {{LdpPw}}"),
    ("cisco_iosxe", " ip ospf authentication-key 7 {{OspfAk}}"),
    ("cisco_iosxe", " ip ospf authentication-key {{OspfAkPlain}}"),
    ("cisco_iosxe", " ip ospf message-digest-key 1 md5 7 {{OspfMd7}}"),
    ("cisco_iosxe", " ip ospf message-digest-key 2 md5 {{OspfMdPlain}}"),
    ("cisco_iosxe", " area 0 virtual-link 10.0.0.9 authentication-key {{VlAk}}"),
    ("cisco_iosxe", " area 0 virtual-link 10.0.0.9 message-digest-key 1 md5 {{VlMd}}"),
    ("cisco_iosxe", " ipv6 ospf authentication ipsec spi 500 sha1 {{0123456789ABCDEF0123}}"),
    ("cisco_iosxe", "  authentication mode hmac-sha-256 7 {{EigrpSha}}"),
    ("cisco_iosxe", "ntp authentication-key 1 md5 {{NtpKey}} 7"),
    ("cisco_iosxe", "ntp authentication-key 2 md5 {{NtpPlain}}"),
    ("cisco_iosxe", "ntp authentication-key 3 md5 {{3}} 7"),
    ("cisco_iosxe", " password 7 {{VtyPw7}}"),
    ("cisco_iosxe", " password {{vty plain}}"),
    ("cisco_iosxe", " ppp chap password 7 {{Chap7}}"),
    ("cisco_iosxe", " ppp pap sent-username r1 password 0 {{Pap0}}"),
    ("cisco_iosxe", "  wpa-psk ascii 0 {{WpaPsk}}"),
    ("cisco_iosxe", "  wpa-psk ascii {{WpaPlain}}"),
    ("cisco_iosxe", "ip ftp password {{FtpPw}}"),
    ("cisco_iosxe", "ip ftp password 7 {{Ftp7}}"),
    ("cisco_iosxe", "vtp password {{VtpPw}}"),
    ("cisco_iosxe", " isis password {{IsisPw}} level-2"),
    ("cisco_iosxe", " area-password {{AreaPw}}"),
    ("cisco_iosxe", " domain-password {{DomainPw}}"),
    ("cisco_iosxe", " standby 1 authentication {{HsrpText}}"),
    ("cisco_iosxe", " standby 1 authentication text {{HsrpText2}}"),
    ("cisco_iosxe", " standby 1 authentication md5 key-string {{HsrpMd5}} timeout 30"),
    ("cisco_iosxe", " vrrp 1 authentication text {{VrrpText}}"),
    ("cisco_iosxe", " ip nhrp authentication {{NhrpKey}}"),
    ("cisco_iosxe", "key config-key password-encrypt {{MasterKey}}"),
    ("cisco_iosxe", "r1(config)#enable secret {{EchoedSecret}}"),
    ("cisco_iosxe", "some future command secret 9 {{$9$catch/all}}"),
    ("cisco_iosxe", "some future command password 6 {{CatchAll6}} option"),
    ("cisco_iosxe", "ldap-server rootdn cn=admin password 7 {{LdapPw}}"),
    ("cisco_iosxe", "copy ftp://admin:{{Url:Pw}}@10.0.0.1/r1.cfg flash:"),
    ("cisco_iosxe", "Community name: {{ShowSnmpComm}}"),
    ("cisco_iosxe", "Community SecurityName: {{ShowSnmpComm}}"),
    ("cisco_iosxe", 'tacacs-server key "{{quoted key}}"'),
    # NX-OS
    ("cisco_nxos", "username admin password 5 {{$5$Plant$Abc/def.}}  role network-admin"),
    ("cisco_nxos", "username ops password 5 {{!}}  role network-operator"),
    (
        "cisco_nxos",
        "snmp-server user admin network-admin auth md5 {{0x8f1a}} priv {{0x77aa}} localizedkey",
    ),
    ("cisco_nxos", "snmp-server user ops auth sha-256 {{ShaPw}} priv aes-128 {{AesPw}}"),
    ("cisco_nxos", "snmp-server community {{NxComm}} group network-operator"),
    ("cisco_nxos", "snmp-server host 10.0.0.9 traps version 2c {{NxTrap}} udp-port 162"),
    ('cisco_nxos', 'tacacs-server key 7 "{{NxTac7}}"'),
    ('cisco_nxos', 'tacacs-server host 10.0.0.5 key 7 "{{NxTacHost}}"'),
    ('cisco_nxos', 'radius-server key 7 "{{NxRad}}"'),
    ('cisco_nxos', 'radius-server host 10.0.0.6 key 7 "{{NxRadHost}}" authentication accounting'),
    ("cisco_nxos", "    key-string 7 {{NxKs7}}"),
    ("cisco_nxos", "    key-string {{NxKsPlain}}"),
    ("cisco_nxos", "    password 3 {{NxBgp3}}"),
    ("cisco_nxos", "  neighbor 10.0.0.2 password 3 {{NxBgpInline}}"),
    ("cisco_nxos", "  ip ospf authentication-key 3 {{NxOspf}}"),
    ("cisco_nxos", "  ip ospf message-digest-key 1 md5 3 {{NxOspfMd}}"),
    ("cisco_nxos", "ntp authentication-key 42 md5 {{NxNtp}} 7"),
    ("cisco_nxos", "    authentication text {{NxHsrpText}}"),
    ("cisco_nxos", "    authentication md5 key-string {{NxHsrpMd5}}"),
    # EOS
    ("arista_eos", "username admin privilege 15 role network-admin secret sha512 {{$6$s$E.H/}}"),
    ("arista_eos", "username admin secret sha512 {{$6$salt$Eos2}}"),
    ("arista_eos", "username ops secret 0 {{eos plain}}"),
    ("arista_eos", "enable password sha512 {{$6$en$able}}"),
    ("arista_eos", "enable secret sha512 {{$6$en$sec}}"),
    ("arista_eos", "aaa root secret sha512 {{$6$root$hash}}"),
    ("arista_eos", "snmp-server community {{EosComm}} ro"),
    ("arista_eos", "snmp-server community {{EosCommAcl}} rw ACL-SNMP"),
    ("arista_eos", "tacacs-server host 10.0.0.5 vrf MGMT key 7 {{EosTac}}"),
    ("arista_eos", "   neighbor 10.0.0.2 password 7 {{EosBgp}}"),
    ("arista_eos", "   ip ospf message-digest-key 1 md5 7 {{EosOspf}}"),
    ("arista_eos", "ntp authentication-key 1 md5 7 {{EosNtp}}"),
    ("arista_eos", "ntp authentication-key 2 sha1 0 {{EosNtpPlain}}"),
    # Junos
    ("juniper_junos", '        encrypted-password "{{$6$abc$Junos.Hash/}}"; ## SECRET-DATA'),
    ("juniper_junos", '    secret "{{$9$Abc/Def.=}}"; ## SECRET-DATA'),
    ("juniper_junos", '    authentication-key "{{$9$BgpKey}}"; ## SECRET-DATA'),
    ("juniper_junos", '    pre-shared-key ascii-text "{{$9$PskKey}}"; ## SECRET-DATA'),
    ("juniper_junos", '    pre-shared-key hexadecimal "{{$9$HexKey}}"; ## SECRET-DATA'),
    ("juniper_junos", '    simple-password "{{$9$Simple}}"; ## SECRET-DATA'),
    ("juniper_junos", '        md5 1 key "{{$9$OspfMd5}}"; ## SECRET-DATA'),
    ("juniper_junos", '                secret "{{$9$ChainKey}}"; ## SECRET-DATA'),
    ("juniper_junos", "    authentication-key {{unquoted}};"),
    ("juniper_junos", 'set system root-authentication encrypted-password "{{$6$set$form}}"'),
    ("juniper_junos", 'set protocols bgp group EBGP authentication-key "{{$9$SetBgp}}"'),
    ("juniper_junos", "set snmp community {{JunosComm}} authorization read-only"),
    ("juniper_junos", "    community {{JunosComm2}} {"),
    ("juniper_junos", "    community {{JunosComm3}};"),
    # every platform
    ("cisco_iosxe", "some unknown line {{$1$abcd$efghijkl}} end"),
    ("juniper_junos", "any line with a hash {{$9$qwerty}}"),
]


def _load_corpus(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(platform, template) lines and "[keep]" lines of a corpus file (format in its head)."""
    cases: list[tuple[str, str]] = []
    keep: list[str] = []
    section: str | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section is None:
            raise ValueError(f"{path.name}:{number}: line before any [section]")
        if section == "keep":
            keep.append(line)
        elif not _planted(line):
            raise ValueError(f"{path.name}:{number}: no {{{{secret}}}} in a [{section}] line")
        else:
            cases.append((section, line))
    return cases, keep


CORPUS_CASES, CORPUS_KEEP = _load_corpus(Path(__file__).with_name("redaction_corpus.txt"))
CASES += CORPUS_CASES


def test_corpus_covers_every_platform() -> None:
    # Guards the corpus file itself: a section lost in an edit would go unnoticed.
    per_platform = {p: sum(len(_planted(t)) for q, t in CORPUS_CASES if q == p)
                    for p in ("cisco_iosxe", "cisco_nxos", "arista_eos", "juniper_junos")}
    assert per_platform == {"cisco_iosxe": 124, "cisco_nxos": 22, "arista_eos": 25, "juniper_junos": 37}
    assert len(CORPUS_KEEP) > 100
    values = [v for _, t in CORPUS_CASES for v in _planted(t)]
    assert len(values) == len(set(values))


def _case_id(case: tuple[str, str]) -> str:
    return f"{case[0]}:{case[1].strip()[:40]}"


@pytest.mark.parametrize("platform, template", CASES, ids=[_case_id(c) for c in CASES])
def test_rule_redacts_only_the_value(platform: str, template: str) -> None:
    line = _plain(template)
    expected = _expected(template)
    assert redact(line, platform) == expected
    assert redact(expected, platform) == expected
    # All platforms at once (chat text): same result, structure kept, with one known
    # exception: an unquoted Junos value also meets the Cisco rule, which takes the
    # rest of the line and so the ';' too (Junos shows secrets quoted in practice).
    if template.endswith("{{unquoted}};"):
        assert redact(line, None) == expected.removesuffix(";")
    else:
        assert redact(line, None) == expected


@pytest.mark.parametrize("platform, template", CASES, ids=[_case_id(c) for c in CASES])
def test_rule_in_crlf_text(platform: str, template: str) -> None:
    text = f"before\r\n{_plain(template)}\r\nafter\r\n"
    assert redact(text, platform) == f"before\r\n{_expected(template)}\r\nafter\r\n"


NOT_SECRETS = [
    " description password change window",
    " description key-string docs",
    " description enable secret 5 rotation on Friday",
    "  description tacacs-server key rollover",
    " 10 remark password 7 reset host",
    "service password-encryption",
    "no service password-recovery",
    "password encryption aes",
    "password strength-check",
    "no password strength-check",
    "security passwords min-length 10",
    "aaa authentication login default group tacacs+ local",
    "aaa authentication enable default group tacacs+ enable",
    "aaa authorization exec default group tacacs+ local if-authenticated",
    "ip ssh version 2",
    "ip ssh pubkey-chain",
    "  key-hash ssh-rsa 8FB4F858DD7E5AFB372780EC653DB371",
    "  key-string",
    "key chain OSPF-KC",
    " key 1",
    "  key 2147483647",
    " key chain EIGRP",
    "crypto key generate rsa modulus 2048",
    " tunnel key 100",
    " ip ospf authentication message-digest",
    " ip ospf authentication key-chain KC",
    " ip authentication key-chain eigrp 100 KC",
    " authentication key-chain KC",
    " standby 1 authentication md5 key-chain KC",
    " authentication pre-share",
    " authentication remote pre-share",
    "snmp-server enable traps snmp authentication linkdown linkup",
    "snmp-server host 10.0.0.9 version 3 priv v3user",
    "snmp-server host 10.0.0.9 version 3 auth v3user",
    "snmp-server host 10.0.0.9 use-vrf management",
    "snmp-server location password lane",
    "username bob nopassword",
    "username bob privilege 15",
    "tacacs server TAC1",
    "radius server RAD1",
    " address ipv4 10.0.0.6 auth-port 1812 acct-port 1813",
    "ntp authenticate",
    "ntp trusted-key 1",
    "ntp server 10.0.0.80 key 1",
    "enable",
    "r1#show running-config | include secret",
    "Type escape sequence to abort.",
    "interface GigabitEthernet0/0/1",
    "Community Index: cisco0",
    "    community-name rotation is monthly",
    "authentication-order [ radius password ];",
    "    community CUSTOMERS members 65000:100;",
    "    password {",
    "            key 0 {",
    "https://example.net/docs/password-policy",
    "price is $1 or $5, not $9",
    *CORPUS_KEEP,
]


@pytest.mark.parametrize("line", NOT_SECRETS)
@pytest.mark.parametrize(
    "platform", [None, "cisco_iosxe", "cisco_nxos", "arista_eos", "juniper_junos"]
)
def test_no_false_positive(line: str, platform: str | None) -> None:
    assert redact(line, platform) == line


def test_quoted_value_keeps_quotes_and_rest_of_line() -> None:
    line = 'radius-server host 10.0.0.6 key 7 "a b$c/d.e=f" authentication accounting'
    assert redact(line, "cisco_nxos") == (
        f'radius-server host 10.0.0.6 key 7 "{REDACTED}" authentication accounting'
    )


def test_plaintext_with_spaces_is_redacted_to_end_of_line() -> None:
    # IOS allows spaces in a plaintext key given last; none of it may survive.
    assert redact("tacacs-server key my key has spaces  ") == (
        f"tacacs-server key {REDACTED}  "
    )


def test_ntp_lone_digit_keys_take_the_ios_reading() -> None:
    # "md5 3 7" reads as IOS key "3", type 7; EOS "type 7, key 3" would be "md5 7 3",
    # which is genuinely ambiguous and also reads as IOS: key "7", type 3.
    prefix = "ntp authentication-key 1 md5"
    assert redact(f"{prefix} 3 7") == f"{prefix} {REDACTED} 7"
    assert redact(f"{prefix} 7 3") == f"{prefix} {REDACTED} 3"


@pytest.mark.parametrize(
    "template",
    [
        # Each secret is another rule's keyword: the leftmost command must win.
        "crypto isakmp key 0 {{SERVER-KEY}} address 192.0.2.1",
        "snmp-server community {{server-key}} RO",
        "snmp-server community {{key-string}} RW 10",
        "crypto isakmp key {{enable}} address 192.0.2.1",
        "snmp-server user u G v3 auth sha {{priv}} priv aes 128 {{auth}}",
    ],
)
def test_secret_that_reads_like_a_command(template: str) -> None:
    assert redact(_plain(template)) == _expected(template)


def test_description_keeps_words_but_not_hashes() -> None:
    line = " description old enable secret was $1$abcd$efgh"
    assert redact(line) == f" description old enable secret was {REDACTED}"


PEM_KEY = """\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun
VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK
-----END RSA PRIVATE KEY-----
"""


def test_private_key_block_body_is_redacted_line_by_line() -> None:
    text = "before\n" + PEM_KEY + "after\n"
    result = redact(text)
    assert result == (
        "before\n-----BEGIN RSA PRIVATE KEY-----\n"
        f"{REDACTED}\n{REDACTED}\n-----END RSA PRIVATE KEY-----\nafter\n"
    )
    assert redact(result) == result


def test_truncated_private_key_is_redacted_to_the_end() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3BlbnNzaC1rZXktdjEAAAAA\r\nAAAB"
    assert redact(text) == f"-----BEGIN OPENSSH PRIVATE KEY-----\r\n{REDACTED}\r\n{REDACTED}"


def test_certificates_are_public_and_kept() -> None:
    chain = (
        "crypto pki certificate chain TP-self-signed-1234\n"
        " certificate self-signed 01\n"
        "  3082032E 30820216 A0030201 02020101 300D0609 2A864886 F70D0101 05050030\n"
        "  \tquit\n"
    )
    assert redact(chain, "cisco_iosxe") == chain


def test_empty_and_plain_text() -> None:
    assert redact("") == ""
    assert redact("\n\n") == "\n\n"
    assert redact("ping 10.1.1.1 from r1") == "ping 10.1.1.1 from r1"


# --- property tests -------------------------------------------------------------------

# Values that are themselves a keyword a rule must not mistake for a secret. A rule
# can only tell them apart by position, so those few (absurd) secrets stay visible.
def _keyword_like(template: str, secret: str) -> bool:
    words = template.split()
    if words[0] == "key" and "{{" in template:  # "tacacs server" block key
        # a bare number is a key-chain key id ("key 1"), "key 0 {" a Junos key id
        return re.fullmatch(r"\{|chain|config-key|\d+", secret) is not None
    if words[0] == "password":  # global settings: "password encryption aes"...
        return re.fullmatch(
            r"\{|encryption|strength-check|policy|prompt|minimum|history", secret
        ) is not None
    if template.endswith("{{unquoted}};"):  # Junos must quote a value holding ';'
        return ";" in secret
    if template.startswith("snmp-server community 8 "):  # "8 RO": community "8"
        return re.fullmatch(r"(?i)(ro|rw|view|group)\b.*", secret) is not None
    if template.startswith("set ") or template.rstrip().endswith("{"):
        # Junos must quote a value holding ';' or starting with a bracket or brace
        return ";" in secret or secret[0] in "[]{}"
    return False


_NO_PROPERTY = {
    # the secret is the hash's own prefix: a random value is not a hash
    "some unknown line {{$1$abcd$efghijkl}} end",
    "any line with a hash {{$9$qwerty}}",
    # "md5 7 <digit>" is ambiguous (see test_ntp_lone_digit_keys_take_the_ios_reading)
    "ntp authentication-key 1 md5 7 {{EosNtp}}",
    "ntp authentication-key 2 sha1 0 {{EosNtpPlain}}",
    "ntp authentication-key 3 md5 0 {{CrpEosNtpPlain}}",
    # URL syntax: a password cannot hold '@' or '/' unescaped (separate test below)
    "copy ftp://admin:{{Url:Pw}}@10.0.0.1/r1.cfg flash:",
}
# Values inside a URL-like "user:pass@host" or a "-cvauth=key,<value>" option end at
# that syntax's delimiters ('@', '"', ','), so any value cannot be checked there either.
PROPERTY_CASES = [
    (p, t) for p, t in CASES if t not in _NO_PROPERTY and "}}@" not in t and "key,{{" not in t
]

_secrets = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
)


def _fill(template: str, secret: str) -> tuple[str, str]:
    """Template with its first secret replaced by ``secret``; and the expected skeleton."""
    first = _MARK.search(template)
    assert first is not None
    filled = template[: first.start()] + secret + template[first.end() :]
    skeleton = template[: first.start()] + REDACTED + template[first.end() :]
    return _plain(filled), _expected(skeleton)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(secret=_secrets)
@pytest.mark.parametrize(
    "platform, template", PROPERTY_CASES, ids=[_case_id(c) for c in PROPERTY_CASES]
)
def test_any_secret_value_is_removed(platform: str, template: str, secret: str) -> None:
    line, skeleton = _fill(template, secret)
    # A value that also occurs in the line's fixed text cannot be checked by absence.
    assume(secret not in skeleton)
    assume(not _keyword_like(template, secret))
    for chosen in (platform, None):
        result = redact(line, chosen)
        assert secret not in result
        assert result.count("\n") == line.count("\n")
        assert redact(result, chosen) == result


@settings(max_examples=200, deadline=None)
@given(user=st.from_regex(r"[a-z]{1,8}", fullmatch=True), secret=_secrets)
def test_url_password_is_removed(user: str, secret: str) -> None:
    assume("@" not in secret and "/" not in secret)
    result = redact(f"copy scp://{user}:{secret}@10.0.0.1/cfg flash:")
    assert result == f"copy scp://{user}:{REDACTED}@10.0.0.1/cfg flash:"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), platform=st.sampled_from([None, "cisco_iosxe", "juniper_junos"]))
def test_never_raises_keeps_lines_and_is_idempotent(text: str, platform: str | None) -> None:
    result = redact(text, platform)
    assert result.count("\n") == text.count("\n")
    assert redact(result, platform) == result


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from([_plain(t) for _, t in CASES] + NOT_SECRETS + ["", "!", " \r"]),
        max_size=30,
    )
)
def test_idempotent_on_mixed_text(lines: list[str]) -> None:
    text = "\n".join(lines)
    once = redact(text)
    assert redact(once) == once
    assert once.count("\n") == text.count("\n")


# --- speed ----------------------------------------------------------------------------


def _big_config(lines: int = 5000) -> str:
    secrets = _plain(IOS_XE_CONFIG).splitlines()
    block = [
        "interface GigabitEthernet1/0/{i}",
        " description access port {i}",
        " switchport access vlan {v}",
        " switchport mode access",
        " ip ospf message-digest-key 1 md5 7 0822455D0A16{i}",
        " spanning-tree portfast",
        "!",
    ]
    body: list[str] = []
    i = 0
    while len(secrets) + len(body) < lines:
        body += [b.format(i=i, v=10 + i % 50) for b in block]
        i += 1
    return "\n".join(secrets + body[: lines - len(secrets)]) + "\n"


def test_large_config_is_fast() -> None:
    # A safety net on every reply must be cheap. Measured ~10-20 ms here; the bound is
    # loose so that only a real regression (e.g. a backtracking pattern) fails it.
    config = _big_config()
    assert config.count("\n") == 5000
    start = time.perf_counter()
    result = redact(config)
    elapsed = time.perf_counter() - start
    assert "Plant3d" not in result
    assert elapsed < 0.5


@pytest.mark.parametrize(
    "line",
    [
        "username " * 3000,
        "snmp-server user " * 3000,
        "tacacs-server host 1.1.1.1 " * 3000,
        "pre-shared-key address 1.1.1.1 " * 3000,
        "ntp authentication-key 1 md5 " * 3000,
        'key-string "\\"' * 3000,
        "crypto key import rsa " * 3000,
        "server-private 1.1.1.1 " * 3000,
        "mgmtuser username " * 3000,
        "encryption ipsec spi " * 3000,
        "mpls ldp password option 1 for " * 3000,
        "set " + "secret " * 3000,
        '"' + "authentication-key " * 3000,
        "enable secret " + "x" * 100_000,
    ],
    ids=lambda line: line[:24],
)
def test_long_hostile_lines_stay_linear(line: str) -> None:
    start = time.perf_counter()
    redact(line)
    assert time.perf_counter() - start < 0.5


def test_eos_macsec_value_may_start_with_a_brace() -> None:
    # Only a lone "{" after a key id is Junos block syntax ("key 10 {").
    assert redact("   key 1234abcd 7 {x;y", "arista_eos") == f"   key 1234abcd 7 {REDACTED}"
    assert redact("            key 10 {", "arista_eos") == "            key 10 {"
