"""The per-connection stream's records (``struct synfin_connection``), and the events each
stands for.

With ``--per-connection`` the probe keeps each socket end's steps in its entry and sends them
in one record when that end is over (probes/tcp_states/stream.c). A record is the same
information as the events it replaces: ``events()`` rebuilds them, in order, so the lifecycle
engine reads both streams and stays the one place that decides what a path means.

What a record keeps once per socket rather than per step (owner, facts, ports, addresses) is
its final value; the engine only accumulates those, so the path it draws is the same.
"""

from __future__ import annotations

from typing import NamedTuple

from synfin.records import abi
from synfin.records.addresses import Endpoints
from synfin.records.events import FLAG_TIMEWAIT, DecodeError, Event, EventKind, facts_of
from synfin.records.pump import RecordFormat

_HEADER = abi.events()
PATH_STEPS = _HEADER["PATH_STEPS"]
FLAG_PART = _HEADER["CONNECTION_FLAG_PART"]
_CLOSE = _HEADER["TCP_CLOSE_NUM"]


class PathStep(NamedTuple):
    """One step kept in the kernel: what a ``synfin_event`` of it would have said."""

    ts_ns: int
    pid: int
    reason: int
    kind: int
    oldstate: int
    newstate: int
    flags: int
    detail: int


_STEP_LAYOUT = _HEADER.struct("path_step")
_STEP_LAYOUT.require(PathStep._fields)
STEP_WIDTH = len(PathStep._fields)


class _ConnectionFields(NamedTuple):
    skaddr: int  # the full socket
    timewait: int  # the timewait socket that carried the end, 0 if none
    start_ns: int
    cgroup_id: int
    owner_pid: int
    netns: int
    facts: int
    family: int
    sport: int
    dport: int
    syn_retrans: int
    flags: int  # FLAG_PART: more of this socket's path follows in a later record
    saddr: bytes
    daddr: bytes
    comm: str
    path: tuple[PathStep, ...]


class ConnectionRecord(_ConnectionFields, Endpoints):
    """One socket end's path (or, with FLAG_PART, the first part of a long one)."""

    __slots__ = ()

    @property
    def part(self) -> bool:
        return bool(self.flags & FLAG_PART)

    def shape(self) -> tuple[object, ...]:
        """Everything but identities and times: records of one shape tell the same story."""
        # The path by field (every step's ts, every step's pid, ...), without ts and pid.
        by_field = tuple(zip(*self.path, strict=True))[2:]
        return (
            self.facts,
            self.syn_retrans,
            self.flags,
            bool(self.timewait),
            len(self.path),
            by_field,
        )

    def events(self) -> list[Event]:
        """The events the probe would have streamed for these steps, in order."""
        facts = facts_of(self.facts)
        # When each socket (full, timewait) entered its current state, as the probe keeps it.
        entered = {False: 0, True: 0}
        events: list[Event] = []
        for step in self.path:
            on_timewait = bool(step.flags & FLAG_TIMEWAIT)
            kind = EventKind(step.kind)
            changes = kind is EventKind.STATE_CHANGE and step.oldstate != step.newstate
            since = entered[on_timewait]
            if kind not in (EventKind.STATE_CHANGE, EventKind.TIMEWAIT_END):
                since = 0
            hand_over = changes and not on_timewait and step.newstate == _CLOSE and self.timewait
            events.append(
                Event(
                    ts_ns=step.ts_ns,
                    skaddr=self.timewait if on_timewait else self.skaddr,
                    since_ns=since,
                    start_ns=self.start_ns,
                    aux=self.timewait if hand_over else 0,
                    cgroup_id=self.cgroup_id,
                    pid=step.pid,
                    owner_pid=self.owner_pid,
                    netns=self.netns,
                    facts=facts,
                    family=self.family,
                    sport=self.sport,
                    dport=self.dport,
                    kind=kind,
                    flags=step.flags,
                    saddr=self.saddr,
                    daddr=self.daddr,
                    comm=self.comm,
                    oldstate=step.oldstate,
                    newstate=step.newstate,
                    detail=step.detail,
                    syn_retrans=self.syn_retrans,
                    reason=step.reason,
                )
            )
            if changes:
                entered[on_timewait] = step.ts_ns
            if hand_over:
                entered[True] = step.ts_ns  # the timewait socket starts at the hand-over
        return events

    def to_record(self) -> dict[str, object]:
        """Every field, losslessly, for ``synfin record --per-connection`` (bytes as hex)."""
        record: dict[str, object] = self._asdict()
        record["saddr"] = self.saddr.hex()
        record["daddr"] = self.daddr.hex()
        record["path"] = [list(step) for step in self.path]
        return record


