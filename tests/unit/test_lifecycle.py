"""The lifecycle engine against the state machine table: a step the kernel takes that the
textbook has no arrow for is still shown, and marked as off the diagram."""

from __future__ import annotations

from synfin.engine.connection import StepTaken
from synfin.engine.lifecycle import OFF_DIAGRAM, Engine
from synfin.engine.states import KernelState, State
from tests.unit.test_events import make_event


def steps(engine: Engine, *transitions: tuple[KernelState, KernelState]) -> list[StepTaken]:
    taken = []
    for number, (old, new) in enumerate(transitions):
        event = make_event(oldstate=old, newstate=new, ts_ns=2_000_000 + number)
        taken += [o for o in engine.feed(event) if isinstance(o, StepTaken)]
    return taken


def test_arrows_of_the_diagram_are_not_marked() -> None:
    taken = steps(
        Engine(),
        (KernelState.CLOSE, KernelState.SYN_SENT),
        (KernelState.SYN_SENT, KernelState.ESTABLISHED),
        (KernelState.ESTABLISHED, KernelState.FIN_WAIT1),
    )
    assert [(s.step.source, s.step.target) for s in taken] == [
        (State.CLOSED, State.SYN_SENT),
        (State.SYN_SENT, State.ESTABLISHED),
        (State.ESTABLISHED, State.FIN_WAIT_1),
    ]
    assert all(OFF_DIAGRAM not in s.step.how for s in taken)


def test_a_step_the_diagram_has_no_arrow_for_is_marked() -> None:
    """SYN-SENT straight to FIN-WAIT-1: events were lost, or the kernel did something new."""
    taken = steps(
        Engine(),
        (KernelState.CLOSE, KernelState.SYN_SENT),
        (KernelState.SYN_SENT, KernelState.FIN_WAIT1),
    )
    last = taken[-1].step
    assert (last.source, last.target) == (State.SYN_SENT, State.FIN_WAIT_1)
    assert last.observed and last.how == OFF_DIAGRAM
