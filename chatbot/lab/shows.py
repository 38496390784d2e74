"""Text of the `show` commands, in IOS-XE 17.9 format (checked against ntc-templates)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass

from chatbot.lab.configs import (
    BGP_AS,
    IOS_VERSION,
    IOS_XE_VERSION,
    MODEL,
    DeviceFacts,
)
from chatbot.lab.netsim import Topology
from chatbot.lab.routing import (
    EIGRP_AS,
    OSPF_PROCESS,
    ROUTE_AGE_CAP_MINUTES,
    Route,
    arp_table,
    discovery_neighbors,
    gateway,
    interface_mac,
    ospf_neighbors,
    peer_established,
    routes,
    segment_peers_down,
    short_age,
    stable_number,
)


def _minutes_to_words(minutes: int) -> str:
    """IOS uptime phrase, e.g. '1 year, 3 weeks, 2 days, 4 hours, 5 minutes'."""
    units = (("year", 525600), ("week", 10080), ("day", 1440), ("hour", 60), ("minute", 1))
    parts = []
    for unit, size in units:
        amount, minutes = divmod(minutes, size)
        if amount or unit == "minute":
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return ", ".join(parts)


def uptime_minutes(facts: DeviceFacts, lab_minutes: int) -> int:
    return facts.base_uptime_minutes + lab_minutes


def show_version(facts: DeviceFacts, lab_minutes: int) -> str:
    uptime = uptime_minutes(facts, lab_minutes)
    interfaces = sum(1 for i in facts.interfaces if i.name.startswith("GigabitEthernet"))
    return f"""Cisco IOS XE Software, Version {IOS_XE_VERSION}
Cisco IOS Software [Cupertino], Virtual XE Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), Version {IOS_VERSION}, RELEASE SOFTWARE (fc3)
Technical Support: http://www.cisco.com/techsupport
Copyright (c) 1986-2023 by Cisco Systems, Inc.
Compiled Fri 20-Oct-23 10:44 by mcpre


Cisco IOS-XE software, Copyright (c) 2005-2023 by cisco Systems, Inc.
All rights reserved.  Certain components of Cisco IOS-XE software are
licensed under the GNU General Public License ("GPL") Version 2.0.  The
software code licensed under GPL Version 2.0 is free software that comes
with ABSOLUTELY NO WARRANTY.  You can redistribute and/or modify such
GPL code under the terms of GPL Version 2.0.  For more details, see the
documentation or "License Notice" file accompanying the IOS-XE software,
or the applicable URL provided on the flyer accompanying the IOS-XE
software.


ROM: IOS-XE ROMMON

{facts.hostname} uptime is {_minutes_to_words(uptime)}
Uptime for this control processor is {_minutes_to_words(uptime + 2)}
System returned to ROM by reload
System image file is "bootflash:packages.conf"
Last reload reason: reload



This product contains cryptographic features and is subject to United
States and local country laws governing import, export, transfer and
use. Delivery of Cisco cryptographic products does not imply
third-party authority to import, export, distribute or use encryption.
Importers, exporters, distributors and users are responsible for
compliance with U.S. and local country laws. By using this product you
agree to comply with applicable laws and regulations. If you are unable
to comply with U.S. and local laws, return this product immediately.

A summary of U.S. laws governing Cisco cryptographic products may be found at:
http://www.cisco.com/wwl/export/crypto/tool/stqrg.html

If you require further assistance please contact us by sending email to
export@cisco.com.

License Level: network-advantage
License Type: Perpetual
Next reload license Level: network-advantage

Addon License Level: dna-advantage
Addon License Type: Subscription
Next reload addon license Level: dna-advantage

The current throughput level is 250000 kbps 


Smart Licensing Status: Smart Licensing Using Policy

cisco {MODEL} (VXE) processor (revision VXE) with 1987872K/3075K bytes of memory.
Processor board ID {facts.serial}
Router operating mode: Autonomous
{interfaces} Gigabit Ethernet interfaces
32768K bytes of non-volatile configuration memory.
3965216K bytes of physical memory.
11526144K bytes of virtual hard disk at bootflash:.

