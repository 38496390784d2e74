"""tasks/_icmp.py: the bot host's ICMP sweep.

What can be tested here, and how:
- Real echoes, only to loopback (127/8, ::1). Every address of 127/8 answers on Linux,
  so a silent host cannot be had in the test's own network namespace without changing
  a sysctl for everyone.
- Where the test may create a network namespace (root with unshare), a child process
  gets a private one, with nothing in it but `lo`: there the sysctls are the child's
  own, so it tests for real the silent host (icmp_echo_ignore_all=1), unprivileged ping
  sockets (ping_group_range), and the permission message (CAP_NET_RAW dropped).
- ICMP errors from routers (unreachable, TTL exceeded) and local send failures cannot
  be produced on loopback: a fake socket hands the sweep the exact bytes a kernel would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import icmplib
import pytest

import tasks._icmp as icmp
from tasks._icmp import NO_PERMISSION, Reachability, ping_many, ping_many_blocking

REPO = Path(__file__).resolve().parent.parent


def sweep(addresses: list[str], **options: Any) -> dict[str, Reachability]:
    return asyncio.run(ping_many(addresses, **options))


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _icmp_allowed() -> bool:
    return all(r.error != NO_PERMISSION for r in sweep(["127.0.0.1"]).values())


needs_icmp = pytest.mark.skipif(not _icmp_allowed(), reason="this host may not send ICMP (see NO_PERMISSION)")


# --- real echoes on loopback ---------------------------------------------------------------

@needs_icmp
def test_loopback_addresses_answer() -> None:
    addresses = ["127.0.0.1", "127.0.3.7", "127.255.255.254"]
    results = sweep(addresses)
    assert list(results) == addresses
    for address, r in results.items():
        assert r == Reachability(address, True, r.rtt_ms, None, 1, r.rtts_ms)
        assert r.received == 1 and 0 <= r.rtt_ms < 1000


@needs_icmp
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_loopback_and_mixed_families() -> None:
    results = sweep(["::1", "127.0.0.1", "::ffff:127.0.0.2"])
    assert all(r.alive and r.error is None for r in results.values()), results


@needs_icmp
def test_count_sends_that_many_echoes_one_after_another() -> None:
    started = time.monotonic()
    r = sweep(["127.0.0.1"], count=5, timeout=2)["127.0.0.1"]
    assert r.sent == 5 and r.received == 5 and r.alive
    assert r.rtt_ms == pytest.approx(sum(r.rtts_ms) / 5)
    assert time.monotonic() - started < 1  # adaptive: no fixed interval between echoes


@needs_icmp
def test_duplicates_are_probed_once_and_order_is_kept() -> None:
    results = sweep(["127.0.0.9", "127.0.0.8", "127.0.0.9"], count=2)
    assert list(results) == ["127.0.0.9", "127.0.0.8"]
    assert results["127.0.0.9"].sent == 2


@needs_icmp
def test_a_thousand_addresses_with_a_small_window_lose_nothing() -> None:
    # A reply dropped by an overflowing socket buffer would read as "down".
    addresses = [f"127.1.{i // 250}.{1 + i % 250}" for i in range(1000)]
    results = sweep(addresses, concurrency=1000, timeout=2)
    down = [a for a, r in results.items() if not r.alive]
    assert not down, down[:5]
    results = sweep(addresses[:50], concurrency=1, timeout=2)
    assert all(r.alive for r in results.values())


@needs_icmp
def test_concurrent_sweeps_each_get_their_own_replies() -> None:
    async def both() -> list[dict[str, Reachability]]:
        a = [f"127.2.0.{i}" for i in range(1, 201)]
        b = [f"127.3.0.{i}" for i in range(1, 201)]
        return list(await asyncio.gather(ping_many(a), ping_many(b), ping_many(a[:10], count=3)))

    for results in asyncio.run(both()):
        assert all(r.alive and r.error is None for r in results.values())


@needs_icmp
def test_blocking_wrapper_runs_in_a_worker_thread() -> None:
    out: dict[str, Reachability] = {}
    worker = threading.Thread(target=lambda: out.update(ping_many_blocking(["127.0.0.1"], count=1)))
    worker.start()
    worker.join(10)
    assert out["127.0.0.1"].alive


@needs_icmp
def test_raw_socket_filter_keeps_other_traffic_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a raw socket the kernel filters by identifier: a sweep never parses the echo
    requests the host receives, nor the replies to another sweep."""
    probe = icmp._open_socket(4, 10)
    assert not isinstance(probe, str)
    privileged = probe.privileged
    probe.close()
    if not privileged:
        pytest.skip("ping sockets are in use here: the kernel demultiplexes for us")
    parsed: list[object] = []
    original = icmp._parse_raw
    monkeypatch.setattr(icmp, "_parse_raw", lambda *a: parsed.append(original(*a)) or parsed[-1])

    async def two() -> None:
        await asyncio.gather(ping_many([f"127.4.0.{i}" for i in range(1, 101)]),
                             ping_many([f"127.5.0.{i}" for i in range(1, 101)]))

    asyncio.run(two())
    assert len(parsed) == 200 and None not in parsed


