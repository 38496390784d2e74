"""The control plane a lab device sees: OSPF neighbours, routes, ARP and CDP/LLDP peers.

Everything follows from the addressing plan in `configs.py` and from which devices are
up right now, so every `show` command tells the same story:

- GigabitEthernet2 (10.1.x.0/24) and GigabitEthernet3 (10.2.x.0/24) are shared OSPF
  area 0 segments. Every lab device with the same x sits on both, so r1, r2 and r3 (and
  the edges of a small lab) are OSPF neighbours, CDP/LLDP neighbours and ARP entries of
  each other. All have priority 1: the highest router ID that is up is the DR, the next
  the BDR. Two DROTHERs stay in 2WAY, as on a real broadcast segment.
- Each segment's .254 is a gateway outside the lab (an HSRP address): the default route
  points at 10.1.x.254, and 10.3.x.254 on GigabitEthernet4 is the EIGRP neighbour that
  brings in 10.4.0.0/16.
- A BGP session is up when its peer is up and its loopback is reachable, i.e. the peer
  shares the OSPF segment.
- A DOWN device drops out everywhere at once (no dead-timer wait).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from chatbot.lab.configs import DeviceFacts, device_facts, loopback_index, loopback_of
from chatbot.lab.model import HOSTS_PER_OCTET, device_name
from chatbot.lab.netsim import Topology

OSPF_PROCESS = 1
EIGRP_AS = 100
DOMAIN = "lab.example.net"  # `ip domain name` of every lab device
SEGMENT_INTERFACES = ("GigabitEthernet2", "GigabitEthernet3")
GATEWAY_HOST = 254  # .254 of each /24: the simulated gateway outside the lab
HSRP_MAC = "0000.0c07.ac{group:02x}"  # the well-known HSRP v1 virtual MAC
ROUTE_AGE_CAP_MINUTES = 3 * 1440 + 250  # routes were last learned at most ~3 days ago


def stable_number(*parts: object) -> int:
    """A number fixed per input, so figures do not change between two `show`s."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "big")


def interface_mac(facts: DeviceFacts, interface_name: str) -> str:
    """Burned-in MAC of a physical interface: the device MAC plus the interface's position."""
    number = next(n for n, i in enumerate(facts.interfaces) if i.name == interface_name)
    return facts.mac[:-2] + f"{(int(facts.mac[-2:], 16) + number) % 256:02x}"


def gateway(facts: DeviceFacts, interface_name: str) -> str:
    address = facts.interfaces_by_name[interface_name].address or ""
    return address.rsplit(".", 1)[0] + f".{GATEWAY_HOST}"


def _segment_indexes(facts: DeviceFacts, topology: Topology) -> range:
    first = facts.index - facts.index % HOSTS_PER_OCTET
    return range(first, min(first + HOSTS_PER_OCTET, topology.device_count))


def segment_peers(facts: DeviceFacts, topology: Topology) -> list[DeviceFacts]:
    """The other lab devices that are up and share this device's OSPF segments."""
    return [
        device_facts(device_name(index))
        for index in _segment_indexes(facts, topology)
        if index != facts.index and topology.device_alive(index)
    ]


def segment_peers_down(facts: DeviceFacts, topology: Topology) -> list[str]:
    """Router IDs of the lab devices on this device's segments that are down now."""
    return [
        loopback_of(index)
        for index in _segment_indexes(facts, topology)
        if index != facts.index and not topology.device_alive(index)
    ]


def peer_established(facts: DeviceFacts, topology: Topology, peer_loopback: str) -> bool:
    index = loopback_index(peer_loopback)
    same_segment = index is not None and index // HOSTS_PER_OCTET == facts.index // HOSTS_PER_OCTET
    return same_segment and topology.device_alive(index)


# -- OSPF ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OspfNeighbor:
    name: str  # lab hostname, e.g. r2
    router_id: str
    priority: int
    state: str  # FULL/DR, FULL/BDR, FULL/DROTHER, 2WAY/DROTHER
    dead_seconds: int
    address: str
    interface: str


def _elected(facts: DeviceFacts, peers: list[DeviceFacts]) -> tuple[int, int | None]:
    """(DR index, BDR index): equal priorities, so the highest router IDs win."""
    indexes = sorted([facts.index] + [p.index for p in peers], reverse=True)
    return indexes[0], indexes[1] if len(indexes) > 1 else None


def ospf_neighbors(facts: DeviceFacts, topology: Topology) -> list[OspfNeighbor]:
    peers = segment_peers(facts, topology)
    dr, bdr = _elected(facts, peers)
    self_is_elected = facts.index in (dr, bdr)
    neighbors = []
    # IOS lists the neighbours of the interface brought up last first: Gi3 before Gi2.
    for interface in reversed(SEGMENT_INTERFACES):
        for peer in sorted(peers, key=lambda p: p.index, reverse=True):
            if peer.index == dr:
                state = "FULL/DR"
            elif peer.index == bdr:
                state = "FULL/BDR"
            else:
                state = "FULL/DROTHER" if self_is_elected else "2WAY/DROTHER"
            neighbors.append(OspfNeighbor(
                name=peer.hostname,
                router_id=peer.loopback,
                priority=1,
                state=state,
                dead_seconds=30 + stable_number(facts.hostname, peer.hostname, interface) % 10,
                address=peer.interfaces_by_name[interface].address or "",
                interface=interface,
            ))
    return neighbors


