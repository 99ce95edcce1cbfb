"""``synfin record`` and ``synfin replay``: decoded event streams as JSON lines.

The first line is a header (schema version, kernel, what the kernel let synfin observe, the
names of its reset reasons); each further line is one event, every field kept. A recording
replays through the same lifecycle engine without root or BPF, which is how the tests turn
real kernel streams into fast fixtures.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from collector.errors import SynfinError
from collector.events import DecodeError, Event, from_record

SCHEMA = 1
MAX_LINE = 1 << 20  # an event line is ~600 bytes; anything far longer is not a recording


class RecordingError(SynfinError):
    """A file that is not a synfin recording, or is damaged."""


@dataclass
class Header:
    schema: int = SCHEMA
    kernel: str = field(default_factory=platform.release)
    clock_offset_ns: int = 0  # add to an event's ts_ns for wall-clock time (when recorded)
    capabilities: dict[str, bool] = field(default_factory=dict)
    reset_reasons: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> str:
        record = {
            "synfin_recording": self.schema,
            "kernel": self.kernel,
            "clock_offset_ns": self.clock_offset_ns,
            "capabilities": self.capabilities,
            "reset_reasons": {str(k): v for k, v in sorted(self.reset_reasons.items())},
        }
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str, path: Path) -> Header:
        try:
            record = json.loads(line)
            schema = record["synfin_recording"]
        except (ValueError, TypeError, KeyError):
            raise RecordingError(
                f"{path} is not a synfin recording (no header line)",
                "record one with `synfin record -o FILE`",
            ) from None
        if schema != SCHEMA:
            raise RecordingError(
                f"{path} is a schema {schema} recording; this synfin reads schema {SCHEMA}",
                "replay it with the synfin version that recorded it",
            )
        try:
            return cls(
                schema=schema,
                kernel=str(record.get("kernel", "")),
                clock_offset_ns=int(record.get("clock_offset_ns", 0)),
                capabilities=dict(record.get("capabilities", {})),
                reset_reasons={int(k): str(v) for k, v in record.get("reset_reasons", {}).items()},
            )
        except (ValueError, TypeError, AttributeError):
            raise RecordingError(f"{path}: damaged header line", "record it again") from None


class Writer:
    def __init__(self, out: IO[str], header: Header) -> None:
        self.out = out
        out.write(header.to_json() + "\n")

    def write(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_record(), separators=(",", ":")) + "\n")


def _lines(stream: IO[bytes], path: Path) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE:
            raise RecordingError(
                f"{path}:{number}: line longer than {MAX_LINE} bytes", "is this a recording?"
            )
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordingError(
                f"{path}:{number}: not UTF-8 text", "is this a recording?"
            ) from None


def read(path: Path) -> tuple[Header, Iterator[Event]]:
    """The header and the events of a recording; errors name the file and line."""
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise RecordingError(
            f"{path}: no such file", "give the path of a synfin recording"
        ) from None
    except (PermissionError, IsADirectoryError) as error:
        raise RecordingError(
            f"cannot read {path}: {error.strerror}", "check the path and its permissions"
        ) from None
    lines = _lines(stream, path)
    try:
        first = next(lines, None)
    except RecordingError:
        stream.close()
        raise
    if first is None:
        stream.close()
        raise RecordingError(f"{path} is empty", "record one with `synfin record -o FILE`")
    header = Header.from_json(first[1], path)

    def events() -> Iterator[Event]:
        with stream:
            for number, line in lines:
                if not line.strip():
                    continue
                if not line.endswith("\n"):
                    raise RecordingError(
                        f"{path}:{number}: truncated last line", "the recording was cut short"
                    )
                try:
                    yield from_record(json.loads(line))
                except ValueError as error:  # DecodeError is a ValueError, as is bad JSON
                    what = error if isinstance(error, DecodeError) else "not JSON"
                    raise RecordingError(
                        f"{path}:{number}: {what}", "is this a synfin recording?"
                    ) from None

    return header, events()
