"""The record pump: poll the probes' ring buffers, decode each record, hand it on, count.

Every live command (watch, record, trace, lab --trace) reads one or two ring buffers the same
way: poll each, take the records in runs already unpacked by their layout
(synfin.kernel.ringbuf), build each into its type, count what does not decode, and ask each
source at the end how many records it could not deliver (the kernel counts those). The
commands differ only in what they do with a decoded record and between polls, so that is what
they pass in.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
RecordsHandler = Callable[[Iterable[tuple[object, ...]]], None]


@dataclass(frozen=True)
class RecordFormat(Generic[T]):
    """How one ring buffer's records decode: their layout, and how a record's unpacked
    fields become ``T`` (raising ``invalid`` for a record that is not one)."""

    layout: struct.Struct
    build: Callable[[tuple[object, ...]], T]
    invalid: type[Exception]


class Source(Protocol):
    """A loaded probe with a ring buffer (synfin.kernel.loader.LoadedProbe)."""

    def open_stream(self, handler: RecordsHandler, layout: struct.Struct) -> None: ...
    def poll(self, timeout_ms: int = 100) -> None: ...
    def drain(self) -> None: ...
    def records_lost(self) -> int: ...
    def records_malformed(self) -> int: ...


@dataclass
class Tally:
    decoded: int = 0
    undecodable: int = 0


class Stream(Generic[T]):
    """One source's records, decoded into ``sink``."""

    def __init__(self, source: Source, format: RecordFormat[T], sink: Callable[[T], None]) -> None:
        self.source, self.format, self.sink = source, format, sink
        self.tally = Tally()

    def on_records(self, records: Iterable[tuple[object, ...]]) -> None:
        build, sink, invalid = self.format.build, self.sink, self.format.invalid
        decoded = undecodable = 0
        try:
            for fields in records:
                try:
                    item = build(fields)
                except invalid:
                    undecodable += 1
                    continue
                decoded += 1
                sink(item)
        finally:
            self.tally.decoded += decoded
            self.tally.undecodable += undecodable


@dataclass
class Periodic:
    """Something to run every ``interval`` seconds between polls."""

    interval: float
    run: Callable[[], None]
    due: float = 0.0

    def maybe_run(self, now: float) -> None:
        if now >= self.due:
            self.due = now + self.interval
            self.run()


class Pump:
    """Opens each stream's ring buffer and moves records until told to stop."""

    def __init__(self, streams: Sequence[Stream[object]], poll_ms: int = 100) -> None:
        self.streams = list(streams)
        self.poll_ms = poll_ms
        for stream in self.streams:
            stream.source.open_stream(stream.on_records, stream.format.layout)

    def poll_once(self) -> None:
        for stream in self.streams:
            stream.source.poll(self.poll_ms)

    def run(
        self,
        keep_going: Callable[[], bool],
        periodic: Sequence[Periodic] = (),
        after_poll: Callable[[], None] = lambda: None,
    ) -> None:
        """Poll until ``keep_going()`` is false, then deliver what is already buffered."""
        while keep_going():
            self.poll_once()
            now = time.monotonic()
            for task in periodic:
                task.maybe_run(now)
            after_poll()
        self.drain()

    def run_until_quiet(self, quiet_s: float, longest_s: float) -> None:
        """Poll until no record has arrived for ``quiet_s`` (at most ``longest_s``)."""
        deadline = time.monotonic() + longest_s
        quiet_since, seen = time.monotonic(), self.arrived
        while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
            self.poll_once()
            if self.arrived != seen:
                quiet_since, seen = time.monotonic(), self.arrived

    def drain(self) -> None:
        for stream in self.streams:
            stream.source.drain()

    @property
    def arrived(self) -> int:
        return sum(s.tally.decoded + s.tally.undecodable for s in self.streams)

    @property
    def undecodable(self) -> int:
        """Records that did not decode, here or already in the ring (another length)."""
        return sum(s.tally.undecodable + s.source.records_malformed() for s in self.streams)

    def lost(self) -> int:
        """Records the sources' ring buffers had no room for (counted in the kernel)."""
        return sum(stream.source.records_lost() for stream in self.streams)