# struct synfin_connection in its order: the record's fields, with the count of steps kept
# before the flags, and the steps themselves flattened at the end.
_LAYOUT = _HEADER.struct("synfin_connection")
_HEAD_FIELDS = (*_ConnectionFields._fields[:11], "steps", *_ConnectionFields._fields[11:15])
_LAYOUT.require((*_HEAD_FIELDS, "path"))
CONNECTION_LAYOUT = _LAYOUT.codec()
CONNECTION_SIZE = CONNECTION_LAYOUT.size
_HEAD = len(_HEAD_FIELDS)
_STEPS_AT = _HEAD_FIELDS.index("steps")
_KINDS = frozenset(int(kind) for kind in EventKind)
_KIND_AT = PathStep._fields.index("kind")
_make = tuple.__new__
_step = PathStep._make


def connection_from_fields(fields: tuple[object, ...]) -> ConnectionRecord:
    """A record from ``CONNECTION_LAYOUT``'s unpacked fields."""
    steps = fields[_STEPS_AT]
    if not isinstance(steps, int) or steps > PATH_STEPS:
        raise DecodeError(f"a connection record with {steps} steps (at most {PATH_STEPS})")
    flat = fields[_HEAD : _HEAD + steps * STEP_WIDTH]
    if not _KINDS.issuperset(flat[_KIND_AT::STEP_WIDTH]):
        raise DecodeError("unknown event kind in a connection record's path")
    # Each step's fields, STEP_WIDTH at a time (zip over one iterator, taken in C).
    path = tuple(map(_step, zip(*[iter(flat)] * STEP_WIDTH, strict=True)))
    comm = fields[_HEAD - 1].split(b"\0", 1)[0].decode("utf-8", "replace")  # type: ignore[attr-defined]
    return _make(  # type: ignore[no-any-return]
        ConnectionRecord,
        (*fields[:_STEPS_AT], *fields[_STEPS_AT + 1 : _HEAD - 1], comm, path),
    )


def decode_connection(raw: bytes | memoryview) -> ConnectionRecord:
    if len(raw) < CONNECTION_SIZE:
        raise DecodeError(f"record of {len(raw)} bytes, expected {CONNECTION_SIZE}")
    return connection_from_fields(CONNECTION_LAYOUT.unpack_from(raw))


CONNECTION_FORMAT = RecordFormat(CONNECTION_LAYOUT, connection_from_fields, DecodeError)


def connection_from_record(record: object) -> ConnectionRecord:
    """Rebuild a record from ``ConnectionRecord.to_record()``; DecodeError says what is wrong."""
    if not isinstance(record, dict):
        raise DecodeError("not a JSON object")
    missing = sorted(set(_ConnectionFields._fields) - record.keys())
    if missing:
        raise DecodeError(f"missing field(s): {', '.join(missing)}")
    try:
        path = tuple(PathStep(*map(int, step)) for step in record["path"])
        saddr, daddr = bytes.fromhex(record["saddr"]), bytes.fromhex(record["daddr"])
        numbers = {
            name: int(record[name])
            for name in _ConnectionFields._fields
            if name not in ("saddr", "daddr", "comm", "path")
        }
    except (TypeError, ValueError) as error:
        raise DecodeError(f"bad connection record: {error}") from None
    if len(saddr) != 16 or len(daddr) != 16:
        raise DecodeError("addresses must be 16 bytes")
    if not all(step.kind in _KINDS for step in path):
        raise DecodeError("unknown event kind in a connection record's path")
    return ConnectionRecord(
        saddr=saddr, daddr=daddr, comm=str(record["comm"]), path=path, **numbers
    )


def encode_connection(record: ConnectionRecord) -> bytes:
    """The record the probe would have written (for tests and fixtures)."""
    steps = [value for step in record.path for value in step]
    padding = [0] * STEP_WIDTH * (PATH_STEPS - len(record.path))
    return CONNECTION_LAYOUT.pack(
        record.skaddr, record.timewait, record.start_ns, record.cgroup_id, record.owner_pid,
        record.netns, record.facts, record.family, record.sport, record.dport,
        record.syn_retrans, len(record.path), record.flags, record.saddr, record.daddr,
        record.comm.encode(), *steps, *padding,
    )  # fmt: skip
