"""The probes' C headers, read as the single source of what the kernel side and Python share.

``probes/synfin_events.h`` and ``probes/synfin_segments.h`` define the record layouts, event
kinds, facts, flags, map slots and counter indexes. Python does not copy them: it parses those
headers (shipped inside the package) when synfin starts, so a renumbered constant or a new
field reaches both sides at once. The parser understands exactly the subset the headers use:
integer ``#define``s (literals, ``(1u << n)``, sums and products of earlier names), ``enum``s
with implicit values, and structs of fixed-size integer fields and arrays laid out with C's
natural alignment. Anything else raises AbiError naming the header and the line, and
tests/unit/test_abi.py checks the parse against a C compiler.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from synfin import probes
from synfin.errors import SynfinError

# The fixed-size types the headers use, as struct format characters (little-endian, as BPF
# runs on every architecture synfin supports; the layout check runs on the build host).
_TYPES = {
    "u8": "B", "char": "B", "s8": "b",
    "u16": "H", "s16": "h",
    "u32": "I", "s32": "i",
    "u64": "Q", "s64": "q",
}  # fmt: skip
_OPERATORS = {
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}
_INTEGER = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b")


class AbiError(SynfinError):
    """A probe header this parser cannot read, or a record layout Python did not expect."""


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    format: str  # struct format of the field ("Q", "16s", "H", or the nested struct's)


@dataclass(frozen=True)
class Layout:
    """A C struct as ``struct`` lays it out: fields in order, padding made explicit."""

    name: str
    fields: tuple[Field, ...]
    size: int
    alignment: int
    format: str  # without the byte-order prefix

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if not f.name.startswith("reserved"))

    def codec(self) -> struct.Struct:
        return struct.Struct("<" + self.format)

    def require(self, names: Iterable[str]) -> None:
        """Fail unless the struct's fields are exactly ``names``, in this order."""
        expected = tuple(names)
        if self.names != expected:
            raise AbiError(
                f"struct {self.name} has fields {', '.join(self.names)}; synfin's decoder "
                f"expects {', '.join(expected)}",
                "update the decoder together with the probe header",
            )


@dataclass(frozen=True)
class Header:
    """Everything one header (and the headers it includes) defines."""

    path: Path
    defines: Mapping[str, int]
    enums: Mapping[str, Mapping[str, int]]
    structs: Mapping[str, Layout]

    def __getitem__(self, name: str) -> int:
        """A ``#define`` or enum constant by its C name."""
        if name in self.defines:
            return self.defines[name]
        for members in self.enums.values():
            if name in members:
                return members[name]
        raise AbiError(f"{self.path.name} defines no {name}", "update the probe header")

    def prefixed(self, prefix: str) -> dict[str, int]:
        """Constants named ``PREFIX...``, keyed without the prefix (``FACT_CLOSED`` -> CLOSED)."""
        found = {name: value for name, value in self.defines.items() if name.startswith(prefix)}
        for members in self.enums.values():
            found.update((n, v) for n, v in members.items() if n.startswith(prefix))
        return {name.removeprefix(prefix): value for name, value in found.items()}

    def enum(self, name: str) -> dict[str, int]:
        try:
            return dict(self.enums[name])
        except KeyError:
            raise AbiError(f"{self.path.name} has no enum {name}") from None

    def struct(self, name: str) -> Layout:
        try:
            return self.structs[name]
        except KeyError:
            raise AbiError(f"{self.path.name} has no struct {name}") from None


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


