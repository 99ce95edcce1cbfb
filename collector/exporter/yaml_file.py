"""Reading a settings file an operator wrote (the run config, the web config): any bytes in,
a document or one line naming the problem out.

Bounded (a settings file is a few KiB; /dev/zero given by mistake must not fill memory),
UTF-8 checked before YAML sees it, and stricter than ``yaml.safe_load``: a key given twice is
refused, since which of two security settings wins should not be a guess. The document keeps
each key's line so errors can point at it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from synfin.errors import SynfinError

MAX_BYTES = 1 << 20
MERGE = "tag:yaml.org,2002:merge"
KeyPath = tuple[str, ...]


def shown(value: object, limit: int = 60) -> str:
    """A value as it may appear in a one-line message: plain words bare, anything else quoted
    with its escapes (a newline in a YAML key must not split the error line), long ones cut."""
    if isinstance(value, str) and value and all(c.isascii() and c.isprintable() for c in value):
        text = value if value.replace("-", "").replace("_", "").isalnum() else repr(value)
    elif value is None:
        text = "null"
    elif isinstance(value, (str, bool, float)):
        text = repr(value)
    elif isinstance(value, int):
        text = repr(value) if abs(value) < 10**40 else "a very large number"
    else:
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted(text: str, limit: int = 60) -> str:
    """A string value for a one-line message: repr escapes line breaks; long ones are cut."""
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def one_line(text: str, limit: int = 160) -> str:
    """Free text (a parser's complaint) made safe for a one-line message."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_bounded(path: Path, what: str, error: type[SynfinError]) -> bytes:
    """The file's bytes; OSError (and ValueError for a NUL in the path) are the caller's to
    word, a file too large to be settings is ``error``."""
    # Opened without blocking: a FIFO nobody writes to would hold open() forever; this way it
    # reads as empty. (O_NONBLOCK changes nothing for files and devices.)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(fd, True)
    with open(fd, "rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise error(
            f"{what} {path} is larger than {MAX_BYTES >> 20} MiB", "give the file meant here"
        )
    return data


@dataclass(frozen=True)
class YamlDocument:
    data: object
    lines: dict[KeyPath, int] = field(default_factory=dict)  # key path -> line of the key
    raw: dict[KeyPath, str] = field(default_factory=dict)  # scalar values as written

    def where(self, *path: str) -> str:
        line = self.lines.get(path)
        return f", line {line}" if line else ""


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == MERGE:
                continue  # `<<: *base` then a key of base again is YAML's override, not a slip
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: safe_load's own error says so
            if first is not None:
                raise _DuplicateKey(
                    None, None, f"key {shown(key)} given twice (first on line {first})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _index(node: yaml.Node, path: KeyPath, document: YamlDocument, walked: set[int]) -> None:
    if id(node) in walked:
        return  # an alias: walking it again could take exponential time (billion laughs)
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                here = (*path, str(key_node.value))
                document.lines.setdefault(here, key_node.start_mark.line + 1)
                _index(value_node, here, document, walked)
    elif isinstance(node, yaml.ScalarNode):
        document.raw.setdefault(path, str(node.value))


def parse_yaml(data: bytes, path: Path, what: str, error: type[SynfinError]) -> YamlDocument:
    """Decode and parse; every failure is ``error`` naming the file (and line where known)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        line = data.count(b"\n", 0, problem.start) + 1
        raise error(
            f"{what} {path} is not UTF-8 text (byte 0x{data[problem.start]:02x} on line {line})",
            "give the YAML file meant here, saved as UTF-8",
        ) from None
    loader = None
    try:
        loader = _StrictLoader(text)  # checks for characters YAML forbids, as it starts
        node = loader.get_single_node()
        document = YamlDocument(None)
        if node is not None:
            _index(node, (), document, set())
            document = YamlDocument(loader.construct_document(node), document.lines, document.raw)
    except yaml.MarkedYAMLError as problem:
        mark = problem.problem_mark or problem.context_mark
        place = f", line {mark.line + 1}" if mark else ""
        said = one_line(str(problem.problem or problem.context))
        fix = "keep one of them" if isinstance(problem, _DuplicateKey) else "fix the YAML"
        raise error(f"{what} {path} is not valid YAML{place}: {said}", fix) from None
    except RecursionError:
        raise error(f"{what} {path} is not valid YAML: nested too deeply", "fix the YAML") from None
    except (yaml.YAMLError, ValueError) as problem:
        # ValueError: a number or a date YAML cannot build (4,301 digits, month 13).
        said = one_line((str(problem).splitlines() or [type(problem).__name__])[0])
        raise error(f"{what} {path} is not valid YAML: {said}", "fix the YAML") from None
    finally:
        if loader is not None:
            loader.dispose()
    return document


class SectionReader:
    """Walks a document's mappings; each check fails with the key's line and the fix."""

    def __init__(
        self, document: YamlDocument, path: Path, what: str, error: type[SynfinError]
    ) -> None:
        self.doc, self.path, self.what, self.error = document, path, what, error

    def fail(self, keys: KeyPath, problem: str, fix: str) -> NoReturn:
        raise self.error(f"{self.what} {self.path}{self.doc.where(*keys)}: {problem}", fix)

    def section(self, parent: dict[Any, Any], keys: KeyPath, allowed: tuple[str, ...]) -> dict:
        value = parent.get(keys[-1])
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(keys, f"{'.'.join(keys)} must be a mapping", "see docs/security.md")
        self.known(value, keys, allowed)
        return value

    def known(self, section: dict[Any, Any], keys: KeyPath, allowed: tuple[str, ...]) -> None:
        for key in section:
            if key not in allowed:
                place = ".".join(keys) or "the top level"
                self.fail(
                    (*keys, str(key)),
                    f"unknown key {shown(key)} in {place}",
                    f"the keys allowed there are {', '.join(allowed)}",
                )

    def text(self, section: dict[str, Any], keys: KeyPath, name: str) -> str | None:
        value = section.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return value
        written = self.doc.raw.get((*keys, name))
        if written is None:  # a list or a mapping: no scalar was written there
            self.fail((*keys, name), f"{name} must be a string", "quote it in the YAML")
        return written  # as Go's YAML reads `1` or `yes` into a string: as written

    def texts(self, section: dict[str, Any], keys: KeyPath, name: str) -> tuple[str, ...] | None:
        value = section.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail((*keys, name), f"{name} must be a list of strings", "write - NAME per line")
        return tuple(value)

    def flag(self, section: dict[str, Any], keys: KeyPath, name: str) -> bool | None:
        value = section.get(name)
        if value is not None and not isinstance(value, bool):
            self.fail((*keys, name), f"{name} must be true or false", "write true or false")
        return value
