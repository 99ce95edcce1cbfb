"""The scripted remote end of one connection, packetdrill style.

A ``Peer`` is the far end (192.0.2.2 / 2001:db8::2) of one connection with the local stack in
a ``TunNetwork``. The test writes what it sends and what it expects; the peer keeps both
ends' initial sequence numbers and how far each got, so a script reads

    peer.expect("S")                 # the local connect()'s SYN
    peer.send("S.")                  # seq=peer.next, ack=peer.local.next by default
    peer.expect(".", ack=peer.seq(1))

and a segment that does not match fails with every segment of the connection so far, in
packetdrill's notation, relative to the ISNs.
"""

from __future__ import annotations

import errno
import random
import socket
import time
from dataclasses import dataclass, field

from tests.peer.packets import ACK, SYN, Options, Segment, flag_bits
from tests.peer.tun import LOCAL, REMOTE, TunNetwork

DEFAULT_TIMEOUT = 2.0
# The options of the peer's SYN or SYN-ACK unless a script gives its own: an MSS only, so
# the local stack uses no timestamps, window scaling or SACK and the numbers stay plain.
SYN_OPTIONS = Options(mss=1460)


def _after(a: int, b: int) -> bool:
    """``a`` comes after ``b`` in sequence space (the kernel's after())."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


@dataclass
class Side:
    """How far one end got: its ISN and the next sequence number it will use."""

    isn: int | None = None
    next: int | None = None

    def seq(self, offset: int) -> int:
        """The absolute sequence number ``offset`` after the ISN (``seq(1)``: after the SYN)."""
        if self.isn is None:
            raise AssertionError("this end's ISN is not known yet (no SYN seen)")
        return (self.isn + offset) & 0xFFFFFFFF

    def rel(self, value: int) -> int:
        return value if self.isn is None else (value - self.isn) & 0xFFFFFFFF

    def advance(self, seg: Segment) -> None:
        if seg.flags & SYN and self.isn is None:
            self.isn = seg.seq
        end = (seg.seq + seg.space) & 0xFFFFFFFF
        if self.next is None or _after(end, self.next):
            self.next = end


class ScriptError(AssertionError):
    """What the script expected did not happen; the message shows what did."""


@dataclass
class Peer:
    net: TunNetwork
    family: int
    port: int  # the peer's own port
    local_port: int | None = None  # learnt from the first segment when not given
    window: int = 65535
    own: Side = field(default_factory=Side)
    local: Side = field(default_factory=Side)
    received: list[Segment] = field(default_factory=list)  # from the local stack, in order
    sent: list[Segment] = field(default_factory=list)

    # -- numbers -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return REMOTE[self.family]

    @property
    def local_address(self) -> str:
        return LOCAL[self.family]

    @property
    def next(self) -> int:
        """The peer's next sequence number."""
        if self.own.next is None:
            raise ScriptError("the peer has sent no SYN yet: its sequence numbers are unknown")
        return self.own.next

    def seq(self, offset: int) -> int:
        return self.own.seq(offset)

    # -- sending -----------------------------------------------------------------------------

    def send(
        self,
        flags: str,
        *,
        seq: int | None = None,
        ack: int | None = None,
        data: bytes = b"",
        window: int | None = None,
        options: Options | None = None,
        isn: int | None = None,
    ) -> Segment:
        """Write one segment to the local stack. A SYN starts at ``isn`` (random if not
        given); ``seq`` defaults to the peer's next and, with ACK set, ``ack`` to the local
        end's next."""
        bits = flag_bits(flags)
        if seq is None:
            if bits & SYN and self.own.isn is None:
                seq = isn if isn is not None else random.getrandbits(32)
            elif bits & SYN:
                seq = self.own.isn  # a SYN again (retransmission, simultaneous open)
            else:
                seq = self.next
        if ack is None:
            ack = self._local_next() if bits & ACK else 0
        if self.local_port is None:
            raise ScriptError("the local port is unknown: give local_port or expect() first")
        if options is None:
            options = SYN_OPTIONS if bits & SYN else Options()
        segment = Segment(
            family=self.family,
            src=self.address,
            dst=self.local_address,
            sport=self.port,
            dport=self.local_port,
            seq=seq,
            ack=ack,
            flags=bits,
            window=self.window if window is None else window,
            options=options,
            payload=data,
        )
        self.own.advance(segment)
        self.sent.append(segment)
        self.net.write(segment)
        return segment

    def _local_next(self) -> int:
        if self.local.next is None:
            raise ScriptError("nothing received from the local end yet: what would ACK cover?")
        return self.local.next

    # -- receiving ---------------------------------------------------------------------------

    def _mine(self, seg: Segment) -> bool:
        return (
            seg.family == self.family
            and seg.src == self.local_address
            and seg.dst == self.address
            and seg.dport == self.port
            and (self.local_port is None or seg.sport == self.local_port)
        )

    def _take(self, seg: Segment) -> Segment:
        if self.local_port is None:
            self.local_port = seg.sport
        self.local.advance(seg)
        self.received.append(seg)
        return seg

    def next_segment(self, timeout: float) -> Segment | None:
        """The next segment of this connection from the local stack, or None in time."""
        for index, seg in enumerate(self.net.inbox):
            if self._mine(seg):
                return self._take(self.net.inbox.pop(index))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            seg = self.net.read(left)
            if seg is None:
                break
            if self._mine(seg):
                return self._take(seg)
            self.net.inbox.append(seg)  # another connection's: its peer will take it
        return None

    def expect(
        self,
        flags: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        seq: int | None = None,
        ack: int | None = None,
        data: bytes | None = None,
        skip: str | None = None,
    ) -> Segment:
        """The next segment must have exactly these flags (and seq, ack, data if given).

        ``skip``: flags of segments to pass over first (``skip="."`` ignores bare ACKs, or
        retransmissions of something already seen).
        """
        wanted = flag_bits(flags)
        deadline = time.monotonic() + timeout
        while True:
            seg = self.next_segment(max(deadline - time.monotonic(), 0))
            if seg is None:
                self._fail(f"expected {flags} within {timeout:g} s; nothing more arrived")
            if skip is not None and seg.flags == flag_bits(skip) and seg.flags != wanted:
                continue
            problems = []
            if seg.flags != wanted:
                problems.append(f"flags {seg.flag_text}, expected {flags}")
            if seq is not None and seg.seq != seq:
                problems.append(f"seq {self.local.rel(seg.seq)}, expected {self.local.rel(seq)}")
            if ack is not None and seg.ack != ack:
                problems.append(f"ack {self.own.rel(seg.ack)}, expected {self.own.rel(ack)}")
            if data is not None and seg.payload != data:
                problems.append(f"data {seg.payload[:40]!r}, expected {data[:40]!r}")
            if not seg.checksum_ok:
                problems.append("bad TCP checksum")
            if problems:
                self._fail("; ".join(problems))
            return seg

    def expect_nothing(self, timeout: float) -> None:
        """Nothing at all of this connection may arrive within ``timeout`` seconds."""
        seg = self.next_segment(timeout)
        if seg is not None:
            self._fail(f"expected nothing for {timeout:g} s, got {self.describe(seg)}")

    def collect(self, timeout: float) -> list[Segment]:
        """Every segment of this connection arriving within ``timeout`` seconds."""
        found = []
        deadline = time.monotonic() + timeout
        while (seg := self.next_segment(max(deadline - time.monotonic(), 0))) is not None:
            found.append(seg)
        return found

    # -- messages ----------------------------------------------------------------------------

    def describe(self, seg: Segment) -> str:
        if seg.src == self.address:
            return f"peer  > {seg.describe(self.own.isn, self.local.isn)}"
        return f"local > {seg.describe(self.local.isn, self.own.isn)}"

    def transcript(self) -> str:
        """Both directions of this connection in the order they crossed the tun device."""
        lines = [
            self.describe(seg)
            for seg in self.net.log
            if self._mine(seg)
            or (seg.src == self.address and seg.sport == self.port and seg.family == self.family)
        ]
        return "\n".join(lines) or "(nothing)"

    def _fail(self, problem: str) -> None:
        raise ScriptError(f"{problem}\nthe connection so far:\n{self.transcript()}")


