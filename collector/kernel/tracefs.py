"""Where tracefs is, and what the kernel's tracepoints look like (their ``format`` files).

bcc reads a tracepoint's argument layout from tracefs when it compiles a probe, so layout
changes between kernels are absorbed; a missing field is not. synfin checks here, before it
compiles anything, that every field its probes use is present.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from synfin.errors import EnvironmentProblem

DEFAULT_TRACEFS = Path("/sys/kernel/tracing")
LEGACY_TRACEFS = Path("/sys/kernel/debug/tracing")
MOUNT_FIX = "mount -t tracefs tracefs /sys/kernel/tracing"

_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);")


@dataclass(frozen=True)
class Field:
    name: str
    c_type: str
    offset: int
    size: int


@dataclass(frozen=True)
class Tracepoint:
    """A tracepoint this project uses, with the fields its probes read."""

    category: str
    name: str
    fields: tuple[str, ...]
    since: str  # kernel version that added it, for the error message

    @property
    def qualified(self) -> str:
        return f"{self.category}:{self.name}"


# What the probes read. Kept beside the probes' needs, not scattered through the checks.
STATE_TRACEPOINT = Tracepoint(
    "sock",
    "inet_sock_set_state",
    (
        "skaddr",
        "oldstate",
        "newstate",
        "sport",
        "dport",
        "family",
        "protocol",
        "saddr_v6",
        "daddr_v6",
    ),
    "4.16",
)
TCP_TRACEPOINTS = (
    Tracepoint("tcp", "tcp_retransmit_skb", ("skaddr",), "4.15"),
    Tracepoint("tcp", "tcp_retransmit_synack", ("skaddr",), "4.15"),
    Tracepoint("tcp", "tcp_send_reset", ("skaddr",), "4.15"),
    Tracepoint("tcp", "tcp_receive_reset", ("skaddr",), "4.15"),
    Tracepoint("tcp", "tcp_destroy_sock", ("skaddr",), "4.15"),
)
CONTEXT_TRACEPOINTS = (
    Tracepoint("irq", "softirq_entry", ("vec",), "2.6.37"),
    Tracepoint("irq", "softirq_exit", ("vec",), "2.6.37"),
)


class TracefsError(EnvironmentProblem):
    """tracefs or a tracepoint is not usable."""


def find_tracefs(override: str | os.PathLike[str] | None = None) -> Path:
    """The tracefs root: ``override`` (or $SYNFIN_TRACEFS) if given, else the usual places.

    Raises TracefsError with the mount command when no tracefs is mounted there.
    """
    chosen = override or os.environ.get("SYNFIN_TRACEFS")
    candidates = [Path(chosen)] if chosen else [DEFAULT_TRACEFS, LEGACY_TRACEFS]
    for root in candidates:
        try:
            if (root / "events").is_dir():
                return root
        except PermissionError:
            raise TracefsError(
                f"cannot read tracefs at {root}: permission denied", "run synfin with sudo"
            ) from None
    where = ", ".join(str(c) for c in candidates)
    raise TracefsError(f"tracefs is not mounted at {where}", MOUNT_FIX)


def parse_format(text: str) -> dict[str, Field]:
    """The fields of a tracepoint ``format`` file, common_* fields excluded."""
    fields: dict[str, Field] = {}
    for line in text.splitlines():
        match = _FIELD.match(line)
        if not match:
            continue
        decl = match["decl"].strip()
        declarator = decl.split()[-1]
        name = declarator.split("[", 1)[0].lstrip("*")
        if name.startswith("common_"):
            continue
        c_type = decl[: -len(declarator)].strip()
        fields[name] = Field(name, c_type, int(match["offset"]), int(match["size"]))
    return fields


def read_format(root: Path, tracepoint: Tracepoint) -> dict[str, Field]:
    """The fields of ``tracepoint``; TracefsError if it does not exist on this kernel."""
    path = root / "events" / tracepoint.category / tracepoint.name / "format"
    try:
        return parse_format(path.read_text())
    except FileNotFoundError:
        raise TracefsError(
            f"tracepoint {tracepoint.qualified} not found in {root}",
            f"needs Linux >= {tracepoint.since}",
        ) from None
    except PermissionError:
        raise TracefsError(f"cannot read {path}: permission denied", "run as root") from None


def check_tracepoint(root: Path, tracepoint: Tracepoint) -> dict[str, Field]:
    """The tracepoint's fields, after checking that every field synfin reads is there."""
    fields = read_format(root, tracepoint)
    missing = [name for name in tracepoint.fields if name not in fields]
    if missing:
        raise TracefsError(
            f"tracepoint {tracepoint.qualified} lacks field(s) {', '.join(missing)}",
            "this kernel's layout is not one synfin knows: report it with `uname -r`",
        )
    return fields
