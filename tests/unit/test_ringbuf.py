"""The mapped ring buffer reader, over a ring laid out in plain memory the way the kernel lays
out a BPF ring buffer map (header, record, padding; data mapped twice in a row)."""

from __future__ import annotations

import struct

import pytest

from synfin.kernel.ringbuf import BUSY_BIT, DISCARD_BIT, HEADER_SIZE, MappedRing

RECORD = struct.Struct("<QI")  # 12 bytes: records take 24 bytes of ring with header and padding
SIZE = 256


class FakeRing:
    """Producer side: writes records as bpf_ringbuf_reserve/submit would."""

    def __init__(self, start: int = 0) -> None:
        self.consumer = memoryview(bytearray(8))
        self.producer = memoryview(bytearray(8))
        self.data = bytearray(2 * SIZE)
        self.position = start
        self.consumer.cast("Q")[0] = start
        self.producer.cast("Q")[0] = start

    def _write(self, position: int, raw: bytes) -> None:
        for i, byte in enumerate(raw):
            offset = (position + i) & (SIZE - 1)
            self.data[offset] = self.data[offset + SIZE] = byte  # both mappings

    def put(self, *fields: int, length: int | None = None, flags: int = 0) -> int:
        raw = RECORD.pack(*fields) if length is None else b"\x07" * length
        header = struct.pack("<II", len(raw) | flags, 0)
        at = self.position
        self._write(at, header + raw)
        self.position += (HEADER_SIZE + len(raw) + 7) & ~7
        self.producer.cast("Q")[0] = self.position
        return at

    def commit(self, at: int) -> None:
        """Clear the busy bit of the record at ``at`` (bpf_ringbuf_submit)."""
        length = struct.unpack_from("<I", self.data, at & (SIZE - 1))[0] & ~BUSY_BIT
        self._write(at, struct.pack("<I", length))

    def reader(self) -> MappedRing:
        return MappedRing(self.consumer, self.producer, memoryview(self.data), RECORD)

    @property
    def consumed(self) -> int:
        return self.consumer.cast("Q")[0]


def read_all(ring: MappedRing) -> list[tuple[object, ...]]:
    got: list[tuple[object, ...]] = []
    ring.read(got.extend)
    return got


def test_every_committed_record_is_read_in_order_and_the_space_released() -> None:
    fake = FakeRing()
    for n in range(5):
        fake.put(n, n * 10)
    ring = fake.reader()
    assert read_all(ring) == [(n, n * 10) for n in range(5)]
    assert fake.consumed == fake.position
    assert read_all(ring) == []


def test_reading_stops_at_a_record_still_being_written() -> None:
    fake = FakeRing()
    fake.put(1, 1)
    busy = fake.put(2, 2, flags=BUSY_BIT)
    fake.put(3, 3)
    ring = fake.reader()
    assert read_all(ring) == [(1, 1)]
    assert fake.consumed == busy  # the kernel may not reuse what follows
    fake.commit(busy)
    assert read_all(ring) == [(2, 2), (3, 3)]


def test_discarded_records_are_skipped_and_records_of_another_length_counted() -> None:
    fake = FakeRing()
    fake.put(1, 1)
    fake.put(9, 9, flags=DISCARD_BIT)
    fake.put(0, 0, length=30)
    fake.put(4, 4)
    ring = fake.reader()
    assert read_all(ring) == [(1, 1), (4, 4)]
    assert ring.malformed == 1
    assert fake.consumed == fake.position


def test_a_record_across_the_end_of_the_ring_reads_whole() -> None:
    start = 10 * SIZE - 2 * 24 - 8  # positions only grow; the third record crosses the end
    fake = FakeRing(start)
    for n in range(6):
        fake.put(n, 1000 + n)
    assert read_all(fake.reader()) == [(n, 1000 + n) for n in range(6)]
    assert fake.consumed == start + 6 * 24


def test_a_ring_whose_size_is_not_a_power_of_two_is_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        MappedRing(
            memoryview(bytearray(8)), memoryview(bytearray(8)), memoryview(bytearray(600)), RECORD
        )