# --- what becomes an error string, never an exception -------------------------------------

def test_bad_addresses_get_a_reason_and_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSocket(4, lambda *_: [])
    install(monkeypatch, fake)
    results = sweep(["r1.example", "", "224.0.0.1", "ff02::1", "10.0.0.300", "0.0.0.0"])
    assert results["r1.example"].error == "'r1.example' is not an IP address"
    assert results[""].error == "'' is not an IP address"
    assert results["224.0.0.1"].error == "224.0.0.1 is a multicast address, not a host"
    assert results["ff02::1"].error == "ff02::1 is a multicast address, not a host"
    assert "not an IP address" in (results["10.0.0.300"].error or "")
    assert results["0.0.0.0"].error == "0.0.0.0 is the unspecified address, not a host"
    assert not any(r.alive for r in results.values())
    assert fake.sent == []


def test_invalid_options_are_the_callers_mistake() -> None:
    for options in ({"count": 0}, {"timeout": 0}, {"concurrency": 0}):
        with pytest.raises(ValueError):
            sweep(["127.0.0.1"], **options)


def test_no_permission_is_one_clear_message_for_every_address(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    tried: list[bool] = []

    def refuse(privileged: bool = True, **_: Any) -> None:
        tried.append(privileged)
        raise icmplib.SocketPermissionError(privileged)

    monkeypatch.setattr(icmplib, "ICMPv4Socket", refuse)
    monkeypatch.setattr(icmplib, "ICMPv6Socket", refuse)
    monkeypatch.setattr(icmp, "_may_use_raw_sockets", lambda: True)
    results = sweep(["127.0.0.1", "127.0.0.2", "::1"])
    assert {r.error for r in results.values()} == {NO_PERMISSION}
    assert not any(r.alive for r in results.values())
    assert sorted(tried) == [False, False, True, True]  # ping socket first, then raw
    warnings = [r for r in caplog.records if NO_PERMISSION in r.getMessage()]
    assert len(warnings) == 1 and "3 addresses" in warnings[0].getMessage()


def test_raw_sockets_are_not_tried_without_cap_net_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[bool] = []

    def refuse(privileged: bool = True, **_: Any) -> None:
        tried.append(privileged)
        raise icmplib.SocketPermissionError(privileged)

    monkeypatch.setattr(icmplib, "ICMPv4Socket", refuse)
    monkeypatch.setattr(icmp, "_may_use_raw_sockets", lambda: False)
    assert sweep(["127.0.0.1"])["127.0.0.1"].error == NO_PERMISSION
    assert tried == [False]


def test_other_socket_failures_name_the_family(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(privileged: bool = True, **_: Any) -> None:
        raise icmplib.ICMPLibError("Address family not supported by protocol")

    monkeypatch.setattr(icmplib, "ICMPv6Socket", broken)
    r = sweep(["::1"])["::1"]
    assert not r.alive
    assert r.error == "cannot open an ICMPv6 socket on the bot host: Address family not supported by protocol"


# --- the sweep against a fake socket: the paths loopback cannot take ----------------------

class FakeSocket:
    """Stands in for the ICMP socket: records what the sweep sends and hands back what
    `respond(packet, sockaddr)` returns, as a kernel would: ("reply", bytes, source) for the
    normal queue, ("error", header, ancillary, destination) for a ping socket's error
    queue, or an OSError instance to raise from sendto."""

    def __init__(self, family: int, respond: Callable[[bytes, tuple], list[Any]]) -> None:
        self.family = family
        self.respond = respond
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sent: list[tuple[bytes, tuple]] = []
        self.inbox: deque[tuple[bytes, tuple]] = deque()
        self.errors: deque[tuple[bytes, list, tuple]] = deque()
        self.pending_error: OSError | None = None
        self.closed = False

    def fileno(self) -> int:
        return self._wake_r.fileno()

    def sendto(self, data: bytes, sockaddr: tuple) -> int:
        answers = self.respond(data, sockaddr)
        for answer in answers:
            if isinstance(answer, OSError):
                raise answer
        self.sent.append((data, sockaddr))
        for answer in answers:
            if answer[0] == "reply":
                self.inbox.append((answer[1], (answer[2], 0)))
            else:
                self.errors.append((answer[1], answer[2], (answer[3], 0)))
                self.pending_error = OSError(113, "No route to host")
            self._wake_w.send(b"!")
        return len(data)

    def recvfrom(self, size: int) -> tuple[bytes, tuple]:
        if self.pending_error is not None:
            err, self.pending_error = self.pending_error, None
            raise err
        if not self.inbox:
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
            raise BlockingIOError
        return self.inbox.popleft()

    def recvmsg(self, size: int, ancsize: int = 0, flags: int = 0) -> tuple[bytes, list, int, tuple]:
        assert flags == socket.MSG_ERRQUEUE
        if not self.errors:
            raise BlockingIOError
        data, ancillary, destination = self.errors.popleft()
        return data, ancillary, 0, destination

    def close(self) -> None:
        self.closed = True
        self._wake_r.close()
        self._wake_w.close()


IDENT = 0x4242


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeSocket, privileged: bool = True) -> None:
    def open_socket(family: int, window: int) -> icmp._ProbeSocket:
        assert family == fake.family
        return icmp._ProbeSocket(fake, family, privileged, IDENT if privileged else 0, fake.close, False)  # type: ignore[arg-type]

    monkeypatch.setattr(icmp, "_open_socket", open_socket)


def ipv4_header(source: str, destination: str, length: int, proto: int = 1) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, proto, 0,
                       socket.inet_aton(source), socket.inet_aton(destination))