Configuration register is 0x2102
"""


def show_clock(now: dt.datetime) -> str:
    # The leading '*' is IOS's "clock not authoritative" flag (no NTP sync in a lab).
    stamp = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
    return f"*{stamp} UTC {now.strftime('%a %b')} {now.day} {now.year}"


def show_inventory(facts: DeviceFacts) -> str:
    def item(name: str, descr: str, pid: str, serial: str) -> str:
        return f'NAME: "{name}", DESCR: "{descr}"\nPID: {pid:<18}, VID: V00  , SN: {serial}\n'

    return "\n".join(
        [
            item("Chassis", f"Cisco {MODEL} Chassis", MODEL, facts.chassis_serial),
            item("module R0", f"Cisco {MODEL} Route Processor", MODEL, facts.serial),
            item("module F0", f"Cisco {MODEL} Embedded Services Processor", MODEL, facts.serial),
        ]
    )


def show_ip_interface_brief(facts: DeviceFacts) -> str:
    lines = [f"{'Interface':<23}{'IP-Address':<16}OK? Method Status                Protocol"]
    for interface in facts.interfaces:
        address = interface.address or "unassigned"
        status = "up" if interface.enabled else "administratively down"
        protocol = "up" if interface.enabled else "down"
        lines.append(f"{interface.name:<23}{address:<16}YES NVRAM  {status:<22}{protocol:<8}")
    return "\n".join(lines)


_ROUTE_CODES = """Codes: L - local, C - connected, S - static, R - RIP, M - mobile, B - BGP
       D - EIGRP, EX - EIGRP external, O - OSPF, IA - OSPF inter area 
       N1 - OSPF NSSA external type 1, N2 - OSPF NSSA external type 2
       E1 - OSPF external type 1, E2 - OSPF external type 2, m - OMP
       n - NAT, Ni - NAT inside, No - NAT outside, Nd - NAT DIA
       i - IS-IS, su - IS-IS summary, L1 - IS-IS level-1, L2 - IS-IS level-2
       ia - IS-IS inter area, * - candidate default, U - per-user static route
       H - NHRP, G - NHRP registration, g - NHRP registration summary
       o - ODR, P - periodic downloaded static route, l - LISP
       a - application route
       + - replicated route, % - next hop override, p - overrides from PfR
       & - replicated local route overrides by connected
