"""IOS ping / traceroute output parsing, on outputs in the shapes IOS prints."""

from __future__ import annotations

import pytest

from tasks._ios_parsers import Hop, PingStats, parse_ios_ping, parse_ios_traceroute, traced_address

# --- ping -----------------------------------------------------------------------------

PING_ALL = """\
Type escape sequence to abort.
Sending 5, 100-byte ICMP Echos to 10.0.0.1, timeout is 2 seconds:
!!!!!
Success rate is 100 percent (5/5), round-trip min/avg/max = 1/2/4 ms
"""

PING_NONE = """\
Type escape sequence to abort.
Sending 5, 100-byte ICMP Echos to 10.0.0.9, timeout is 2 seconds:
.....
Success rate is 0 percent (0/5)
"""

PING_PARTIAL_WITH_SOURCE = """\
r1#ping 10.0.0.1 source Loopback0
Type escape sequence to abort.
Sending 5, 100-byte ICMP Echos to 10.0.0.1, timeout is 2 seconds:
Packet sent with a source address of 10.255.255.1
!.!.!
Success rate is 60 percent (3/5), round-trip min/avg/max = 1/10/28 ms
r1#"""

# "ping ... repeat 100": the bangs wrap at 70 a line, and a narrow terminal wraps the
# summary, here even inside the numbers.
PING_WRAPPED = (
    "Type escape sequence to abort.\r\n"
    "Sending 100, 1500-byte ICMP Echos to 10.0.0.1, timeout is 2 seconds:\r\n"
    + "!" * 70 + "\r\n"
    + "!" * 27 + "...\r\n"
    "Success rate is 97 percent (97/100), round-trip min/avg/max = 12/1\r\n"
    "5/23 ms\r\n"
)

# `ping ... size 1493 df-bit`: a link's MTU is smaller, the router answers "M" (could not
# fragment) for the echoes its ICMP rate limit lets through, "." for the others.
PING_DF_TOO_BIG = """\
r1#ping 11.11.11.1 source Loopback0 size 1493 df-bit
Type escape sequence to abort.
Sending 5, 1493-byte ICMP Echos to 11.11.11.1, timeout is 2 seconds:
Packet sent with a source address of 10.10.10.1 
Packet sent with the DF bit set
M.M.M
Success rate is 0 percent (0/5)
r1#"""

PING_DF_FITS = """\
Type escape sequence to abort.
Sending 10, 1500-byte ICMP Echos to 10.0.0.1, timeout is 2 seconds:
Packet sent with the DF bit set
!!!!!!!!!!
Success rate is 100 percent (10/10), round-trip min/avg/max = 1/1/4 ms
"""


@pytest.mark.parametrize(
    "output, expected",
    [
        (PING_ALL, PingStats(5, 5, 100, 1.0, 2.0, 4.0, datagram_size=100)),
        (PING_NONE, PingStats(5, 0, 0, None, None, None, datagram_size=100)),
        (PING_PARTIAL_WITH_SOURCE, PingStats(5, 3, 60, 1.0, 10.0, 28.0, datagram_size=100,
                                             source_address="10.255.255.1")),
        (PING_WRAPPED, PingStats(100, 97, 97, 12.0, 15.0, 23.0, datagram_size=1500)),
        (PING_DF_TOO_BIG, PingStats(5, 0, 0, None, None, None, datagram_size=1493, source_address="10.10.10.1",
                                    df_bit=True, could_not_fragment=3)),
        (PING_DF_FITS, PingStats(10, 10, 100, 1.0, 1.0, 4.0, datagram_size=1500, df_bit=True)),
    ],
    ids=["all", "none", "partial-with-source", "wrapped-crlf", "df-bit-too-big", "df-bit-fits"],
)
def test_parse_ping(output: str, expected: PingStats) -> None:
    assert parse_ios_ping(output) == expected


def test_ping_fractional_times() -> None:
    stats = parse_ios_ping(
        "Success rate is 100 percent (2/2), round-trip min/avg/max = 0.5/1.25/2 ms"
    )
    assert (stats.rtt_min_ms, stats.rtt_avg_ms, stats.rtt_max_ms) == (0.5, 1.25, 2.0)


def test_ping_takes_the_last_summary() -> None:
    output = PING_NONE + PING_ALL
    assert parse_ios_ping(output).received == 5


