"""The ladder as an SVG picture, drawn the way the textbook figure is.

Two vertical lines (client left, server right), time going down, each segment an arrow with
its flags and textbook label above and its real numbers below, each end's states beside its
line, and the checks under the figure. Plain SVG 1.1 with no scripts or external fonts, so
any renderer (a browser, rsvg-convert, a word processor) shows the same picture.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from synfin.ladder.layout import Ladder, legend
from synfin.ladder.roles import Part
from synfin.ladder.rules import Verdict
from synfin.records.segments import Flag
from synfin.views.ladder_text import EVIDENCE_SUFFIX, format_offset

WIDTH = 900
LEFT_X = 260
RIGHT_X = 640
TOP = 110
ROW_HEIGHT = 54
CHECK_HEIGHT = 20
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
COLOURS = {"SYN": "#1b7f3b", "FIN": "#b36b00", "RST": "#c0392b", "ACK": "#1f4e8c"}
VERDICT_STYLE = {
    Verdict.HOLDS: ("✓", "#1b7f3b"),
    Verdict.DEVIATION: ("✗", "#c0392b"),
    Verdict.NOT_SEEN: ("·", "#8a6d00"),
}


def _colour(flags: Flag) -> str:
    for flag in (Flag.RST, Flag.SYN, Flag.FIN):
        if flags & flag:
            return COLOURS[flag.name or ""]
    return COLOURS["ACK"]


def _text(x: float, y: float, content: str, **attrs: str) -> str:
    extra = " ".join(f'{name.replace("_", "-")}="{value}"' for name, value in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" {extra}>{escape(content)}</text>'


def _ladder(ladder: Ladder, top: float) -> tuple[list[str], float]:
    """The elements of one ladder starting at ``top``, and the height used."""
    dialogue = ladder.dialogue
    out: list[str] = []
    heads = ("client", "server")
    for x, end, head, mark in zip(
        (LEFT_X, RIGHT_X), dialogue.ends, heads, ladder.initial, strict=True
    ):
        out.append(_text(x, top, head, text_anchor="middle", font_weight="bold", font_size="16"))
        out.append(_text(x, top + 18, end.endpoint, text_anchor="middle", font_family=MONO))
        if end.process:
            out.append(_text(x, top + 34, end.process, text_anchor="middle", fill="#555"))
        if mark is not None:
            out.append(_state(x, top + 58, mark.state.value, left=x == LEFT_X))
    body_top = top + 80
    bottom = body_top + ROW_HEIGHT * len(ladder.rows) + 10
    for x in (LEFT_X, RIGHT_X):
        out.append(
            f'<line x1="{x}" y1="{body_top - 12}" x2="{x}" y2="{bottom}" '
            'stroke="#333" stroke-width="2"/>'
        )
    for index, row in enumerate(ladder.rows):
        y = body_top + ROW_HEIGHT * index
        out.append(_text(20, y + 26, format_offset(row.at_ns - ladder.start_ns), fill="#555",
                         font_family=MONO, font_size="12"))  # fmt: skip
        if row.part is not None:
            out += _arrow(ladder, row.part, y)
        for column, marks in enumerate(row.marks):
            # One state per line: an end that passed through two states here shows both.
            for line, mark in enumerate(marks):
                name = f"{mark.state}{EVIDENCE_SUFFIX.get(mark.evidence, '')}"
                x = LEFT_X if column == 0 else RIGHT_X
                out.append(_state(x, y + 30 + 15 * line - 7 * (len(marks) - 1), name, column == 0))
    y = bottom + 28
    for check in ladder.checks:
        glyph, colour = VERDICT_STYLE[check.verdict]
        out.append(_text(40, y, glyph, fill=colour, font_weight="bold", font_size="15"))
        out.append(_text(60, y, f"{check.rule}: {check.detail}", font_size="13"))
        y += CHECK_HEIGHT
    notes = legend(ladder)
    if notes:
        out.append(_text(40, y + 4, notes, fill="#555", font_size="12"))
        y += CHECK_HEIGHT
    return out, y - top + 10


def _state(x: float, y: float, name: str, left: bool) -> str:
    # States sit outside the two lines: left of the client's, right of the server's.
    anchor, dx = ("end", -10) if left else ("start", 10)
    return _text(x + dx, y, name, text_anchor=anchor, font_weight="bold", fill="#0b6e8a",
                 font_size="13")  # fmt: skip


def _arrow(ladder: Ladder, part: Part, y: float) -> list[str]:
    rightwards = ladder.column(part.sender) == 0
    start, end = (LEFT_X, RIGHT_X) if rightwards else (RIGHT_X, LEFT_X)
    colour = _colour(part.segment.flags)
    y1, y2 = y + 14, y + 40  # arrows slope down: time passes in flight
    head = -10 if rightwards else 10
    middle = (LEFT_X + RIGHT_X) / 2
    caption = f"{part.segment.flag_names}  {part.label}"
    if part.segment.payload_len:
        caption += f"  len={part.segment.payload_len}"
    numbers = f"seq={part.segment.seq}"
    if part.segment.has(Flag.ACK):
        numbers += f" ack={part.segment.ack}"
    return [
        f'<line x1="{start}" y1="{y1}" x2="{end}" y2="{y2}" stroke="{colour}" stroke-width="2"/>',
        f'<polygon points="{end},{y2} {end + head},{y2 - 8} {end + head},{y2 + 2}" '
        f'fill="{colour}"/>',
        _text(middle, y + 18, caption, text_anchor="middle", fill=colour, font_weight="bold",
              font_size="13"),
        _text(middle, y + 48, numbers, text_anchor="middle", fill="#666", font_family=MONO,
              font_size="11"),
    ]  # fmt: skip


def render(ladders: list[Ladder]) -> str:
    """One SVG document with every ladder, one under the other."""
    elements: list[str] = []
    top = 30.0
    for ladder in ladders:
        dialogue = ladder.dialogue
        title = f"TCP {dialogue.initiator.endpoint} → {dialogue.responder.endpoint}"
        elements.append(_text(20, top, title, font_size="18", font_weight="bold"))
        body, height = _ladder(ladder, top + 40)
        elements += body
        top += height + 70
    height = int(top)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="14">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(elements) + "\n</svg>\n"
    )
