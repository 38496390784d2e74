"""Text of the `show` commands, in IOS-XE 17.9 format (checked against ntc-templates)."""

from __future__ import annotations

import datetime as dt
import hashlib

from chatbot.lab.configs import (
    BGP_AS,
    IOS_VERSION,
    IOS_XE_VERSION,
    MODEL,
    DeviceFacts,
    device_facts,
    loopback_index,
)
from chatbot.lab.netsim import Topology


def _minutes_to_words(minutes: int) -> str:
    """IOS uptime phrase, e.g. '1 year, 3 weeks, 2 days, 4 hours, 5 minutes'."""
    units = (("year", 525600), ("week", 10080), ("day", 1440), ("hour", 60), ("minute", 1))
    parts = []
    for unit, size in units:
        amount, minutes = divmod(minutes, size)
        if amount or unit == "minute":
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return ", ".join(parts)


def _short_uptime(minutes: int) -> str:
    """Route/BGP age column: 3d04h, 2w1d, 05:12:00."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days >= 7:
        return f"{days // 7}w{days % 7}d"
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours:02d}:{mins:02d}:00"


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


def _peer_index(peer: str) -> int | None:
    return loopback_index(peer)


def _peer_established(topology: Topology, peer: str) -> bool:
    return topology.device_alive(_peer_index(peer))


def show_ip_route(facts: DeviceFacts, topology: Topology, lab_minutes: int) -> str:
    age = _short_uptime(min(uptime_minutes(facts, lab_minutes), 3 * 1440 + 250))
    by_name = facts.interfaces_by_name
    gi2, gi3, gi4 = (by_name[f"GigabitEthernet{n}"] for n in (2, 3, 4))
    gateway = gi2.address.rsplit(".", 1)[0] + ".254" if gi2.address else ""
    routes: list[tuple[tuple[int, ...], str]] = []

    def add(network: str, line: str) -> None:
        routes.append((tuple(int(o) for o in network.split(".")), line))

    add(facts.loopback, f"C        {facts.loopback}/32 is directly connected, Loopback0")
    for interface in (gi2, gi3, gi4):
        assert interface.address is not None
        add(
            interface.network,
            f"C        {interface.network}/24 is directly connected, {interface.name}",
        )
        add(
            interface.address,
            f"L        {interface.address}/32 is directly connected, {interface.name}",
        )
    for peer in facts.bgp_peers:
        if _peer_established(topology, peer):
            add(peer, f"O        {peer}/32 [110/2] via {gateway}, {age}, {gi2.name}")
    eigrp_next_hop = str(gi4.address).rsplit(".", 1)[0] + ".254"
    add("10.4.0.0", f"D        10.4.0.0/16 [90/3072] via {eigrp_next_hop}, {age}, {gi4.name}")
    add(
        facts.originated_prefix,
        f"S        {facts.originated_prefix}/24 is directly connected, Null0",
    )
    for peer in facts.bgp_peers:
        index = _peer_index(peer)
        if index is not None and _peer_established(topology, peer):
            prefix = device_facts(f"r{index + 1}").originated_prefix
            add(prefix, f"B        {prefix}/24 [200/0] via {peer}, {age}")
    routes.sort()
    masks = len({line.split()[1].split("/")[1] for _, line in routes if "/" in line.split()[1]})
    lines = [
        _ROUTE_CODES,
        f"Gateway of last resort is {gateway} to network 0.0.0.0",
        "",
        f"S*    0.0.0.0/0 [1/0] via {gateway}",
        f"      10.0.0.0/8 is variably subnetted, {len(routes)} subnets, {masks} masks",
    ]
    lines += [line for _, line in routes]
    return "\n".join(lines)


def show_ip_bgp_summary(facts: DeviceFacts, topology: Topology, lab_minutes: int) -> str:
    established = [p for p in facts.bgp_peers if _peer_established(topology, p)]
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
    age = _short_uptime(min(uptime_minutes(facts, lab_minutes), 3 * 1440 + 250))
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


def show_interfaces(facts: DeviceFacts) -> str:
    blocks = []
    for number, interface in enumerate(facts.interfaces):
        if interface.enabled:
            state = f"{interface.name} is up, line protocol is up"
        else:
            state = f"{interface.name} is administratively down, line protocol is down"
        loopback = interface.name.startswith("Loopback")
        lines = [state]
        if loopback:
            lines.append("  Hardware is Loopback")
        else:
            mac = facts.mac[:-2] + f"{(int(facts.mac[-2:], 16) + number) % 256:02x}"
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
