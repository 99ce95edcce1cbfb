"""What `synfin web` shows, kept within fixed bounds, and pushed to every open page.

The pump's thread hands the hub each engine output and each drawn ladder; pages (one HTTP
thread each) read a snapshot and then follow their own queue of updates. Everything is
bounded: the connections followed (as the engine's table), the recent connections and ladders
kept, the pages served at once, and each page's queue (a page that falls behind loses updates,
counted and shown, rather than holding memory).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from synfin.engine.classify import LISTENER
from synfin.engine.connection import Classified, Connection, Finished, Output, StepTaken
from synfin.engine.states import DOCUMENTED_STATES, State, textbook_edge
from synfin.ladder.layout import Ladder
from synfin.records.addresses import Network, any_in, parse_network
from synfin.views import ladder_svg
from synfin.views.filters import parse_state
from synfin.web.diagram import edge_id

MAX_PORT = 65535
FILTER_KEYS = ("port", "host", "state")


class BadFilter(ValueError):
    """A filter a page asked for that synfin cannot apply; the message says what to send."""


@dataclass(frozen=True)
class PageFilter:
    """Which connections one page shows: by port (either end), address or CIDR, and state."""

    ports: frozenset[int] = frozenset()
    networks: tuple[Network, ...] = ()
    states: frozenset[State] = frozenset()

    @classmethod
    def from_query(cls, query: str) -> PageFilter:
        try:
            asked = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise BadFilter("the query is not NAME=VALUE pairs joined by &") from None
        unknown = sorted(set(asked) - set(FILTER_KEYS))
        if unknown:
            raise BadFilter(f"unknown filter {unknown[0]!r}: use port, host or state")
        ports = []
        for text in asked.get("port", []):
            if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_PORT):
                raise BadFilter(f"port {text!r} is not a number from 1 to {MAX_PORT}")
            ports.append(int(text))
        try:
            networks = tuple(parse_network(text) for text in asked.get("host", []))
            states = frozenset(parse_state(text) for text in asked.get("state", []))
        except ValueError as error:
            raise BadFilter(str(error)) from None
        return cls(frozenset(ports), networks, states)

    def admits(self, connection: Connection) -> bool:
        if self.ports and not {connection.sport, connection.dport} & self.ports:
            return False
        if self.networks and not any_in(
            connection.family, (connection.saddr, connection.daddr), self.networks
        ):
            return False
        return not self.states or bool(set(connection.path()) & self.states)


@dataclass
class Losses:
    """What the page must say it may be missing."""

    lost: int = 0  # records the kernel's ring buffer had no room for
    undecodable: int = 0
    unfollowed: int = 0  # sockets the probe's table stopped following
    segments_lost: int = 0  # the ladders' segment records dropped
    skipped: int = 0  # runs of the probe's programs the kernel skipped

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Page:
    """One open page: its filter, and the updates waiting for it."""

    shown: PageFilter
    updates: queue.Queue[dict[str, object]]
    missed: int = 0  # updates dropped because the page read too slowly


@dataclass
class Hub:
    recent_max: int = 200  # connections listed
    ladders_max: int = 50  # ladders kept to be opened
    pages_max: int = 16  # pages served at once
    queue_max: int = 2000  # updates waiting per page
    following_max: int = 65536  # connections followed for the counts (as the engine)
    # The page's own port: its requests are connections too, and showing them would make
    # every ladder the page fetches a new ladder to fetch.
    own_port: int = 0
    losses: Losses = field(default_factory=Losses)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        # Connections not yet over, with their page ids; then, for a while, the ids of those
        # that ended (a ladder is drawn a moment after its connection is over).
        self._following: OrderedDict[tuple[int, int], tuple[int, Connection]] = OrderedDict()
        self._ended_ids: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._next_id = 1
        # id -> (what the page lists, the connection its filters look at)
        self._recent: OrderedDict[int, tuple[dict[str, object], Connection]] = OrderedDict()
        self._ladders: OrderedDict[int, tuple[str, list[dict[str, str]]]] = OrderedDict()
        self._pages: list[Page] = []
        self.edges: dict[str, list[int]] = {}  # edge id -> [observed, inferred] taken

    # -- from the pump's thread ----------------------------------------------------------

    def on_output(self, output: Output) -> None:
        if output.connection is not None and self._own(output.connection):
            return
        if isinstance(output, StepTaken):
            self._step(output)
        elif isinstance(output, Classified | Finished):
            self._ended(output.connection)

    def _own(self, connection: Connection) -> bool:
        return bool(self.own_port) and self.own_port in (connection.sport, connection.dport)

    def on_ladder(self, ladder: Ladder) -> None:
        if any(end.port == self.own_port for end in ladder.dialogue.ends):
            return
        connections = [end.kernel.connection for end in ladder.dialogue.ends if end.kernel]
        with self._lock:
            ids = [self._id_of(connection) for connection in connections]
        if not ids:
            return  # no end on this host that synfin followed: nothing on the page links to it
        svg = ladder_svg.render([ladder])
        checks = [check.to_dict() for check in ladder.checks]
        with self._lock:
            for number in ids:
                self._ladders[number] = (svg, checks)
                self._ladders.move_to_end(number)
            while len(self._ladders) > self.ladders_max:
                self._ladders.popitem(last=False)
            for number in ids:
                if number in self._recent:
                    self._recent[number][0]["ladder"] = True
        title = f"{ladder.dialogue.initiator.endpoint} -> {ladder.dialogue.responder.endpoint}"
        self._push(
            {"t": "ladder", "ids": ids, "title": title, "checks": checks},
            lambda shown: any(shown.admits(connection) for connection in connections),
        )

    def _key(self, connection: Connection) -> tuple[int, int]:
        return (connection.skaddr, connection.start_ns)

    def _id_of(self, connection: Connection) -> int:
        key = self._key(connection)
        followed = self._following.get(key)
        if followed is not None:
            return followed[0]
        number = self._ended_ids.get(key)
        if number is None:
            number = self._next_id
            self._next_id += 1
        return number

    def _step(self, output: StepTaken) -> None:
        connection, step = output.connection, output.step
        edge = textbook_edge(step.source, step.target)
        name = edge_id(edge) if edge else None
        with self._lock:
            key = self._key(connection)
            number = self._id_of(connection)
            self._following[key] = (number, connection)
            self._following.move_to_end(key)
            while len(self._following) > self.following_max:
                self._following.popitem(last=False)
            if name:
                self.edges.setdefault(name, [0, 0])[0 if step.observed else 1] += 1
            listed = number in self._recent  # a step after its socket ended: TIME-WAIT's
        update = {
            "t": "step", "id": number, "edge": name, "from": step.source.name,
            "to": step.target.name, "observed": step.observed, "how": step.how,
        }  # fmt: skip
        self._push(update, lambda shown: shown.admits(connection))
        if listed:
            self._ended(connection)

    def _ended(self, connection: Connection) -> None:
        verdict = connection.classification
        listener = verdict is not None and verdict.open == LISTENER
        with self._lock:
            number = self._id_of(connection)
            if connection.finished:
                key = self._key(connection)
                self._following.pop(key, None)
                self._ended_ids[key] = number
                while len(self._ended_ids) > self.recent_max + self.ladders_max:
                    self._ended_ids.popitem(last=False)
            if listener:
                return  # not a connection: the diagram shows its arrows only
            entry = summary(number, connection)
            entry["ladder"] = number in self._ladders
            self._recent.pop(number, None)
            self._recent[number] = (entry, connection)
            while len(self._recent) > self.recent_max:
                self._recent.popitem(last=False)
        self._push({"t": "connection", "connection": entry}, lambda shown: shown.admits(connection))

    def _push(self, update: dict[str, object], wanted: Callable[[PageFilter], bool]) -> None:
        with self._lock:
            pages = list(self._pages)
        for page in pages:
            if not wanted(page.shown):
                continue
            try:
                page.updates.put_nowait(update)
            except queue.Full:
                page.missed += 1

    # -- from the pages' threads ---------------------------------------------------------

    def open_page(self, shown: PageFilter) -> Page | None:
        """A new page's queue; None when pages_max are open already."""
        with self._lock:
            if len(self._pages) >= self.pages_max:
                return None
            page = Page(shown, queue.Queue(self.queue_max))
            self._pages.append(page)
            return page

    def close_page(self, page: Page) -> None:
        with self._lock:
            if page in self._pages:
                self._pages.remove(page)

    @property
    def following(self) -> int:
        """Connections held for the counts: not over yet."""
        with self._lock:
            return len(self._following)

    @property
    def pages(self) -> int:
        with self._lock:
            return len(self._pages)

    def counts(self, shown: PageFilter) -> dict[str, int]:
        """Connections in each documented state now (CLOSED: closed, not yet gone)."""
        with self._lock:
            following = [c for _number, c in self._following.values() if not c.finished]
        counts = {state.name: 0 for state in DOCUMENTED_STATES}
        for connection in following:
            if connection.state in (State.CLOSED, State.UNKNOWN):
                continue
            if shown.admits(connection):
                counts[connection.state.name] += 1
        return counts

    def snapshot(self, shown: PageFilter) -> dict[str, object]:
        with self._lock:
            recent = [(dict(entry), connection) for entry, connection in self._recent.values()]
            edges = {name: list(taken) for name, taken in self.edges.items()}
        return {
            "counts": self.counts(shown),
            "edges": edges,
            "connections": [entry for entry, connection in recent if shown.admits(connection)],
            "losses": self.losses.to_dict(),
            "pages": self.pages,
        }

    def ladder(self, number: int) -> tuple[str, list[dict[str, str]]] | None:
        with self._lock:
            return self._ladders.get(number)


def summary(number: int, connection: Connection) -> dict[str, object]:
    """A connection as the page lists it."""
    verdict = connection.classification
    return {
        "id": number,
        "local": connection.local,
        "remote": connection.remote,
        "process": f"{connection.comm} ({connection.owner_pid})" if connection.owner_pid else "",
        "path": [state.value for state in connection.path()],
        "steps": [
            {
                "from": step.source.name,
                "to": step.target.name,
                "observed": step.observed,
                "how": step.how,
            }
            for step in connection.steps
        ],
        "opened": verdict.open if verdict else "",
        "result": verdict.result if verdict else "",
        "closed": (verdict.close or "") if verdict else "",
        "initiator": (verdict.initiator or "") if verdict else "",
        "detail": verdict.detail if verdict else "",
        "finished": connection.finished,
    }
