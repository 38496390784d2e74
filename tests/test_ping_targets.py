"""ping and traceroute targets: host names in the inventory, addresses the bot host must not
probe, the one count limit, and the IOS options (source, vrf, size, df-bit, repeat).

Nothing here leaves the machine: the bot host's probes and device sessions are recorded
instead of sent, and the only names resolved are `localhost` (/etc/hosts) and names
under `.invalid`, which never resolve (RFC 6761).
"""

from __future__ import annotations

import asyncio
import copy
import socket
from dataclasses import dataclass, field
from typing import Any

import icmplib
import pytest

import tasks._probe
import tasks.monitor_checks
import tasks.ping
import tasks.traceroute
from chatbot import testing
from chatbot.config import Config
from chatbot.device_work import DeviceOutput
from chatbot.monitoring import Monitor
from chatbot.results import Status, Table
from tasks._icmp import Reachability

GONE = "nohost.invalid"


def inventory() -> dict[str, Any]:
    inv = copy.deepcopy(testing.SAMPLE_INVENTORY)
    inv["hosts"]["byname"] = {"hostname": "localhost", "groups": ["core"]}
    inv["hosts"]["gone"] = {"hostname": GONE, "groups": ["core"]}
    inv["hosts"]["fw1"] = {"hostname": "127.0.2.1", "groups": ["edge"], "platform": "juniper_junos"}
    return inv


def config(**limits: Any) -> Config:
    return Config.model_validate({"limits": {"commands_per_minute": 1_000_000, **limits}})


@pytest.fixture()
def use_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "SAMPLE_INVENTORY", inventory())


@dataclass
class Probes:
    pings: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    sessions: list[tuple[str, str]] = field(default_factory=list)  # device, command
    lookups: list[tuple[str, bool]] = field(default_factory=list)  # name, on an event loop
    device_output: str = ""


@pytest.fixture()
def probes(monkeypatch: pytest.MonkeyPatch, use_inventory: None) -> Probes:
    """Record what would leave the bot host, and where DNS lookups happen."""
    seen = Probes()

    def ping(address: str, count: int = 4, **kwargs: Any) -> icmplib.Host:
        seen.pings.append((address, kwargs))
        return icmplib.Host(address, count, [0.5] * count)

    def traceroute(address: str, **kwargs: Any) -> list[icmplib.Hop]:
        seen.traces.append(address)
        return [icmplib.Hop(address, 2, [0.5, 0.6], 1)]

    def run_on_devices(ctx: Any, devices: list[str], command: str, **kwargs: Any) -> list[DeviceOutput]:
        seen.sessions.extend((d, command) for d in devices)
        return [DeviceOutput(d, True, seen.device_output) for d in devices]

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.lookups.append((str(host), on_loop))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(icmplib, "ping", ping)
    monkeypatch.setattr(icmplib, "traceroute", traceroute)
    monkeypatch.setattr(tasks.ping, "run_on_devices", run_on_devices)
    monkeypatch.setattr(tasks.traceroute, "run_on_devices", run_on_devices)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def table_row(result: Any) -> list[str]:
    return next(p for p in result.parts if isinstance(p, Table)).rows[0]


# --- host names in the inventory ---------------------------------------------------------

def test_a_device_known_by_name_is_resolved_off_the_loop_and_pinged(probes: Probes) -> None:
    bot = testing.sample_bot(config(host_probe_networks=["127.0.0.0/8"]))
    result = testing.ask(bot, "!ping byname count 2").result
    assert result.status is Status.OK, result.summary
    assert [address for address, _ in probes.pings] == ["127.0.0.1"]  # ::1 is outside the networks
    assert result.summary == "byname (localhost, 127.0.0.1) is reachable (2/2) from the bot host"
    assert probes.lookups and all(not on_loop for _, on_loop in probes.lookups)


@pytest.mark.parametrize("command", ["!ping gone", "!traceroute gone"])
def test_an_unresolvable_device_name_is_one_line(probes: Probes, command: str) -> None:
    for networks in ([], ["127.0.0.0/8"]):
        result = testing.ask(testing.sample_bot(config(host_probe_networks=networks)), command).result
        assert result.status is Status.FAILED
        assert result.summary.startswith(f"gone: cannot resolve {GONE}")
        assert "\n" not in result.summary and "inside the bot" not in result.summary
    assert not probes.pings and not probes.traces


