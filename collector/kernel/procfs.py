"""The kernel's own network counters from procfs: the MIB sections of net/snmp and
net/netstat, and the socket counts of net/sockstat and net/sockstat6.

One reader, its procfs root a parameter as node_exporter's --path.procfs is: ``ProcNet(PROC)``
reads /proc/net/snmp, ``ProcNet(Path("/host/proc"))`` a host's procfs mounted in a container,
``ProcNet(FIXTURES / "proc")`` recorded files. The default, /proc/thread-self, shows the
namespace of the calling thread: the one it entered with setns, which /proc/net (the main
thread's) does not follow once another thread has moved, and the same as /proc otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synfin.errors import EnvironmentProblem

PROC = Path("/proc")
THREAD_SELF = Path("/proc/thread-self")

Sections = dict[str, dict[str, int]]  # section label ("Tcp", "TcpExt", "TCP") -> name -> value

_NUMBER = re.compile(r"-?[0-9]+")  # stricter than int(), which takes "1_0" and "+1"
_QUOTED = 24  # characters of an offending token an error quotes


class ProcfsError(EnvironmentProblem):
    """A procfs file that does not read as the kernel writes it."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        where = f"{path} line {line}" if line is not None else str(path)
        super().__init__(
            f"cannot parse {where}: {problem}",
            "read the kernel's own procfs (mount -t proc proc /proc)",
        )


def _quote(token: str) -> str:
    return repr(token if len(token) <= _QUOTED else token[:_QUOTED] + "...")


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines; bytes that are not ASCII are an error."""
    data = path.read_bytes()
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ProcfsError(path, line, f"not text (byte 0x{data[error.start]:02x})") from None
    return [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def _labelled(path: Path, number: int, line: str) -> tuple[str, list[str]]:
    """``Label: a b c`` as (label, tokens)."""
    label, colon, rest = line.partition(":")
    if not colon or not label or label != label.strip() or not label.isprintable():
        raise ProcfsError(path, number, f"{_quote(line)} is not 'Label: ...'")
    return label, rest.split()


def _number(path: Path, number: int, token: str) -> int:
    if not _NUMBER.fullmatch(token):
        raise ProcfsError(path, number, f"{_quote(token)} is not a number")
    return int(token)


def _named(
    path: Path, number: int, label: str, names: list[str], values: list[str]
) -> dict[str, int]:
    if len(names) != len(values):
        counts = f"{len(names)} and {len(values)}"
        raise ProcfsError(path, number, f"{label} names and values differ in number ({counts})")
    if len(set(names)) != len(names):
        raise ProcfsError(path, number, f"a {label} name appears twice")
    return {name: _number(path, number, value) for name, value in zip(names, values, strict=True)}


def _paired(path: Path) -> Sections:
    """snmp and netstat: a line of names, then a line of values, under the same label."""
    lines = _lines(path)
    if len(lines) % 2:
        number, line = lines[-1]
        label, _ = _labelled(path, number, line)
        raise ProcfsError(path, number, f"{label} names without a line of values (truncated?)")
    sections: Sections = {}
    for (names_at, names_line), (values_at, values_line) in zip(
        lines[::2], lines[1::2], strict=True
    ):
        label, names = _labelled(path, names_at, names_line)
        values_label, values = _labelled(path, values_at, values_line)
        if values_label != label:
            raise ProcfsError(path, values_at, f"{values_label} values after {label} names")
        if label in sections:
            raise ProcfsError(path, names_at, f"a second {label} section")
        sections[label] = _named(path, values_at, label, names, values)
    return sections


def _keyed(path: Path) -> Sections:
    """sockstat and sockstat6: ``TCP: inuse 3 orphan 0 ...``, name and value alternating."""
    sections: Sections = {}
    for number, line in _lines(path):
        label, tokens = _labelled(path, number, line)
        if label in sections:
            raise ProcfsError(path, number, f"a second {label} line")
        sections[label] = _named(path, number, label, tokens[::2], tokens[1::2])
    return sections


_FORMATS: dict[str, Callable[[Path], Sections]] = {
    "snmp": _paired,
    "netstat": _paired,
    "sockstat": _keyed,
    "sockstat6": _keyed,
}


@dataclass(frozen=True)
class TcpSockets:
    """The TCP line of sockstat, with TCP6's inuse from sockstat6.

    inuse, inuse6 and tw count the namespace read in; orphan, alloc and mem the whole host,
    whichever namespace shows them.
    """

    inuse: int  # IPv4 sockets, TIME-WAIT ones aside
    orphan: int
    tw: int  # TIME-WAIT sockets of both families
    alloc: int
    mem: int  # pages
    inuse6: int | None  # None without sockstat6 (IPv6 disabled)


@dataclass(frozen=True)
class ProcNet:
    """The files of ``root``/net; each call reads its file afresh."""

    root: Path = THREAD_SELF

    def path(self, file: str) -> Path:
        return self.root / "net" / file

    def sections(self, file: str) -> Sections:
        """Every section of ``file`` (snmp, netstat, sockstat, sockstat6) by label."""
        if file not in _FORMATS:
            raise ValueError(f"no reader for net/{file}: one of {', '.join(_FORMATS)}")
        return _FORMATS[file](self.path(file))

    def section(self, file: str, label: str) -> dict[str, int]:
        """One section: ``section("snmp", "Udp")``, ``section("netstat", "MPTcpExt")``."""
        sections = self.sections(file)
        if label not in sections:
            found = ", ".join(_quote(found) for found in list(sections)[:8]) or "none"
            raise ProcfsError(self.path(file), None, f"no {label} section (found: {found})")
        return sections[label]

    def tcp(self) -> dict[str, int]:
        """The Tcp MIB (ActiveOpens, PassiveOpens, AttemptFails, CurrEstab, RetransSegs...)."""
        return self.section("snmp", "Tcp")

    def tcp_ext(self) -> dict[str, int]:
        """Linux's TCP counters beyond the MIB (ListenOverflows, TCPSynRetrans...)."""
        return self.section("netstat", "TcpExt")

    def ip_ext(self) -> dict[str, int]:
        return self.section("netstat", "IpExt")

    def sockstat(self) -> TcpSockets:
        tcp = self._fields("sockstat", "TCP", ("inuse", "orphan", "tw", "alloc", "mem"))
        try:
            (inuse6,) = self._fields("sockstat6", "TCP6", ("inuse",))
        except FileNotFoundError:
            return TcpSockets(*tcp, inuse6=None)
        return TcpSockets(*tcp, inuse6=inuse6)

    def _fields(self, file: str, label: str, names: tuple[str, ...]) -> list[int]:
        values = self.section(file, label)
        missing = [name for name in names if name not in values]
        if missing:
            raise ProcfsError(self.path(file), None, f"no {', '.join(missing)} on the {label} line")
        return [values[name] for name in names]
