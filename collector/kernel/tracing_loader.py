"""Loading tp_btf programs that bcc compiles but cannot load, with the bpf() syscall itself.

A tp_btf program gets a tracepoint's arguments as BTF-typed pointers: it reads socket fields
with plain loads the verifier checks, and may keep per-socket storage (sk_storage, 5.11+).
bcc 0.26 compiles such a program, but ``bcc_prog_load_xattr`` derives a tracing program's
expected attach type only from name prefixes (kfunc__, kretfunc__, kmod_ret__, lsm__,
bpf_iter__) and overrides what Python passes, so tp_btf never loads through bcc. Here bcc
compiles and creates the maps (their fds are patched into the bytecode), and this module
loads ``BPF.dump_func``'s bytecode with ``BPF_PROG_LOAD`` (TRACING, ``BPF_TRACE_RAW_TP``,
attach_btf_id of the tracepoint's ``btf_trace_<name>`` typedef) and attaches it with
``BPF_RAW_TRACEPOINT_OPEN`` (tp_btf since 5.5; the fd it returns is a link since 5.7).

Limits: one function, no calls to other BPF functions (no func_info is passed), tracepoints
of vmlinux only (a module's would need its BTF object's fd). Just over 300 lines because the
``bpf_attr`` layouts are spelled out field by field beside the calls that pack them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from synfin.errors import SynfinError
from synfin.kernel import loader, privileges
from synfin.kernel.btf import BTF, KIND_TYPEDEF, BTFError

# bpf(2)'s number differs per architecture (asm-generic's 280 for arm64 and riscv).
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD, BPF_RAW_TRACEPOINT_OPEN = 5, 15, 17
BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP = 26, 23
# Enough for a short program's whole log; since 6.4 a longer log keeps its end, where the
# verifier's reason is (before 6.4 a full buffer fails the load with ENOSPC).
LOG_SIZE = 1 << 20
LOCKDOWN = Path("/sys/kernel/security/lockdown")
INSTRUCTION = re.compile(r"^\d+: \(")  # "12: (79) r2 = *(u64 *)(r6 +48)"

FEATURE_PROBE = "feature_tp_btf.c"
FEATURE_FUNCTION = "count_state_change"
# -D flag of probes/feature_tp_btf.c -> the BTF member whose byte offset it takes.
FEATURE_OFFSETS = {
    "SYNFIN_OFF_SK_NET": "sock.__sk_common.skc_net",
    "SYNFIN_OFF_NET_INUM": "net.ns.inum",
    "SYNFIN_OFF_SK_OWNED": "sock.sk_lock.owned",
    "SYNFIN_OFF_SK_ERR": "sock.sk_err",
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class TracingLoadError(loader.ProbeError):
    """The kernel refused to load or attach a tracing program."""

    log = ""  # the verifier's whole log, where there is one


U32, U64 = ctypes.c_uint32, ctypes.c_uint64


# union bpf_attr's members for the commands used (include/uapi/linux/bpf.h), one line per
# 8 bytes. The kernel takes an attr shorter or longer than its own if unknown bytes are 0.
class ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", U32), ("insn_cnt", U32),
        ("insns", U64),
        ("license", U64),
        ("log_level", U32), ("log_size", U32),
        ("log_buf", U64),
        ("kern_version", U32), ("prog_flags", U32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", U32), ("expected_attach_type", U32),
        ("prog_btf_fd", U32), ("func_info_rec_size", U32),
        ("func_info", U64),
        ("func_info_cnt", U32), ("line_info_rec_size", U32),
        ("line_info", U64),
        ("line_info_cnt", U32), ("attach_btf_id", U32),
        ("attach_prog_fd", U32),  # also attach_btf_obj_fd (5.11)
    ]  # fmt: skip


class RawTracepointOpenAttr(ctypes.Structure):
    # name is NULL for tp_btf (the program names its tracepoint); cookie is 6.10's.
    _fields_ = [("name", U64), ("prog_fd", U32), ("_pad", U32), ("cookie", U64)]


class InfoByFdAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", U32), ("info_len", U32), ("info", U64)]


class ProgInfo(ctypes.Structure):
    # struct bpf_prog_info (UAPI: only ever extended at its end) up to recursion_misses (5.12).
    # The kernel fills no more than info_len asks for; what an older one does not know stays 0.
    _fields_ = [
        ("type", U32), ("id", U32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", U32), ("xlated_prog_len", U32),
        ("jited_prog_insns", U64), ("xlated_prog_insns", U64), ("load_time", U64),
        ("created_by_uid", U32), ("nr_map_ids", U32), ("map_ids", U64),
        ("name", ctypes.c_char * 16), ("ifindex", U32), ("gpl_compatible", U32),
        ("netns_dev", U64), ("netns_ino", U64),
        ("nr_jited_ksyms", U32), ("nr_jited_func_lens", U32),
        ("jited_ksyms", U64), ("jited_func_lens", U64),
        ("btf_id", U32), ("func_info_rec_size", U32), ("func_info", U64),
        ("nr_func_info", U32), ("nr_line_info", U32), ("line_info", U64),
        ("jited_line_info", U64), ("nr_jited_line_info", U32), ("line_info_rec_size", U32),
        ("jited_line_info_rec_size", U32), ("nr_prog_tags", U32), ("prog_tags", U64),
        ("run_time_ns", U64), ("run_cnt", U64), ("recursion_misses", U64),
    ]  # fmt: skip


def sys_bpf_number(machine: str | None = None) -> int:
    machine = machine or platform.machine()
    if machine not in SYS_BPF:
        raise TracingLoadError(f"no bpf() syscall number known for {machine}")
    return SYS_BPF[machine]


def _bpf(command: int, attr: ctypes.Structure) -> tuple[int, int]:
    """(result, errno) of bpf(command, &attr, sizeof attr)."""
    size = ctypes.c_uint(ctypes.sizeof(attr))
    result = _libc.syscall(ctypes.c_long(sys_bpf_number()), command, ctypes.byref(attr), size)
    return int(result), ctypes.get_errno() if result < 0 else 0


def lockdown_mode(path: Path | None = None) -> str:
    """The active mode ("none [integrity] confidentiality" -> "integrity"), or "unknown"."""
    try:
        return str(re.findall(r"\[(\w+)\]", (path or LOCKDOWN).read_text())[0])
    except (OSError, IndexError):
        return "unknown"


def verifier_summary(log: str, lines: int = 2) -> str:
    """The verifier's reason: the log's last lines after the last instruction it walked, and
    that instruction (its first lines only trace instructions; statistics left out)."""
    reason: list[str] = []
    for raw in reversed(log.splitlines()):
        line = raw.strip()
        if not line or line.startswith(("processed ", "verification time", "stack depth")):
            continue
        if INSTRUCTION.match(line):
            at = line.split("  ;")[0].strip()  # without the register state after it
            return f"{' | '.join(reason[-lines:])} (at {at})" if reason else at
        reason.insert(0, line)
    return " | ".join(reason[-lines:])


def explain(step: str, code: int, log: str = "", can_load: bool | None = None) -> TracingLoadError:
    """One error for a failed bpf() call: what failed, the errno, and the verifier's reason."""
    name = errno.errorcode.get(code, str(code))
    if code == errno.EPERM:
        capable = privileges.can_load_bpf() if can_load is None else can_load
        if capable:
            return TracingLoadError(
                f"{step}: EPERM although this process has CAP_BPF/CAP_SYS_ADMIN: kernel "
                f"lockdown (mode: {lockdown_mode()}) or a security module forbids it",
                "use the tracepoint probe on this kernel",
            )
        return TracingLoadError(
            f"{step}: EPERM: this process lacks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)",
            "run as root, or grant CAP_BPF and CAP_PERFMON",
        )
    summary = verifier_summary(log)
    detail = f"; verifier: {summary}" if summary else ""
    error = TracingLoadError(f"{step}: {name} ({os.strerror(code)}){detail}")
    error.log = log
    return error