def test_an_unresolvable_typed_name_is_one_line(probes: Probes) -> None:
    result = testing.ask(testing.sample_bot(config(host_probe_networks=["127.0.0.0/8"])), f"!ping {GONE}").result
    assert result.status is Status.FAILED
    assert result.summary.startswith(f"cannot resolve {GONE}")


@pytest.mark.parametrize("command", ["!ping byname", "!traceroute byname"])
def test_a_name_resolving_outside_the_networks_is_refused(probes: Probes, command: str) -> None:
    result = testing.ask(testing.sample_bot(config(host_probe_networks=["10.0.0.0/8"])), command).result
    assert result.status is Status.INVALID
    assert result.summary.startswith("byname (localhost): ")
    assert "is out of bounds: the bot host may only probe 10.0.0.0/8" in result.summary
    assert not probes.pings and not probes.traces


def test_traceroute_to_a_name_is_traced_to_its_address(probes: Probes) -> None:
    result = testing.ask(testing.sample_bot(config(host_probe_networks=["127.0.0.0/8"])), "!traceroute byname").result
    assert probes.traces == ["127.0.0.1"]
    assert result.status is Status.OK
    assert result.summary == "traceroute to byname (localhost, 127.0.0.1) from the bot host: 1 hop"


def test_a_device_pings_a_name_itself(probes: Probes) -> None:
    probes.device_output = "Type escape sequence to abort.\n% Unrecognized host or address, or protocol not running.\n"
    result = testing.ask(testing.sample_bot(config(host_probe_networks=["10.0.0.0/8"])), "!ping gone from r1").result
    assert probes.sessions == [("r1", f"ping {GONE} repeat 5")]
    assert not [name for name, _ in probes.lookups if name == GONE]  # the bot host did not look it up
    assert result.summary == "ping from r1: % Unrecognized host or address, or protocol not running."


# --- ping monitors -----------------------------------------------------------------------

def test_a_ping_monitor_reports_an_unresolvable_name_as_down(probes: Probes, monkeypatch: pytest.MonkeyPatch) -> None:
    swept: list[list[str]] = []

    async def ping_many(addresses: list[str], **kwargs: Any) -> dict[str, Reachability]:
        swept.append(list(addresses))
        return {a: Reachability(a, True, 0.5, None, 2, (0.5, 0.5)) for a in addresses}

    monkeypatch.setattr(tasks.monitor_checks, "ping_many", ping_many)
    ctx = testing.sample_context(config(host_probe_networks=["127.0.0.0/8"]))
    spec = tasks.monitor_checks._validate_ping(ctx, "byname,gone,r1", {})  # no DNS when added
    assert not [name for name, _ in probes.lookups if name in ("localhost", GONE)]
    outcomes = tasks.monitor_checks.ping_check(ctx, spec)
    assert swept == [["127.0.0.1", "127.0.1.1"]]
    assert outcomes["gone"].ok is False and outcomes["gone"].detail.startswith(f"cannot resolve {GONE}")
    assert outcomes["byname"].ok and outcomes["r1"].ok
    assert all(not on_loop for _, on_loop in probes.lookups)

    narrowed = testing.sample_context(config(host_probe_networks=["10.0.0.0/8"]))
    outcomes = tasks.monitor_checks.ping_check(narrowed, {"targets": [["byname", "localhost"]]})
    assert outcomes["byname"].ok is False and "out of bounds" in outcomes["byname"].detail


def test_a_ping_monitor_is_described_without_python_reprs(use_inventory: None) -> None:
    ctx = testing.sample_context(config())
    spec = tasks.monitor_checks._validate_ping(ctx, "r1,10.0.0.9", {})
    text = Monitor("abc123", "ping", "r1,10.0.0.9", spec, 60, "console:x", "me").describe()
    assert text == "ping r1,10.0.0.9 every 1m"


# --- what the bot host refuses to probe --------------------------------------------------

