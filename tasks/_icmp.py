"""ICMP reachability sweeps from the bot host, for monitoring checks and `ping`.

One socket per address family serves a whole sweep, however many addresses it has.
icmplib's own `async_multiping` opens one socket per address; with raw sockets every one
of them is handed a copy of every ICMP packet the host receives, so a sweep of N
addresses costs N x N packet copies and wake-ups (5,000 loopback addresses: 2.2 s of
CPU). Here each reply is read once and matched to its probe by sequence number and
source address, so the cost grows linearly.

Socket kinds, in order of preference:
- unprivileged ICMP ("ping") sockets, allowed where net.ipv4.ping_group_range includes
  the bot's group (it covers ICMPv6 too); the kernel fills in the identifier and hands
  each socket only its own replies.
- raw sockets, when the bot runs as root or with CAP_NET_RAW. An in-kernel filter
  (ICMP_FILTER, plus a BPF program on the echo identifier) keeps other traffic off the
  socket: the echo requests the host itself receives, other sweeps' replies.

Problems never raise: each address gets its answer or a one-line reason.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import ipaddress
import itertools
import logging
import os
import platform
import random
import socket
import struct
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

NO_PERMISSION = (
    "the bot host may not send ICMP: allow unprivileged ping with "
    "sysctl net.ipv4.ping_group_range='0 2147483647' (or run the bot with CAP_NET_RAW)"
)
MAX_IN_FLIGHT = 60_000  # below 2**16, so a sequence number names one probe in flight
PAYLOAD = b"netbot reachability probe".ljust(56, b".")  # 56 bytes, as ping(8) sends
READS_PER_WAKEUP = 2_000  # then let the rest of the loop breathe
RECEIVE_BUFFER_PER_PROBE = 2_048  # a queued loopback reply costs about 1 KB of socket buffer

# Constants Python's socket module does not export (linux/icmp.h, icmpv6.h, errqueue.h).
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # asm-generic value; used only where it is known to be this
TIMESTAMP_MACHINES = {"x86_64", "amd64", "aarch64", "arm64", "riscv64", "i386", "i686"}
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
CAP_NET_RAW = 13

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
ICMP4_ERRORS = {
    3: ("destination unreachable", {
        0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
        3: "port unreachable", 4: "fragmentation needed", 5: "source route failed",
        6: "destination network unknown", 7: "destination host unknown",
        9: "network administratively prohibited", 10: "host administratively prohibited",
        13: "communication administratively prohibited"}),
    11: ("time to live exceeded", {}),
    12: ("parameter problem", {}),
}
ICMP6_ERRORS = {
    1: ("destination unreachable", {
        0: "no route to destination", 1: "communication administratively prohibited",
        2: "beyond scope of source address", 3: "address unreachable", 4: "port unreachable",
        5: "source address failed ingress/egress policy", 6: "reject route to destination"}),
    2: ("packet too big", {}),
    3: ("hop limit exceeded", {}),
    4: ("parameter problem", {}),
}


@dataclass(frozen=True)
class Reachability:
    """What one address did during a sweep.

    `alive`: at least one echo was answered; `rtt_ms`: mean round trip of the answered
    echoes. `error` is None when the address answered, or simply stayed silent until the
    timeout (an ordinary "down"); otherwise it says why there is no plain answer: an ICMP
    error from a router ("host unreachable (reported by 10.0.0.254)"), a local failure
    to send, an address that is not one, or NO_PERMISSION (the same text for every
    address, so a caller can tell "the bot may not ping" from "everything is down").
    """

    address: str
    alive: bool
    rtt_ms: float | None
    error: str | None = None
    sent: int = 0
    rtts_ms: tuple[float, ...] = ()

    @property
    def received(self) -> int:
        return len(self.rtts_ms)


async def ping_many(addresses: list[str], *, count: int = 1, timeout: float = 1.0,
                    concurrency: int = 500) -> dict[str, Reachability]:
    """Ping every address (IPv4 or IPv6, no host names) from the bot host.

    Each address gets up to `count` echoes, one at a time: the next goes as soon as the
    previous one is answered or has waited `timeout` seconds (like `ping -A`: a live host
    answers in milliseconds, a dead one costs count x timeout). At most `concurrency`
    echoes are in flight at once across the sweep. Returns one Reachability per distinct
    address, keyed by the address as given.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    results: dict[str, Reachability] = {}
    by_family: dict[int, list[_Target]] = {4: [], 6: []}
    for address in dict.fromkeys(addresses):
        target = _target(address)
        if isinstance(target, str):
            results[address] = Reachability(address, False, None, target)
        else:
            by_family[target.family].append(target)
    total = sum(len(t) for t in by_family.values())
    sweeps = []
    for family, targets in by_family.items():
        if targets:
            share = max(1, min(MAX_IN_FLIGHT, concurrency * len(targets) // total))
            sweeps.append(_sweep_family(family, targets, count, timeout, share))
    for family_results in await asyncio.gather(*sweeps):
        results.update(family_results)
    refused = sum(1 for r in results.values() if r.error == NO_PERMISSION)
    if refused:
        log.warning("ICMP sweep: %d addresses not probed: %s", refused, NO_PERMISSION)
    return {address: results[address] for address in dict.fromkeys(addresses)}


def ping_many_blocking(addresses: list[str], *, count: int = 1, timeout: float = 1.0,
                       concurrency: int = 500) -> dict[str, Reachability]:
    """ping_many for synchronous task code, which runs in a worker thread without an
    event loop of its own (never call it on the bot's loop: it would block it)."""
    return asyncio.run(ping_many(addresses, count=count, timeout=timeout, concurrency=concurrency))


# --- targets ------------------------------------------------------------------------------

@dataclass(eq=False)
class _Target:
    address: str                 # as the caller wrote it: the key of the result
    family: int                  # 4 or 6
    packed: bytes                # what replies are matched against
    sockaddr: tuple              # where echoes are sent
    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    error: str | None = None

    def result(self) -> Reachability:
        rtts = tuple(self.rtts)
        alive = bool(rtts)
        return Reachability(self.address, alive, sum(rtts) / len(rtts) if alive else None,
                            None if alive else self.error, self.sent, rtts)


def _target(address: str) -> _Target | str:
    """A probe target, or why the address cannot be one."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return f"'{address[:60]}' is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast:
        return f"{ip} is a multicast address, not a host"
    if ip.is_unspecified:  # Linux would answer from 127.0.0.1: not this address
        return f"{ip} is the unspecified address, not a host"
    if ip.version == 4:
        return _Target(address, 4, ip.packed, (str(ip), 0))
    if ip.scope_id:
        try:
            sockaddr = socket.getaddrinfo(str(ip), None, socket.AF_INET6, socket.SOCK_RAW,
                                          flags=socket.AI_NUMERICHOST)[0][4]
        except OSError:
            return f"{ip}: unknown interface '{ip.scope_id}'"
        return _Target(address, 6, ip.packed, sockaddr)
    return _Target(address, 6, ip.packed, (str(ip), 0, 0, 0))


# --- sockets ------------------------------------------------------------------------------

@dataclass
class _ProbeSocket:
    sock: socket.socket
    family: int
    privileged: bool
    ident: int           # echo identifier: ours on raw sockets, the kernel's on ping sockets
    close: Callable[[], None]
    timestamps: bool     # the kernel stamps each reply with its arrival time


_identifiers = itertools.count(random.randrange(1, 1 << 16))


def _next_identifier() -> int:
    return next(_identifiers) % 0xFFFF + 1


def _may_use_raw_sockets() -> bool:
    """CAP_NET_RAW in effect: root as usual, a service granted it (systemd
    AmbientCapabilities=CAP_NET_RAW), but not a root whose container dropped it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def _open_socket(family: int, window: int) -> _ProbeSocket | str:
    """The best socket this process may have for `family`, or why there is none."""
    # icmplib is imported here: the monitor checks that use this module load at start.
    from icmplib import ICMPv4Socket, ICMPv6Socket
    from icmplib.exceptions import ICMPLibError, SocketPermissionError

    icmp_class = ICMPv4Socket if family == 4 else ICMPv6Socket
    modes = [False, True] if _may_use_raw_sockets() else [False]
    for privileged in modes:
        try:
            icmp = icmp_class(privileged=privileged)
        except SocketPermissionError:
            continue
        except ICMPLibError as err:
            return f"cannot open an ICMPv{family} socket on the bot host: {err}"
        sock = icmp.sock
        sock.setblocking(False)
        _grow_receive_buffer(sock, window * RECEIVE_BUFFER_PER_PROBE)
        if privileged:
            ident = _next_identifier()
            _filter_raw_socket(sock, family, ident)
        else:
            _report_errors(sock, family)
            ident = 0  # the kernel picks the identifier and sends us only our replies
        return _ProbeSocket(sock, family, privileged, ident, icmp.close, _ask_timestamps(sock))
    return NO_PERMISSION


def _grow_receive_buffer(sock: socket.socket, size: int) -> None:
    # A burst of replies must not overflow the socket: a dropped reply reads as "down".
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, max(size, 256 * 1024))
            return
        except OSError:
            continue


def _ask_timestamps(sock: socket.socket) -> bool:
    """Kernel arrival times make round trips exact even when replies wait in the socket
    while the sweep is busy sending (without them, 500 in flight on loopback read as ~8 ms)."""
    if sys.platform != "linux" or platform.machine().lower() not in TIMESTAMP_MACHINES:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _arrival_time(ancillary: list) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None


_TIMESPEC = struct.Struct("@ll")  # struct timespec with a native time_t


def _filter_raw_socket(sock: socket.socket, family: int, ident: int) -> None:
    """Let only our echo replies and ICMP errors reach the raw socket (best effort: a
    kernel without these filters still works, it just hands us more to ignore)."""
    try:
        if family == 4:
            wanted = {ECHO_REPLY[4], *ICMP4_ERRORS}
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", ~sum(1 << t for t in wanted) & 0xFFFFFFFF))
        else:
            blocked = [0xFFFFFFFF] * 8  # ICMP6_FILTER: a set bit blocks that type
            for t in (ECHO_REPLY[6], *ICMP6_ERRORS):
                blocked[t >> 5] &= ~(1 << (t & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *blocked))
    except OSError as err:
        log.debug("ICMP type filter not available: %s", err)
    code, count = _bpf_program(family, ident)
    program = ctypes.create_string_buffer(code, len(code))  # alive until setsockopt has copied it
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        struct.pack("@HP", count, ctypes.addressof(program)))
    except OSError as err:
        log.debug("BPF filter not available: %s", err)


