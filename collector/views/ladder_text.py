"""The ladder for a terminal: box drawing and colour, or plain ASCII.

Colour is added with click.style and removed by click.echo when the output is not a terminal;
``unicode=False`` draws the same diagram with ASCII only.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

from synfin.ladder.layout import FROM_SEGMENTS, INFERRED, Ladder, Mark, Row, legend
from synfin.ladder.roles import Part, Role
from synfin.ladder.rules import Verdict
from synfin.records.addresses import family_name
from synfin.records.segments import Flag

TIME_WIDTH = 11
STATE_WIDTH = 23
LANE_WIDTH = 44


@dataclass(frozen=True)
class Glyphs:
    line: str
    right: str
    left: str
    rail: str
    verdicts: dict[Verdict, str]


UNICODE = Glyphs(
    "─", "▶", "◀", "│", {Verdict.HOLDS: "✓", Verdict.DEVIATION: "✗", Verdict.NOT_SEEN: "·"}
)
ASCII = Glyphs(
    "-", ">", "<", "|", {Verdict.HOLDS: "+", Verdict.DEVIATION: "x", Verdict.NOT_SEEN: "?"}
)
VERDICT_COLOURS = {Verdict.HOLDS: "green", Verdict.DEVIATION: "red", Verdict.NOT_SEEN: "yellow"}
EVIDENCE_SUFFIX = {INFERRED: "~", FROM_SEGMENTS: "*"}


def format_offset(ns: int) -> str:
    """Time since the connection's first row: ``+0.036 ms``, ``+60.102 s``."""
    if ns < 1_000_000_000:
        return f"+{ns / 1e6:.3f} ms"
    return f"+{ns / 1e9:.3f} s"


def _states(marks: list[Mark], colour: bool) -> str:
    text = ", ".join(f"{mark.state}{EVIDENCE_SUFFIX.get(mark.evidence, '')}" for mark in marks)
    padding = " " * max(STATE_WIDTH - len(text), 0)
    return (click.style(text, fg="cyan", bold=True) if colour and text else text) + padding


def _segment_colour(part: Part) -> str | None:
    if part.segment.has(Flag.RST):
        return "red"
    if part.segment.has(Flag.SYN):
        return "green"
    if part.segment.has(Flag.FIN):
        return "yellow"
    return None


def _arrow(part: Part, rightwards: bool, glyphs: Glyphs, colour: bool) -> str:
    caption = f" {part.segment.flag_names} {part.label} "
    if part.role is Role.RETRANSMISSION:
        caption = f" {part.segment.flag_names} {part.label} (again) "
    if part.segment.payload_len:
        caption = caption[:-1] + f" len={part.segment.payload_len} "
    room = LANE_WIDTH - 1 - len(caption)
    lead = glyphs.line * 3
    tail = glyphs.line * max(room - len(lead), 1)
    if rightwards:
        body = f"{lead}{caption}{tail}{glyphs.right}"
    else:
        body = f"{glyphs.left}{tail}{caption}{lead}"
    tint = _segment_colour(part)
    return click.style(body, fg=tint) if colour and tint else body


def _numbers(part: Part) -> str:
    seg = part.segment
    text = f"seq={seg.seq}"
    if seg.has(Flag.ACK):
        text += f" ack={seg.ack}"
    return text


def _row(ladder: Ladder, row: Row, glyphs: Glyphs, colour: bool) -> list[str]:
    """The row's line, and for a segment a second line with its real numbers."""
    time = f"{format_offset(row.at_ns - ladder.start_ns):>{TIME_WIDTH}}"
    left, right = _states(row.marks[0], colour), _states(row.marks[1], colour)
    rail, blank = glyphs.rail, " " * TIME_WIDTH
    if row.part is None:
        return [f"{time}  {left}{rail}{' ' * LANE_WIDTH}{rail}  {right}".rstrip()]
    rightwards = ladder.column(row.part.sender) == 0
    arrow = _arrow(row.part, rightwards, glyphs, colour)
    numbers = f"{_numbers(row.part):^{LANE_WIDTH}}"
    if colour:
        numbers = click.style(numbers, dim=True)
    return [
        f"{time}  {left}{rail}{arrow}{rail}  {right}".rstrip(),
        f"{blank}  {' ' * STATE_WIDTH}{rail}{numbers}{rail}",
    ]


def _end_line(ladder: Ladder, column: int) -> str:
    end = ladder.dialogue.ends[column]
    role = "client" if column == 0 else "server"
    if end.kernel is not None:
        process = f", process {end.process}" if end.process else ""
        seen = f"states from the kernel{process}"
    elif ladder.dialogue.handshake_seen:
        seen = "no socket on this host: states inferred from its segments (*)"
    else:
        seen = "no socket on this host, handshake not seen: states unknown"
    return f"{role} {end.endpoint}: {seen}"


def render(ladder: Ladder, unicode: bool = True, colour: bool = False) -> str:
    glyphs = UNICODE if unicode else ASCII
    dialogue = ladder.dialogue
    arrow = "→" if unicode else "->"
    title = (
        f"TCP {dialogue.initiator.endpoint} {arrow} {dialogue.responder.endpoint} "
        f"({family_name(dialogue.family)})"
    )
    lines = [click.style(title, bold=True) if colour else title]
    lines += [f"  {_end_line(ladder, 0)}", f"  {_end_line(ladder, 1)}"]
    heads = ("client", "server") if dialogue.handshake_seen else ("first sender", "other end")
    rail = glyphs.rail
    lines.append(
        f"{'':>{TIME_WIDTH}}  {heads[0].upper():<{STATE_WIDTH}}{rail}{' ' * LANE_WIDTH}{rail}  "
        f"{heads[1].upper()}"
    )
    first, second = ladder.initial
    lines.append(
        f"{'':>{TIME_WIDTH}}  {_states([first] if first else [], colour)}{rail}"
        f"{' ' * LANE_WIDTH}{rail}  {_states([second] if second else [], colour)}".rstrip()
    )
    for row in ladder.rows:
        lines += _row(ladder, row, glyphs, colour)
    if dialogue.stopped_early:
        lines.append(f"{'':>{TIME_WIDTH}}  (trace stopped here; the connection went on)")
    lines.append("  checks:")
    for check in ladder.checks:
        mark = glyphs.verdicts[check.verdict]
        if colour:
            mark = click.style(mark, fg=VERDICT_COLOURS[check.verdict], bold=True)
        lines.append(f"    {mark} {check.rule}: {check.detail}")
    notes = legend(ladder)
    if notes:
        lines.append(f"  {notes}")
    return "\n".join(lines) + "\n"