@pytest.mark.parametrize("target, reason", [
    ("255.255.255.255", "255.255.255.255 is the broadcast address, not a host"),
    ("10.9.255.255", "10.9.255.255 is the broadcast address of 10.9.0.0/16, not a host"),
    ("10.9.0.0", "10.9.0.0 is the network address of 10.9.0.0/16, not a host"),
    ("224.0.0.1", "224.0.0.1 is a multicast address, not a host"),
    ("ff02::1", "ff02::1 is a multicast address, not a host"),
    ("0.0.0.0", "0.0.0.0 is the unspecified address, not a host"),
    ("10.9.0.0/16", "'10.9.0.0/16' is a network, not a host: give one address"),
])
@pytest.mark.parametrize("command", ["ping", "traceroute"])
def test_no_broadcast_or_network_from_the_bot_host(probes: Probes, command: str, target: str, reason: str) -> None:
    bot = testing.sample_bot(config(host_probe_networks=["10.9.0.0/16", "10.8.0.0/31", "10.7.0.1/32", "0.0.0.0/0",
                                                         "ff00::/8"]))
    result = testing.ask(bot, f"!{command} {target}").result
    assert result.status is Status.INVALID
    assert result.summary.startswith(reason)
    assert not probes.pings and not probes.traces


def test_hosts_of_small_networks_and_devices_may_probe_broadcasts(probes: Probes) -> None:
    bot = testing.sample_bot(config(host_probe_networks=["10.9.0.0/16", "10.8.0.0/31", "10.7.0.1/32"]))
    for target in ("10.8.0.0", "10.8.0.1", "10.7.0.1", "10.9.1.255", "10.9.255.254"):
        assert testing.ask(bot, f"!ping {target} count 1").result.status is Status.OK, target
    assert [a for a, _ in probes.pings] == ["10.8.0.0", "10.8.0.1", "10.7.0.1", "10.9.1.255", "10.9.255.254"]
    probes.device_output = "Success rate is 0 percent (0/1)"
    testing.ask(bot, "!ping 10.9.255.255 from r1 count 1").result  # a directed broadcast, on purpose
    assert probes.sessions == [("r1", "ping 10.9.255.255 repeat 1")]


def test_host_probe_problem_allows_what_is_allowed(use_inventory: None) -> None:
    ctx = testing.sample_context(config())
    assert tasks._probe.host_probe_problem(ctx, "10.9.255.255") is None  # no networks: no subnet known
    assert tasks._probe.host_probe_problem(ctx, "::ffff:255.255.255.255") is not None


# --- one count limit, and IOS's options --------------------------------------------------

@pytest.mark.parametrize("command", ["!ping r1 count {n}", "!ping r1 repeat {n}", "!ping 10.0.0.1 from r1 count {n}",
                                     "!ping 10.0.0.1 from r1 repeat {n}"])
def test_one_count_limit_everywhere(probes: Probes, command: str) -> None:
    probes.device_output = "Success rate is 100 percent (1/1), round-trip min/avg/max = 1/1/1 ms"
    for n in (0, 21):
        result = testing.ask(testing.sample_bot(), command.format(n=n)).result
        assert result.status is Status.INVALID and result.summary == "count must be between 1 and 20"
    assert not probes.pings and not probes.sessions
    raised = testing.ask(testing.sample_bot(config(ping_count_max=50)), command.format(n=50)).result
    assert raised.status is not Status.INVALID, raised.summary
    assert [p[0] for p in probes.pings] + [c for _, c in probes.sessions] in (
        ["127.0.1.1"], ["ping 10.0.0.1 repeat 50"])


@pytest.mark.parametrize("command", [
    "!ping 10.0.0.1 from r1 source Loopback0 vrf MGMT size 1500 df-bit repeat 10",
    "!ping 10.0.0.1 df-bit repeat 10 from r1 vrf MGMT size 1500 source Loopback0",
    "!ping 10.0.0.1 size 1500 source Loopback0 df-bit from r1 count 10 vrf MGMT",
])
def test_ios_ping_options_in_any_order(probes: Probes, command: str) -> None:
    probes.device_output = ("Sending 10, 1500-byte ICMP Echos to 10.0.0.1, timeout is 2 seconds:\n"
                            "Packet sent with a source address of 10.0.0.1 \nPacket sent with the DF bit set\n"
                            "!!!!!!!!!!\nSuccess rate is 100 percent (10/10), round-trip min/avg/max = 1/1/2 ms\n")
    result = testing.ask(testing.sample_bot(), command).result
    assert probes.sessions == [("r1", "ping vrf MGMT 10.0.0.1 repeat 10 size 1500 df-bit source Loopback0")]
    assert result.status is Status.OK and table_row(result)[1] == "r1 (10.0.0.1)"


