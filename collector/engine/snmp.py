"""Counts the engine keeps that the kernel keeps too (/proc/net/snmp's Tcp MIB), per namespace.

They let a test or the lab hold synfin's reading of the events against the kernel's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from synfin.engine.states import KernelState
from synfin.records.events import Event, EventKind, Fact


@dataclass
class SnmpCounts:
    """Counts comparable with the kernel's own Tcp MIB counters (/proc/net/snmp)."""

    active_opens: int = 0  # ActiveOpens: connect() started
    passive_opens: int = 0  # PassiveOpens: a listener's child socket created
    attempt_fails: int = 0  # AttemptFails: tcp_done() in SYN-SENT or SYN-RCVD
    estab_resets: int = 0  # EstabResets: ESTABLISHED or CLOSE-WAIT straight to CLOSED
    out_rsts: int = 0  # OutRsts: resets sent

    def count(self, event: Event) -> None:
        old, new = event.oldstate, event.newstate
        if event.kind == EventKind.RESET_SENT:
            self.out_rsts += 1
        if event.kind != EventKind.STATE_CHANGE:
            return
        if (old, new) == (KernelState.CLOSE, KernelState.SYN_SENT):
            self.active_opens += 1
        elif (old, new) == (KernelState.LISTEN, KernelState.SYN_RECV):
            self.passive_opens += 1
        elif new == KernelState.CLOSE and old in (KernelState.SYN_SENT, KernelState.SYN_RECV):
            # tcp_done() counts the failure; close() while connecting does not, and runs in the
            # process without a reset having arrived.
            reset = event.facts & Fact.RESET_RECEIVED
            if reset or not event.in_process_context:
                self.attempt_fails += 1
        elif new == KernelState.CLOSE and old in (KernelState.ESTABLISHED, KernelState.CLOSE_WAIT):
            self.estab_resets += 1
