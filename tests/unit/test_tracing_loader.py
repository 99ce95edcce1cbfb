"""The tp_btf loader's parts that need no root: bpf_attr layouts, the syscall number, typedef
lookup in BTF, and the one-line errors built from errno and the verifier's log."""

from __future__ import annotations

import ctypes
import errno
import re
import struct
from pathlib import Path

import pytest

from synfin.kernel import tracing_loader
from synfin.kernel.btf import BTF, KIND_INT, KIND_TYPEDEF
from synfin.kernel.loader import ProbeError
from synfin.kernel.tracing_loader import (
    InfoByFdAttr,
    ProgInfo,
    ProgLoadAttr,
    RawTracepointOpenAttr,
    TracingLoadError,
)
from tests.paths import REPO

VMLINUX = Path("/sys/kernel/btf/vmlinux")
needs_btf = pytest.mark.skipif(not VMLINUX.exists(), reason="this kernel has no BTF")

# offsetof(union bpf_attr, ...) for BPF_PROG_LOAD, from include/uapi/linux/bpf.h.
PROG_LOAD_OFFSETS = {
    "prog_type": 0, "insn_cnt": 4, "insns": 8, "license": 16, "log_level": 24,
    "log_size": 28, "log_buf": 32, "kern_version": 40, "prog_flags": 44, "prog_name": 48,
    "prog_ifindex": 64, "expected_attach_type": 68, "prog_btf_fd": 72,
    "func_info_rec_size": 76, "func_info": 80, "func_info_cnt": 88,
    "line_info_rec_size": 92, "line_info": 96, "line_info_cnt": 104, "attach_btf_id": 108,
    "attach_prog_fd": 112,
}  # fmt: skip


def offsets(structure: type[ctypes.Structure]) -> dict[str, int]:
    return {name: getattr(structure, name).offset for name, *_ in structure._fields_}


def test_prog_load_attr_has_the_kernels_layout() -> None:
    assert offsets(ProgLoadAttr) == PROG_LOAD_OFFSETS
    assert ctypes.sizeof(ProgLoadAttr) == 120  # 116 bytes of members, padded to 8


def test_prog_load_attr_packs_what_the_loader_sets() -> None:
    attr = ProgLoadAttr(
        prog_type=26, insn_cnt=42, insns=0x1122334455667788, license=0xAABB,
        prog_name=b"count_state_cha", expected_attach_type=23, attach_btf_id=38247,
    )  # fmt: skip
    packed = bytes(attr)
    assert struct.unpack_from("<IIQQ", packed, 0) == (26, 42, 0x1122334455667788, 0xAABB)
    assert packed[48:64] == b"count_state_cha\0"
    assert struct.unpack_from("<I", packed, 68) == (23,)
    assert struct.unpack_from("<I", packed, 108) == (38247,)
    # Everything else zero: the kernel refuses nonzero bytes it does not know.
    untouched = bytearray(packed)
    for start, end in ((0, 24), (48, 64), (68, 72), (108, 112)):
        untouched[start:end] = bytes(end - start)
    assert untouched == bytes(len(packed))


def test_the_other_attrs_have_the_kernels_layout() -> None:
    assert offsets(RawTracepointOpenAttr) == {"name": 0, "prog_fd": 8, "_pad": 12, "cookie": 16}
    assert ctypes.sizeof(RawTracepointOpenAttr) == 24
    assert offsets(InfoByFdAttr) == {"bpf_fd": 0, "info_len": 4, "info": 8}
    assert ctypes.sizeof(InfoByFdAttr) == 16


@needs_btf
def test_prog_info_has_the_running_kernels_layout() -> None:
    """Every member of struct bpf_prog_info synfin reads, where this kernel's BTF puts it
    (recursion_misses: the runs the kernel skipped, synfin_probe_missed_runs_total)."""
    btf = BTF.from_file(VMLINUX)
    found = offsets(ProgInfo)
    for name in found:
        if name != "gpl_compatible":  # a bitfield there; ctypes holds its whole word
            assert found[name] == btf.offset(f"bpf_prog_info.{name}"), name
    assert found["recursion_misses"] == 208 and ctypes.sizeof(ProgInfo) == 216


def test_the_syscall_number_follows_the_architecture() -> None:
    assert tracing_loader.sys_bpf_number("x86_64") == 321
    assert tracing_loader.sys_bpf_number("aarch64") == 280
    with pytest.raises(TracingLoadError, match="no bpf\\(\\) syscall number known for vax"):
        tracing_loader.sys_bpf_number("vax")