@pytest.mark.parametrize("options, reason", [
    ("size 35", "size must be between 36 and 18024"),
    ("size 18025", "size must be between 36 and 18024"),
    ("source lo0;reload", "'lo0;reload' is neither an interface name"),
    ("source 'Loopback0'", "''Loopback0'' is neither an interface name"),
    ("vrf a;b", "'a;b' is not a VRF name"),
    ("vrf " + "v" * 33, f"'{'v' * 33}' is not a VRF name"),
    ("df-bit df-bit", "'df-bit' is given twice"),
    ("count 2 repeat 3", "'repeat' is another name for 'count': give one of them"),
    ("df-bit 5", "unexpected '5'"),
])
def test_ios_ping_options_are_validated(probes: Probes, options: str, reason: str) -> None:
    result = testing.ask(testing.sample_bot(), f"!ping 10.0.0.1 from r1 {options}").result
    assert result.status is Status.INVALID
    assert result.summary.startswith(reason), result.summary
    assert not probes.sessions


def test_device_only_options_from_the_bot_host_and_other_platforms(probes: Probes) -> None:
    bot = testing.sample_bot()
    refused = testing.ask(bot, "!ping 127.0.0.1 source Loopback0 df-bit").result
    assert refused.status is Status.INVALID
    assert refused.summary == "source and df-bit only apply to a ping from a device: add 'from <device>'"
    junos = testing.ask(bot, "!ping 10.0.0.1 from fw1 size 1500").result
    assert junos.status is Status.INVALID
    assert junos.summary == "size: only on Cisco IOS/IOS-XE devices (fw1 is juniper_junos)"
    assert not probes.pings and not probes.sessions


def test_host_ping_size_is_the_datagram_size(probes: Probes) -> None:
    result = testing.ask(testing.sample_bot(), "!ping 127.0.0.1 size 1500 count 1").result
    assert result.status is Status.OK
    assert probes.pings == [("127.0.0.1", {"interval": 0, "timeout": 2, "privileged": probes.pings[0][1]["privileged"],
                                           "payload_size": 1472})]
    testing.ask(testing.sample_bot(), "!ping ::1 size 1500 count 1").result
    assert probes.pings[1][1]["payload_size"] == 1452



# --- the lab answers these options as IOS does -------------------------------------------

def lab_cli() -> Any:
    from chatbot.lab.configs import device_facts
    from chatbot.lab.ios_cli import IosCli
    from chatbot.lab.netsim import Topology

    return IosCli(device_facts("r1"), Topology(5), "secret")


def lab_says(line: str) -> list[str]:
    cli = lab_cli()
    return cli.run(cli.parse(line))


def test_lab_ping_with_every_option_parses() -> None:
    from tasks._ios_parsers import parse_ios_ping

    built = tasks.ping.ios_ping_command("10.0.0.2", 10, 1500, tasks.ping.DeviceOptions("Loopback0", None, True))
    lines = lab_says(built)
    assert lines[:4] == ["Type escape sequence to abort.",
                         "Sending 10, 1500-byte ICMP Echos to 10.0.0.2, timeout is 2 seconds:",
                         "Packet sent with a source address of 10.0.0.1 ",
                         "Packet sent with the DF bit set"]
    stats = parse_ios_ping("\n".join(lines))
    assert (stats.sent, stats.received, stats.datagram_size, stats.source_address, stats.df_bit) == \
        (10, 10, 1500, "10.0.0.1", True)
    assert stats.rtt_min_ms is not None and stats.rtt_min_ms <= stats.rtt_avg_ms <= stats.rtt_max_ms  # type: ignore[operator]


def test_lab_ping_too_big_with_df_bit_cannot_fragment() -> None:
    from tasks._ios_parsers import parse_ios_ping

    stats = parse_ios_ping("\n".join(lab_says("ping 10.0.0.2 size 1501 df-bit")))
    assert (stats.received, stats.could_not_fragment) == (0, 3)
    assert parse_ios_ping("\n".join(lab_says("ping 10.0.0.2 size 1501"))).received == 5  # fragmented, delivered