"""


def _prefix_text(route: Route) -> str:
    return f"{route.network}/{route.prefix_len}"


def _route_lines(route: Route) -> list[str]:
    """One route as `show ip route` prints it; a second equal-cost path on its own line."""
    # Routes under a "10.0.0.0/8 is subnetted" parent start in column 9, others in column 6.
    head = f"{route.code:<9}" if route.prefix_len >= 8 else f"{route.code:<6}"
    head += _prefix_text(route)
    if route.distance == 0 or route.paths[0].next_hop is None:
        return [f"{head} is directly connected, {route.paths[0].interface}"]
    lines = []
    for number, path in enumerate(route.paths):
        via = f"[{route.distance}/{route.metric}] via {path.next_hop}"
        via += "".join(f", {part}" for part in (route.age, path.interface) if part)
        lines.append(f"{head} {via}" if number == 0 else " " * (len(head) + 1) + via)
    return lines


def _major_network(address: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
    """The classful network of an address: IOS groups the table by it."""
    first = int(address) >> 24
    length = 8 if first < 128 else 16 if first < 192 else 24
    return ipaddress.IPv4Network(f"{address}/{length}", strict=False)


def _route_table(routes: list[Route], gateway_address: str, shown: list[Route]) -> str:
    """Codes, gateway line, then `shown` grouped under their classful parents."""
    lines = [_ROUTE_CODES, f"Gateway of last resort is {gateway_address} to network 0.0.0.0", ""]
    parents_done: set[ipaddress.IPv4Network] = set()
    for route in shown:
        if route.prefix_len >= 8:
            major = _major_network(route.prefix.network_address)
            if major not in parents_done:
                parents_done.add(major)
                lines.append("      " + _parent_line(routes, major))
        lines += _route_lines(route)
    return "\n".join(lines)


def _subnets_of(routes: list[Route], major: ipaddress.IPv4Network) -> list[Route]:
    return [r for r in routes if r.prefix_len >= major.prefixlen and r.prefix.subnet_of(major)]


def _parent_line(routes: list[Route], major: ipaddress.IPv4Network) -> str:
    subnets = _subnets_of(routes, major)
    masks = {r.prefix_len for r in subnets}
    if len(masks) == 1:
        return f"{major.network_address}/{masks.pop()} is subnetted, {len(subnets)} subnets"
    return f"{major} is variably subnetted, {len(subnets)} subnets, {len(masks)} masks"


def _route_detail(route: Route, facts: DeviceFacts) -> str:
    """`show ip route A.B.C.D`: the "Routing entry for" form of one route."""
    supernet = ", supernet" if route.prefix_len < 8 else ""
    lines = [f"Routing entry for {_prefix_text(route)}{supernet}"]
    if route.code in ("C", "L"):
        how = "connected, via interface" if route.code == "C" else "connected"
        lines.append(f'  Known via "connected", distance 0, metric 0 ({how})')
    elif route.code == "S":
        lines.append('  Known via "static", distance 1, metric 0 (connected)')
    elif route.code == "S*":
        lines.append('  Known via "static", distance 1, metric 0, candidate default path')
    else:
        process = {"O": f"ospf {OSPF_PROCESS}", "D": f"eigrp {EIGRP_AS}", "B": f"bgp {BGP_AS}"}[route.code]
        kind = {"O": "intra area", "D": "internal", "B": "internal"}[route.code]
        lines.append(f'  Known via "{process}", distance {route.distance}, metric {route.metric}, type {kind}')
        if route.code == "D":
            lines.append(f"  Redistributing via {process}")
        last = route.paths[-1]
        where = f" on {last.interface}," if last.interface else ""
        lines.append(f"  Last update from {last.next_hop}{where} {route.age} ago")
    lines.append("  Routing Descriptor Blocks:")
    for number, path in enumerate(route.paths):
        mark = "*" if number == len(route.paths) - 1 else " "  # the path used next
        if path.next_hop is None:
            lines.append(f"  {mark} directly connected, via {path.interface}")
        elif path.advertiser is None:
            lines.append(f"  {mark} {path.next_hop}")
        else:
            via = f", via {path.interface}" if path.interface else ""
            lines.append(f"  {mark} {path.next_hop}, from {path.advertiser}, {route.age} ago{via}")
        lines.append(f"      Route metric is {route.metric}, traffic share count is 1")
        if route.code == "D":
            lines += ["      Total delay is 20 microseconds, minimum bandwidth is 1000000 Kbit",
                      "      Reliability 255/255, minimum MTU 1500 bytes",
                      "      Loading 1/255, Hops 1"]
        if route.code == "B":
            lines += ["      AS Hops 0", "      MPLS label: none"]
    return "\n".join(lines)


def _major_summary(routes: list[Route], major: ipaddress.IPv4Network) -> str:
    """`show ip route 10.0.0.0`: the classful parent and every subnet under it."""
    subnets = _subnets_of(routes, major)
    attached = sum(1 for r in subnets if r.code in ("C", "L"))
    masks = len({r.prefix_len for r in subnets})
    lines = [f"Routing entry for {major}, {len(subnets)} known subnets",
             f"  Attached ({attached} connections)"]
    if masks > 1:
        lines.append(f"  Variably subnetted with {masks} masks")
    for route in subnets:
        lines += _route_lines(route)
    return "\n".join(lines)


@dataclass(frozen=True)
class RouteQuery:
    """What follows `show ip route`: nothing, a protocol, or an address [mask] [longer-prefixes]."""

    protocol: str | None = None
    address: str | None = None
    mask: str | None = None
    longer_prefixes: bool = False


NETWORK_NOT_IN_TABLE = "% Network not in table"
SUBNET_NOT_IN_TABLE = "% Subnet not in table"


def show_ip_route(facts: DeviceFacts, topology: Topology, lab_minutes: int,
                  query: RouteQuery = RouteQuery()) -> str:
    table = routes(facts, topology, uptime_minutes(facts, lab_minutes))
    gateway_address = gateway(facts, "GigabitEthernet2")
    if query.protocol is not None:
        return _route_table(table, gateway_address, [r for r in table if r.protocol == query.protocol])
    if query.address is None:
        return _route_table(table, gateway_address, table)
    address = ipaddress.IPv4Address(query.address)
    major = _major_network(address)
    known_major = any(r.prefix_len >= 8 and r.prefix.subnet_of(major) for r in table)
    if query.mask is not None:
        wanted = ipaddress.IPv4Network(f"{query.address}/{query.mask}")
        if query.longer_prefixes:
            inside = [r for r in table if r.prefix_len >= wanted.prefixlen and r.prefix.subnet_of(wanted)]
            return _route_table(table, gateway_address, inside)
        exact = [r for r in table if r.prefix == wanted]
        if exact:
            return _route_detail(exact[0], facts)
        if wanted == major and known_major:
            return _major_summary(table, major)
        return SUBNET_NOT_IN_TABLE if known_major else NETWORK_NOT_IN_TABLE
    if address == major.network_address and known_major:
        return _major_summary(table, major)
    # A lookup, as the forwarding path would do it, except that IOS does not fall back
    # to the default route here.
    matches = [r for r in table if address in r.prefix and (r.prefix_len > 0 or int(address) == 0)]
    if matches:
        return _route_detail(max(matches, key=lambda r: r.prefix_len), facts)
    return SUBNET_NOT_IN_TABLE if known_major else NETWORK_NOT_IN_TABLE


def show_ip_bgp_summary(facts: DeviceFacts, topology: Topology, lab_minutes: int) -> str:
    established = [p for p in facts.bgp_peers if peer_established(facts, topology, p)]
    networks = 1 + len(established)
    version = 2 + 2 * networks
    lines = [
        f"BGP router identifier {facts.loopback}, local AS number {BGP_AS}",
        f"BGP table version is {version}, main routing table version {version}",
        f"{networks} network entries using {networks * 248} bytes of memory",
        f"{networks} path entries using {networks * 136} bytes of memory",
        f"{networks}/{networks} BGP path/bestpath attribute entries using {networks * 312} bytes of memory",
        "0 BGP route-map cache entries using 0 bytes of memory",
        "0 BGP filter-list cache entries using 0 bytes of memory",
        f"BGP using {networks * 696} total bytes of memory",
        f"BGP activity {networks}/0 prefixes, {networks}/0 paths, scan interval 60 secs",
        f"{networks} networks peaked at 09:14:33 Nov 4 2024 (3d04h ago)",
        "",
        "Neighbor        V           AS MsgRcvd MsgSent   TblVer  InQ OutQ Up/Down  State/PfxRcd",
    ]
    age = short_age(min(uptime_minutes(facts, lab_minutes), ROUTE_AGE_CAP_MINUTES))
    for peer in facts.bgp_peers:
        seed = int.from_bytes(
            hashlib.sha256(f"{facts.hostname}>{peer}".encode()).digest()[:2], "big"
        )
        if peer in established:
            received, sent = 4000 + seed % 900, 4000 + seed % 850
            up_down, state = age, "1"
        else:
            received = sent = 0
            up_down, state = "never", "Idle"
        lines.append(
            f"{peer:<15} 4 {BGP_AS:>12} {received:>7} {sent:>7} {version if state != 'Idle' else 1:>8}"
            f" {0:>4} {0:>4} {up_down:<8} {state:>12}"
        )
    return "\n".join(lines)


def show_interfaces(facts: DeviceFacts, only: str | None = None) -> str:
    """All interfaces, or the one named `only` (its full name)."""
    blocks = []
    for number, interface in enumerate(facts.interfaces):
        if only is not None and interface.name != only:
            continue
        if interface.enabled:
            state = f"{interface.name} is up, line protocol is up"
        else:
            state = f"{interface.name} is administratively down, line protocol is down"
        loopback = interface.name.startswith("Loopback")
        lines = [state]
        if loopback:
            lines.append("  Hardware is Loopback")
        else:
            mac = interface_mac(facts, interface.name)
            lines.append(f"  Hardware is vNIC, address is {mac} (bia {mac})")
        lines.append(f"  Description: {interface.description}")
        if interface.address:
            lines.append(f"  Internet address is {interface.address}/{interface.prefix_len}")
        mtu, bw = (1514, 8000000) if loopback else (1500, 1000000)
        lines += [
            f"  MTU {mtu} bytes, BW {bw} Kbit/sec, DLY {5000 if loopback else 10} usec,",
            "     reliability 255/255, txload 1/255, rxload 1/255",
            f"  Encapsulation {'LOOPBACK' if loopback else 'ARPA'}, loopback not set",
        ]
        if not loopback:
            lines += [
                "  Keepalive set (10 sec)",
                "  Full Duplex, 1000Mbps, link type is auto, media type is Virtual",
                "  output flow-control is unsupported, input flow-control is unsupported",
                "  ARP type: ARPA, ARP Timeout 04:00:00",
            ]
        packets = 0 if not interface.enabled else 100000 + number * 7919
        lines += [
            "  Last input 00:00:01, output 00:00:01, output hang never",
            '  Last clearing of "show interface" counters never',
            "  Input queue: 0/375/0/0 (size/max/drops/flushes); Total output drops: 0",
            "  Queueing strategy: fifo",
            "  Output queue: 0/40 (size/max)",
            "  5 minute input rate 1000 bits/sec, 2 packets/sec",
            "  5 minute output rate 1000 bits/sec, 2 packets/sec",
            f"     {packets} packets input, {packets * 120} bytes, 0 no buffer",
            "     Received 0 broadcasts (0 IP multicasts)",
            "     0 runts, 0 giants, 0 throttles",
            "     0 input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored",
            "     0 watchdog, 0 multicast, 0 pause input",
            f"     {packets} packets output, {packets * 110} bytes, 0 underruns",
            "     0 output errors, 0 collisions, 0 interface resets",
            "     0 unknown protocol drops",
            "     0 babbles, 0 late collision, 0 deferred",
            "     0 lost carrier, 0 no carrier, 0 pause output",
            "     0 output buffer failures, 0 output buffers swapped out",
        ]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def short_interface_name(name: str) -> str:
    """Gi2, Lo0: the short form `show interfaces status` and `show lldp neighbors` use."""
    for long, short in (("GigabitEthernet", "Gi"), ("Loopback", "Lo")):
        if name.startswith(long):
            return short + name[len(long):]
    return name


def show_interfaces_status(facts: DeviceFacts) -> str:
    lines = ["", f"{'Port':<13}{'Name':<19}{'Status':<13}{'Vlan':<11}Duplex  Speed Type"]
    for interface in facts.interfaces:
        if not interface.name.startswith("GigabitEthernet"):
            continue  # IOS lists switch and routed Ethernet ports only
        if interface.enabled:
            status, duplex, speed = "connected", "a-full", "a-1000"
        else:
            status, duplex, speed = "disabled", "auto", "auto"
        port = short_interface_name(interface.name)
        lines.append(f"{port:<13}{interface.description[:18]:<19}{status:<13}{'routed':<11}"
                     f"{duplex:>6} {speed:>6} Virtual")
    return "\n".join(lines)


def show_ip_ospf_neighbor(facts: DeviceFacts, topology: Topology) -> str:
    lines = ["", f"{'Neighbor ID':<16}Pri   State           Dead Time   Address         Interface"]
    for n in ospf_neighbors(facts, topology):
        dead = f"00:00:{n.dead_seconds:02d}"
        lines.append(f"{n.router_id:<15} {n.priority:>3}   {n.state:<15} {dead:<11} {n.address:<15} {n.interface}")
    return "\n".join(lines)


def show_ip_arp(facts: DeviceFacts, topology: Topology) -> str:
    lines = ["Protocol  Address          Age (min)  Hardware Addr   Type   Interface"]
    for entry in arp_table(facts, topology):
        lines.append(f"Internet  {entry.address:<16}{entry.age:>6}   {entry.mac:<15} ARPA   {entry.interface}")
    return "\n".join(lines)


_CDP_CODES = """Capability Codes: R - Router, T - Trans Bridge, B - Source Route Bridge
                  S - Switch, H - Host, I - IGMP, r - Repeater, P - Phone, 
                  D - Remote, C - CVTA, M - Two-port Mac Relay 
