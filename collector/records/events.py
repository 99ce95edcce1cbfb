"""Decoding of the records synfin's probe writes (``probes/synfin_events.h``).

One layout serves every kind of record and both IP families: addresses are 16 bytes, IPv4 as
v4-mapped IPv6. Decoding is one ``struct.unpack_from`` per record; addresses and names are
formatted only when shown.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

from synfin.records import abi
from synfin.records.addresses import Endpoints
from synfin.records.pump import RecordFormat

_HEADER = abi.events()

# enum synfin_event_kind: a full socket changed state (STATE_CHANGE), the full socket was
# destroyed and its facts are final (SOCKET_END), the timewait socket is gone (TIMEWAIT_END),
# a reset was sent or received.
EventKind = enum.IntEnum(  # type: ignore[misc]
    "EventKind",
    {
        name.removeprefix("EVENT_"): value
        for name, value in _HEADER.enum("synfin_event_kind").items()
    },
    module=__name__,
)
# What the kernel showed happening to one socket (FACT_* in synfin_events.h, where each is
# explained).
Fact = enum.IntFlag("Fact", _HEADER.prefixed("FACT_"), module=__name__)  # type: ignore[misc]


# enum's own & and | build their result through the enum machinery, about a microsecond each,
# paid several times per event; these look it up. (Set after the class is made: enum gives
# every Flag class its own copy of Flag's operators.)
def _looked_up(combine: Callable[[int, object], int]) -> Callable[[Fact, object], Fact]:
    def operator(self: Fact, other: object) -> Fact:
        value = combine(self, other)
        if value is NotImplemented:
            return NotImplemented  # type: ignore[no-any-return]
        member = Fact._value2member_map_.get(value)
        return member if member is not None else Fact(value)  # type: ignore[return-value]

    return operator


Fact.__or__ = Fact.__ror__ = _looked_up(int.__or__)  # type: ignore[method-assign,arg-type]
Fact.__and__ = Fact.__rand__ = _looked_up(int.__and__)  # type: ignore[method-assign,arg-type]

FLAG_PROCESS_CONTEXT = _HEADER["EVENT_FLAG_PROCESS_CONTEXT"]
FLAG_TIMER_EXPIRED = _HEADER["EVENT_FLAG_TIMER_EXPIRED"]
FLAG_TIMEWAIT = _HEADER["EVENT_FLAG_TIMEWAIT"]

# Index of each counter in the probe's `stats` map (enum synfin_stat).
STAT_EVENTS_SENT = _HEADER["STAT_EVENTS_SENT"]
STAT_EVENTS_LOST = _HEADER["STAT_EVENTS_LOST"]
STAT_SOCKETS_TRACKED = _HEADER["STAT_SOCKETS_TRACKED"]
STAT_SOCKETS_EVICTED = _HEADER["STAT_SOCKETS_EVICTED"]
STAT_TIMEWAIT_UNTRACKED = _HEADER["STAT_TIMEWAIT_UNTRACKED"]


class DecodeError(ValueError):
    """A record that does not have the layout of struct synfin_event."""


class _EventFields(NamedTuple):
    ts_ns: int
    skaddr: int
    since_ns: int  # when the socket entered ``oldstate``; 0 when not seen
    start_ns: int  # connect(), the SYN's arrival, or when synfin first saw the socket
    aux: int  # into CLOSE: the timewait socket that takes over, else 0
    cgroup_id: int
    pid: int  # the process this ran in; meaningful only in process context
    owner_pid: int  # the last process seen acting on the socket in its own context
    netns: int
    facts: Fact
    family: int
    sport: int
    dport: int
    kind: EventKind
    flags: int
    saddr: bytes
    daddr: bytes
    comm: str  # the owner's command name
    oldstate: int
    newstate: int
    detail: int  # timewait substate, or the state a reset hit
    syn_retrans: int
    reason: int  # reset reason (enum sk_rst_reason) where the kernel gives one


class Event(_EventFields, Endpoints):
    """One record from the probe. Which fields mean what depends on ``kind``.

    A named tuple in the record's own field order: a busy host sends tens of thousands a
    second, and a tuple is built in one step where a dataclass sets each field in turn.
    """

    __slots__ = ()

    @property
    def in_process_context(self) -> bool:
        """True when this ran in a process's own context (``pid`` means something)."""
        return bool(self.flags & FLAG_PROCESS_CONTEXT)

    @property
    def about_timewait(self) -> bool:
        """True for records about a timewait socket (seen through its timer, not set_state)."""
        return bool(self.flags & FLAG_TIMEWAIT)

    @property
    def timer_expired(self) -> bool:
        return bool(self.flags & FLAG_TIMER_EXPIRED)

    @property
    def time_in_old_state_ns(self) -> int | None:
        """How long the socket stayed in ``old``; None when synfin did not see it enter."""
        if not self.since_ns or self.since_ns > self.ts_ns:
            return None
        return self.ts_ns - self.since_ns

    def to_record(self) -> dict[str, object]:
        """Every field, losslessly, for ``synfin record`` (bytes as hex)."""
        record = self._asdict()
        record["kind"] = self.kind.name.lower()
        record["facts"] = int(self.facts)
        record["saddr"] = self.saddr.hex()
        record["daddr"] = self.daddr.hex()
        return record