def echo_reply_v4(request: bytes, source: str) -> bytes:
    """What a raw IPv4 socket reads for the reply to `request`: IP header, then ICMP."""
    reply = bytes([0]) + request[1:]
    return ipv4_header(source, "127.0.0.1", len(reply)) + reply


def test_silent_addresses_time_out_without_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSocket(4, lambda *_: [])
    install(monkeypatch, fake)
    started = time.monotonic()
    results = sweep(["10.0.0.1", "10.0.0.2"], count=2, timeout=0.2)
    elapsed = time.monotonic() - started
    for r in results.values():
        assert (r.alive, r.rtt_ms, r.error, r.sent, r.rtts_ms) == (False, None, None, 2, ())
    assert 0.35 < elapsed < 1.5  # two rounds of 0.2 s, the addresses in parallel
    assert len(fake.sent) == 4 and fake.closed


def test_a_reply_counts_only_from_the_address_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The right identifier and sequence number, but from another host: not an answer.
    fake = FakeSocket(4, lambda pkt, to: [("reply", echo_reply_v4(pkt, "10.9.9.9"), "10.9.9.9")])
    install(monkeypatch, fake)
    assert not sweep(["10.0.0.1"], timeout=0.1)["10.0.0.1"].alive


def test_replies_to_another_identifier_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    def other_sweep(pkt: bytes, to: tuple) -> list[Any]:
        foreign = pkt[:4] + struct.pack("!H", IDENT + 1) + pkt[6:]
        return [("reply", echo_reply_v4(foreign, to[0]), to[0])]

    install(monkeypatch, FakeSocket(4, other_sweep))
    assert not sweep(["10.0.0.1"], timeout=0.1)["10.0.0.1"].alive


def test_echo_request_layout_and_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSocket(4, lambda pkt, to: [("reply", echo_reply_v4(pkt, to[0]), to[0])])
    install(monkeypatch, fake)
    r = sweep(["10.0.0.1"], count=3)["10.0.0.1"]
    assert r.alive and r.received == 3
    sequences = []
    for packet, sockaddr in fake.sent:
        assert sockaddr == ("10.0.0.1", 0)
        icmp_type, code, _checksum, ident, seq = struct.unpack_from("!BBHHH", packet)
        assert (icmp_type, code, ident, len(packet)) == (8, 0, IDENT, 64)
        words = sum(struct.unpack(f"!{len(packet) // 2}H", packet))
        while words >> 16:
            words = (words & 0xFFFF) + (words >> 16)
        assert words == 0xFFFF  # a valid Internet checksum
        sequences.append(seq)
    assert len(set(sequences)) == 3