# classic BPF opcodes (linux/filter.h)
_LD_B_ABS, _LD_H_IND, _LD_B_IND, _LDX_B_MSH = 0x30, 0x48, 0x50, 0xB1
_JEQ_K, _RET_K, _LDX_IMM = 0x15, 0x06, 0x01


def _bpf_program(family: int, ident: int) -> tuple[bytes, int]:
    """Accept echo replies carrying our identifier, and ICMP errors; drop the rest.

    An IPv4 raw socket's filter sees the IP header first (X = its length); an IPv6 one
    starts at the ICMPv6 header (X = 0). Returns the instructions and their number."""
    errors = sorted(ICMP4_ERRORS if family == 4 else ICMP6_ERRORS)
    n = len(errors)
    insns = [
        (_LDX_B_MSH, 0, 0, 0) if family == 4 else (_LDX_IMM, 0, 0, 0),
        (_LD_B_IND, 0, 0, 0),                       # A = ICMP type
        (_JEQ_K, n + 1, 0, ECHO_REPLY[family]),     # echo reply: go check the identifier
        *[(_JEQ_K, n - i + 3, 0, t) for i, t in enumerate(errors)],  # an error: accept
        (_RET_K, 0, 0, 0),                          # anything else: drop
        (_LD_H_IND, 0, 0, 4),                       # A = identifier
        (_JEQ_K, 1, 0, ident),
        (_RET_K, 0, 0, 0),                          # another sweep's reply: drop
        (_RET_K, 0, 0, 0xFFFF),                     # accept
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns), len(insns)


