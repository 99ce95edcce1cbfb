"""Which of the engine's outputs a live view shows: by address or network, and by state.

The kernel-side filter (ports, family) decides what reaches user space; these filters act on
the engine's outputs instead, so the engine still sees every event of a connection and its
steps, durations and verdicts stay right even when only some lines are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from synfin.engine.connection import Classified, Finished, Noted, Output, StepTaken
from synfin.engine.states import State
from synfin.records.addresses import Endpoints, Network, any_in


def parse_state(text: str) -> State:
    """A documented state by name, in any case, with - or _ (``time-wait``, ``TIME_WAIT``)."""
    wanted = text.strip().upper().replace("_", "-")
    for state in State:
        if state is not State.UNKNOWN and state.value == wanted:
            return state
    names = ", ".join(s.value for s in State if s is not State.UNKNOWN)
    raise ValueError(f"'{text}' is not a TCP state (one of {names})")


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

    def admits_connection(self, holder: Endpoints, states: frozenset[State]) -> bool:
        """The same choice for a finished connection known by its record and path states."""
        owner = getattr(holder, "owner_pid", 0)
        return (
            (
                not self.networks
                or any_in(holder.family, (holder.saddr, holder.daddr), self.networks)
            )
            and (not self.states or bool(states & self.states))
            and (not self.pids or owner in self.pids)
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