def test_router_unreachable_on_a_raw_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(pkt: bytes, to: tuple) -> list[Any]:
        quoted = ipv4_header("192.0.2.2", to[0], len(pkt)) + pkt[:8]
        message = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
        return [("reply", ipv4_header("10.0.0.254", "192.0.2.2", len(message)) + message, "10.0.0.254")]

    install(monkeypatch, FakeSocket(4, unreachable))
    r = sweep(["10.0.0.1"], count=2, timeout=5)["10.0.0.1"]
    assert (r.alive, r.sent, r.error) == (False, 2, "host unreachable (reported by 10.0.0.254)")


def test_router_errors_on_an_ipv6_raw_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def hop_limit(pkt: bytes, to: tuple) -> list[Any]:
        ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(pkt), 58, 1, socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
                          socket.inet_pton(socket.AF_INET6, to[0]))
        return [("reply", struct.pack("!BBHI", 3, 0, 0, 0) + ip6 + pkt[:8], "2001:db8::fe")]

    install(monkeypatch, FakeSocket(6, hop_limit))
    r = sweep(["2001:db8::1"], timeout=5)["2001:db8::1"]
    assert r.error == "hop limit exceeded (reported by 2001:db8::fe)"


def test_router_errors_on_a_ping_socket_come_from_the_error_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    def errqueue(pkt: bytes, to: tuple) -> list[Any]:
        # struct sock_extended_err (errno, origin ICMP, type 3, code 13), then the offender
        extended = struct.pack("=IBBBxII", 113, icmp.SO_EE_ORIGIN_ICMP, 3, 13, 0, 0)
        offender = struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton("10.0.0.254"))
        return [("error", pkt[:8], [(socket.IPPROTO_IP, icmp.IP_RECVERR, extended + offender)], to[0])]

    install(monkeypatch, FakeSocket(4, errqueue), privileged=False)
    r = sweep(["10.0.0.1"], timeout=5)["10.0.0.1"]
    assert r.error == "communication administratively prohibited (reported by 10.0.0.254)"


def test_a_ping_socket_reply_has_no_ip_header(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSocket(4, lambda pkt, to: [("reply", bytes([0]) + pkt[1:], to[0])])
    install(monkeypatch, fake, privileged=False)
    assert sweep(["10.0.0.1"])["10.0.0.1"].alive


def test_a_ping_socket_reply_with_ip_header_as_on_bsd(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSocket(4, lambda pkt, to: [("reply", echo_reply_v4(pkt, to[0]), to[0])])
    install(monkeypatch, fake, privileged=False)
    assert sweep(["10.0.0.1"])["10.0.0.1"].alive


def test_local_send_failures_are_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def route(pkt: bytes, to: tuple) -> list[Any]:
        if to[0] == "10.0.0.1":
            return [OSError(101, "Network is unreachable")]
        return [("reply", echo_reply_v4(pkt, to[0]), to[0])]

    install(monkeypatch, FakeSocket(4, route))
    results = sweep(["10.0.0.1", "10.0.0.2"], count=3)
    assert results["10.0.0.1"] == Reachability("10.0.0.1", False, None, "cannot send: Network is unreachable", 0, ())
    assert results["10.0.0.2"].received == 3


def test_a_full_socket_buffer_waits_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def sometimes_full(pkt: bytes, to: tuple) -> list[Any]:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return [BlockingIOError(11, "Resource temporarily unavailable")]
        if calls["n"] % 5 == 0:
            return [OSError(105, "No buffer space available")]
        return [("reply", echo_reply_v4(pkt, to[0]), to[0])]

    install(monkeypatch, FakeSocket(4, sometimes_full))
    results = sweep([f"10.0.0.{i}" for i in range(1, 41)], count=2, timeout=2)
    assert all(r.alive and r.received == 2 for r in results.values())


def test_at_most_concurrency_echoes_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeSocket(4, lambda *_: []))
    seen: list[int] = []
    original = icmp._Sweep._arm_timer
    monkeypatch.setattr(icmp._Sweep, "_arm_timer", lambda self: (seen.append(len(self.in_flight)), original(self)))
    sweep([f"10.0.0.{i}" for i in range(1, 101)], timeout=0.05, concurrency=7)
    assert max(seen) == 7


def test_a_defect_costs_the_sweep_not_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeSocket(4, lambda pkt, to: [("reply", echo_reply_v4(pkt, to[0]), to[0])]))
    monkeypatch.setattr(icmp, "_parse_raw", lambda *a: 1 / 0)
    r = sweep(["10.0.0.1"])["10.0.0.1"]
    assert not r.alive and r.error and "ZeroDivisionError" in r.error