def _report_errors(sock: socket.socket, family: int) -> None:
    # A ping socket passes ICMP errors (unreachable, TTL exceeded) on only with RECVERR.
    try:
        if family == 4:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    except OSError as err:
        log.debug("RECVERR not available: %s", err)


# --- packets ------------------------------------------------------------------------------

def _echo_request(family: int, ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == 6:
        return header + PAYLOAD  # the kernel computes ICMPv6 checksums
    data = header + PAYLOAD
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return data[:2] + struct.pack("!H", ~total & 0xFFFF) + data[4:]


def _error_text(family: int, icmp_type: int, code: int, reporter: str | None) -> str:
    kind, codes = (ICMP4_ERRORS if family == 4 else ICMP6_ERRORS).get(icmp_type, (f"ICMP type {icmp_type}", {}))
    text = codes.get(code) or (f"{kind} (code {code})" if codes else kind)
    return f"{text} (reported by {reporter})" if reporter else text


# (sequence, address the probe went to, error or None) from one received packet
_Parsed = tuple[int, bytes, str | None]


def _parse_raw(family: int, data: bytes, source: str, ident: int) -> _Parsed | None:
    at = (data[0] & 0x0F) * 4 if family == 4 else 0  # IPv4 raw sockets see the IP header
    if len(data) < at + 8:
        return None
    icmp_type, code = data[at], data[at + 1]
    if icmp_type == ECHO_REPLY[family]:
        reply_id, seq = struct.unpack_from("!HH", data, at + 4)
        return (seq, _packed(family, source), None) if reply_id == ident else None
    if icmp_type not in (ICMP4_ERRORS if family == 4 else ICMP6_ERRORS):
        return None
    inner = at + 8  # the error quotes our packet: its IP header, then our echo request
    if family == 4:
        if len(data) < inner + 20 or data[inner + 9] != socket.IPPROTO_ICMP:
            return None
        destination, echo = data[inner + 16:inner + 20], inner + (data[inner] & 0x0F) * 4
    else:
        if len(data) < inner + 40 or data[inner + 6] != socket.IPPROTO_ICMPV6:
            return None
        destination, echo = data[inner + 24:inner + 40], inner + 40
    if len(data) < echo + 8 or data[echo] != ECHO_REQUEST[family]:
        return None
    echo_id, seq = struct.unpack_from("!HH", data, echo + 4)
    if echo_id != ident:
        return None
    return seq, destination, _error_text(family, icmp_type, code, source)


def _parse_datagram(family: int, data: bytes, source: str) -> _Parsed | None:
    # A ping socket sees only its own replies; on Linux without the IP header (macOS
    # and the BSDs keep the IPv4 one).
    if family == 4 and data and data[0] >> 4 == 4:
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8 or data[0] != ECHO_REPLY[family]:
        return None
    return struct.unpack_from("!H", data, 6)[0], _packed(family, source), None


def _parse_queued_error(family: int, data: bytes, ancillary: list, destination: str) -> _Parsed | None:
    """An entry of a ping socket's error queue: our echo header, with the error in a cmsg."""
    if len(data) < 8:
        return None
    seq = struct.unpack_from("!H", data, 6)[0]
    text = None
    for level, kind, payload in ancillary:
        if (level, kind) not in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            continue
        if len(payload) < 16:
            continue
        ee_errno, origin, icmp_type, code = struct.unpack_from("=IBBB", payload)
        reporter = _offender(payload[16:])
        if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            text = _error_text(family, icmp_type, code, reporter)
        else:
            text = f"cannot send: {os.strerror(ee_errno)}" if ee_errno else "local error"
    return seq, _packed(family, destination), text or "ICMP error"


def _offender(sockaddr: bytes) -> str | None:
    """The router that reported the error, from the sockaddr after sock_extended_err."""
    if len(sockaddr) < 8:
        return None
    af = struct.unpack_from("=H", sockaddr)[0]
    if af == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, sockaddr[4:8])
    if af == socket.AF_INET6 and len(sockaddr) >= 24:
        return socket.inet_ntop(socket.AF_INET6, sockaddr[8:24])
    return None


