"""Decoding of the records synfin's probes write (``probes/synfin_events.h``).

One layout serves IPv4 and IPv6: addresses are 16 bytes, IPv4 as v4-mapped IPv6. Decoding is
one ``struct.unpack_from`` per record; addresses and names are formatted only when shown.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from dataclasses import dataclass

from collector.states import State, documented, kernel_state_name

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6


class EventKind(enum.IntEnum):
    STATE_CHANGE = 1


EVENT_FLAG_PROCESS_CONTEXT = 0x1

# struct synfin_event, field by field (little-endian, natural alignment, no implicit padding).
EVENT_LAYOUT = struct.Struct("<QQQIIHHHBB16s16s16sBB6x")
EVENT_SIZE = EVENT_LAYOUT.size

# Index of each counter in the probe's `stats` map (enum synfin_stat).
STAT_EVENTS_SENT = 0
STAT_EVENTS_LOST = 1


class DecodeError(ValueError):
    """A record that does not have the layout of struct synfin_event."""


def family_name(family: int) -> str:
    return {AF_INET: "ipv4", AF_INET6: "ipv6"}.get(family, f"unknown:{family}")


def format_address(family: int, raw: bytes) -> str:
    if family == AF_INET:
        return socket.inet_ntop(AF_INET, raw[12:16])
    return socket.inet_ntop(AF_INET6, raw)


def format_endpoint(family: int, raw: bytes, port: int) -> str:
    address = format_address(family, raw)
    return f"[{address}]:{port}" if family == AF_INET6 else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One kernel TCP state change on one socket."""

    ts_ns: int
    skaddr: int
    since_ns: int
    pid: int
    tid: int
    family: int
    sport: int
    dport: int
    flags: int
    saddr: bytes
    daddr: bytes
    comm: str
    oldstate: int
    newstate: int

    @property
    def old(self) -> State:
        return documented(self.oldstate)

    @property
    def new(self) -> State:
        return documented(self.newstate)

    @property
    def in_process_context(self) -> bool:
        """True when the change ran in a process's own context (its PID means something)."""
        return bool(self.flags & EVENT_FLAG_PROCESS_CONTEXT)

    @property
    def time_in_old_state_ns(self) -> int | None:
        """How long the socket stayed in ``old``; None when synfin did not see it enter."""
        if not self.since_ns or self.since_ns > self.ts_ns:
            return None
        return self.ts_ns - self.since_ns

    @property
    def local(self) -> str:
        return format_endpoint(self.family, self.saddr, self.sport)

    @property
    def remote(self) -> str:
        return format_endpoint(self.family, self.daddr, self.dport)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view with documented and kernel state names side by side."""
        duration = self.time_in_old_state_ns
        return {
            "ts_ns": self.ts_ns,
            "skaddr": f"{self.skaddr:#x}",
            "family": family_name(self.family),
            "local_address": format_address(self.family, self.saddr),
            "local_port": self.sport,
            "remote_address": format_address(self.family, self.daddr),
            "remote_port": self.dport,
            "old_state": self.old.value,
            "new_state": self.new.value,
            "old_kernel_state": kernel_state_name(self.oldstate),
            "new_kernel_state": kernel_state_name(self.newstate),
            "time_in_old_state_s": None if duration is None else duration / 1e9,
            "pid": self.pid if self.in_process_context else None,
            "comm": self.comm if self.in_process_context else None,
        }


def decode(record: bytes | memoryview) -> StateChange:
    """Decode one ring-buffer record; raise DecodeError when it is not a synfin event."""
    if len(record) < EVENT_SIZE:
        raise DecodeError(f"record of {len(record)} bytes, expected {EVENT_SIZE}")
    (
        ts_ns,
        skaddr,
        since_ns,
        pid,
        tid,
        family,
        sport,
        dport,
        kind,
        flags,
        saddr,
        daddr,
        comm,
        oldstate,
        newstate,
    ) = EVENT_LAYOUT.unpack_from(record)
    if kind != EventKind.STATE_CHANGE:
        raise DecodeError(f"unknown event kind {kind}")
    return StateChange(
        ts_ns=ts_ns,
        skaddr=skaddr,
        since_ns=since_ns,
        pid=pid,
        tid=tid,
        family=family,
        sport=sport,
        dport=dport,
        flags=flags,
        saddr=saddr,
        daddr=daddr,
        comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
        oldstate=oldstate,
        newstate=newstate,
    )


def encode(event: StateChange) -> bytes:
    """The record the probe would have written for ``event`` (for tests and fixtures)."""
    return EVENT_LAYOUT.pack(
        event.ts_ns,
        event.skaddr,
        event.since_ns,
        event.pid,
        event.tid,
        event.family,
        event.sport,
        event.dport,
        EventKind.STATE_CHANGE,
        event.flags,
        event.saddr,
        event.daddr,
        event.comm.encode(),
        event.oldstate,
        event.newstate,
    )


def pack_address(text: str) -> tuple[int, bytes]:
    """(family, 16-byte form) for an address string, IPv4 as v4-mapped IPv6."""
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return AF_INET, b"\0" * 10 + b"\xff\xff" + address.packed
    return AF_INET6, address.packed