@lru_cache(maxsize=1)
def _vmlinux() -> BTF:  # read once: 5-6 MB
    return BTF.from_file()


def forget_vmlinux() -> None:
    """Drop the parsed BTF (its index holds several MB): a daemon needs it only to load."""
    _vmlinux.cache_clear()


def typedef_id(btf: BTF, name: str) -> int:
    """The BTF id of ``typedef ... name``; 0 if there is none (one walk, about 10 ms)."""
    return btf.type_id(name, KIND_TYPEDEF)


def tracepoint_btf_id(tracepoint: str, btf: BTF | None = None) -> int:
    """attach_btf_id for tp_btf: the id of ``btf_trace_<tracepoint>`` in the kernel's BTF."""
    try:
        found = typedef_id(btf or _vmlinux(), f"btf_trace_{tracepoint}")
    except BTFError as error:
        raise TracingLoadError(error.problem, error.fix) from error
    if not found:
        raise TracingLoadError(
            f"no tracepoint {tracepoint} in this kernel's BTF (typedef btf_trace_{tracepoint})",
            "check the name in /sys/kernel/tracing/available_events",
        )
    return found


def load_tracing_program(
    insns: bytes, name: str, attach_btf_id: int, attach_type: int = BPF_TRACE_RAW_TP
) -> int:
    """Load bytecode as a TRACING program; its fd. Loaded without a log first (a log of every
    instruction is slow, and a full buffer fails the load before 6.4), again with one if the
    kernel refuses, for the reason."""
    code_buffer = ctypes.create_string_buffer(insns, len(insns))
    license_buffer = ctypes.create_string_buffer(b"GPL")  # sk_storage helpers are GPL-only
    attr = ProgLoadAttr(
        prog_type=BPF_PROG_TYPE_TRACING,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(code_buffer),
        license=ctypes.addressof(license_buffer),
        prog_name=name.encode()[:15],  # 16 bytes with the NUL
        expected_attach_type=attach_type,
        attach_btf_id=attach_btf_id,
    )
    fd, code = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    log = ctypes.create_string_buffer(LOG_SIZE)
    attr.log_level, attr.log_size, attr.log_buf = 1, LOG_SIZE, ctypes.addressof(log)
    fd, code = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:  # refused once, accepted now: keep it rather than report a flake
        return fd
    text = log.value.decode(errors="replace")
    raise explain(f"BPF_PROG_LOAD of {name} (attach_btf_id {attach_btf_id})", code, text)


