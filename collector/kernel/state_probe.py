"""``probes/tcp_states.c`` loaded and attached: the state probe every command starts from.

It counts every TCP transition in kernel maps and, for the live views, streams one record per
event; what it can observe depends on the kernel (synfin.kernel.features).

Two tiers, one source:
- ``lean`` (counters only, the default of ``synfin run`` where the kernel allows): tp_btf
  programs keep each socket's entry in a table indexed by the socket's cookie, and learn
  process context, hand-overs to timewait sockets and the server's SYN time from the sockets
  themselves (probes/tcp_states/without_timers.c). It costs about what a bare tracepoint
  counter costs.
- ``timers``: ordinary tracepoints, a per-socket LRU hash, and the generic timer and softirq
  hooks, which observe every timewait step as it happens (the live views need that; so does a
  kernel without tp_btf, socket cookies and atomics for tracing programs, before 5.12).

Over 300 lines because choosing the tier, loading it (the lean tier's tp_btf programs
through tracing_loader) and reporting on its hooks (attached, runs the kernel skipped) belong
to one object with one lifetime: the programs it holds.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from synfin.kernel import features as kernel
from synfin.kernel import privileges, tracefs, tracing_loader
from synfin.kernel.loader import (
    PROBES_DIR,
    LoadedProbe,
    ProbeError,
    RecordsHandler,
    load,
    percpu_items,
    validate_ringbuf_pages,
)
from synfin.kernel.memory import release_compiler_memory
from synfin.records import abi
from synfin.records.addresses import AF_INET, AF_INET6
from synfin.records.counters import N_STATE_SLOTS
from synfin.records.description import KernelDescription
from synfin.records.events import (
    STAT_EVENTS_LOST,
    STAT_EVENTS_SENT,
    STAT_SOCKETS_EVICTED,
    STAT_SOCKETS_TRACKED,
    STAT_TIMEWAIT_UNTRACKED,
)

LEAN, TIMERS, AUTO = "lean", "timers", "auto"
TIERS = (AUTO, LEAN, TIMERS)

# The lean tier's tp_btf programs (probes/tcp_states/tp_btf.c): tracepoint -> its category.
LEAN_HOOKS = {"inet_sock_set_state": "sock", "tcp_destroy_sock": "tcp"}
LEAN_RESET_HOOKS = {
    "tcp_send_reset": "tcp",
    "tcp_receive_reset": "tcp",
    "tcp_retransmit_skb": "tcp",
    "tcp_retransmit_synack": "tcp",
}
LEAN_PREFIX = "tp_btf__"

# The category of each raw tracepoint synfin attaches (bcc names them without it).
RAW_CATEGORY = {
    b"softirq_entry": b"irq:",
    b"softirq_exit": b"irq:",
    b"timer_start": b"timer:",
    b"timer_expire_entry": b"timer:",
    b"timer_cancel": b"timer:",
}


def raw_hook(name: bytes) -> str:
    """A raw tracepoint bcc names alone ("softirq_entry") as the hook "irq:softirq_entry"."""
    return (RAW_CATEGORY.get(name, b"") + name).decode()


@dataclass(frozen=True)
class ProbeOptions:
    ringbuf_pages: int = 256  # 1 MiB: about 8,000 records of 128 bytes
    max_sockets: int = 65536
    max_half_open: int = 65536
    tracefs_root: Path | None = None
    # Where to read the kernel's types and symbols (default: the running kernel's own).
    btf_path: Path | None = None
    kallsyms_path: Path = kernel.KALLSYMS
    stream_events: bool = True  # False: counters only (`synfin run`)
    # True: one synfin_connection record per socket end instead of a synfin_event per step.
    per_connection: bool = False
    # The facts the classification reads (synfin.engine.classify.facts_the_rules_read): the
    # probe counts endings by these bits only. Every bit by default.
    ending_facts_mask: int = 0xFFFFFFFF
    # lean, timers, or auto (lean where the kernel allows it and nothing is streamed).
    tier: str = AUTO

    @property
    def socket_slots(self) -> int:
        """The lean tier's table: twice --max-sockets, a power of two, so a socket finds a
        free slot among the few it may take."""
        return 1 << (2 * self.max_sockets - 1).bit_length()

    def streams(self, features: kernel.KernelFeatures) -> bool:
        """Per-event records: wanted, and the kernel has the BPF ring buffer."""
        return self.stream_events and features.available(kernel.STREAM_CAPABILITY)

    def cflags(self, features: kernel.KernelFeatures, tier: str = TIMERS) -> list[str]:
        return [
            f"-I{PROBES_DIR}",
            f"-DRINGBUF_PAGES={self.ringbuf_pages}",
            f"-DMAX_SOCKETS={self.max_sockets}",
            f"-DSOCKET_SLOTS={self.socket_slots}",
            f"-DMAX_HALF_OPEN={self.max_half_open}",
            f"-DSTREAM_EVENTS={int(self.streams(features))}",
            f"-DPER_CONNECTION={int(self.per_connection and self.streams(features))}",
            f"-DENDING_FACTS_MASK={self.ending_facts_mask:#x}",
            *features.cflags(LEAN_SWITCHES if tier == LEAN else None),
            # The host's headers may be for another kernel version; their warnings are noise.
            "-w",
        ]


# Over the kernel's switches: the lean tier swaps the softirq and timer hooks for socket reads.
LEAN_SWITCHES = {
    "LEAN_TIER": 1,
    "TRACK_CONTEXT": 0,
    "OBSERVE_TIMERS": 0,
    "CONTEXT_FROM_LOCK": 1,
    "TIMEWAIT_FROM_BUCKET": 1,
}


def validate_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ProbeError(f"unknown probe tier {tier!r}", f"use one of: {', '.join(TIERS)}")


@dataclass(frozen=True)
class StreamStats:
    sent: int  # records written to the ring buffer
    lost: int  # records that could not be reserved (buffer full)


@dataclass(frozen=True)
class TrackingStats:
    """The probe's per-socket map: how full, and what it had to drop."""

    capacity: int  # the LRU map's size, or the lean tier's slots
    live: int  # entries now (sockets and timewait sockets being followed)
    tracked: int  # entries ever created
    evicted: int  # timers: created while full, the least recently used made room; lean: no
    # free slot found, the socket not followed
    timewait_untracked: int  # timewait sockets that ended without synfin seeing them begin


