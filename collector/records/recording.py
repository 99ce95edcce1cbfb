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

from synfin.errors import SynfinError
from synfin.records import json_lines
from synfin.records.connections import ConnectionRecord, connection_from_record
from synfin.records.description import KernelDescription
from synfin.records.events import DecodeError, Event, from_record

SCHEMA = 1
EVENTS, CONNECTIONS = "events", "connections"  # what each line after the header is
MAX_LINE = 1 << 20  # an event line is ~600 bytes; anything far longer is not a recording


class RecordingError(SynfinError):
    """A file that is not a synfin recording, or is damaged."""


@dataclass
class Header:
    schema: int = SCHEMA
    kernel: str = field(default_factory=platform.release)
    clock_offset_ns: int = 0  # add to an event's ts_ns for wall-clock time (when recorded)
    description: KernelDescription = field(default_factory=KernelDescription)
    records: str = EVENTS  # or CONNECTIONS: `synfin record --per-connection`

    def to_json(self) -> str:
        record = {
            "synfin_recording": self.schema,
            "records": self.records,
            "kernel": self.kernel,
            "clock_offset_ns": self.clock_offset_ns,
            "capabilities": dict(self.description.capabilities),
            "reset_reasons": {str(k): v for k, v in sorted(self.description.reset_reasons.items())},
        }
        return json_lines.dumps(record)

    @classmethod
    def from_json(cls, line: str, path: Path) -> Header:
        try:
            record = json.loads(line)
            schema = record["synfin_recording"]
        except (ValueError, TypeError, KeyError, RecursionError):
            raise RecordingError(
                f"{path} is not a synfin recording (no header line)",
                "record one with `synfin record -o FILE`",
            ) from None
        if schema != SCHEMA:
            shown = schema if isinstance(schema, int) else repr(schema)[:40]  # stays one line
            raise RecordingError(
                f"{path} is a schema {shown} recording; this synfin reads schema {SCHEMA}",
                "replay it with the synfin version that recorded it",
            )
        records = record.get("records", EVENTS)
        if records not in (EVENTS, CONNECTIONS):
            raise RecordingError(
                f"{path}: records of an unknown kind {str(records)[:40]!r}",
                "replay it with the synfin version that recorded it",
            )
        try:
            return cls(
                records=records,
                schema=schema,
                kernel=str(record.get("kernel", "")),
                clock_offset_ns=int(record.get("clock_offset_ns", 0)),
                description=KernelDescription(
                    capabilities=dict(record.get("capabilities", {})),
                    reset_reasons={
                        int(k): str(v) for k, v in record.get("reset_reasons", {}).items()
                    },
                ),
            )
        except (ValueError, TypeError, AttributeError, OverflowError):  # Infinity as an int
            raise RecordingError(f"{path}: damaged header line", "record it again") from None


class Writer:
    def __init__(self, out: IO[str], header: Header) -> None:
        self.out = out
        out.write(header.to_json() + "\n")

    def write(self, record: Event | ConnectionRecord) -> None:
        self.out.write(json_lines.dumps(record.to_record()) + "\n")


class Reader:
    """A recording opened for replay: ``with Reader(path) as reader: for event in reader: ...``.

    Errors name the file and line; the file is closed however reading ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._stream: IO[bytes] = path.open("rb")
        except FileNotFoundError:
            raise RecordingError(
                f"{path}: no such file", "give the path of a synfin recording"
            ) from None
        except OSError as error:
            raise RecordingError(
                f"cannot read {path}: {error.strerror}", "check the path and its permissions"
            ) from None
        self._number = 0
        try:
            first = self._next_line()
            if first is None:
                raise RecordingError(f"{path} is empty", "record one with `synfin record -o FILE`")
            self.header = Header.from_json(first, path)
        except BaseException:
            self._stream.close()
            raise

    def _next_line(self) -> str | None:
        raw = self._stream.readline(MAX_LINE + 1)
        if not raw:
            return None
        self._number += 1
        where = f"{self.path}:{self._number}"
        if len(raw) > MAX_LINE:
            raise RecordingError(
                f"{where}: line longer than {MAX_LINE} bytes", "is this a recording?"
            )
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordingError(f"{where}: not UTF-8 text", "is this a recording?") from None

    def __iter__(self) -> Iterator[Event | ConnectionRecord]:
        decode = connection_from_record if self.header.records == CONNECTIONS else from_record
        while (line := self._next_line()) is not None:
            if not line.strip():
                continue
            where = f"{self.path}:{self._number}"
            if not line.endswith("\n"):
                raise RecordingError(f"{where}: truncated last line", "the recording was cut short")
            try:
                yield decode(json.loads(line))
            except DecodeError as error:
                raise RecordingError(f"{where}: {error}", "is this a synfin recording?") from None
            except ValueError:
                raise RecordingError(f"{where}: not JSON", "is this a synfin recording?") from None
            except RecursionError:  # brackets nested thousands deep, which json cannot follow
                raise RecordingError(
                    f"{where}: JSON nested too deeply", "is this a synfin recording?"
                ) from None

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
