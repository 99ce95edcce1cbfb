"""The procfs reader: exact values from files copied off a Linux 6.18 host, and one clear
error line (file and line named) for every file the kernel would not have written."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synfin.errors import EnvironmentProblem
from synfin.kernel.procfs import PROC, THREAD_SELF, ProcfsError, ProcNet, TcpSockets
from tests.paths import FIXTURES

RECORDED = ProcNet(FIXTURES / "proc")


def test_tcp() -> None:
    assert RECORDED.tcp() == {
        "RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1, "ActiveOpens": 666,
        "PassiveOpens": 644, "AttemptFails": 4, "EstabResets": 12, "CurrEstab": 0,
        "InSegs": 11484, "OutSegs": 10619, "RetransSegs": 0, "InErrs": 0, "OutRsts": 30,
        "InCsumErrors": 0,
    }  # fmt: skip


def test_every_snmp_section_by_name() -> None:
    sections = RECORDED.sections("snmp")
    assert list(sections) == ["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"]
    assert RECORDED.section("snmp", "Udp") == {
        "InDatagrams": 41, "NoPorts": 0, "InErrors": 0, "OutDatagrams": 42, "RcvbufErrors": 0,
        "SndbufErrors": 0, "InCsumErrors": 0, "IgnoredMulti": 0, "MemErrors": 0,
    }  # fmt: skip
    assert sections["IcmpMsg"] == {"InType3": 1}
    assert sections["Ip"]["OutTransmits"] == 10659
    assert len(sections["Icmp"]) == 29


def test_tcp_ext() -> None:
    ext = RECORDED.tcp_ext()
    assert len(ext) == 135
    assert {name: value for name, value in ext.items() if value} == {
        "TW": 657, "TCPHPHits": 307, "TCPPureAcks": 2289, "TCPHPAcks": 1501, "TCPTimeouts": 2,
        "TCPBacklogCoalesce": 257, "TCPAbortOnData": 11, "TCPAbortOnClose": 1,
        "TCPRcvCoalesce": 2540, "TCPSpuriousRtxHostQueues": 2, "TCPAutoCorking": 1,
        "TCPFromZeroWindowAdv": 123, "TCPToZeroWindowAdv": 123, "TCPWantZeroWindowAdv": 25,
        "TCPOrigDataSent": 4104, "TCPDelivered": 4753, "TcpTimeoutRehash": 2,
    }  # fmt: skip
    assert ext["ListenOverflows"] == ext["TCPSynRetrans"] == 0


def test_ip_ext_and_the_other_netstat_sections() -> None:
    assert RECORDED.ip_ext() == {
        "InNoRoutes": 0, "InTruncatedPkts": 0, "InMcastPkts": 0, "OutMcastPkts": 0,
        "InBcastPkts": 0, "OutBcastPkts": 0, "InOctets": 99216307, "OutOctets": 9527924,
        "InMcastOctets": 0, "OutMcastOctets": 0, "InBcastOctets": 0, "OutBcastOctets": 0,
        "InCsumErrors": 0, "InNoECTPkts": 11526, "InECT1Pkts": 0, "InECT0Pkts": 0, "InCEPkts": 0,
        "ReasmOverlaps": 0,
    }  # fmt: skip
    assert list(RECORDED.sections("netstat")) == ["TcpExt", "IpExt", "MPTcpExt"]
    assert len(RECORDED.section("netstat", "MPTcpExt")) == 76


def test_sockstat() -> None:
    assert RECORDED.sockstat() == TcpSockets(inuse=1, orphan=0, tw=1, alloc=1, mem=0, inuse6=0)
    assert RECORDED.sections("sockstat") == {
        "sockets": {"used": 13},
        "TCP": {"inuse": 1, "orphan": 0, "tw": 1, "alloc": 1, "mem": 0},
        "UDP": {"inuse": 0, "mem": 0},
        "UDPLITE": {"inuse": 0},
        "RAW": {"inuse": 0},
        "FRAG": {"inuse": 0, "memory": 0},
    }
    assert RECORDED.section("sockstat6", "FRAG6") == {"inuse": 0, "memory": 0}


def test_sockstat_without_ipv6(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(RECORDED.path("sockstat"), tmp_path / "net" / "sockstat")
    assert ProcNet(tmp_path).sockstat().inuse6 is None


def test_the_roots() -> None:
    assert ProcNet().root == THREAD_SELF
    assert ProcNet().path("snmp") == Path("/proc/thread-self/net/snmp")
    assert ProcNet(PROC).path("netstat") == Path("/proc/net/netstat")
    assert RECORDED.path("sockstat") == FIXTURES / "proc" / "net" / "sockstat"


def test_the_running_kernel() -> None:
    # No setns here: this thread's namespace is the process's, so both roots agree on names.
    assert set(ProcNet().tcp()) == set(ProcNet(PROC).tcp()) >= {"ActiveOpens", "CurrEstab"}
    assert "ListenOverflows" in ProcNet().tcp_ext()
    assert ProcNet().sockstat().inuse >= 0


def test_an_unknown_file_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no reader for net/tcp"):
        RECORDED.sections("tcp")


MALFORMED = [
    pytest.param("snmp", b"", None, "no Tcp section (found: none)", id="empty"),
    pytest.param(
        "snmp", b"Ip: A B\nIp: 1 2\nTcp: ActiveOpens PassiveOpens\n", 3,
        "Tcp names without a line of values (truncated?)", id="truncated-after-names",
    ),
    pytest.param(
        "snmp", b"Tcp: ActiveOpens PassiveOpens CurrEstab\nTcp: 1 2", 2,
        "Tcp names and values differ in number (3 and 2)", id="truncated-in-values",
    ),
    pytest.param(
        "snmp", b"Tcp: ActiveOpens\nTcp: 1 2\n", 2,
        "Tcp names and values differ in number (1 and 2)", id="more-values-than-names",
    ),
    pytest.param(
        "snmp", b"Tcp: ActiveOpens MaxConn\nTcp: 1 -1x\n", 2, "'-1x' is not a number",
        id="not-a-number",
    ),
    pytest.param(
        "snmp", b"Tcp: ActiveOpens\nTcp: 1_000\n", 2, "'1_000' is not a number",
        id="python-only-number",
    ),
    pytest.param(
        "snmp", b"Tcp: ActiveOpens\nUdp: 1\n", 2, "Udp values after Tcp names",
        id="values-of-another-section",
    ),
    pytest.param(
        "snmp", b"Tcp: A\nTcp: 1\nTcp: A\nTcp: 2\n", 3, "a second Tcp section", id="twice"
    ),
    pytest.param(
        "snmp", b"Tcp: A A\nTcp: 1 2\n", 2, "a Tcp name appears twice", id="name-twice"
    ),
    pytest.param(
        "snmp", b"Tcp ActiveOpens\nTcp 1\n", 1, "'Tcp ActiveOpens' is not 'Label: ...'",
        id="no-colon",
    ),
    pytest.param(
        "netstat", b"TcpExt: A\nTcpExt: 1\n\xff\xfe\n", 3, "not text (byte 0xff)",
        id="not-text",
    ),
    pytest.param(
        "netstat", b"IpExt: A\nIpExt: 1\n", None, "no TcpExt section (found: 'IpExt')",
        id="no-tcp-ext",
    ),
    pytest.param(
        "sockstat", b"sockets: used 1\nTCP: inuse 1 orphan\n", 2,
        "TCP names and values differ in number (2 and 1)", id="sockstat-truncated",
    ),
    pytest.param(
        "sockstat", b"TCP: inuse one orphan 0 tw 0 alloc 0 mem 0\n", 1, "'one' is not a number",
        id="sockstat-not-a-number",
    ),
    pytest.param(
        "sockstat", b"TCP: inuse 1 orphan 0\n", None, "no tw, alloc, mem on the TCP line",
        id="sockstat-fields-missing",
    ),
    pytest.param(
        "sockstat6", b"TCP6: inuse 1\nTCP6: inuse 2\n", 2, "a second TCP6 line",
        id="sockstat6-twice",
    ),
]  # fmt: skip


def read(procnet: ProcNet, file: str) -> object:
    return {
        "snmp": procnet.tcp,
        "netstat": procnet.tcp_ext,
        "sockstat": procnet.sockstat,
        "sockstat6": lambda: procnet.section("sockstat6", "TCP6"),
    }[file]()


def one_line(error: ProcfsError) -> str:
    text = str(error)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(("file", "content", "line", "problem"), MALFORMED)
def test_malformed(
    tmp_path: Path, file: str, content: bytes, line: int | None, problem: str
) -> None:
    (tmp_path / "net").mkdir()
    path = tmp_path / "net" / file
    path.write_bytes(content)
    with pytest.raises(ProcfsError) as caught:
        read(ProcNet(tmp_path), file)
    assert isinstance(caught.value, EnvironmentProblem)
    assert (caught.value.path, caught.value.line) == (path, line)
    where = f"{path} line {line}" if line else str(path)
    assert one_line(caught.value).startswith(f"cannot parse {where}: {problem} (fix: ")


@pytest.mark.parametrize("file", ["snmp", "netstat", "sockstat", "sockstat6"])
def test_random_bytes_give_the_one_line_error(tmp_path: Path, file: str) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / file).write_bytes(random.Random(file).randbytes(4096))
    with pytest.raises(ProcfsError) as caught:
        read(ProcNet(tmp_path), file)
    assert "not text (byte 0x" in one_line(caught.value)


def test_a_long_token_is_quoted_short(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "snmp").write_text("Tcp: A\nTcp: " + "9x" * 5000 + "\n")
    with pytest.raises(ProcfsError) as caught:
        ProcNet(tmp_path).tcp()
    assert f"line 2: '{'9x' * 12}...' is not a number (fix: " in one_line(caught.value)


# Text close to the real format, so that most examples get past the first line.
NEAR_TEXT = st.text(alphabet="TcpExtIU: 0123456789-_\n\t\r\x00", max_size=200).map(str.encode)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=200) | NEAR_TEXT, file=st.sampled_from(["snmp", "sockstat"]))
def test_any_bytes_give_values_or_the_error(tmp_path: Path, content: bytes, file: str) -> None:
    (tmp_path / "net").mkdir(exist_ok=True)
    (tmp_path / "net" / file).write_bytes(content)
    try:
        sections = ProcNet(tmp_path).sections(file)
    except ProcfsError as error:
        one_line(error)
    else:
        assert all(isinstance(v, int) for values in sections.values() for v in values.values())