class TcpProbe(LoadedProbe):
    """``probes/tcp_states.c`` loaded and attached: state changes, and what this kernel allows
    of timewait and request sockets, resets and retransmits (collector/kernel/features.py).
    """

    source = "tcp_states.c"
    map_layouts = (
        (b"opens", "open_key", None),
        (b"endings", "ending_key", None),
        (b"filter_config", None, "filter_config"),
        (b"handshake_seconds", None, "hist"),
        (b"state_seconds", None, "hist"),
        (b"connection_seconds", None, "hist"),
    )

    def __init__(self, options: ProbeOptions | None = None) -> None:
        self.options = options or ProbeOptions()
        validate_ringbuf_pages(self.options.ringbuf_pages)
        validate_tier(self.options.tier)
        missing = " and ".join(privileges.missing_for_loading())
        if missing:
            raise ProbeError(
                f"loading BPF programs needs root, or CAP_BPF and CAP_PERFMON: synfin runs "
                f"without {missing}",
                f"run synfin with sudo, or add {missing} to its unit or container",
            )
        root = tracefs.find_tracefs(self.options.tracefs_root)
        tracefs.check_tracepoint(root, tracefs.STATE_TRACEPOINT)
        self.features = kernel.detect(root, self.options.btf_path, self.options.kallsyms_path)
        super().__init__()
        self.programs: list[tracing_loader.AttachedProgram] = []
        self.tier = TIMERS
        # Why the lean tier is not running ("" when it is, or was not wanted).
        self.lean_unavailable = ""
        if self._wants_lean():
            try:
                self._load(LEAN)
            except ProbeError as error:
                if self.options.tier == LEAN:
                    raise
                self.lean_unavailable = error.problem
        if self._bpf is None:
            self._load(TIMERS)

    def _wants_lean(self) -> bool:
        if self.options.tier == TIMERS:
            return False
        problem = ""
        if self.options.streams(self.features):
            problem = "the lean tier only counts; the live views need the timers tier"
        elif not self.features.available(kernel.LEAN_CAPABILITY):
            lean = next(c for c in self.features.capabilities if c.name == kernel.LEAN_CAPABILITY)
            problem = f"the lean tier is off: {lean.reason}"
        if problem and self.options.tier == LEAN:
            raise ProbeError(problem, "use --probe-tier timers (or auto)")
        self.lean_unavailable = problem
        return not problem

    def _load(self, tier: str) -> None:
        self._bpf = load(self.source, self.options.cflags(self.features, tier))
        self.tier = tier
        try:
            self.check_map_layouts(abi.events())
            if tier == LEAN:
                for tracepoint in self._lean_hooks():
                    self.programs.append(
                        tracing_loader.load_tp_btf(self._bpf, LEAN_PREFIX + tracepoint, tracepoint)
                    )
                tracing_loader.forget_vmlinux()
                release_compiler_memory()  # and the BTF index's heap with it
        except ProbeError:
            self.close()
            raise

    def _lean_hooks(self) -> dict[str, str]:
        hooks = dict(LEAN_HOOKS)
        if self.features.available("resets"):
            hooks.update(LEAN_RESET_HOOKS)
        return hooks

    def close(self) -> None:
        # The tp_btf programs first: they hold the maps bcc's object is about to free.
        programs, self.programs = getattr(self, "programs", []), []
        for program in programs:
            program.close()
        super().close()

    def description(self) -> KernelDescription:
        """What this kernel shows, for the lifecycle engine (and a recording's header)."""
        return KernelDescription(
            capabilities={c.name: c.available for c in self.features.capabilities},
            reset_reasons=dict(self.features.reset_reasons),
        )

    def open_stream(self, handler: RecordsHandler, layout: struct.Struct) -> None:
        if not self.options.streams(self.features):
            raise ProbeError(
                "the live stream needs the BPF ring buffer (Linux >= 5.8)",
                "use `synfin run`, which only counts and works on this kernel",
            )
        super().open_stream(handler, layout)

    def set_filter(self, ports: Iterable[int] = (), family: int = 0) -> None:
        """Stream only events of ``family`` (0: any) touching one of ``ports`` (empty: any).

        Counters are never filtered: they always count every TCP transition.
        """
        self._set_port_filter(b"filter_ports", b"filter_config", ports, family)

    # -- counters ----------------------------------------------------------------------------

    def attached(self) -> dict[str, bool]:
        """Every hook this kernel should have, and whether it is attached now."""
        bpf = self._bpf
        if bpf is None:
            return dict.fromkeys(self.expected_hooks(), False)
        # bcc keys raw tracepoints by name alone.
        live = {
            *bpf.tracepoint_fds,
            *(raw_hook(name).encode() for name in bpf.raw_tracepoint_fds),
            *(self._hook_name(p.tracepoint).encode() for p in self.programs if p.link_fd >= 0),
        }
        return {name: name.encode() in live for name in self.expected_hooks()}

    def missed_runs(self) -> dict[str, int]:
        """Runs of each hook the kernel skipped because a BPF program was already running on
        that CPU (bpf_prog_info.recursion_misses, Linux >= 5.12; 0 before): what those runs
        would have counted is missing from the counters."""
        return {
            hook: int(tracing_loader.program_info(fd).recursion_misses)
            for hook, fd in self.program_fds().items()
        }

    def program_fds(self) -> dict[str, int]:
        """hook -> the fd of the program attached there."""
        if self._bpf is None:
            return {}
        fds = {self._hook_name(p.tracepoint): p.prog_fd for p in self.programs if p.prog_fd >= 0}
        for name, function in self._bpf.funcs.items():  # bcc's auto-attached programs
            kind, _, tracepoint = name.partition(b"__")
            if kind == b"tracepoint":
                fds[tracepoint.replace(b"__", b":", 1).decode()] = function.fd
            elif kind == b"raw_tracepoint":
                fds[raw_hook(tracepoint)] = function.fd
        return fds

    def _hook_name(self, tracepoint: str) -> str:
        category = {**LEAN_HOOKS, **LEAN_RESET_HOOKS}[tracepoint]
        return f"{category}:{tracepoint}"

    def expected_hooks(self) -> list[str]:
        if self.tier == LEAN:
            return [
                *(self._hook_name(name) for name in self._lean_hooks()),
                "timer:timer_expire_entry",
            ]
        hooks = ["sock:inet_sock_set_state", "tcp:tcp_destroy_sock"]
        wanted = {
            "process context": ["irq:softirq_entry", "irq:softirq_exit"],
            kernel.TIMEWAIT_CAPABILITY: [
                "timer:timer_start", "timer:timer_expire_entry", "timer:timer_cancel",
                "tcp:tcp_retransmit_synack",
            ],
            "resets": ["tcp:tcp_send_reset", "tcp:tcp_receive_reset", "tcp:tcp_retransmit_skb"],
        }  # fmt: skip
        for capability, names in wanted.items():
            if self.features.available(capability):
                hooks += names
        return hooks

    def set_labels(self, ports: Iterable[int] = (), listening: bool = False) -> None:
        """Give these ports (and with ``listening``, every listening port) their own label."""
        table = self.bpf[b"label_ports"]
        table.clear()
        for port in sorted(set(ports)):
            table[ctypes.c_uint16(port)] = ctypes.c_uint8(1)
        self.bpf[b"label_listening"][ctypes.c_int(0)] = ctypes.c_uint32(int(listening))

    def transition_counts(self) -> dict[tuple[int, int, int], int]:
        """Exact count of every TCP transition since load: (old, new, family) -> count."""
        table = self.bpf[b"transitions"]
        counts: dict[tuple[int, int, int], int] = {}
        for key, per_cpu in percpu_items(table):
            total = sum(per_cpu)
            if not total:
                continue
            slot_pair, is_ipv6 = divmod(getattr(key, "value", key), 2)
            old, new = divmod(slot_pair, N_STATE_SLOTS)
            family = AF_INET6 if is_ipv6 else AF_INET
            counts[(old, new, family)] = total
        return counts

    def _stat(self, index: int) -> int:
        return sum(self.bpf[b"stats"][ctypes.c_int(index)])

    def records_lost(self) -> int:
        return self._stat(STAT_EVENTS_LOST)

    def stream_stats(self) -> StreamStats:
        return StreamStats(sent=self._stat(STAT_EVENTS_SENT), lost=self._stat(STAT_EVENTS_LOST))

    def tracking_stats(self) -> TrackingStats:
        live = self.bpf[b"sockets_live"][ctypes.c_int(0)].value
        return TrackingStats(
            capacity=self.options.socket_slots if self.tier == LEAN else self.options.max_sockets,
            live=max(live, 0),
            tracked=self._stat(STAT_SOCKETS_TRACKED),
            evicted=self._stat(STAT_SOCKETS_EVICTED),
            timewait_untracked=self._stat(STAT_TIMEWAIT_UNTRACKED),
        )
