"""What the running kernel lets synfin observe, as -D flags for the probe.

Each capability needs some of: a tracepoint with certain fields (tracefs), a struct member's
offset (BTF), a function's address (kallsyms). Where one is missing the capability is off, the
probe compiles without it, and ``synfin doctor`` says what is inferred instead and why.

Over 300 lines because every capability's requirements (tracepoint fields, BTF paths,
symbols) stay beside the one ``detect`` that turns them into -D flags: split, a capability's
switch and its layout would live in two files.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synfin.errors import SynfinError
from synfin.kernel import privileges, tracefs
from synfin.kernel.btf import BTF, VMLINUX, BTFError
from synfin.records.description import STREAM_CAPABILITY, TIMEWAIT_CAPABILITY

SOCKET_FIELDS_CAPABILITY = "socket fields"
LEAN_CAPABILITY = "lean tier"

KALLSYMS = Path("/proc/kallsyms")

# BPF features synfin's probe uses that arrived after the state tracepoint (4.16).
RING_BUFFER = (5, 8)
RAW_TRACEPOINTS = (4, 17)
CGROUP_ID = (4, 18)
PROBE_READ_KERNEL = (5, 5)
# bpf_get_socket_cookie() for tp_btf programs and BPF atomics (compare-and-swap): Linux 5.12.
LEAN_KERNEL = (5, 12)

TIMER_TRACEPOINTS = (
    tracefs.Tracepoint("timer", "timer_start", ("timer", "function"), "2.6.30"),
    tracefs.Tracepoint("timer", "timer_expire_entry", ("timer", "function"), "2.6.30"),
    tracefs.Tracepoint("timer", "timer_cancel", ("timer",), "2.6.30"),
)
RESET_SENT = tracefs.Tracepoint("tcp", "tcp_send_reset", ("skaddr",), "4.15")
RETRANSMIT = tracefs.Tracepoint("tcp", "tcp_retransmit_skb", ("skaddr",), "4.15")


@dataclass(frozen=True)
class Capability:
    name: str
    available: bool
    observes: str  # what it lets synfin observe
    fallback: str  # what synfin does without it
    reason: str = ""  # why it is unavailable


@dataclass
class KernelFeatures:
    defines: dict[str, int] = field(default_factory=dict)
    capabilities: list[Capability] = field(default_factory=list)
    # enum sk_rst_reason as lower snake_case names ("tcp_abort_on_close"), where BTF has it.
    reset_reasons: dict[int, str] = field(default_factory=dict)

    def available(self, name: str) -> bool:
        return any(c.name == name and c.available for c in self.capabilities)

    def cflags(self, overrides: dict[str, int] | None = None) -> list[str]:
        # Kernel addresses do not fit a signed 64-bit literal: spell them as unsigned hex.
        defines = {**self.defines, **(overrides or {})}
        return [
            f"-D{name}={value:#x}ULL" if value > 0x7FFFFFFF else f"-D{name}={value}"
            for name, value in sorted(defines.items())
        ]


def _version(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def read_kallsyms(names: set[str], path: Path = KALLSYMS) -> dict[str, int]:
    """Addresses of the named text symbols; a zero address (kptr_restrict) counts as absent."""
    found: dict[str, int] = {}
    try:
        with path.open() as lines:
            for line in lines:
                address, _kind, name = line.split()[:3]
                if name in names and int(address, 16):
                    found.setdefault(name, int(address, 16))
    except OSError:
        return {}
    return found


class _Detector:
    def __init__(
        self, root: Path | None, btf: BTF | None, btf_problem: str, symbols: dict[str, int]
    ) -> None:
        self.root, self.btf, self.btf_problem, self.symbols = root, btf, btf_problem, symbols
        self.kallsyms = KALLSYMS  # where the symbols came from, to say why one is missing
        self.features = KernelFeatures()
        self.version = (99, 0)

    def offsets(self, **paths: str) -> dict[str, int]:
        """BTF byte offsets by macro name; raises SynfinError naming what is missing."""
        if self.btf is None:
            raise SynfinError(self.btf_problem)
        return {name: self.btf.offset(path) for name, path in paths.items()}

    def fields(self, tracepoint: tracefs.Tracepoint) -> dict[str, tracefs.Field]:
        if self.root is None:
            raise SynfinError("tracefs is not mounted")
        return tracefs.check_tracepoint(self.root, tracepoint)

    def capability(
        self,
        name: str,
        switch: str,
        observes: str,
        fallback: str,
        probe: Callable[[], dict[str, int]],
    ) -> None:
        try:
            defines = probe()
        except SynfinError as error:
            self.features.defines[switch] = 0
            self.features.capabilities.append(
                Capability(name, False, observes, fallback, error.problem)
            )
            return
        self.features.defines.update(defines)
        self.features.defines[switch] = 1
        self.features.capabilities.append(Capability(name, True, observes, fallback))


def _socket_fields(btf: BTF | None, problem: str) -> dict[str, int]:
    """Offsets of the socket fields that tell how a connection opened and closed."""
    if btf is None:
        raise SynfinError(problem)
    member = btf.member("sock.sk_shutdown")
    return {
        "SK_SHUTDOWN_OFF": member.bit_offset // 8,
        "SK_SHUTDOWN_SHIFT": member.bit_offset % 8,
        "SK_SHUTDOWN_BITS": member.bitfield_size or 8,
        "SK_ERR_OFF": btf.offset("sock.sk_err"),
        "TCP_SEGS_OUT_OFF": btf.offset("tcp_sock.segs_out"),
        "TCP_DATA_SEGS_IN_OFF": btf.offset("tcp_sock.data_segs_in"),
        **_fast_open_child_bit(btf),
    }


def _fast_open_child_bit(btf: BTF) -> dict[str, int]:
    """tcp_sock.syn_fastopen_child (Linux >= 6.15): set on a Fast Open child once created, so
    its next state change tells that SYN-RCVD began at the SYN. Older kernels lack it."""
    try:
        member = btf.member("tcp_sock.syn_fastopen_child")
    except BTFError:
        return {}
    return {
        "TFO_CHILD_OFF": member.bit_offset // 8,
        "TFO_CHILD_SHIFT": member.bit_offset % 8,
    }


# What tells that two sockets are one connection: a timewait socket and the full socket it
# replaces, a child and its request socket (probes/tcp_states/sockets.c, same_connection).
IDENTITY_OFFSETS = {
    "SKC_HASH_OFF": "sock_common.skc_hash",
    "SKC_DPORT_OFF": "sock_common.skc_dport",
    "SKC_NET_OFF": "sock_common.skc_net",
}


def _timer_layout(d: _Detector) -> dict[str, int]:
    _needs(d.version, RAW_TRACEPOINTS, "raw tracepoints")
    for tracepoint in TIMER_TRACEPOINTS:
        d.fields(tracepoint)
    missing = {"tw_timer_handler", "reqsk_timer_handler"} - set(d.symbols)
    if missing:
        raise SynfinError(privileges.symbols_problem(missing, d.kallsyms))
    return {
        "TW_TIMER_FN": d.symbols["tw_timer_handler"],
        "REQSK_TIMER_FN": d.symbols["reqsk_timer_handler"],
        **d.offsets(
            TIMER_FUNCTION_OFF="timer_list.function",
            TW_TIMER_OFF="inet_timewait_sock.tw_timer",
            TW_SUBSTATE_OFF="inet_timewait_sock.tw_substate",
            RSK_TIMER_OFF="request_sock.rsk_timer",
            **IDENTITY_OFFSETS,
        ),
    }


# -D flag of probes/tcp_states/{sockets,without_timers}.c -> the BTF member whose offset it is.
LEAN_OFFSETS = {
    "SK_LOCK_OWNED_OFF": "sock.sk_lock.owned",
    "SK_PROTOCOL_OFF": "sock.sk_protocol",
    "SKC_FAMILY_OFF": "sock_common.skc_family",
    "SKC_STATE_OFF": "sock_common.skc_state",
    **IDENTITY_OFFSETS,
    "SKC_COOKIE_OFF": "sock_common.skc_cookie",
    "SKC_NULLS_NODE_OFF": "sock_common.skc_nulls_node",
    "INET_SPORT_OFF": "inet_sock.inet_sport",
    "NET_TW_HASHINFO_OFF": "net.ipv4.tcp_death_row.hashinfo",
    "HASHINFO_EHASH_OFF": "inet_hashinfo.ehash",
    "HASHINFO_EHASH_MASK_OFF": "inet_hashinfo.ehash_mask",
    "TW_SPORT_OFF": "inet_timewait_sock.tw_sport",
    "TW_SUBSTATE_OFF": "inet_timewait_sock.tw_substate",
    "TW_TIMER_OFF": "inet_timewait_sock.tw_timer",
    "TIMER_FUNCTION_OFF": "timer_list.function",
    "TCP_SRTT_OFF": "tcp_sock.srtt_us",
    "TCP_TOTAL_RETRANS_OFF": "tcp_sock.total_retrans",
}


def _lean_layout(d: _Detector) -> dict[str, int]:
    """What the lean tier reads from sockets instead of hooking every timer and softirq."""
    _needs(d.version, LEAN_KERNEL, "socket cookies and atomics in tp_btf programs")
    if "tw_timer_handler" not in d.symbols:
        raise SynfinError(privileges.symbols_problem({"tw_timer_handler"}, d.kallsyms))
    if d.btf is None:
        raise SynfinError(d.btf_problem)
    protocol = d.btf.member("sock.sk_protocol")
    if protocol.bitfield_size:  # a bitfield before 5.6
        raise SynfinError("sock.sk_protocol is a bitfield in this kernel")
    return {"TW_TIMER_FN": d.symbols["tw_timer_handler"], **d.offsets(**LEAN_OFFSETS)}


def _needs(version: tuple[int, int], needed: tuple[int, int], what: str) -> dict[str, int]:
    if version < needed:
        raise SynfinError(f"{what}: needs Linux >= {needed[0]}.{needed[1]}")
    return {}


def _context_layout(d: _Detector) -> dict[str, int]:
    _needs(d.version, RAW_TRACEPOINTS, "raw tracepoints")
    for tracepoint in tracefs.CONTEXT_TRACEPOINTS:
        d.fields(tracepoint)
    return {}


def _socketless_reset_layout(d: _Detector) -> dict[str, int]:
    # Linux 6.10 made tcp:tcp_send_reset fire without a full socket too, and gave it its
    # addresses in sockaddr form; before, a RST for a closed port, a request or a timewait
    # socket passed unseen (measured on Debian 12's 6.1: the kernel's OutRsts counted it).
    sent = d.fields(RESET_SENT)
    if "saddr" not in sent or sent["saddr"].size != 28:
        raise SynfinError("tcp:tcp_send_reset fires only for a full socket before Linux 6.10")
    if not d.features.available("network namespace"):
        raise SynfinError("needs the network namespace capability")
    return d.offsets(SKB_DEV_OFF="sk_buff.dev", DEV_NET_OFF="net_device.nd_net")


def _reset_layout(d: _Detector) -> dict[str, int]:
    sent = d.fields(RESET_SENT)
    retransmit = d.fields(RETRANSMIT)
    sockaddr = "saddr" in sent and sent["saddr"].size == 28
    defines = {
        "RESET_HAS_STATE": int("state" in sent),
        "RESET_HAS_REASON": int("reason" in sent),
        "RESET_SOCKADDR": int(sockaddr),
        "RETRANSMIT_HAS_STATE": int("state" in retransmit),
        "RETRANSMIT_HAS_ERR": int("err" in retransmit),
        **_retransmit_segments(d),
    }
    if "reason" in sent:
        # bcc's record of the tracepoint names the enum, and nothing synfin compiles includes
        # its header (net/rstreason.h): declared here whether or not the headers have it
        # (Debian 13's 6.12 headers have it; compiling without it failed there).
        defines["DECLARE_SK_RST_REASON"] = 1
    return defines


def _retransmit_segments(d: _Detector) -> dict[str, int]:
    # RetransSegs counts a retransmitted skb's segments; without BTF, one per skb.
    try:
        offsets = d.offsets(SKB_CB_OFF="sk_buff.cb", TCB_GSO_SEGS_OFF="tcp_skb_cb.tcp_gso_segs")
    except SynfinError:
        return {"RETRANSMIT_SEGMENTS": 0}
    return {"RETRANSMIT_SEGMENTS": 1, **offsets}


def detect(
    tracefs_root: Path | None = None,
    btf_path: Path | None = None,
    kallsyms: Path = KALLSYMS,
    release: str | None = None,
) -> KernelFeatures:
    """Probe this kernel once: which capabilities are available, and the -D flags for them."""
    release = release or platform.release()
    try:
        root: Path | None = tracefs.find_tracefs(tracefs_root)
    except tracefs.TracefsError:
        root = None
    try:
        btf, btf_problem = BTF.from_file(btf_path or VMLINUX), ""
    except BTFError as error:
        btf, btf_problem = None, error.problem
    d = _Detector(
        root, btf, btf_problem, read_kallsyms({"tw_timer_handler", "reqsk_timer_handler"}, kallsyms)
    )
    d.kallsyms = kallsyms
    d.version = _version(release)
    d.features.defines["HAVE_CGROUP_ID"] = int(d.version >= CGROUP_ID)
    d.features.defines["HAVE_PROBE_READ_KERNEL"] = int(d.version >= PROBE_READ_KERNEL)

    d.capability(
        STREAM_CAPABILITY,
        "HAVE_RING_BUFFER",
        "per-event records for `synfin watch`, `record` and the live views",
        "only counters (`synfin run`); watch and record refuse to start",
        lambda: _needs(d.version, RING_BUFFER, "the BPF ring buffer"),
    )
    d.capability(
        "process context",
        "TRACK_CONTEXT",
        "which transitions ran in a process's own context (PID shown only there)",
        "no PID is shown for any transition",
        lambda: _context_layout(d),
    )
    d.capability(
        "network namespace",
        "READ_NETNS",
        "each socket's network namespace",
        "sockets are not told apart by namespace",
        lambda: d.offsets(SKC_NET_OFF="sock_common.skc_net", NET_INUM_OFF="net.ns.inum"),
    )
    d.capability(
        SOCKET_FIELDS_CAPABILITY,
        "READ_SOCK_FIELDS",
        "shutdown(SHUT_WR) told apart from close(); a close by timeout (the socket's error); "
        "a connect() that never sent its SYN (TCP Fast Open); a Fast Open child's SYN",
        "a half-close is classified as an ordinary active close, a user timeout as a close "
        "without FIN or RST; a Fast Open child's SYN-RCVD is shown at the third ACK",
        lambda: _socket_fields(btf, btf_problem),
    )
    d.capability(
        TIMEWAIT_CAPABILITY,
        "OBSERVE_TIMERS",
        "the timewait socket's start and end (2MSL expiry or kill), and the SYN's arrival "
        "at a listener (start of SYN-RCVD)",
        "TIME-WAIT's end and SYN-RCVD's start are not observed; the snapshot reconciler "
        "reports timewait sockets",
        lambda: _timer_layout(d),
    )
    d.capability(
        LEAN_CAPABILITY,
        "LEAN_LAYOUT",
        "every count of `synfin run` from tp_btf programs and a table indexed by socket cookie, "
        "without the timer and softirq hooks: process context from the socket's lock, the "
        "hand-over to a timewait socket from its ehash bucket, the server's SYN time from the "
        "handshake RTT",
        "`synfin run` uses the timers tier (about a fifth of a busy host's connection rate)",
        lambda: _lean_layout(d),
    )
    d.capability(
        "resets",
        "OBSERVE_RESETS",
        "resets sent and received, with state and the kernel's reason where given",
        "resets are not classified",
        lambda: _reset_layout(d),
    )
    d.capability(
        "socketless resets",
        "READ_SKB_NETNS",
        "resets sent without a full socket (a SYN to a closed port), with their namespace",
        'not seen: no synfin_tcp_resets_sent_total{state="none"} and no stream record for '
        "them (the kernel's OutRsts counts them)",
        lambda: _socketless_reset_layout(d),
    )
    if btf is not None:
        d.features.reset_reasons = {
            value: name.removeprefix("SK_RST_REASON_").lower()
            for value, name in btf.enum_values("sk_rst_reason").items()
        }
    return d.features
