"""Parse Cisco IOS / IOS-XE ``ping`` and ``traceroute`` output into plain data.

Tasks run these commands on a device and hand the structured result to the renderer;
nothing here knows about chat. Both parsers raise ValueError with a short reason, the
device's own error line when there is one ("% Unrecognized host or address, or
protocol not running."), so the user sees why there is no result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chatbot.inventory import is_ip_address

__all__ = ["Hop", "PingStats", "parse_ios_ping", "parse_ios_traceroute", "traced_address"]


@dataclass(frozen=True)
class PingStats:
    sent: int
    received: int
    success_percent: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    datagram_size: int | None = None  # "Sending 5, 1500-byte ICMP Echos to ..."
    source_address: str | None = None  # "Packet sent with a source address of 10.0.0.1"
    df_bit: bool = False  # "Packet sent with the DF bit set"
    could_not_fragment: int = 0  # 'M' marks: too big for a link, and DF set


@dataclass(frozen=True)
class Hop:
    number: int
    address: str | None  # first address that answered; None when every probe timed out
    rtts_ms: tuple[float | None, ...]  # one per probe; None = no reply ('*' or '!H'...)
    name: str | None = None  # DNS name when IOS resolved it: "core1.example.net (10.1.1.1)"


# Matched on the output with all whitespace removed: terminals and long "ping repeat"
# runs wrap this line at any column, even inside a number.
_SUCCESS = re.compile(
    r"Successrateis(?P<percent>\d+)percent\((?P<received>\d+)/(?P<sent>\d+)\)"
    r"(?:,round-tripmin/avg/max=(?P<min>\d+(?:\.\d+)?)/(?P<avg>\d+(?:\.\d+)?)"
    r"/(?P<max>\d+(?:\.\d+)?)ms)?"
)
_WHITESPACE = re.compile(r"\s+")
_SENDING = re.compile(r"^[ \t]*Sending \d+, (?P<size>\d+)-byte ICMP Echos", re.MULTILINE)
_SOURCE = re.compile(r"^[ \t]*Packet sent with a source address of (?P<address>\S+)", re.MULTILINE)
_DF_BIT = re.compile(r"^[ \t]*Packet sent with the DF bit set", re.MULTILINE)
# The probe marks: ! reply, . timeout, U unreachable, Q source quench, M could not
# fragment, ? unknown packet type, & TTL exceeded. Lines of nothing else.
_MARKS = re.compile(r"^[ \t]*(?P<marks>[!.UQM?&]+)[ \t\r]*$", re.MULTILINE)
_DEVICE_ERROR = re.compile(r"^[ \t]*(%[^\r\n]*?)[ \t\r]*$", re.MULTILINE)


def _no_result(output: str, what: str) -> ValueError:
    error = _DEVICE_ERROR.search(output)
    return ValueError(error.group(1) if error else f"no {what} result in the output")


def parse_ios_ping(output: str) -> PingStats:
    """The summary of an IOS ping; the last one if the output holds several."""
    found = list(_SUCCESS.finditer(_WHITESPACE.sub("", output)))
    if not found:
        raise _no_result(output, "ping")
    m = found[-1]
    sent, received, percent = int(m["sent"]), int(m["received"]), int(m["percent"])
    if sent == 0 or received > sent or percent > 100:
        raise ValueError(f"inconsistent ping summary: {percent} percent ({received}/{sent})")
    # The header lines and marks of the last run only, as for its summary.
    last_run = output[: output.rfind("Success rate")]
    last_run = last_run[last_run.rfind("Type escape sequence") + 1 :]
    size = list(_SENDING.finditer(last_run))
    source = list(_SOURCE.finditer(last_run))
    marks = "".join(found_marks["marks"] for found_marks in _MARKS.finditer(last_run))
    return PingStats(
        sent=sent,
        received=received,
        success_percent=percent,
        rtt_min_ms=float(m["min"]) if m["min"] else None,
        rtt_avg_ms=float(m["avg"]) if m["avg"] else None,
        rtt_max_ms=float(m["max"]) if m["max"] else None,
        datagram_size=int(size[-1]["size"]) if size else None,
        source_address=source[-1]["address"] if source else None,
        df_bit=_DF_BIT.search(last_run) is not None,
        could_not_fragment=marks.count("M"),
    )


# "[MPLS: Label 16 Exp 0]", "[AS 65001]": annotations, inline or on a line of their own.
_BRACKETED = re.compile(r"\[[^\]\r\n]*\]")
_HOP_LINE = re.compile(r"^[ \t]*(?P<number>\d+)[ \t]+(?P<probes>\S.*)$")
_RTT = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>msec|ms)?")
_NAME_ADDRESS = re.compile(r"\((?P<address>[^()\s]+)\)")
# Why a probe got no time: !H host, !N net, !P protocol, !A admin-prohibited
# unreachable, Q source quench, U port unreachable, ? unknown packet type.
_PROBE_CODES = re.compile(r"!\w*|\?|[QU]")


def _starts_with_address(tokens: list[str]) -> bool:
    if is_ip_address(tokens[0]):
        return True
    named = _NAME_ADDRESS.fullmatch(tokens[1]) if len(tokens) > 1 else None
    return named is not None and is_ip_address(named["address"])


@dataclass
class _HopBuilder:
    number: int
    address: str | None = None
    name: str | None = None
    rtts: list[float | None] = field(default_factory=list)

    def add_probes(self, text: str, line: str) -> None:
        """Read "addr|name (addr)" and probe results ("1 msec", "*", "!H") from text."""
        rtts = self.rtts
        tokens = text.split()
        previous_was_time = False
        i = 0
        while i < len(tokens):
            token = tokens[i]
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            rtt = _RTT.fullmatch(token)
            if token == "*":
                rtts.append(None)
                previous_was_time = False
            elif rtt and (rtt["unit"] or following in ("msec", "ms")):
                rtts.append(float(rtt["value"]))
                previous_was_time = True
                i += 0 if rtt["unit"] else 1
            elif _PROBE_CODES.fullmatch(token):
                # After a time the code only annotates that probe; alone it is one.
                if not previous_was_time:
                    rtts.append(None)
                previous_was_time = False
            elif is_ip_address(token):
                self._answered_from(token, None)
                previous_was_time = False
            elif (named := _NAME_ADDRESS.fullmatch(following)) and is_ip_address(
                named["address"]
            ):
                self._answered_from(named["address"], token)
                previous_was_time = False
                i += 1
            else:
                raise ValueError(f"unexpected {token!r} in traceroute line {line.strip()!r}")
            i += 1

    def _answered_from(self, address: str, name: str | None) -> None:
        # Probes of one hop may come back from different routers (load sharing);
        # the hop is shown by the first one, its times keep every probe.
        if self.address is None:
            self.address, self.name = address, name

    def build(self) -> Hop:
        return Hop(self.number, self.address, tuple(self.rtts), self.name)


def parse_ios_traceroute(output: str) -> list[Hop]:
    """The hops of an IOS traceroute, in order."""
    hops: list[_HopBuilder] = []
    for raw in output.splitlines():
        line = _BRACKETED.sub("", raw).rstrip()
        if not line.strip():
            continue
        if hop_line := _HOP_LINE.match(line):
            hop = _HopBuilder(int(hop_line["number"]))
            hop.add_probes(hop_line["probes"], raw)
            hops.append(hop)
        elif hops and line[0] in " \t" and _starts_with_address(line.split()):
            # A probe of the same hop answered from another address: indented, no
            # hop number.
            hops[-1].add_probes(line, raw)
        # Anything else is a banner ("Type escape sequence...", "Tracing the route
        # to ...", "VRF info: ...") or a DNS lookup message.
    if not hops:
        raise _no_result(output, "traceroute")
    return [hop.build() for hop in hops]


_TRACING = re.compile(r"^[ \t]*Tracing the route to (?P<target>\S+)(?: \((?P<address>[^()\s]+)\))?", re.MULTILINE)


def traced_address(output: str) -> str | None:
    """The address an IOS traceroute went to, from its banner: "Tracing the route to
    10.1.1.1" or, for a name IOS resolved, "Tracing the route to core1.example.net (10.1.1.1)"."""
    found = _TRACING.search(output)
    if found is None:
        return None
    address = found["address"] or found["target"]
    return address if is_ip_address(address) else None