class _Parser:
    def __init__(self, path: Path, seen: dict[str, int] | None = None) -> None:
        self.path = path
        self.defines: dict[str, int] = dict(seen or {})
        self.enums: dict[str, dict[str, int]] = {}
        self.structs: dict[str, Layout] = {}

    def fail(self, line: int, problem: str) -> AbiError:
        return AbiError(
            f"{self.path.name}:{line}: {problem}",
            "keep probe headers to what synfin.records.abi reads: integer defines, enums, "
            "fixed-size structs",
        )

    def value(self, expression: str, line: int) -> int:
        text = _INTEGER.sub(lambda m: str(int(m.group(1), 0)), expression.strip())
        try:
            return self._evaluate(ast.parse(text, mode="eval").body, line)
        except SyntaxError:
            raise self.fail(line, f"cannot read the value {expression.strip()!r}") from None

    def _evaluate(self, node: ast.expr, line: int) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.defines:
            return self.defines[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            combine = _OPERATORS[type(node.op)]
            return combine(self._evaluate(node.left, line), self._evaluate(node.right, line))
        raise self.fail(line, f"cannot evaluate {ast.unparse(node)!r}")

    def parse(self, text: str) -> None:
        text = _strip_comments(text)
        lines = text.splitlines()
        number = 0
        while number < len(lines):
            line = lines[number].strip()
            number += 1
            if match := re.match(r'#include\s+"([^"]+)"', line):
                self.include(self.path.parent / match.group(1))
            elif match := re.match(r"#define\s+(\w+)\s+(.+)$", line):
                self.defines[match.group(1)] = self.value(match.group(2), number)
            elif match := re.match(r"(enum|struct)\s+(\w+)\s*\{", line):
                start = number
                body = [line[match.end() :]]
                while "}" not in body[-1]:
                    if number >= len(lines):
                        raise self.fail(start, f"{match.group(1)} {match.group(2)} never ends")
                    body.append(lines[number])
                    number += 1
                block = " ".join(body).split("}", 1)[0]
                if match.group(1) == "enum":
                    self.enums[match.group(2)] = self.enum(block, start)
                else:
                    self.structs[match.group(2)] = self.struct(match.group(2), block, start)
            elif re.match(r"(enum|struct)\b.*\{", line):
                raise self.fail(number, f"cannot read the declaration {line!r}")

    def include(self, path: Path) -> None:
        other = _Parser(path, self.defines)
        other.parse(path.read_text())
        self.defines.update(other.defines)
        self.enums.update(other.enums)
        self.structs.update(other.structs)

    def enum(self, block: str, line: int) -> dict[str, int]:
        members: dict[str, int] = {}
        following = 0
        for item in filter(None, (part.strip() for part in block.split(","))):
            name, _, value = item.partition("=")
            following = self.value(value, line) if value.strip() else following
            members[name.strip()] = following
            self.defines[name.strip()] = following
            following += 1
        return members

    def struct(self, name: str, block: str, line: int) -> Layout:
        fields: list[Field] = []
        offset, alignment, formats = 0, 1, []
        for declaration in filter(None, (part.strip() for part in block.split(";"))):
            field, size, align, fmt = self.member(declaration, line)
            if field.startswith("reserved"):
                fmt = f"{size}x"  # padding the probe zeroes: nothing to decode
            padding = -offset % align
            if padding:
                formats.append(f"{padding}x")
            offset += padding
            fields.append(Field(field, offset, size, fmt))
            formats.append(fmt)
            offset += size
            alignment = max(alignment, align)
        tail = -offset % alignment
        if tail:
            formats.append(f"{tail}x")
        return Layout(name, tuple(fields), offset + tail, alignment, "".join(formats))

    def member(self, declaration: str, line: int) -> tuple[str, int, int, str]:
        match = re.fullmatch(r"(struct\s+\w+|\w+)\s+(\w+)\s*(?:\[\s*([^\]]+)\])?", declaration)
        if not match:
            raise self.fail(line, f"cannot read the member {declaration!r}")
        kind, field, count_text = match.groups()
        count = self.value(count_text, line) if count_text else 1
        if kind.startswith("struct"):
            nested = self.structs.get(kind.split()[1])
            if nested is None:
                raise self.fail(line, f"{kind} is not defined before it is used")
            size, align, fmt = nested.size, nested.alignment, nested.format
            return field, size * count, align, fmt * count
        if kind not in _TYPES:
            raise self.fail(line, f"the type {kind} has no fixed size")
        char = _TYPES[kind]
        size = struct.calcsize("<" + char)
        if count_text and char in "Bb":
            return field, count, 1, f"{count}s"  # byte arrays decode as bytes
        return field, size * count, size, char * count


def parse(path: Path) -> Header:
    """Read a probe header (and the local headers it includes)."""
    parser = _Parser(path)
    try:
        parser.parse(path.read_text())
    except OSError as error:
        raise AbiError(f"cannot read {path}: {error.strerror}", "reinstall synfin") from None
    return Header(path, parser.defines, parser.enums, parser.structs)


@functools.cache
def events() -> Header:
    """``probes/synfin_events.h``: the state probe's records, maps and counters."""
    return parse(probes.DIRECTORY / "synfin_events.h")


@functools.cache
def segments() -> Header:
    """``probes/synfin_segments.h``: the segment capture's records (includes the events')."""
    return parse(probes.DIRECTORY / "synfin_segments.h")
