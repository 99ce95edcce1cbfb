"""A BPF ring buffer read straight from its mapped pages, a run of records at a time.

bcc hands each record to Python through its own ctypes callback, about a microsecond per record
before synfin has looked at it: at a busy host's 60,000 records a second that alone is most of
a core. The ring buffer is built to be read without any call at all (kernel/bpf/ringbuf.c): the
map's first page holds the consumer position (the reader writes it), the next page the producer
position, then the data pages, mapped twice in a row so that a record crossing the end reads
as one piece. Each record is an 8-byte header (its length, with a busy bit while the producer
is still writing and a discard bit) and the record, padded to 8 bytes.

So this reader takes every committed record between the two positions in one go: it checks the
headers of the whole run with one strided view, unpacks the run with ``struct.iter_unpack``,
hands the decoded tuples on, and only then moves the consumer position, after which the
kernel may reuse the space.

The positions are read and written as plain 8-byte loads and stores. That is enough on x86-64,
whose stores are seen in order; elsewhere the kernel's acquire/release pairing needs barriers
Python cannot issue, so ``supported()`` is false there and synfin keeps bcc's callback.
"""

from __future__ import annotations

import contextlib
import mmap
import platform
import select
import struct
from collections.abc import Callable, Iterable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8

RecordsHandler = Callable[[Iterable[tuple[object, ...]]], None]


def supported() -> bool:
    """True where plain loads and stores order the way the ring buffer needs (x86-64)."""
    return platform.machine() in ("x86_64", "AMD64")


def _stride(record_size: int) -> int:
    return (record_size + HEADER_SIZE + 7) & ~7


class MappedRing:
    """One ring buffer's positions and data; records of one fixed layout.

    ``open`` maps a ring buffer map's pages; the constructor takes any three views laid out
    the same way (the tests build a ring in plain memory)."""

    def __init__(
        self,
        consumer: memoryview,
        producer: memoryview,
        data: memoryview,
        layout: struct.Struct,
        closers: tuple[Callable[[], None], ...] = (),
    ) -> None:
        self.size = len(data) // 2
        if self.size <= 0 or self.size & (self.size - 1):
            raise ValueError(f"ring buffer size {self.size} is not a power of two")
        self.mask = self.size - 1
        self.record_size = layout.size
        self.stride = _stride(layout.size)
        # One tuple per record: the header skipped, the record, the padding skipped.
        padding = self.stride - HEADER_SIZE - layout.size
        self.layout = struct.Struct(f"<{HEADER_SIZE}x{layout.format.lstrip('<=!@>')}{padding}x")
        # Native 'Q' views: one aligned 8-byte load or store each, never a byte at a time.
        self._consumer = consumer.cast("Q")
        self._producer = producer[:8].cast("Q")
        self._data = data
        self._closers = closers
        self._epoll: select.epoll | None = None
        self.malformed = 0  # records of another length: counted, skipped

    @classmethod
    def open(cls, map_fd: int, data_size: int, layout: struct.Struct) -> MappedRing:
        """Map ring buffer map ``map_fd`` (``data_size`` bytes of data) into this process."""
        page = mmap.PAGESIZE
        consumer_page = mmap.mmap(
            map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
        )
        producer_pages = mmap.mmap(
            map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        whole = memoryview(producer_pages)
        ring = cls(
            memoryview(consumer_page),
            whole[:page],
            whole[page:],
            layout,
            closers=(consumer_page.close, producer_pages.close),
        )
        whole.release()
        ring._epoll = select.epoll()
        ring._epoll.register(map_fd, select.EPOLLIN)
        return ring

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        for view in (self._consumer, self._producer, self._data):
            view.release()
        for close in self._closers:
            close()

    def wait(self, timeout_ms: int) -> None:
        """Until the kernel signals new records, or the timeout (EINTR is a timeout)."""
        if self._epoll is None:
            return
        with contextlib.suppress(InterruptedError):
            self._epoll.poll(timeout_ms / 1000)

    def read(self, handler: RecordsHandler) -> int:
        """Hand every committed record to ``handler`` (in runs); return how many."""
        delivered = 0
        consumer = self._consumer[0]
        while True:
            producer = self._producer[0]
            if consumer >= producer:
                return delivered
            start = consumer & self.mask
            # Whole records of the expected length, up to the first that is not one.
            run_bytes = min(producer - consumer, self.size)
            count = run_bytes // self.stride
            if count:
                lengths = (
                    self._data[start : start + count * self.stride]
                    .cast("I")[:: self.stride // 4]
                    .tolist()
                )
                if lengths.count(self.record_size) != count:
                    count = next(i for i, n in enumerate(lengths) if n != self.record_size)
            if count:
                handler(self.layout.iter_unpack(self._data[start : start + count * self.stride]))
                consumer += count * self.stride
                delivered += count
            else:
                header = self._data[start : start + 4].cast("I")[0]
                if header & BUSY_BIT:
                    break  # still being written: the rest waits for the next read
                length = header & ~(BUSY_BIT | DISCARD_BIT)
                if not header & DISCARD_BIT:
                    if length == self.record_size:
                        continue  # committed since the run's headers were read: read it now
                    self.malformed += 1
                consumer += _stride(length)
            self._consumer[0] = consumer  # the kernel may now reuse what was read
        self._consumer[0] = consumer
        return delivered