# -- routes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    next_hop: str | None  # None: directly connected
    interface: str | None  # None: a recursive (BGP) next hop
    advertiser: str | None = None  # router ID the route came from (OSPF, BGP)


@dataclass(frozen=True)
class Route:
    code: str  # as in the table: C, L, S, S*, O, D, B
    network: str
    prefix_len: int
    distance: int
    metric: int
    paths: tuple[Path, ...]
    age: str = ""  # learned routes only, e.g. 3d04h

    @property
    def prefix(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.network}/{self.prefix_len}")

    @property
    def protocol(self) -> str:
        return {"C": "connected", "L": "connected", "S": "static", "S*": "static", "O": "ospf",
                "D": "eigrp", "B": "bgp"}[self.code]


def short_age(minutes: int) -> str:
    """Route/BGP age column: 3d04h, 2w1d, 05:12:00."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days >= 7:
        return f"{days // 7}w{days % 7}d"
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours:02d}:{mins:02d}:00"


def routes(facts: DeviceFacts, topology: Topology, uptime_minutes: int) -> list[Route]:
    """The global routing table (GigabitEthernet1 lives in vrf Mgmt-intf), sorted."""
    age = short_age(min(uptime_minutes, ROUTE_AGE_CAP_MINUTES))
    by_name = facts.interfaces_by_name
    table = [
        Route("S*", "0.0.0.0", 0, 1, 0, (Path(gateway(facts, "GigabitEthernet2"), None),)),
        Route("C", facts.loopback, 32, 0, 0, (Path(None, "Loopback0"),)),
    ]
    for name in (*SEGMENT_INTERFACES, "GigabitEthernet4"):
        interface = by_name[name]
        assert interface.address is not None
        table.append(Route("C", interface.network, 24, 0, 0, (Path(None, name),)))
        table.append(Route("L", interface.address, 32, 0, 0, (Path(None, name),)))
    for peer in segment_peers(facts, topology):
        # Equal cost over both segments; IOS prints the path learned last first.
        paths = tuple(Path(peer.interfaces_by_name[name].address, name, peer.loopback)
                      for name in reversed(SEGMENT_INTERFACES))
        table.append(Route("O", peer.loopback, 32, 110, 2, paths, age))
    eigrp_gateway = gateway(facts, "GigabitEthernet4")
    table.append(Route("D", "10.4.0.0", 16, 90, 3072,
                       (Path(eigrp_gateway, "GigabitEthernet4", eigrp_gateway),), age))
    table.append(Route("S", facts.originated_prefix, 24, 1, 0, (Path(None, "Null0"),)))
    for bgp_peer in facts.bgp_peers:
        index = loopback_index(bgp_peer)
        if index is not None and peer_established(facts, topology, bgp_peer):
            prefix = device_facts(device_name(index)).originated_prefix
            table.append(Route("B", prefix, 24, 200, 0, (Path(bgp_peer, None, bgp_peer),), age))
    return sorted(table, key=lambda r: (r.prefix.network_address, r.prefix_len))


# -- ARP and discovery protocols ------------------------------------------------------------


@dataclass(frozen=True)
class ArpEntry:
    address: str
    age: str  # minutes, or "-" for the device's own addresses
    mac: str
    interface: str


def arp_table(facts: DeviceFacts, topology: Topology) -> list[ArpEntry]:
    """The global ARP table: own addresses, the gateways, and the segment peers."""
    entries = []
    for group, name in enumerate(("GigabitEthernet2", "GigabitEthernet3", "GigabitEthernet4"), 1):
        interface = facts.interfaces_by_name[name]
        assert interface.address is not None
        entries.append(ArpEntry(interface.address, "-", interface_mac(facts, name), name))
        if name != "GigabitEthernet3":  # Gi3 has no gateway: nothing routes through it
            age = str(stable_number(facts.hostname, name, "gateway") % 240)
            entries.append(ArpEntry(gateway(facts, name), age, HSRP_MAC.format(group=group), name))
        if name in SEGMENT_INTERFACES:
            for peer in segment_peers(facts, topology):
                age = str(stable_number(facts.hostname, peer.hostname, name) % 240)
                address = peer.interfaces_by_name[name].address or ""
                entries.append(ArpEntry(address, age, interface_mac(peer, name), name))
    return sorted(entries, key=lambda e: ipaddress.IPv4Address(e.address))


@dataclass(frozen=True)
class DiscoveredNeighbor:
    """One CDP/LLDP neighbour entry."""

    device_id: str  # hostname.domain, as IOS announces itself
    local_interface: str
    hold_seconds: int
    platform: str
    remote_interface: str


def discovery_neighbors(facts: DeviceFacts, topology: Topology, protocol: str,
                        model: str) -> list[DiscoveredNeighbor]:
    """Peers heard on the shared segments, sorted by name like IOS's table."""
    found = []
    for peer in segment_peers(facts, topology):
        for name in SEGMENT_INTERFACES:
            found.append(DiscoveredNeighbor(
                device_id=f"{peer.hostname}.{DOMAIN}",
                local_interface=name,
                # CDP counts the hold time down from 180 s; LLDP shows the 120 s TTL received.
                hold_seconds=(180 - stable_number(facts.hostname, peer.hostname, name) % 30
                              if protocol == "cdp" else 120),
                platform=model,
                remote_interface=name,
            ))
    return sorted(found, key=lambda n: (n.device_id, n.local_interface))