def test_lab_ping_vrf_and_source_rules() -> None:
    from tasks._ios_parsers import parse_ios_ping

    def received(line: str) -> int:
        return parse_ios_ping("\n".join(lab_says(line))).received

    assert received("ping vrf Mgmt-intf 127.0.1.2 repeat 3") == 3  # another device's management address
    assert received("ping vrf Mgmt-intf 10.0.0.2") == 0  # not in the management table
    assert received("ping 10.0.0.2 source Gi1") == 0  # a management source has no route in the global table
    assert received("pi 10.0.0.2 so lo0 rep 2 si 200") == 2  # IOS abbreviations
    assert received("ping 10.0.0.2 source 10.1.0.1") == 5
    assert lab_says("ping vrf MGMT 10.0.0.1") == ["% VRF MGMT does not exist."]
    assert lab_says("ping 10.0.0.2 source Gi5") == ["% Invalid source interface - IP not enabled or interface is down"]
    assert lab_says("ping 10.0.0.2 source 10.9.9.9") == [
        "% Invalid source address- IP address not on any of our up interfaces"]
    assert lab_says("ping 10.0.0.2 source Loopback9")[1] == "% Invalid input detected at '^' marker."
    assert lab_says("ping 10.0.0.2 size 35")[1] == "% Invalid input detected at '^' marker."
    assert lab_says("ping 10.0.0.2 source") == ["% Incomplete command.", ""]


def test_lab_round_trips_agree_with_each_other() -> None:
    from tasks._ios_parsers import parse_ios_ping

    for target in ("10.0.0.1", "10.0.0.2", "10.1.2.3", "192.0.2.7"):
        for count in (1, 2, 5):
            stats = parse_ios_ping("\n".join(lab_says(f"ping {target} repeat {count}")))
            if stats.received == 1:
                assert stats.rtt_min_ms == stats.rtt_avg_ms == stats.rtt_max_ms, (target, count)
            assert stats.rtt_min_ms <= stats.rtt_avg_ms <= stats.rtt_max_ms  # type: ignore[operator]


def test_the_default_count_stays_within_a_lower_limit(probes: Probes) -> None:
    probes.device_output = "Success rate is 100 percent (3/3), round-trip min/avg/max = 1/1/1 ms"
    testing.ask(testing.sample_bot(config(ping_count_max=3)), "!ping 10.0.0.1 from r1").result
    testing.ask(testing.sample_bot(), "!ping 10.0.0.1 from r1").result
    assert [c for _, c in probes.sessions] == ["ping 10.0.0.1 repeat 3", "ping 10.0.0.1 repeat 5"]


def test_a_ping_monitor_refuses_what_the_bot_host_may_not_probe(use_inventory: None) -> None:
    from chatbot.errors import ArgumentError

    ctx = testing.sample_context(config(host_probe_networks=["127.0.0.0/8"]))
    for targets, reason in (("r1,127.255.255.255", "127.255.255.255 is the broadcast address of 127.0.0.0/8, not a host"),
                            ("10.0.0.1", "10.0.0.1 is out of bounds: the bot host may only probe 127.0.0.0/8")):
        with pytest.raises(ArgumentError) as refused:
            tasks.monitor_checks._validate_ping(ctx, targets, {})
        assert str(refused.value) == reason  # no "add 'from <device>'": a monitor has no such option


def test_a_device_traces_a_name_to_the_address_it_resolved(probes: Probes) -> None:
    probes.device_output = ("Type escape sequence to abort.\nTracing the route to core1.example.net (10.1.1.1)\n"
                            "VRF info: (vrf in name/id, vrf out name/id)\n  1 10.255.0.1 1 msec 1 msec 1 msec\n"
                            "  2 10.1.1.1 2 msec *  2 msec\n")
    result = testing.ask(testing.sample_bot(), "!traceroute core1.example.net from r1").result
    assert probes.sessions == [("r1", "traceroute core1.example.net")]
    assert result.status is Status.OK
    assert result.summary == "traceroute to core1.example.net from r1: 2 hops"
