"""The segment capture: ``probes/tcp_segments.c`` as a socket filter on a packet socket.

A packet socket sees what one network namespace sends and receives, on every interface. The
filter copies the segments worth drawing to a ring buffer and keeps nothing on the socket, so
an idle socket costs nothing and a busy one never fills. Used as a context manager: closing
the packet socket detaches the filter, on every exit path.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from synfin.kernel import privileges
from synfin.kernel.loader import (
    PROBES_DIR,
    LoadedProbe,
    ProbeError,
    import_bcc,
    load,
    validate_ringbuf_pages,
)
from synfin.kernel.namespaces import entered_path
from synfin.records import abi
from synfin.records.segments import STAT_LOST, STAT_SENT

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


class SegmentCapture(LoadedProbe):
    """``probes/tcp_segments.c`` loaded and attached to a packet socket."""

    source = "tcp_segments.c"
    ring_buffer = b"segments"
    map_layouts = ((b"segment_filter", None, "filter_config"),)

    def __init__(self, options: CaptureOptions | None = None) -> None:
        self.options = options or CaptureOptions()
        validate_ringbuf_pages(self.options.ringbuf_pages)
        if not privileges.can_load_bpf():
            raise ProbeError(
                "capturing segments needs root, or CAP_BPF and CAP_NET_RAW",
                "run synfin with sudo",
            )
        super().__init__()
        self._socket: socket.socket | None = None
        self._bpf = load(self.source, self.options.cflags())
        try:
            self.check_map_layouts(abi.segments())
            program = self._bpf.load_func(b"capture_segment", import_bcc().BPF.SOCKET_FILTER)
            self._socket = self._open_socket(program.fd)
        except BaseException:
            self.close()
            raise

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

    def close(self) -> None:
        """Closing the packet socket detaches the filter; then the program goes."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
        super().close()

    def set_filter(self, ports: Iterable[int] = (), family: int = 0) -> None:
        """Capture only ``family`` (0: any) segments to or from one of ``ports`` (empty: any)."""
        self._set_port_filter(b"segment_ports", b"segment_filter", ports, family)

    def records_lost(self) -> int:
        return self.stats().lost

    def stats(self) -> CaptureStats:
        table = self.bpf[b"segment_stats"]
        return CaptureStats(
            sent=sum(table[ctypes.c_int(STAT_SENT)]), lost=sum(table[ctypes.c_int(STAT_LOST)])
        )