def btf_blob(types: list[tuple[str, int, int, bytes]]) -> bytes:
    """A BTF blob of (name, kind, size_or_type, extra bytes) types, ids from 1."""
    strings, type_bytes = b"\0", b""
    for name, kind, size_or_type, extra in types:
        type_bytes += struct.pack("<III", len(strings), kind << 24, size_or_type) + extra
        strings += name.encode() + b"\0"
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(type_bytes), len(type_bytes),
                         len(strings))  # fmt: skip
    return header + type_bytes + strings


def test_typedefs_are_found_by_name() -> None:
    btf = BTF(
        btf_blob([
            ("int", KIND_INT, 4, struct.pack("<I", 32)),
            ("btf_trace_other", KIND_TYPEDEF, 1, b""),
            ("btf_trace_inet_sock_set_state", KIND_TYPEDEF, 1, b""),
        ])
    )  # fmt: skip
    assert tracing_loader.typedef_id(btf, "btf_trace_inet_sock_set_state") == 3
    assert tracing_loader.tracepoint_btf_id("other", btf) == 2
    assert tracing_loader.typedef_id(btf, "int") == 0  # an int, not a typedef
    with pytest.raises(TracingLoadError, match="no tracepoint gone in this kernel's BTF"):
        tracing_loader.tracepoint_btf_id("gone", btf)


@needs_btf
def test_the_running_kernel_has_the_tracepoint_and_the_fields() -> None:
    assert tracing_loader.tracepoint_btf_id("inet_sock_set_state") > 0
    flags = tracing_loader.feature_probe_cflags()
    assert [flag.split("=")[0] for flag in flags] == [
        f"-D{macro}" for macro in tracing_loader.FEATURE_OFFSETS
    ]
    assert all(int(flag.split("=")[1]) > 0 for flag in flags)


def test_the_feature_probe_uses_exactly_the_offsets_the_loader_passes() -> None:
    source = (REPO / "probes" / tracing_loader.FEATURE_PROBE).read_text()
    used = set(re.findall(r"\bSYNFIN_OFF_\w+", source))
    assert used == set(tracing_loader.FEATURE_OFFSETS)
    assert f"int {tracing_loader.FEATURE_FUNCTION}(u64 *ctx)" in source


# A verifier log of a rejected program (6.18, log_level 1), shortened.
REJECTED = """\
0: R1=ctx() R10=fp0
; u32 newstate = (u32)ctx[2]; @ feature_tp_btf.c:51
0: (79) r6 = *(u64 *)(r1 +0)          ; R1=ctx() R6=scalar()
12: (79) r2 = *(u64 *)(r6 +48)
R6 invalid mem access 'scalar'
processed 13 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1
"""


def test_the_verifiers_reason_comes_from_the_end_of_its_log() -> None:
    assert tracing_loader.verifier_summary(REJECTED) == (
        "R6 invalid mem access 'scalar' (at 12: (79) r2 = *(u64 *)(r6 +48))"
    )
    assert tracing_loader.verifier_summary("attach_btf_id 2953 is not a typedef\n") == (
        "attach_btf_id 2953 is not a typedef"
    )
    assert tracing_loader.verifier_summary("") == ""


def test_a_refusal_is_one_line_with_the_errno_and_the_reason() -> None:
    error = tracing_loader.explain("BPF_PROG_LOAD of f (attach_btf_id 7)", errno.EACCES, REJECTED)
    assert isinstance(error, ProbeError)
    assert str(error) == (
        "BPF_PROG_LOAD of f (attach_btf_id 7): EACCES (Permission denied); verifier: "
        "R6 invalid mem access 'scalar' (at 12: (79) r2 = *(u64 *)(r6 +48))"
    )
    assert error.log == REJECTED
    plain = tracing_loader.explain("BPF_RAW_TRACEPOINT_OPEN of f", errno.EBUSY)
    assert str(plain) == "BPF_RAW_TRACEPOINT_OPEN of f: EBUSY (Device or resource busy)"


def test_eperm_names_lockdown_or_the_missing_capabilities(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lockdown = tmp_path / "lockdown"
    lockdown.write_text("none [integrity] confidentiality\n")
    monkeypatch.setattr(tracing_loader, "LOCKDOWN", lockdown)
    assert tracing_loader.lockdown_mode(lockdown) == "integrity"
    assert tracing_loader.lockdown_mode(tmp_path / "absent") == "unknown"
    capable = tracing_loader.explain("BPF_PROG_LOAD of f", errno.EPERM, can_load=True)
    assert "kernel lockdown (mode: integrity) or a security module" in capable.problem
    lacking = tracing_loader.explain("BPF_PROG_LOAD of f", errno.EPERM, can_load=False)
    assert "lacks CAP_BPF and CAP_PERFMON" in lacking.problem
    assert "grant CAP_BPF and CAP_PERFMON" in lacking.fix