def test_ping_unknown_host_raises_the_device_message() -> None:
    output = (
        'Translating "nosuchhost"...domain server (255.255.255.255)\n'
        "% Unrecognized host or address, or protocol not running.\n"
        "\n"
    )
    with pytest.raises(ValueError) as error:
        parse_ios_ping(output)
    assert str(error.value) == "% Unrecognized host or address, or protocol not running."


def test_ping_invalid_input_raises_the_device_message() -> None:
    output = (
        "ping 10.0.0.1 repeet 5\n"
        "                ^\n"
        "% Invalid input detected at '^' marker.\r\n"
    )
    with pytest.raises(ValueError) as error:
        parse_ios_ping(output)
    assert str(error.value) == "% Invalid input detected at '^' marker."


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Type escape sequence to abort.\n"
        "Sending 5, 100-byte ICMP Echos to 10.0.0.1, timeout is 2 seconds:\n!!!",
        "Success rate is many percent",
        "success rate: 100%",
    ],
    ids=["empty", "cut-off", "garbled", "not-ios"],
)
def test_ping_without_summary_raises(output: str) -> None:
    with pytest.raises(ValueError, match="no ping result in the output"):
        parse_ios_ping(output)


@pytest.mark.parametrize(
    "summary",
    [
        "Success rate is 100 percent (6/5)",
        "Success rate is 100 percent (0/0)",
        "Success rate is 120 percent (5/5)",
    ],
)
def test_ping_inconsistent_summary_raises(summary: str) -> None:
    with pytest.raises(ValueError, match="inconsistent ping summary"):
        parse_ios_ping(summary)


# --- traceroute -----------------------------------------------------------------------

TRACE_BASIC = """\
Type escape sequence to abort.
Tracing the route to 10.0.0.1
VRF info: (vrf in name/id, vrf out name/id)
  1 10.255.0.1 1 msec 1 msec 1 msec
  2 10.255.1.1 2 msec 2 msec 1 msec
  3 10.0.0.1 3 msec *  2 msec
  4  *  *  *
"""


def test_traceroute_basic() -> None:
    assert parse_ios_traceroute(TRACE_BASIC) == [
        Hop(1, "10.255.0.1", (1.0, 1.0, 1.0)),
        Hop(2, "10.255.1.1", (2.0, 2.0, 1.0)),
        Hop(3, "10.0.0.1", (3.0, None, 2.0)),
        Hop(4, None, (None, None, None)),
    ]


def test_traceroute_crlf() -> None:
    assert parse_ios_traceroute(TRACE_BASIC.replace("\n", "\r\n")) == parse_ios_traceroute(
        TRACE_BASIC
    )


def test_traceroute_resolved_names() -> None:
    output = """\
Type escape sequence to abort.
Tracing the route to web.example.net (192.0.2.80)
VRF info: (vrf in name/id, vrf out name/id)
  1 core1.example.net (10.1.1.1) 1 msec 1 msec 2 msec
  2 10.1.2.1 4 msec 4 msec 4 msec
  3 web.example.net (192.0.2.80) 8 msec *  9 msec
"""
    assert parse_ios_traceroute(output) == [
        Hop(1, "10.1.1.1", (1.0, 1.0, 2.0), name="core1.example.net"),
        Hop(2, "10.1.2.1", (4.0, 4.0, 4.0)),
        Hop(3, "192.0.2.80", (8.0, None, 9.0), name="web.example.net"),
    ]


def test_traceroute_mpls_labels_inline_and_on_their_own_line() -> None:
    output = """\
Type escape sequence to abort.
Tracing the route to 10.4.4.4
VRF info: (vrf in name/id, vrf out name/id)
  1 10.1.12.2 [MPLS: Label 17 Exp 0] 2 msec 1 msec 1 msec
  2 10.1.23.3 [MPLS: Labels 16/24 Exp 0] 3 msec 2 msec 2 msec
  3 10.1.34.4 [AS 65004] 4 msec
    [MPLS: Label 18 Exp 0]
    10.1.35.5 5 msec 6 msec
"""
    assert parse_ios_traceroute(output) == [
        Hop(1, "10.1.12.2", (2.0, 1.0, 1.0)),
        Hop(2, "10.1.23.3", (3.0, 2.0, 2.0)),
        Hop(3, "10.1.34.4", (4.0, 5.0, 6.0)),
    ]