# -- the openings most scripts start with ------------------------------------------------------


def connected_client(net: TunNetwork, family: int, port: int) -> tuple[socket.socket, Peer]:
    """A local socket connected to the peer: connect(), SYN, SYN-ACK, ACK. The socket is
    left non-blocking (what the scripts want: no call may wait on the peer)."""
    sock = net.socket(family)
    sock.setblocking(False)
    sock.connect_ex((REMOTE[family], port))
    peer = Peer(net, family, port)
    peer.expect("S")
    peer.send("S.")
    peer.expect(".", ack=peer.seq(1))
    return sock, peer


def wait_for_kernel_timeout(sock: socket.socket, within: float = 10.0) -> None:
    """Block in recv() until the kernel gives the connection up (ETIMEDOUT). Python raises
    TimeoutError for that and for the socket's own timeout alike: only the errno tells them
    apart, and a script that took its own timeout for the kernel's would close a socket the
    kernel still holds, racing the test's snapshot of the counters."""
    sock.setblocking(True)
    sock.settimeout(within)
    try:
        sock.recv(1)
    except TimeoutError as error:
        if error.errno != errno.ETIMEDOUT:
            raise ScriptError(f"the kernel did not give the connection up in {within} s") from None
        return
    raise ScriptError("recv() returned: the kernel did not time the connection out")


def listening(net: TunNetwork, family: int, port: int, backlog: int = 8) -> socket.socket:
    listener = net.socket(family)
    listener.bind((LOCAL[family], port))
    listener.listen(backlog)
    return listener


def connected_server(
    net: TunNetwork, family: int, port: int, peer_port: int
) -> tuple[socket.socket, socket.socket, Peer]:
    """(listener, accepted socket, peer): the peer connects to a local listener on ``port``."""
    listener = listening(net, family, port)
    peer = Peer(net, family, peer_port, local_port=port)
    peer.send("S")
    peer.expect("S.", ack=peer.seq(1))
    peer.send(".")
    listener.settimeout(DEFAULT_TIMEOUT)
    accepted, _ = listener.accept()
    net.adopt(accepted)
    accepted.setblocking(False)
    return listener, accepted, peer
