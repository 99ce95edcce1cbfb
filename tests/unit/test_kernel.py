"""Feature detection: BTF offsets, kallsyms, and what synfin does without them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from synfin.kernel.btf import BTF, BTFError
from synfin.kernel.features import read_kallsyms
from synfin.kernel.loader import percpu_items

VMLINUX = Path("/sys/kernel/btf/vmlinux")
needs_btf = pytest.mark.skipif(not VMLINUX.exists(), reason="this kernel has no BTF")


@needs_btf
def test_btf_finds_members_inside_anonymous_unions() -> None:
    btf = BTF.from_file()
    # skc_daddr and skc_rcv_saddr share an anonymous struct in an anonymous union.
    assert btf.offset("sock_common.skc_daddr") == 0
    assert btf.offset("sock_common.skc_rcv_saddr") == 4
    assert btf.offset("sock.__sk_common.skc_net") == btf.offset("sock_common.skc_net")
    assert btf.enum_values("sk_rst_reason").get(1) in (None, "SK_RST_REASON_NO_SOCKET")


@needs_btf
def test_btf_names_what_is_missing() -> None:
    btf = BTF.from_file()
    with pytest.raises(BTFError, match="struct no_such_struct not found"):
        btf.offset("no_such_struct.x")
    with pytest.raises(BTFError, match="no member 'no_such_member'"):
        btf.offset("sock.no_such_member")


def test_btf_rejects_what_is_not_btf(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    path.write_bytes(struct.pack("<HBBIIIII", 0x1234, 1, 0, 24, 0, 0, 0, 0))
    with pytest.raises(BTFError, match="bad magic"):
        BTF.from_file(path)
    with pytest.raises(BTFError, match="this kernel has no BTF"):
        BTF.from_file(tmp_path / "missing")


def test_kallsyms_zero_addresses_count_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("0000000000000000 t tw_timer_handler\nffffffff81000000 t reqsk_timer_handler\n")
    assert read_kallsyms({"tw_timer_handler", "reqsk_timer_handler"}, path) == {
        "reqsk_timer_handler": 0xFFFFFFFF81000000
    }


def test_the_lean_tier_switches_override_the_kernels() -> None:
    """The lean tier swaps the softirq and timer hooks for socket reads, whatever the kernel
    offered; one -D per switch, so the compiler sees no conflicting redefinition."""
    from synfin.kernel.features import KernelFeatures  # noqa: PLC0415
    from synfin.kernel.loader import ProbeError  # noqa: PLC0415
    from synfin.kernel.state_probe import LEAN, TIMERS, ProbeOptions, validate_tier  # noqa: PLC0415

    features = KernelFeatures(defines={"TRACK_CONTEXT": 1, "OBSERVE_TIMERS": 1, "READ_NETNS": 1})
    options = ProbeOptions(stream_events=False)
    lean, timers = options.cflags(features, LEAN), options.cflags(features, TIMERS)
    for switch in ("LEAN_TIER", "TRACK_CONTEXT", "OBSERVE_TIMERS", "CONTEXT_FROM_LOCK"):
        assert sum(flag.startswith(f"-D{switch}=") for flag in lean) == 1
    assert {
        "-DLEAN_TIER=1",
        "-DTRACK_CONTEXT=0",
        "-DOBSERVE_TIMERS=0",
        "-DCONTEXT_FROM_LOCK=1",
        "-DTIMEWAIT_FROM_BUCKET=1",
        "-DREAD_NETNS=1",
    } <= set(lean)
    assert {"-DTRACK_CONTEXT=1", "-DOBSERVE_TIMERS=1"} <= set(timers)
    assert not any("LEAN_TIER" in flag for flag in timers)
    with pytest.raises(ProbeError, match="unknown probe tier 'fast'"):
        validate_tier("fast")


def test_per_cpu_maps_are_read_key_by_key_where_bccs_batch_lookup_fails() -> None:
    """bcc 0.31 (Debian 13) cannot build per-CPU values from a batch lookup (seen in a VM)."""

    class Table:
        def items_lookup_batch(self) -> list[tuple[int, list[int]]]:
            raise TypeError("incompatible types, c_ulong_Array_2 instance instead of c_ulong")

        def items(self) -> list[tuple[int, list[int]]]:
            return [(3, [1, 2])]

    class Batched(Table):
        def items_lookup_batch(self) -> list[tuple[int, list[int]]]:
            return [(4, [5, 6])]

    assert percpu_items(Table()) == [(3, [1, 2])]
    assert percpu_items(Batched()) == [(4, [5, 6])]