def test_traceroute_probes_from_different_addresses() -> None:
    output = """\
Tracing the route to 10.0.0.1
  1 10.255.0.1 1 msec 1 msec 1 msec
  2 10.0.2.1 4 msec
    10.0.3.1 5 msec
    core9.example.net (10.0.4.1) 6 msec
  3  *
    10.0.5.1 7 msec 8 msec
  4 10.0.0.1 3 msec 3 msec 3 msec
"""
    assert parse_ios_traceroute(output) == [
        Hop(1, "10.255.0.1", (1.0, 1.0, 1.0)),
        Hop(2, "10.0.2.1", (4.0, 5.0, 6.0)),
        Hop(3, "10.0.5.1", (None, 7.0, 8.0)),
        Hop(4, "10.0.0.1", (3.0, 3.0, 3.0)),
    ]


def test_traceroute_unreachable_codes() -> None:
    output = """\
Tracing the route to 10.9.9.9
  1 10.255.0.1 1 msec 1 msec 1 msec
  2 10.255.0.2 !H  *  !H
  3 10.255.0.3 4 msec !A 5 msec
"""
    assert parse_ios_traceroute(output) == [
        Hop(1, "10.255.0.1", (1.0, 1.0, 1.0)),
        Hop(2, "10.255.0.2", (None, None, None)),
        Hop(3, "10.255.0.3", (4.0, 5.0)),
    ]


def test_traceroute_ipv6() -> None:
    output = """\
Type escape sequence to abort.
Tracing the route to 2001:DB8:2::1

  1 2001:DB8:1::2 0 msec 0 msec 1 msec
  2 2001:DB8:2::1 4 msec 0 msec 4 msec
"""
    assert parse_ios_traceroute(output) == [
        Hop(1, "2001:DB8:1::2", (0.0, 0.0, 1.0)),
        Hop(2, "2001:DB8:2::1", (4.0, 0.0, 4.0)),
    ]


def test_traceroute_all_timeouts_to_max_ttl() -> None:
    output = "Tracing the route to 10.0.0.1\n" + "".join(
        f"{n:3d}  *  *  *\n" for n in range(1, 31)
    )
    hops = parse_ios_traceroute(output)
    assert [h.number for h in hops] == list(range(1, 31))
    assert all(h.address is None and h.rtts_ms == (None, None, None) for h in hops)


def test_traceroute_unknown_host_raises_the_device_message() -> None:
    output = (
        "Type escape sequence to abort.\n"
        'Translating "nosuchhost"...domain server (255.255.255.255)\n'
        "% Unrecognized host or address, or protocol not running.\n"
    )
    with pytest.raises(ValueError) as error:
        parse_ios_traceroute(output)
    assert str(error.value) == "% Unrecognized host or address, or protocol not running."


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Type escape sequence to abort.\n"
        "Tracing the route to 10.0.0.1\n"
        "VRF info: (vrf in name/id, vrf out name/id)\n",
        "traceroute to 10.0.0.1 (10.0.0.1), 30 hops max\n",
    ],
    ids=["empty", "cut-off", "not-ios"],
)
def test_traceroute_without_hops_raises(output: str) -> None:
    with pytest.raises(ValueError, match="no traceroute result in the output"):
        parse_ios_traceroute(output)


@pytest.mark.parametrize(
    "line, token",
    [
        ("  1 10.0.0.1 4 msec bogus 4 msec", "bogus"),
        ("  1 not-an-address 4 msec", "not-an-address"),
        ("  1 10.0.0.1 4 seconds", "4"),
        ("  1 core1.example.net (999.1.1.1) 1 msec", "core1.example.net"),
    ],
)
def test_traceroute_malformed_hop_raises(line: str, token: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_ios_traceroute("Tracing the route to 10.0.0.1\n" + line + "\n")
    assert repr(token) in str(error.value)


@pytest.mark.parametrize("output, expected", [
    ("Type escape sequence to abort.\nTracing the route to 10.0.0.9\nVRF info: (vrf in name/id, vrf out name/id)\n"
     "  1 10.255.0.1 1 msec 1 msec 1 msec\n", "10.0.0.9"),
    ("Type escape sequence to abort.\nTracing the route to core1.example.net (10.1.1.1)\n"
     "  1 10.1.1.1 1 msec * 1 msec\n", "10.1.1.1"),
    ("Translating \"nosuchhost\"...domain server (255.255.255.255)\n% Unrecognized host or address.\n", None),
], ids=["address", "resolved-name", "no-banner"])
def test_traced_address(output: str, expected: str | None) -> None:
    assert traced_address(output) == expected
