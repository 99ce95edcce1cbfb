"""Compiling and loading synfin's probes with bcc, and what every loaded probe shares.

The kernel layer (synfin.kernel) is the only code that imports bcc; everything else works on
decoded records and plain data, so it can be tested and replayed without root or BPF. Probes
are plain C files under ``probes/``, configured with ``-D`` flags and BPF maps.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from synfin import probes
from synfin.errors import EnvironmentProblem, SynfinError
from synfin.kernel import probe_source, refusals, ringbuf
from synfin.kernel.memory import release_compiler_memory
from synfin.records import abi

# SYNFIN_PROBES_DIR points synfin at another copy of the probes (a probe under development).
PROBES_DIR = Path(os.environ.get("SYNFIN_PROBES_DIR", probes.DIRECTORY))
MAX_FILTER_PORTS = abi.events()["MAX_FILTER_PORTS"]

RecordsHandler = Callable[[Iterable[tuple[object, ...]]], None]


def percpu_items(table: Any) -> list[tuple[Any, Any]]:
    """(key, per-CPU values) of a per-CPU map, in one batch where bcc can.

    bcc 0.31 (Debian 13) fails to build a per-CPU value from a batch lookup ("incompatible
    types, c_ulong_Array_2 instance instead of c_ulong instance", seen in a VM): there each key
    is looked up in turn instead."""
    try:
        return list(table.items_lookup_batch())
    except TypeError:
        return list(table.items())


class ProbeError(EnvironmentProblem):
    """A probe could not be compiled, loaded or attached."""


def import_bcc() -> Any:
    try:
        import bcc  # noqa: PLC0415  (optional at import time: replay and tests run without it)
    except ImportError:
        raise ProbeError(
            "bcc's Python module is not importable",
            "apt-get install python3-bpfcc, and run synfin from the .venv that "
            "scripts/setup.sh builds with --system-site-packages",
        ) from None
    return bcc


def validate_ringbuf_pages(pages: int) -> None:
    if pages < 1 or pages & (pages - 1):
        raise SynfinError(f"ring buffer size of {pages} pages is not a power of two", "try 256")


def _explain_load_failure(source: str, error: Exception, directory: Path) -> ProbeError:
    # bcc names a refused bpf() or perf_event_open() a compile or attach failure: ask first.
    refused = refusals.refusal()
    if refused is not None:
        return ProbeError(*refused)
    text = str(error)
    if "privilege" in text or "not permitted" in text:
        # bcc says "Need super-user privileges" for any EPERM, including a kernel in lockdown
        # refusing a program type to root.
        return ProbeError(
            f"the kernel refused to load {source} (EPERM)",
            "run as root, or with CAP_BPF and CAP_PERFMON",
        )
    if "compile" in text.lower() and (headers := kernel_headers()) is not None:
        return ProbeError(
            f"bcc could not compile {source}: no kernel headers at {headers}",
            "install them (scripts/setup.sh does); in a container, mount the host's "
            "/lib/modules and /usr/src read-only",
        )
    if "compile" in text.lower():
        return ProbeError(
            f"bcc could not compile {directory / source} (its errors are printed above)",
            "if they name missing headers, run scripts/setup.sh, which installs and links them",
        )
    return ProbeError(f"cannot load {source}: {text}")


def kernel_headers(modules: Path = Path("/lib/modules")) -> Path | None:
    """Where bcc looks for the running kernel's headers, when they are not there (and the
    kernel does not carry them itself, CONFIG_IKHEADERS); None when they are."""
    build = modules / platform.release() / "build"
    if build.is_dir() or Path("/sys/kernel/kheaders.tar.xz").exists():
        return None
    return build


def load(source: str, cflags: list[str], directory: Path | None = None) -> Any:
    """Compile and load ``probes/<source>``; bcc attaches its tracepoint programs.

    bcc gets the source as text with its ``.c`` fragments pasted in (synfin.kernel.probe_source),
    because it rewrites map accesses only in the text it compiles. ``directory`` stands in for
    the probes directory (a copy under test); its headers come first on the include path.
    """
    bcc = import_bcc()
    directory = PROBES_DIR if directory is None else directory
    try:
        text = probe_source.expand(directory / source)
    except probe_source.ProbeSourceError as error:
        raise ProbeError(error.problem, error.fix) from error
    try:
        loaded = bcc.BPF(text=text.encode(), cflags=[f"-I{directory}", *cflags])
    except Exception as error:  # bcc raises bare Exception for compile and load failures
        raise _explain_load_failure(source, error, directory) from error
    release_compiler_memory()
    return loaded


def try_feature_probe(source: str) -> None:
    """Load and attach ``probes/<source>``, then detach it; ProbeError if the kernel refuses."""
    load(source, [f"-I{PROBES_DIR}", "-w"]).cleanup()


LoadedSelf = TypeVar("LoadedSelf", bound="LoadedProbe")


class LoadedProbe:
    """A program of probes/ loaded by bcc, with one ring buffer: what every probe shares.

    Use as a context manager: the programs are detached when the block ends, however it ends.
    (A process that dies outright detaches them too: nothing is pinned.)
    """

    ring_buffer = b"events"  # the ring buffer map's name in the probe
    # Maps keyed or valued by a struct of the probe headers: (map, key struct, value struct).
    map_layouts: tuple[tuple[bytes, str | None, str | None], ...] = ()

    def __init__(self) -> None:
        self._bpf: Any = None
        self._stream_open = False
        self._ring: ringbuf.MappedRing | None = None  # None: bcc's callback delivers
        self._handler: RecordsHandler | None = None
        self._malformed = 0

    def check_map_layouts(self, header: abi.Header) -> None:
        """Each map's key and value as the compiled probe has them against the header Python
        read: a probe and headers from different versions fail here, not in wrong numbers."""
        for name, key, value in self.map_layouts:
            table = self.bpf[name]
            # bcc widens a per-CPU map's Leaf to one value per CPU; sLeaf is the single value.
            leaf = getattr(table, "sLeaf", table.Leaf)
            for part, struct_name, ctype in (("key", key, table.Key), ("value", value, leaf)):
                if struct_name is None:
                    continue
                expected, compiled = header.struct(struct_name).size, ctypes.sizeof(ctype)
                if compiled != expected:
                    raise ProbeError(
                        f"map {name.decode()}: its {part} is {compiled} bytes in the compiled "
                        f"probe, but struct {struct_name} is {expected} in {header.path.name}",
                        "reinstall synfin: the probes and their headers must come from one version",
                    )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()
        bpf, self._bpf = self._bpf, None
        if bpf is not None:
            bpf.cleanup()

    def __enter__(self: LoadedSelf) -> LoadedSelf:
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
            raise ProbeError("the probe is closed")
        return self._bpf

    # -- the stream --------------------------------------------------------------------------

    def open_stream(self, handler: RecordsHandler, layout: struct.Struct) -> None:
        """During ``poll``, call ``handler`` with runs of records, each unpacked by ``layout``.

        Records are read straight from the ring's mapped pages where that is safe
        (synfin.kernel.ringbuf), else through bcc's callback, one at a time."""
        table = self.bpf[self.ring_buffer]
        self._handler = handler
        if ringbuf.supported():
            self._ring = ringbuf.MappedRing.open(table.map_fd, table.max_entries, layout)
        else:

            def on_record(_ctx: int, data: int, size: int) -> int:
                if size < layout.size:
                    self._malformed += 1
                else:
                    handler((layout.unpack_from(ctypes.string_at(data, size)),))
                # Returning 0 (not None) keeps bcc's callback wrapper on its fast path.
                return 0

            table.open_ring_buffer(on_record)
        self._stream_open = True

    def poll(self, timeout_ms: int = 100) -> None:
        """Deliver pending records; wait up to ``timeout_ms`` for the first one."""
        if not self._stream_open:
            raise ProbeError("poll() before open_stream()")
        if self._ring is not None and self._handler is not None:
            if not self._ring.read(self._handler):
                self._ring.wait(timeout_ms)
                self._ring.read(self._handler)
            return
        with contextlib.suppress(InterruptedError):
            self.bpf.ring_buffer_poll(timeout_ms)

    def drain(self) -> None:
        """Deliver every record already in the ring buffer, without waiting."""
        if self._ring is not None and self._handler is not None:
            self._ring.read(self._handler)
        elif self._stream_open:
            self.bpf.ring_buffer_consume()

    def records_malformed(self) -> int:
        """Records in the ring whose length is not the layout's (skipped, counted)."""
        return self._malformed + (self._ring.malformed if self._ring is not None else 0)

    def _set_port_filter(
        self, ports_map: bytes, config_map: bytes, ports: Iterable[int], family: int
    ) -> None:
        """Fill a probe's port set and filter_config (probes/synfin_events.h)."""
        wanted = sorted(set(ports))
        if len(wanted) > MAX_FILTER_PORTS:
            raise ProbeError(f"at most {MAX_FILTER_PORTS} ports can be filtered on")
        table = self.bpf[ports_map]
        table.clear()
        for port in wanted:
            table[ctypes.c_uint16(port)] = ctypes.c_uint8(1)
        configs = self.bpf[config_map]
        config = configs.Leaf()
        config.port_filter = 1 if wanted else 0
        config.family = family
        configs[ctypes.c_int(0)] = config
