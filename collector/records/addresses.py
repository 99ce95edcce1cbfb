"""Addresses as the probes write them (16 bytes, IPv4 as v4-mapped IPv6) and as people do.

Formatting is cached and done only when a line is shown; matching against networks serves the
views' and the tracer's ``--host`` filters alike.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def family_name(family: int) -> str:
    return {AF_INET: "ipv4", AF_INET6: "ipv6"}.get(family, f"unknown:{family}")


def format_address(family: int, raw: bytes) -> str:
    if family == AF_INET:
        return socket.inet_ntop(AF_INET, raw[12:16])
    return socket.inet_ntop(AF_INET6, raw)


@functools.lru_cache(maxsize=65536)  # a view formats each connection's ends on every line
def format_endpoint(family: int, raw: bytes, port: int) -> str:
    address = format_address(family, raw)
    return f"[{address}]:{port}" if family == AF_INET6 else f"{address}:{port}"


class Endpoints:
    """``local`` and ``remote`` as people write them, for anything with a 4-tuple."""

    __slots__ = ()
    family: int
    saddr: bytes
    sport: int
    daddr: bytes
    dport: int

    @property
    def local(self) -> str:
        return format_endpoint(self.family, self.saddr, self.sport)

    @property
    def remote(self) -> str:
        return format_endpoint(self.family, self.daddr, self.dport)


def pack_address(text: str) -> tuple[int, bytes]:
    """(family, 16-byte form) for an address string, IPv4 as v4-mapped IPv6."""
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return AF_INET, b"\0" * 10 + b"\xff\xff" + address.packed
    return AF_INET6, address.packed


def parse_network(text: str) -> Network:
    """An address (one host) or a CIDR; ValueError with the fix when it is neither."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        example = "for example 192.0.2.7, 10.0.0.0/8 or 2001:db8::/32"
        raise ValueError(f"'{text}' is not an address or CIDR ({example})") from None


def any_in(family: int, addresses: Iterable[bytes], networks: Iterable[Network]) -> bool:
    """True when one of the (16-byte) ``addresses`` is in one of ``networks``."""
    parsed = [ipaddress.ip_address(format_address(family, raw)) for raw in addresses]
    return any(address in network for address in parsed for network in networks)
