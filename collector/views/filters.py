"""Which of the engine's outputs a live view shows: by address or network, and by state.

The kernel-side filter (ports, family) decides what reaches user space; these filters act on
the engine's outputs instead, so the engine still sees every event of a connection and its
steps, durations and verdicts stay right even when only some lines are shown.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from synfin.engine.lifecycle import Classified, Finished, Noted, Output, StepTaken
from synfin.engine.states import State
from synfin.records.events import format_address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """An address (one host) or a CIDR; ValueError with the fix when it is neither."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        example = "for example 192.0.2.7, 10.0.0.0/8 or 2001:db8::/32"
        raise ValueError(f"'{text}' is not an address or CIDR ({example})") from None


def parse_state(text: str) -> State:
    """A documented state by name, in any case, with - or _ (``time-wait``, ``TIME_WAIT``)."""
    wanted = text.strip().upper().replace("_", "-")
    for state in State:
        if state is not State.UNKNOWN and state.value == wanted:
            return state
    names = ", ".join(s.value for s in State if s is not State.UNKNOWN)
    raise ValueError(f"'{text}' is not a TCP state (one of {names})")


def any_in(family: int, addresses: Iterable[bytes], networks: Iterable[Network]) -> bool:
    """True when one of the (16-byte) ``addresses`` is in one of ``networks``."""
    parsed = [ipaddress.ip_address(format_address(family, raw)) for raw in addresses]
    return any(address in network for address in parsed for network in networks)


@dataclass(frozen=True)
class OutputFilter:
    networks: tuple[Network, ...] = ()
    states: frozenset[State] = frozenset()
    pids: frozenset[int] = frozenset()  # the owning process (see Connection.owner_pid)

    def admits(self, output: Output) -> bool:
        return (
            self._admits_addresses(output)
            and self._admits_states(output)
            and self._admits_process(output)
        )

    def _admits_process(self, output: Output) -> bool:
        if not self.pids:
            return True
        holder = output.connection if output.connection is not None else output.event
        return holder.owner_pid in self.pids

    def _admits_addresses(self, output: Output) -> bool:
        if not self.networks:
            return True
        holder = output.connection if output.connection is not None else output.event
        return any_in(holder.family, (holder.saddr, holder.daddr), self.networks)

    def _admits_states(self, output: Output) -> bool:
        if not self.states:
            return True
        if isinstance(output, StepTaken):
            return bool({output.step.source, output.step.target} & self.states)
        if isinstance(output, Classified | Finished):
            return bool(set(output.connection.path()) & self.states)
        assert isinstance(output, Noted)
        return False  # notes carry no state of their own
