"""Feature detection: BTF offsets, kallsyms, and what synfin does without them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from synfin import probes
from synfin.engine.states import KernelState
from synfin.kernel.features import detect
from synfin.kernel.loader import ProbeError
from synfin.kernel.state_probe import ProbeOptions, TcpProbe
from synfin.lab.hosts import HostPair
from synfin.lab.plays import client_closes, connect, listen
from synfin.records import abi
from synfin.records.events import EventKind

from .conftest import Recorder


@pytest.mark.bpf
def test_without_btf_or_symbols_the_capabilities_are_off_with_reasons(tmp_path: Path) -> None:
    empty = tmp_path / "kallsyms"
    empty.write_text("")
    features = detect(btf_path=tmp_path / "no-btf", kallsyms=empty)
    unavailable = {c.name: c.reason for c in features.capabilities if not c.available}
    assert set(unavailable) == {
        "network namespace",
        "socket fields",
        "timewait and request timers",
        "lean tier",
        "socketless resets",
    }
    assert "has no BTF" in unavailable["network namespace"]
    assert "tw_timer_handler" in unavailable["lean tier"]
    assert features.defines["OBSERVE_TIMERS"] == 0 and features.defines["READ_NETNS"] == 0
    assert features.available("process context") and features.available("resets")


@pytest.mark.bpf
@pytest.mark.netns
def test_the_probe_degrades_without_btf_and_symbols(
    tmp_path: Path, hosts: HostPair, port: int
) -> None:
    """No BTF, no symbols: the probe still compiles and the documented path is still drawn,
    with TIME-WAIT's start inferred from the peer's FIN and no namespaces."""
    empty = tmp_path / "kallsyms"
    empty.write_text("")
    with TcpProbe(ProbeOptions(btf_path=tmp_path / "no-btf", kallsyms_path=empty)) as probe:
        recorder = Recorder(probe)
        recorder.reset(ports=(port,))
        client_closes(hosts, socket.AF_INET, port)
        events = recorder.wait_for(
            lambda evs: sum(e.kind == EventKind.SOCKET_END for e in evs) >= 3
        )
    assert {e.netns for e in events} == {0}
    assert not any(e.aux for e in events)  # no timewait socket seen
    from tests.scenario_checks import run_engine  # noqa: PLC0415

    run = run_engine(events)
    client = run.find("active")
    assert client is not None and client.classification is not None
    assert client.classification.close == "graceful"
    assert [s.value for s in client.path()][:5] == [
        "CLOSED",
        "SYN-SENT",
        "ESTABLISHED",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
    ]


@pytest.mark.bpf
@pytest.mark.netns
def test_a_full_sockets_map_evicts_and_counts_it(hosts: HostPair, port: int) -> None:
    with TcpProbe(ProbeOptions(max_sockets=16)) as probe:
        recorder = Recorder(probe)
        recorder.reset(ports=(port,))
        before = probe.tracking_stats()
        listener = listen(hosts, socket.AF_INET, port)
        open_pairs = []
        for _ in range(20):  # 41 sockets at once for 16 entries
            client = connect(hosts, socket.AF_INET, port)
            open_pairs.append((client, listener.accept()[0]))
        full = probe.tracking_stats()
        for client, accepted in open_pairs:
            client.close()
            accepted.close()
        listener.close()
        # Evicted sockets are still streamed (filtered in the kernel, not by the map).
        events = recorder.wait_for(
            lambda evs: sum(e.newstate == KernelState.LAST_ACK for e in evs) >= 20
        )
    assert full.capacity == 16 and full.live == 16
    assert full.evicted - before.evicted >= 41 - 16
    assert sum(e.newstate == KernelState.SYN_SENT for e in events) == 20


@pytest.mark.bpf
def test_a_map_whose_layout_differs_from_the_header_is_named(
    state_probe: TcpProbe, tmp_path: Path
) -> None:
    """The real compiled maps against a header copy whose struct hist lost a field."""
    header = tmp_path / "synfin_events.h"
    text = (probes.DIRECTORY / "synfin_events.h").read_text()
    header.write_text(text.replace("    u64 sum_ns;\n", ""))
    state_probe.check_map_layouts(abi.events())  # the shipped header: every map agrees
    with pytest.raises(ProbeError, match=r"map handshake_seconds: its value is \d+ bytes") as err:
        state_probe.check_map_layouts(abi.parse(header))
    assert "struct hist" in str(err.value) and "reinstall synfin" in str(err.value)
