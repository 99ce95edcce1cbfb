"""Struct member offsets from the running kernel's BTF (``/sys/kernel/btf/vmlinux``).

bcc compiles probes against whatever kernel headers are installed, which may belong to another
kernel version; a struct read through those headers' layout gives garbage. Where a probe must
read a struct field, synfin takes the offset from the running kernel's own type information and
passes it to the probe as a compile-time constant.

Only what offset lookups need is decoded: type kinds, sizes, struct and union members, and
the typedef/qualifier chains between them. Format: Documentation/bpf/btf.rst.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from synfin.errors import EnvironmentProblem

# SYNFIN_BTF points synfin at another BTF file (or a missing one, to see how it degrades).
VMLINUX = Path(os.environ.get("SYNFIN_BTF", "/sys/kernel/btf/vmlinux"))
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION = 1, 2, 3, 4, 5
KIND_ENUM, KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST = 6, 7, 8, 9, 10
KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC = 11, 12, 13, 14, 15
KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 16, 17, 18, 19
_QUALIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}

# Bytes that follow the 12-byte common header: a fixed part, plus a part per vlen item.
_EXTRA = {
    KIND_INT: (4, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_DECL_TAG: (4, 0),
    KIND_ENUM64: (0, 12),
}
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")


class BTFError(EnvironmentProblem):
    """BTF is missing, unreadable, or lacks a type synfin needs."""


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 for a plain (non-bitfield) member

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


class BTF:
    """Type information of one BTF blob, decoded lazily."""

    def __init__(self, data: bytes) -> None:
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(data)
        )
        if magic != BTF_MAGIC:
            raise BTFError("not a BTF blob (bad magic)", "check /sys/kernel/btf/vmlinux")
        self._types = memoryview(data)[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])

    @classmethod
    def from_file(cls, path: Path = VMLINUX) -> BTF:
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            raise BTFError(
                f"{path} is missing: this kernel has no BTF",
                "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux >= 5.4)",
            ) from None
        except PermissionError:
            raise BTFError(f"cannot read {path}: permission denied", "run as root") from None

    def _name(self, offset: int) -> str:
        end = self._strings.index(b"\0", offset)
        return self._strings[offset:end].decode()

    @cached_property
    def _index(self) -> tuple[list[int], dict[str, list[int]]]:
        """Byte position of every type (id 0 is void), and struct/union ids by name."""
        positions = [0]
        by_name: dict[str, list[int]] = {}
        types, pos = self._types, 0
        while pos < len(types):
            name_off, info, _size = _TYPE.unpack_from(types, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            positions.append(pos)
            if kind in (KIND_STRUCT, KIND_UNION) and name_off:
                by_name.setdefault(self._name(name_off), []).append(len(positions) - 1)
            fixed, per_item = _EXTRA.get(kind, (0, 0))
            pos += _TYPE.size + fixed + per_item * vlen
        return positions, by_name

    def _header(self, type_id: int) -> tuple[int, int, int, int, bool]:
        """(kind, vlen, size_or_type, position, kind_flag) of a type."""
        position = self._index[0][type_id]
        _name_off, info, size_or_type = _TYPE.unpack_from(self._types, position)
        return (info >> 24) & 0x1F, info & 0xFFFF, size_or_type, position, bool(info >> 31)

    def resolve(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        kind, _vlen, target, _pos, _flag = self._header(type_id)
        while kind in _QUALIFIERS:
            type_id = target
            kind, _vlen, target, _pos, _flag = self._header(type_id)
        return type_id

    def members(self, type_id: int) -> list[Member]:
        kind, vlen, _size, position, kind_flag = self._header(type_id)
        if kind not in (KIND_STRUCT, KIND_UNION):
            return []
        result = []
        for index in range(vlen):
            name_off, member_type, offset = _MEMBER.unpack_from(
                self._types, position + _TYPE.size + index * _MEMBER.size
            )
            bits, bit_offset = (offset >> 24, offset & 0xFFFFFF) if kind_flag else (0, offset)
            result.append(
                Member(self._name(name_off) if name_off else "", member_type, bit_offset, bits)
            )
        return result

    def struct_id(self, name: str) -> int:
        ids = [i for i in self._index[1].get(name, []) if self._header(i)[1] > 0]
        if not ids:
            raise BTFError(
                f"struct {name} not found in the kernel's BTF", "report it with `uname -r`"
            )
        return ids[0]

    def _find(self, type_id: int, name: str, base_bits: int) -> Member | None:
        """A member by name, looking inside anonymous structs and unions."""
        for member in self.members(type_id):
            if member.name == name:
                return Member(
                    name, member.type_id, base_bits + member.bit_offset, member.bitfield_size
                )
            if not member.name:
                found = self._find(
                    self.resolve(member.type_id), name, base_bits + member.bit_offset
                )
                if found:
                    return found
        return None

    def member(self, path: str) -> Member:
        """``"sock.__sk_common.skc_net"``: the last member, with its offset from the struct."""
        struct_name, *names = path.split(".")
        type_id, bits, member = self.struct_id(struct_name), 0, None
        for name in names:
            member = self._find(type_id, name, bits)
            if member is None:
                raise BTFError(
                    f"{path}: no member {name!r} in this kernel's BTF", "report it with `uname -r`"
                )
            bits, type_id = member.bit_offset, self.resolve(member.type_id)
        if member is None:
            raise BTFError(f"{path}: no member named", "name a member: struct.member")
        return member

    def type_id(self, name: str, kind: int) -> int:
        """The id of the first type of this kind and name (a typedef, say); 0 if none."""
        for type_id in range(1, len(self._index[0])):
            found, _vlen, _target, position, _flag = self._header(type_id)
            if found == kind:
                name_off = _TYPE.unpack_from(self._types, position)[0]
                if name_off and self._name(name_off) == name:
                    return type_id
        return 0

    def enum_values(self, name: str) -> dict[int, str]:
        """Value -> name of every enumerator of ``enum name``; empty if there is no such enum."""
        for type_id in range(1, len(self._index[0])):
            kind, vlen, _size, position, _flag = self._header(type_id)
            if kind not in (KIND_ENUM, KIND_ENUM64) or vlen == 0:
                continue
            name_off = _TYPE.unpack_from(self._types, position)[0]
            if not name_off or self._name(name_off) != name:
                continue
            width = 8 if kind == KIND_ENUM else 12
            values = {}
            for index in range(vlen):
                item = position + _TYPE.size + index * width
                item_name, low = struct.unpack_from("<II", self._types, item)
                high = struct.unpack_from("<I", self._types, item + 8)[0] if width == 12 else 0
                values[(high << 32) | low] = self._name(item_name)
            return values
        return {}

    def offset(self, path: str) -> int:
        member = self.member(path)
        if member.bitfield_size or member.bit_offset % 8:
            raise BTFError(f"{path} is a bitfield: it has no byte offset")
        return member.offset
