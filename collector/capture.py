"""The segment capture: ``probes/tcp_segments.c`` as a socket filter on a packet socket.

A packet socket sees what one network namespace sends and receives, on every interface. The
filter copies the segments worth drawing to a ring buffer and keeps nothing on the socket, so
an idle socket costs nothing and a busy one never fills. Used as a context manager: closing
the packet socket detaches the filter, on every exit path.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from collector import privileges
from collector.netns import entered_path
from collector.probes import (
    MAX_FILTER_PORTS,
    PROBES_DIR,
    ProbeError,
    RecordHandler,
    load,
    validate_ringbuf_pages,
)
from collector.segments import STAT_LOST, STAT_SENT

ETH_P_ALL = 0x0003
SO_ATTACH_BPF = 50  # include/uapi/asm-generic/socket.h


@dataclass(frozen=True)
class CaptureOptions:
    ringbuf_pages: int = 64
    max_awaited: int = 16384  # SYNs and FINs waiting for their answering ACK
    all_segments: bool = False  # every segment of the filtered ports, data included
    netns: Path | None = None  # capture in this namespace (default: synfin's own)

    def cflags(self) -> list[str]:
        return [
            f"-I{PROBES_DIR}",
            f"-DRINGBUF_PAGES={self.ringbuf_pages}",
            f"-DMAX_AWAITED={self.max_awaited}",
            f"-DALL_SEGMENTS={int(self.all_segments)}",
            "-w",
        ]


@dataclass(frozen=True)
class CaptureStats:
    sent: int
    lost: int


class SegmentCapture:
    """``probes/tcp_segments.c`` loaded and attached to a packet socket."""

    source = "tcp_segments.c"

    def __init__(self, options: CaptureOptions | None = None) -> None:
        self.options = options or CaptureOptions()
        validate_ringbuf_pages(self.options.ringbuf_pages)
        if not privileges.can_load_bpf():
            raise ProbeError(
                "capturing segments needs root, or CAP_BPF and CAP_NET_RAW",
                "run synfin with sudo",
            )
        self._socket: socket.socket | None = None
        self._bpf: Any = load(self.source, self.options.cflags())
        try:
            bcc = __import__("bcc")
            program = self._bpf.load_func(b"capture_segment", bcc.BPF.SOCKET_FILTER)
            self._socket = self._open_socket(program.fd)
        except BaseException:
            self.close()
            raise
        self._stream_open = False

    def _open_socket(self, program_fd: int) -> socket.socket:
        where = self.options.netns
        try:
            with entered_path(where) if where else nullcontext():
                # SOCK_DGRAM: the filter sees every packet from its network header on.
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except FileNotFoundError:
            raise ProbeError(
                f"network namespace {where} does not exist",
                "name one listed by `ip netns list`, or a /proc/PID/ns/net path",
            ) from None
        except PermissionError:
            raise ProbeError(
                "opening a packet socket needs CAP_NET_RAW", "run synfin with sudo"
            ) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, program_fd)
            # Nothing is ever queued here; a tiny buffer makes sure of it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        except OSError as error:
            sock.close()
            raise ProbeError(f"cannot attach the segment filter: {error.strerror}") from None
        return sock

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
        bpf, self._bpf = self._bpf, None
        if bpf is not None:
            bpf.cleanup()

    def __enter__(self) -> SegmentCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def bpf(self) -> Any:
        if self._bpf is None:
            raise ProbeError("the segment capture is closed")
        return self._bpf

    # -- the stream --------------------------------------------------------------------------

    def set_filter(self, ports: Iterable[int] = (), family: int = 0) -> None:
        """Capture only ``family`` (0: any) segments to or from one of ``ports`` (empty: any)."""
        wanted = sorted(set(ports))
        if len(wanted) > MAX_FILTER_PORTS:
            raise ProbeError(f"at most {MAX_FILTER_PORTS} ports can be filtered on")
        table = self.bpf[b"segment_ports"]
        table.clear()
        for port in wanted:
            table[ctypes.c_uint16(port)] = ctypes.c_uint8(1)
        config_map = self.bpf[b"segment_filter"]
        config = config_map.Leaf()
        config.port_filter = 1 if wanted else 0
        config.family = family
        config_map[ctypes.c_int(0)] = config

    def open_stream(self, handler: RecordHandler) -> None:
        def on_record(_ctx: int, data: int, size: int) -> int:
            handler(ctypes.string_at(data, size))
            return 0

        self.bpf[b"segments"].open_ring_buffer(on_record)
        self._stream_open = True

    def poll(self, timeout_ms: int = 100) -> None:
        if not self._stream_open:
            raise ProbeError("poll() before open_stream()")
        with contextlib.suppress(InterruptedError):
            self.bpf.ring_buffer_poll(timeout_ms)

    def drain(self) -> None:
        if self._stream_open:
            self.bpf.ring_buffer_consume()

    def stats(self) -> CaptureStats:
        table = self.bpf[b"segment_stats"]
        return CaptureStats(
            sent=sum(table[ctypes.c_int(STAT_SENT)]), lost=sum(table[ctypes.c_int(STAT_LOST)])
        )