def _packed(family: int, text: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET if family == 4 else socket.AF_INET6, text.partition("%")[0])
    except OSError:
        return b""


# --- the sweep ----------------------------------------------------------------------------

async def _sweep_family(family: int, targets: list[_Target], count: int, timeout: float,
                        window: int) -> dict[str, Reachability]:
    opened = _open_socket(family, window)
    if isinstance(opened, str):
        return {t.address: Reachability(t.address, False, None, opened) for t in targets}
    try:
        await _Sweep(opened, targets, count, timeout, window).run()
    except Exception as err:  # a defect here must cost a sweep, never the caller
        log.exception("ICMPv%d sweep failed", family)
        for t in targets:
            t.error = t.error or f"the ICMP sweep failed: {type(err).__name__}: {err}"
    finally:
        opened.close()
    return {t.address: t.result() for t in targets}


class _Sweep:
    """Send echoes through one socket, at most `window` in flight; read the replies as they
    come; expire what waited `timeout`. Runs on the event loop through callbacks."""

    def __init__(self, probe: _ProbeSocket, targets: list[_Target], count: int, timeout: float,
                 window: int) -> None:
        self.probe = probe
        self.sock = probe.sock
        self.family = probe.family
        self.targets = targets
        self.count = count
        self.timeout = timeout
        self.window = window
        self.waiting: deque[int] = deque(range(len(targets)))  # indexes due another echo
        # sequence -> (target index, monotonic send time, wall-clock send time); insertion
        # order is deadline order. The wall clock matches the kernel's arrival stamps.
        self.in_flight: OrderedDict[int, tuple[int, float, float]] = OrderedDict()
        self.sequence = random.randrange(1 << 16)
        self.unfinished = len(targets)
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.blocked = False  # waiting for the socket to take more, or for kernel buffers
        self.retry: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        fd = self.sock.fileno()
        self.loop.add_reader(fd, self._on_readable)
        try:
            self._send_more()
            self._check_done()
            await self.done
        finally:
            self.loop.remove_reader(fd)
            if self.blocked:
                self.loop.remove_writer(fd)
            for handle in (self.timer, self.retry):
                if handle is not None:
                    handle.cancel()

    def _fail(self, err: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(err)

    # sending
    def _send_more(self) -> None:
        if self.blocked:
            return
        sock, family, ident = self.sock, self.family, self.probe.ident
        while self.waiting and len(self.in_flight) < self.window:
            index = self.waiting.popleft()
            target = self.targets[index]
            seq = self._next_sequence()
            sent_wall = time.time()
            try:
                sock.sendto(_echo_request(family, ident, seq), target.sockaddr)
            except (BlockingIOError, InterruptedError):
                self.waiting.appendleft(index)
                self._wait_writable()
                return
            except OSError as err:
                if err.errno == errno.ENOBUFS:  # the kernel is short of buffers: try again soon
                    self.waiting.appendleft(index)
                    self.blocked = True
                    self.retry = self.loop.call_later(0.005, self._unblock)
                    return
                target.error = f"cannot send: {err.strerror or err}"
                self._finish(index)
                continue
            target.sent += 1
            self.in_flight[seq] = (index, time.monotonic(), sent_wall)
        self._arm_timer()

    def _next_sequence(self) -> int:
        seq = self.sequence = (self.sequence + 1) & 0xFFFF
        while seq in self.in_flight:  # only after 65,536 sends with an echo still out
            seq = self.sequence = (self.sequence + 1) & 0xFFFF
        return seq

    def _wait_writable(self) -> None:
        self.blocked = True
        self.loop.add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        self.loop.remove_writer(self.sock.fileno())
        self._unblock()

    def _unblock(self) -> None:
        self.blocked = False
        self.retry = None
        try:
            self._send_more()
            self._check_done()
        except Exception as err:
            self._fail(err)

    # receiving
    def _on_readable(self) -> None:
        try:
            self._read_all()
            self._send_more()
            self._check_done()
        except Exception as err:
            self._fail(err)

    def _read_all(self) -> None:
        sock, family, ident, privileged = self.sock, self.family, self.probe.ident, self.probe.privileged
        stamped = self.probe.timestamps
        arrived = None
        for _ in range(READS_PER_WAKEUP):
            try:
                if stamped:
                    data, ancillary, _flags, source = sock.recvmsg(4096, 128)
                    arrived = _arrival_time(ancillary)
                else:
                    data, source = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                if not privileged:
                    # Errors queued on a ping socket keep it "readable" until drained.
                    self._read_error_queue()
                return
            except OSError:
                # A ping socket reports an ICMP error as a failed read: the details (which
                # probe, who said so) wait in its error queue.
                self._read_error_queue()
                continue
            parsed = (_parse_raw(family, data, source[0], ident) if privileged
                      else _parse_datagram(family, data, source[0]))
            if parsed is not None:
                self._answer(parsed, arrived)

    def _read_error_queue(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            try:
                data, ancillary, _flags, destination = self.sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return
            parsed = _parse_queued_error(self.family, data, ancillary, destination[0] if destination else "")
            if parsed is not None:
                self._answer(parsed, None)

    def _answer(self, parsed: _Parsed, arrived: float | None) -> None:
        """`arrived`: the kernel's wall-clock stamp of the packet, when there is one."""
        seq, address, error = parsed
        entry = self.in_flight.get(seq)
        if entry is None:
            return  # late (already expired) or not ours
        index, sent_at, sent_wall = entry
        target = self.targets[index]
        if address != target.packed:
            return  # a reply to an expired probe whose sequence number was reused
        del self.in_flight[seq]
        if error is None:
            rtt = arrived - sent_wall if arrived is not None else time.monotonic() - sent_at
            target.rtts.append(max(rtt, 0.0) * 1000)
        else:
            target.error = error
        self._next_echo(index)

    # timing out
    def _arm_timer(self) -> None:
        if not self.in_flight:
            return
        _, sent_at, _ = next(iter(self.in_flight.values()))
        deadline = sent_at + self.timeout
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        try:
            now = time.monotonic()
            while self.in_flight:
                seq, (index, sent_at, _) = next(iter(self.in_flight.items()))
                if sent_at + self.timeout > now:
                    break
                del self.in_flight[seq]
                self._next_echo(index)
            self._send_more()
            self._arm_timer()
            self._check_done()
        except Exception as err:
            self._fail(err)

    # bookkeeping
    def _next_echo(self, index: int) -> None:
        if self.targets[index].sent < self.count:
            self.waiting.appendleft(index)  # finish a started address before new ones
        else:
            self._finish(index)

    def _finish(self, index: int) -> None:
        self.unfinished -= 1

    def _check_done(self) -> None:
        if self.unfinished == 0 and not self.done.done():
            self.done.set_result(None)