# struct synfin_event, read from the header: Event's fields are its fields, in its order.
_LAYOUT = _HEADER.struct("synfin_event")
DECODED_FIELDS = Event._fields
_LAYOUT.require(DECODED_FIELDS)
EVENT_LAYOUT = _LAYOUT.codec()
EVENT_SIZE = EVENT_LAYOUT.size
KIND_OFFSET = next(field.offset for field in _LAYOUT.fields if field.name == "kind")

_RECORD_FIELDS = {
    "ts_ns", "skaddr", "since_ns", "start_ns", "aux", "cgroup_id", "pid", "owner_pid", "netns",
    "facts", "family", "sport", "dport", "flags", "saddr", "daddr", "comm", "oldstate",
    "newstate", "detail", "syn_retrans", "reason",
}  # fmt: skip


def from_record(record: dict[str, object]) -> Event:
    """Rebuild an Event from ``Event.to_record()``; DecodeError names what is wrong."""
    if not isinstance(record, dict):
        raise DecodeError("not a JSON object")
    missing = sorted(_RECORD_FIELDS - record.keys())
    if missing or "kind" not in record:
        raise DecodeError(f"missing field(s): {', '.join(missing or ['kind'])}")
    try:
        kind = EventKind[str(record["kind"]).upper()]
        fields: dict[str, object] = {name: record[name] for name in _RECORD_FIELDS}
        for name in _RECORD_FIELDS - {"saddr", "daddr", "comm"}:
            if not isinstance(fields[name], int) or isinstance(fields[name], bool):
                raise DecodeError(f"field {name} is not an integer")
        if not isinstance(fields["comm"], str):
            raise DecodeError("field comm is not a string")
        saddr, daddr = bytes.fromhex(str(fields["saddr"])), bytes.fromhex(str(fields["daddr"]))
    except KeyError:
        raise DecodeError(f"unknown event kind {record['kind']!r}") from None
    except ValueError as error:
        raise DecodeError(f"bad address: {error}") from None
    if len(saddr) != 16 or len(daddr) != 16:
        raise DecodeError("addresses must be 16 bytes")
    fields.update(saddr=saddr, daddr=daddr, facts=Fact(fields["facts"]))
    return Event(kind=kind, **fields)  # type: ignore[arg-type]


# Building enum members is slow next to a dict lookup, and every record needs two.
_KINDS = {int(kind): kind for kind in EventKind}
_FACT_SETS: dict[int, Fact] = {}


def facts_of(value: int) -> Fact:
    facts = _FACT_SETS.get(value)
    if facts is None:
        facts = Fact(value)
        if len(_FACT_SETS) < 4096:  # combinations seen in practice number in the dozens
            _FACT_SETS[value] = facts
    return facts


_make_event = tuple.__new__


def from_fields(fields: tuple[object, ...]) -> Event:
    """An Event from struct synfin_event's fields as ``EVENT_LAYOUT`` unpacks them."""
    (
        ts_ns, skaddr, since_ns, start_ns, aux, cgroup_id, pid, owner_pid, netns, facts,
        family, sport, dport, kind, flags, saddr, daddr, comm, *rest,
    ) = fields  # fmt: skip
    event_kind = _KINDS.get(kind)  # type: ignore[call-overload]
    if event_kind is None:
        raise DecodeError(f"unknown event kind {kind}")
    name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")  # type: ignore[attr-defined]
    return _make_event(  # type: ignore[no-any-return]
        Event,
        (
            ts_ns, skaddr, since_ns, start_ns, aux, cgroup_id, pid, owner_pid, netns,
            facts_of(facts), family, sport, dport, event_kind, flags, saddr, daddr, name, *rest,
        ),
    )  # fmt: skip


def decode(record: bytes | memoryview) -> Event:
    """Decode one ring-buffer record; raise DecodeError when it is not a synfin event."""
    if len(record) < EVENT_SIZE:
        raise DecodeError(f"record of {len(record)} bytes, expected {EVENT_SIZE}")
    return from_fields(EVENT_LAYOUT.unpack_from(record))


EVENT_FORMAT = RecordFormat(EVENT_LAYOUT, from_fields, DecodeError)


def encode(event: Event) -> bytes:
    """The record the probe would have written for ``event`` (for tests and fixtures)."""
    return EVENT_LAYOUT.pack(
        event.ts_ns, event.skaddr, event.since_ns, event.start_ns, event.aux, event.cgroup_id,
        event.pid, event.owner_pid, event.netns, int(event.facts), event.family, event.sport,
        event.dport, event.kind, event.flags, event.saddr, event.daddr, event.comm.encode(),
        event.oldstate, event.newstate, event.detail, event.syn_retrans, event.reason,
    )  # fmt: skip