"""


def show_cdp_neighbors(facts: DeviceFacts, topology: Topology) -> str:
    lines = [_CDP_CODES, "Device ID        Local Intrfce     Holdtme    Capability  Platform  Port ID"]
    found = discovery_neighbors(facts, topology, "cdp", MODEL)
    for n in found:
        local = n.local_interface.replace("GigabitEthernet", "Gig ")
        remote = n.remote_interface.replace("GigabitEthernet", "Gig ")
        row = f"{local:<18}{n.hold_seconds:<17}{'R I':<6}{n.platform:<10}{remote}"
        if len(n.device_id) > 16:  # a long name gets a line of its own
            lines += [n.device_id, " " * 17 + row]
        else:
            lines.append(f"{n.device_id:<17}{row}")
    lines += ["", f"Total cdp entries displayed : {len(found)}"]
    return "\n".join(lines)


_LLDP_CODES = """Capability codes:
    (R) Router, (B) Bridge, (T) Telephone, (C) DOCSIS Cable Device
    (W) WLAN Access Point, (P) Repeater, (S) Station, (O) Other
"""


def show_lldp_neighbors(facts: DeviceFacts, topology: Topology) -> str:
    lines = [_LLDP_CODES, "Device ID           Local Intf     Hold-time  Capability      Port ID"]
    found = discovery_neighbors(facts, topology, "lldp", MODEL)
    for n in found:
        local = short_interface_name(n.local_interface)
        lines.append(f"{n.device_id[:20]:<20}{local:<15}{n.hold_seconds:<11}{'R':<16}"
                     f"{short_interface_name(n.remote_interface)}")
    lines += ["", f"Total entries displayed: {len(found)}"]
    return "\n".join(lines)


def _log_stamp(moment: dt.datetime) -> str:
    # `service timestamps log datetime msec`; '*' because no NTP source is synchronised.
    millis = moment.microsecond // 1000
    return f"*{moment.strftime('%b')} {moment.day:>2} {moment.strftime('%H:%M:%S')}.{millis:03d}"


def _log_messages(facts: DeviceFacts, topology: Topology, now: dt.datetime,
                  lab_minutes: int) -> list[str]:
    """What the buffer holds: the boot's link and adjacency messages, then any peer that
    is down now (stamped with the time of the show: the lab does not keep fault times)."""
    boot = now - dt.timedelta(minutes=uptime_minutes(facts, lab_minutes))
    events: list[tuple[float, str]] = []
    for number, interface in enumerate(facts.interfaces):
        at, name = 40 + number * 0.25, interface.name
        line_up = f"%LINEPROTO-5-UPDOWN: Line protocol on Interface {name}, changed state to up"
        if name.startswith("Loopback"):
            events.append((at, line_up))
        elif interface.enabled:
            events += [(at, f"%LINK-3-UPDOWN: Interface {name}, changed state to up"), (at + 1, line_up)]
        else:
            events.append((at, f"%LINK-5-CHANGED: Interface {name}, changed state to administratively down"))
    events.append((55, "%SYS-5-CONFIG_I: Configured from memory by console"))
    eigrp = gateway(facts, "GigabitEthernet4")
    events.append((58, f"%DUAL-5-NBRCHANGE: EIGRP-IPv4 {EIGRP_AS}: Neighbor {eigrp} (GigabitEthernet4) "
                       "is up: new adjacency"))
    for n in ospf_neighbors(facts, topology):
        if n.state.startswith("FULL"):
            at = 60 + stable_number(facts.hostname, n.name, n.interface) % 20
            events.append((at, f"%OSPF-5-ADJCHG: Process {OSPF_PROCESS}, Nbr {n.router_id} on {n.interface} "
                               "from LOADING to FULL, Loading Done"))
    for peer in facts.bgp_peers:
        at = 90 + stable_number(facts.hostname, peer) % 20
        events.append((at, f"%BGP-5-ADJCHANGE: neighbor {peer} Up "))
    lines = [f"{_log_stamp(boot + dt.timedelta(seconds=at))}: {text}" for at, text in sorted(events)]
    stamp = _log_stamp(now)
    for rid in segment_peers_down(facts, topology):
        for name in ("GigabitEthernet3", "GigabitEthernet2"):
            lines.append(f"{stamp}: %OSPF-5-ADJCHG: Process {OSPF_PROCESS}, Nbr {rid} on {name} "
                         "from FULL to DOWN, Neighbor Down: Dead timer expired")
        if rid in facts.bgp_peers:
            lines.append(f"{stamp}: %BGP-5-ADJCHANGE: neighbor {rid} Down Peer closed the session")
            lines.append(f"{stamp}: %BGP_SESSION-5-ADJCHANGE: neighbor {rid} IPv4 Unicast topology base "
                         "removed from session  Peer closed the session")
    return lines


def show_logging(facts: DeviceFacts, topology: Topology, now: dt.datetime, lab_minutes: int) -> str:
    messages = _log_messages(facts, topology, now, lab_minutes)
    count = len(messages)
    return f"""Syslog logging: enabled (0 messages dropped, 0 messages rate-limited, 0 flushes, 0 overruns, xml disabled, filtering disabled)