def test_cancelling_a_sweep_closes_its_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSocket(4, lambda *_: [])
    install(monkeypatch, fake)

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(ping_many(["10.0.0.1"], timeout=30))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    assert fake.closed


def test_bpf_program_shape() -> None:
    code, count = icmp._bpf_program(4, 0x1234)
    assert len(code) == 8 * count
    insns = [struct.unpack_from("=HBBI", code, 8 * i) for i in range(count)]
    assert insns[-1] == (icmp._RET_K, 0, 0, 0xFFFF)
    assert (icmp._JEQ_K, 1, 0, 0x1234) in insns
    for i, (op, jt, jf, _k) in enumerate(insns):  # every jump lands inside the program
        if op == icmp._JEQ_K:
            assert i + 1 + jt < count and i + 1 + jf < count


# --- in a private network namespace: sysctls of our own ------------------------------------

def _netns_available() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


needs_netns = pytest.mark.skipif(not _netns_available(), reason="needs root and unshare -n (a private network namespace)")

CHILD = textwrap.dedent("""
    import asyncio, json, sys
    sys.path.insert(0, {repo!r})
    import tasks._icmp as icmp
    probe = icmp._open_socket(4, 1)
    kind = probe if isinstance(probe, str) else ("raw" if probe.privileged else "ping")
    if not isinstance(probe, str):
        probe.close()
    results = asyncio.run(icmp.ping_many({addresses!r}, count={count}, timeout={timeout}))
    print(json.dumps({{"socket": kind, "results": {{a: [r.alive, r.error, r.sent] for a, r in results.items()}}}}))
""")


def in_private_netns(addresses: list[str], sysctls: dict[str, str], *, drop_net_raw: bool = False,
                     count: int = 1, timeout: float = 0.3) -> dict[str, Any]:
    """Run a sweep in a child with its own network namespace: only `lo`, and sysctls set
    there leave the host's untouched."""
    setup = ["ip link set lo up"] + [f"echo '{v}' > /proc/sys/{k.replace('.', '/')}" for k, v in sysctls.items()]
    command = [sys.executable, "-c", CHILD.format(repo=str(REPO), addresses=addresses, count=count, timeout=timeout)]
    if drop_net_raw:
        command = ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", *command]
    script = " && ".join(setup) + " && exec " + shlex.join(command)
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_netns
def test_a_silent_host_really_times_out() -> None:
    out = in_private_netns(["127.0.0.1", "::1"], {"net.ipv4.icmp_echo_ignore_all": "1"}, count=2)
    assert out["results"]["127.0.0.1"] == [False, None, 2]
    assert out["results"]["::1"] == [True, None, 2]  # the IPv4 switch leaves ICMPv6 answering


@needs_netns
def test_unprivileged_ping_sockets_where_the_sysctl_allows() -> None:
    out = in_private_netns(["127.0.0.1", "127.0.8.9", "::1"], {"net.ipv4.ping_group_range": "0 2147483647"})
    assert out["socket"] == "ping"
    assert all(alive and error is None for alive, error, _ in out["results"].values())


@needs_netns
def test_raw_sockets_when_ping_sockets_are_not_allowed() -> None:
    out = in_private_netns(["127.0.0.1", "::1"], {"net.ipv4.ping_group_range": "1 0"})
    assert out["socket"] == "raw"
    assert all(alive for alive, _, _ in out["results"].values())


@needs_netns
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv to drop CAP_NET_RAW")
def test_without_cap_net_raw_nor_the_sysctl_every_address_says_why() -> None:
    out = in_private_netns(["127.0.0.1", "::1"], {"net.ipv4.ping_group_range": "1 0"}, drop_net_raw=True)
    assert out["socket"] == NO_PERMISSION
    assert out["results"] == {"127.0.0.1": [False, NO_PERMISSION, 0], "::1": [False, NO_PERMISSION, 0]}
