"""Per-device facts (serial, addresses, interfaces, peers) and the running-config text.

Addressing plan, all derived from the device index i (r1 is i=0), with
x = i // 250 and y = i % 250 + 1:

- GigabitEthernet1  management, vrf Mgmt-intf, the device's own listening address
                    127.0.(x+1).y/24 (the address the bot's inventory uses for it)
- Loopback0         10.0.x.y/32, OSPF/BGP router id
- GigabitEthernet2  10.1.x.y/24, OSPF with simple authentication
- GigabitEthernet3  10.2.x.y/24, OSPF with MD5 authentication
- GigabitEthernet4  10.3.x.y/24, EIGRP (named mode) with a key chain
- GigabitEthernet5  shut down, no address
- BGP AS 65000: r1-r3 are route reflectors peering with each other's loopback (and with
  edges through a listen range); edges peer with r1 and r2. Every device originates
  10.(100+x).(y-1).0/24, anchored to Null0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from chatbot.lab.model import (
    CORE_DEVICES,
    HOSTS_PER_OCTET,
    device_host,
    device_index,
    device_profile,
)
from chatbot.lab.planted import device_secrets

IOS_XE_VERSION = "17.09.04a"
IOS_VERSION = "17.9.4a"
MODEL = "C8000V"
BGP_AS = 65000


@dataclass(frozen=True)
class Interface:
    name: str
    address: str | None  # None: unassigned
    prefix_len: int
    description: str
    enabled: bool
    vrf: str | None = None

    @property
    def mask(self) -> str:
        bits = (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF
        return ".".join(str((bits >> shift) & 0xFF) for shift in (24, 16, 8, 0))

    @property
    def network(self) -> str:
        assert self.address is not None
        octets = [int(part) for part in self.address.split(".")]
        value = int.from_bytes(bytes(octets), "big")
        bits = (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF
        return ".".join(str(b) for b in (value & bits).to_bytes(4, "big"))


@dataclass(frozen=True)
class DeviceFacts:
    hostname: str
    index: int
    site: str
    role: str
    serial: str
    chassis_serial: str
    mac: str  # dotted IOS form, e.g. 5254.0012.3456
    base_uptime_minutes: int
    interfaces: tuple[Interface, ...]
    loopback: str
    bgp_peers: tuple[str, ...]  # loopback addresses of configured BGP neighbours
    originated_prefix: str  # the /24 this device announces in BGP

    @property
    def mgmt_address(self) -> str:
        return self.interfaces_by_name["GigabitEthernet1"].address or ""

    @property
    def interfaces_by_name(self) -> dict[str, Interface]:
        return {interface.name: interface for interface in self.interfaces}

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(i.address for i in self.interfaces if i.address)


def _hash_int(name: str, kind: str) -> int:
    return int.from_bytes(hashlib.sha256(f"lab-facts/{name}/{kind}".encode()).digest()[:8], "big")


def _serial(name: str, kind: str, first: str) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    number = _hash_int(name, kind)
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(alphabet))
        chars.append(alphabet[rest])
    return first + "".join(chars)


def loopback_of(index: int) -> str:
    return f"10.0.{index // HOSTS_PER_OCTET}.{index % HOSTS_PER_OCTET + 1}"


def loopback_index(address: str) -> int | None:
    parts = address.split(".")
    if len(parts) != 4 or parts[:2] != ["10", "0"]:
        return None
    try:
        third, fourth = int(parts[2]), int(parts[3])
    except ValueError:
        return None
    if not (0 <= third <= 253 and 1 <= fourth <= HOSTS_PER_OCTET):
        return None
    return third * HOSTS_PER_OCTET + fourth - 1


@lru_cache(maxsize=2048)
def device_facts(name: str) -> DeviceFacts:
    index = device_index(name)
    if index is None:
        raise ValueError(f"not a lab device name: {name!r}")
    _, site, role = device_profile(index)
    x, y = index // HOSTS_PER_OCTET, index % HOSTS_PER_OCTET + 1
    interfaces = (
        Interface("GigabitEthernet1", device_host(index), 24, "OOB management", True, "Mgmt-intf"),
        Interface("GigabitEthernet2", f"10.1.{x}.{y}", 24, "Uplink A (OSPF)", True),
        Interface("GigabitEthernet3", f"10.2.{x}.{y}", 24, "Uplink B (OSPF)", True),
        Interface("GigabitEthernet4", f"10.3.{x}.{y}", 24, "Legacy DC (EIGRP)", True),
        Interface("GigabitEthernet5", None, 0, "Spare", False),
        Interface("Loopback0", loopback_of(index), 32, "Router-ID", True),
    )
    if index < CORE_DEVICES:
        peers = tuple(loopback_of(i) for i in range(CORE_DEVICES) if i != index)
    else:
        peers = (loopback_of(0), loopback_of(1))
    mac_int = _hash_int(name, "mac") & 0xFFFFFF
    mac = f"5254.00{mac_int >> 16:02x}.{mac_int & 0xFFFF:04x}"
    return DeviceFacts(
        hostname=name,
        index=index,
        site=site,
        role=role,
        serial=_serial(name, "serial", "9"),
        chassis_serial=_serial(name, "chassis", "F"),
        mac=mac,
        # Between ~2 days and ~1 year, so `show version` uptimes differ per device.
        base_uptime_minutes=2 * 1440 + _hash_int(name, "uptime") % (360 * 1440),
        interfaces=interfaces,
        loopback=loopback_of(index),
        bgp_peers=peers,
        originated_prefix=f"10.{100 + x}.{y - 1}.0",
    )


def _wildcard(prefix_len: int) -> str:
    bits = (0xFFFFFFFF >> prefix_len) if prefix_len < 32 else 0
    return ".".join(str((bits >> shift) & 0xFF) for shift in (24, 16, 8, 0))


@lru_cache(maxsize=256)
def running_config(name: str) -> str:
    """`show running-config` body (from "Building configuration..." to "end")."""
    facts = device_facts(name)
    s = device_secrets(name)
    by_name = facts.interfaces_by_name
    gi1, gi2, gi3, gi4 = (by_name[f"GigabitEthernet{n}"] for n in (1, 2, 3, 4))
    mgmt_gateway = gi1.address.rsplit(".", 1)[0] + ".254" if gi1.address else ""
    is_core = facts.role == "core"

    lines: list[str] = [
        "!",
        "! Last configuration change at 09:14:03 UTC Mon Nov 4 2024 by admin",
        "! NVRAM config last updated at 09:14:05 UTC Mon Nov 4 2024 by admin",
        "!",
        "version 17.9",
        "service timestamps debug datetime msec",
        "service timestamps log datetime msec",
        "no service password-encryption",
        "platform qfp utilization monitor load 80",
        "platform punt-keepalive disable-kernel-core",
        "platform console virtual",
        "!",
        f"hostname {name}",
        "!",
        "boot-start-marker",
        "boot-end-marker",
        "!",
        "!",
        "vrf definition Mgmt-intf",
        " !",
        " address-family ipv4",
        " exit-address-family",
        "!",
        "logging buffered 64000 informational",
        "no logging console",
        f"enable secret 9 {s.enable_secret9}",
        "!",
        "aaa new-model",
        "!",
        "!",
        "aaa group server tacacs+ TACACS-GROUP",
        " server name TACACS-1",
        f" server-private 10.254.0.55 key {s.tacacs_private_key}",
        "!",
        "aaa group server radius RADIUS-GROUP",
        " server name RADIUS-1",
        f" server-private 10.254.0.56 auth-port 1812 acct-port 1813 key 7 {s.radius_private_key7}",
        "!",
        "aaa authentication login default group TACACS-GROUP local",
        "aaa authentication enable default group TACACS-GROUP enable",
        "aaa authorization exec default group TACACS-GROUP local",
        "aaa accounting exec default start-stop group TACACS-GROUP",
        "!",
        "!",
        "aaa session-id common",
        "clock timezone UTC 0 0",
        "!",
        "no ip domain lookup",
        "ip domain name lab.example.net",
        "!",
        "login on-success log",
        "!",
        "subscriber templating",
        "!",
        "multilink bundle-name authenticated",
        "!",
        "crypto pki trustpoint SLA-TrustPoint",
        " enrollment pkcs12",
        " revocation-check crl",
        "!",
        f"license udi pid {MODEL} sn {facts.chassis_serial}",
        "memory free low-watermark processor 63709",
        "diagnostic bootup level minimal",
        "!",
        f"username admin privilege 15 secret 9 {s.admin_secret9}",
        f"username ops password 7 {s.ops_password7}",
        "!",
        "redundancy",
        "!",
        "key chain EIGRP-KEYS",
        " key 1",
        f"  key-string {s.keychain_key1}",
        " key 2",
        f"  key-string {s.keychain_key2}",
        "  accept-lifetime 00:00:00 Jan 1 2025 infinite",
        "!",
        "crypto keyring BRANCH-VPN",
        f"  pre-shared-key address 198.51.100.{facts.index % 200 + 10} key {s.keyring_psk}",
        "!",
        "crypto isakmp policy 10",
        " encryption aes 256",
        " hash sha256",
        " authentication pre-share",
        " group 14",
        f"crypto isakmp key {s.isakmp_key} address 203.0.113.{facts.index % 200 + 10}",
        "!",
        "crypto ipsec transform-set TS-AES256 esp-aes 256 esp-sha256-hmac",
        " mode tunnel",
        "!",
        "interface Loopback0",
        " description Router-ID",
        f" ip address {facts.loopback} 255.255.255.255",
        "!",
        f"interface {gi1.name}",
        f" description {gi1.description}",
        " vrf forwarding Mgmt-intf",
        f" ip address {gi1.address} {gi1.mask}",
        " negotiation auto",
        " no mop enabled",
        " no mop sysid",
        "!",
        f"interface {gi2.name}",
        f" description {gi2.description}",
        f" ip address {gi2.address} {gi2.mask}",
        " ip ospf authentication",
        f" ip ospf authentication-key {s.ospf_auth_key}",
        " negotiation auto",
        " no mop enabled",
        " no mop sysid",
        "!",
        f"interface {gi3.name}",
        f" description {gi3.description}",
        f" ip address {gi3.address} {gi3.mask}",
        f" ip ospf message-digest-key 1 md5 {s.ospf_md5_key}",
        " negotiation auto",
        " no mop enabled",
        " no mop sysid",
        "!",
        f"interface {gi4.name}",
        f" description {gi4.description}",
        f" ip address {gi4.address} {gi4.mask}",
        " negotiation auto",
        " no mop enabled",
        " no mop sysid",
        "!",
        "interface GigabitEthernet5",
        " description Spare",
        " no ip address",
        " shutdown",
        " negotiation auto",
        " no mop enabled",
        " no mop sysid",
        "!",
        # A 9800-style WLAN, planted so redaction meets its pre-shared key on every run.
        "wlan CORP-PSK 1 CORP-PSK",
        " no security wpa akm dot1x",
        " security wpa akm psk",
        f" security wpa psk set-key ascii 0 {s.wlan_psk}",
        " no shutdown",
        "!",
        "router eigrp LAB",
        " !",
        " address-family ipv4 unicast autonomous-system 100",
        "  !",
        f"  af-interface {gi4.name}",
        "   authentication mode md5",
        "   authentication key-chain EIGRP-KEYS",
        "  exit-af-interface",
        "  !",
        "  topology base",
        "  exit-af-topology",
        f"  network {gi4.network} {_wildcard(24)}",
        f"  eigrp router-id {facts.loopback}",
        " exit-address-family",
        "!",
        "router ospf 1",
        f" router-id {facts.loopback}",
        " area 0 authentication message-digest",
        " passive-interface Loopback0",
        f" network {facts.loopback} 0.0.0.0 area 0",
        f" network {gi2.network} {_wildcard(24)} area 0",
        f" network {gi3.network} {_wildcard(24)} area 0",
        "!",
        f"router bgp {BGP_AS}",
        f" bgp router-id {facts.loopback}",
        " bgp log-neighbor-changes",
    ]
    if is_core:
        lines += [
            " bgp listen range 10.0.0.0/16 peer-group EDGE",
            " neighbor EDGE peer-group",
            f" neighbor EDGE remote-as {BGP_AS}",
            " neighbor EDGE update-source Loopback0",
        ]
    for peer in facts.bgp_peers:
        peer_index = loopback_index(peer)
        peer_name = peer if peer_index is None else f"r{peer_index + 1}"
        lines += [
            f" neighbor {peer} remote-as {BGP_AS}",
            f" neighbor {peer} description {peer_name}",
            f" neighbor {peer} password 7 {s.bgp_password7}",
            f" neighbor {peer} update-source Loopback0",
        ]
    lines += [
        " !",
        " address-family ipv4",
        f"  network {facts.originated_prefix} mask 255.255.255.0",
    ]
    if is_core:
        lines += ["  neighbor EDGE route-reflector-client"]
    for peer in facts.bgp_peers:
        lines += [f"  neighbor {peer} activate", f"  neighbor {peer} send-community both"]
    lines += [
        " exit-address-family",
        "!",
        "ip forward-protocol nd",
        "no ip http server",
        "no ip http secure-server",
        f"ip route {facts.originated_prefix} 255.255.255.0 Null0",
        f"ip route vrf Mgmt-intf 0.0.0.0 0.0.0.0 {mgmt_gateway}",
        f"ip msdp peer {facts.bgp_peers[0]} connect-source Loopback0",
        f"ip msdp password peer {facts.bgp_peers[0]} {s.msdp_password}",
        "ip ssh version 2",
        "ip ssh time-out 60",
        "!",
        "ip access-list standard SNMP-ACL",
        " 10 permit 10.0.0.0 0.255.255.255",
        "!",
        "logging host 10.254.0.50",
        "!",
        f"snmp-server community {s.snmp_ro} RO SNMP-ACL",
        f"snmp-server community {s.snmp_rw} RW SNMP-ACL",
        f"snmp-server location {facts.site}",
        "snmp-server contact netops@example.net",
        f"tacacs-server host 10.254.0.51 key {s.tacacs_legacy_key}",
        "tacacs server TACACS-1",
        " address ipv4 10.254.0.52",
        f" key 7 {s.tacacs_key7}",
        "!",
        "radius server RADIUS-1",
        " address ipv4 10.254.0.53 auth-port 1812 acct-port 1813",
        f" key 7 {s.radius_key7}",
        "!",
        "radius server RADIUS-PAC",
        " address ipv4 10.254.0.57 auth-port 1812 acct-port 1813",
        f" pac key 7 {s.radius_pac_key7}",
        "!",
        "lldp run",
        "!",
        "control-plane",
        "!",
        "line con 0",
        " stopbits 1",
        "line aux 0",
        "line vty 0 4",
        " exec-timeout 15 0",
        f" password 7 {s.vty_password7}",
        " transport input ssh",
        "line vty 5 15",
        " transport input ssh",
        "!",
        f"ntp authentication-key 1 md5 {s.ntp_key7} 7",
        "ntp authenticate",
        "ntp trusted-key 1",
        "ntp server 10.254.0.54 key 1",
        "!",
        f"event manager environment _password {s.eem_password}",
        "event manager environment _email_to netops@example.net",
        "!",
        "!",
        "!",
        "end",
    ]
    body = "\n".join(lines) + "\n"
    return f"Building configuration...\n\nCurrent configuration : {len(body)} bytes\n" + body