def open_raw_tracepoint(prog_fd: int, name: str) -> int:
    """Attach a loaded tp_btf program; the fd whose close detaches it."""
    attr = RawTracepointOpenAttr(name=0, prog_fd=prog_fd)
    fd, code = _bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    if fd < 0:
        raise explain(f"BPF_RAW_TRACEPOINT_OPEN of {name}", code)
    return fd


def program_info(prog_fd: int) -> ProgInfo:
    """What the kernel says of a loaded program (``bpftool prog show`` reads the same)."""
    info = ProgInfo()
    attr = InfoByFdAttr(prog_fd, ctypes.sizeof(info), ctypes.addressof(info))
    result, code = _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    if result < 0:
        raise explain("BPF_OBJ_GET_INFO_BY_FD", code)
    return info


def program_id(prog_fd: int) -> int:
    """The kernel's id of a loaded program (what ``bpftool prog show id`` takes)."""
    return int(program_info(prog_fd).id)


@dataclass
class AttachedProgram:
    """A tp_btf program loaded and attached; ``close()`` (or the ``with`` block's end)
    detaches and unloads it. Its maps stay with the bcc object that created them."""

    name: str
    tracepoint: str
    prog_fd: int
    link_fd: int
    prog_id: int

    def close(self) -> None:
        # The link goes first: closing it detaches; the program goes with its last fd.
        for attribute in ("link_fd", "prog_fd"):
            fd = getattr(self, attribute)
            if fd >= 0:
                setattr(self, attribute, -1)
                os.close(fd)

    def __enter__(self) -> AttachedProgram:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def load_tp_btf(
    bpf: Any, function_name: str, tracepoint: str = "inet_sock_set_state"
) -> AttachedProgram:
    """Load ``function_name`` of a compiled ``bcc.BPF`` as tp_btf on ``tracepoint``, attached.

    The function takes ``u64 *ctx`` (ctx[i] is the tracepoint's i-th argument) and must not
    start with a bcc auto-attach prefix (kprobe__, tracepoint__...)."""
    try:
        insns = bpf.dump_func(function_name.encode())
    except Exception as error:  # bcc raises bare Exception for an unknown function
        raise TracingLoadError(f"bcc has no bytecode for {function_name}: {error}") from None
    prog_fd = load_tracing_program(insns, function_name, tracepoint_btf_id(tracepoint))
    try:
        link_fd = open_raw_tracepoint(prog_fd, function_name)
        prog_id = program_id(prog_fd)
    except BaseException:
        os.close(prog_fd)
        raise
    return AttachedProgram(function_name, tracepoint, prog_fd, link_fd, prog_id)


def feature_probe_cflags(btf: BTF | None = None) -> list[str]:
    """The -D flags of probes/feature_tp_btf.c: its field offsets, from the kernel's BTF."""
    try:
        btf = btf or _vmlinux()
        return [f"-D{macro}={btf.offset(path)}" for macro, path in FEATURE_OFFSETS.items()]
    except BTFError as error:
        raise TracingLoadError(error.problem, error.fix) from error


def compile_feature_probe() -> Any:
    """probes/feature_tp_btf.c compiled by bcc (maps created, nothing attached)."""
    return loader.load(FEATURE_PROBE, [*feature_probe_cflags(), "-w"])


def tp_btf_available() -> tuple[bool, str]:
    """(True, "") if this kernel loads and attaches a tp_btf program with sk_storage and
    BTF-typed socket reads (the feature probe, attached for an instant), else (False, why)."""
    try:
        bpf = compile_feature_probe()
        try:
            load_tp_btf(bpf, FEATURE_FUNCTION).close()
        finally:
            bpf.cleanup()
    except SynfinError as error:
        return False, error.problem
    return True, ""