No Active Message Discriminator.



No Inactive Message Discriminator.


    Console logging: disabled
    Monitor logging: level debugging, 0 messages logged, xml disabled,
                     filtering disabled
    Buffer logging:  level informational, {count} messages logged, xml disabled,
                    filtering disabled
    Exception Logging: size (4096 bytes)
    Count and timestamp logging messages: disabled
    Persistent logging: disabled

No active filter modules.

    Trap logging: level informational, {count} message lines logged
        Logging to 10.254.0.50  (udp port 514, audit disabled,
              link up),
              {count} message lines logged, 
              0 message lines rate-limited, 
              0 message lines dropped-by-MD, 
              xml disabled, sequence number disabled
              filtering disabled
        Logging Source-Interface:       VRF Name:
        TLS Profiles: 

Log Buffer (64000 bytes):

""" + "\n".join(messages)


_PROCESSES = (
    "Chunk Manager", "Load Meter", "SpanTree Helper", "Retransmission of", "IPC ISSU Dispatch",
    "RF Slave Main Thr", "EDDRI_MAIN", "RO Notify Timers", "Check heaps", "Pool Manager",
    "DiscardQ Backgrou", "Timers", "WATCH_AFS", "MEMLEAK PROCESS", "ARP Input", "ARP Background",
    "CEF: IPv4 process", "IP Input", "SSH Process", "SNMP ENGINE", "OSPF-1 Router", "OSPF-1 Hello",
    "EIGRP-IPv4 100", "BGP Router", "BGP I/O", "BGP Scanner", "IOSXE-RP Punt Se",
)


def show_processes_cpu(facts: DeviceFacts, lab_minutes: int) -> str:
    uptime = uptime_minutes(facts, lab_minutes)
    busy = 1 + stable_number(facts.hostname, "cpu", lab_minutes) % 4
    lines = [
        f"CPU utilization for five seconds: {busy}%/0%; one minute: {max(1, busy - 1)}%; five minutes: 1%",
        " PID Runtime(ms)     Invoked      uSecs   5Sec   1Min   5Min TTY Process ",
    ]
    for pid, name in enumerate(_PROCESSES, 1):
        seed = stable_number(facts.hostname, name)
        invoked = 1 + uptime * (1 + seed % 60)
        runtime = invoked * (1 + seed % 400) // 1000
        usecs = runtime * 1000 // invoked
        share = (seed % 30) / 100 if name in ("IP Input", "SSH Process", "BGP Router") else 0.0
        lines.append(f"{pid:>4} {runtime:>11} {invoked:>11} {usecs:>10} {share:>5.2f}% {share:>5.2f}% "
                     f"{share:>5.2f}% {0:>3} {name} ")
    return "\n".join(lines)


def show_vlan_brief() -> str:
    """Every port of a lab router is routed: only the default VLANs, with no ports."""
    lines = ["", f"{'VLAN':<5}{'Name':<33}{'Status':<10}Ports",
             "---- -------------------------------- --------- -------------------------------"]
    for vlan, name, status in ((1, "default", "active"), (1002, "fddi-default", "act/unsup"),
                               (1003, "token-ring-default", "act/unsup"),
                               (1004, "fddinet-default", "act/unsup"), (1005, "trnet-default", "act/unsup")):
        lines.append(f"{vlan:<5}{name:<33}{status:<10}")
    return "\n".join(lines)


_CPU_MACS = ("0100.0ccc.cccc", "0100.0ccc.cccd", "0180.c200.0000", "0180.c200.0002", "0180.c200.000e")


def show_mac_address_table() -> str:
    """Routed ports learn nothing: the table holds only the control-plane (CPU) entries."""
    lines = ["          Mac Address Table", "-------------------------------------------", "",
             "Vlan    Mac Address       Type        Ports", "----    -----------       --------    -----"]
    lines += [f" All    {mac}    STATIC      CPU" for mac in _CPU_MACS]
    lines.append(f"Total Mac Addresses for this criterion: {len(_CPU_MACS)}")
    return "\n".join(lines)
