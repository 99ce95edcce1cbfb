"""The web view's paths (collector/web/app.py), called as WSGI: the page with the diagram in
it, its files, the snapshot and the event stream with their filters, ladders, and a clear
answer to anything else. The browser test (tests/integration/test_web.py) drives it for real."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from synfin.exporter.web import Streaming
from synfin.web.app import WebView
from synfin.web.hub import Hub


class Answer:
    def __init__(self, view: WebView, path: str, query: str = "", method: str = "GET") -> None:
        self.status, self.headers = "", {}
        environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method}
        self.body: Iterable[bytes] = view(environ, self._start)

    def _start(self, status: str, headers: list[tuple[str, str]], *_exc: Any) -> None:
        self.status, self.headers = status, dict(headers)

    @property
    def text(self) -> str:
        return b"".join(self.body).decode()


@pytest.fixture
def view() -> WebView:
    return WebView(Hub(pages_max=2))


def test_the_page_carries_the_diagram_and_its_script(view: WebView) -> None:
    answer = Answer(view, "/")
    assert answer.status == "200 OK" and answer.headers["Content-Type"].startswith("text/html")
    page = answer.text
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="diagram"' in page
    assert 'id="edge-SYN_SENT-ESTABLISHED"' in page
    assert '<script src="/static/app.js"></script>' in page
    for path in ("/static/app.js", "/static/style.css"):
        assert Answer(view, path).status == "200 OK"


def test_a_snapshot_is_json_with_counts_edges_connections_and_losses(view: WebView) -> None:
    answer = Answer(view, "/api/snapshot", "port=80&state=ESTABLISHED")
    assert answer.status == "200 OK"
    snapshot = json.loads(answer.text)
    assert set(snapshot) == {"counts", "edges", "connections", "losses", "pages"}
    assert snapshot["counts"]["ESTABLISHED"] == 0


@pytest.mark.parametrize("path", ["/api/snapshot", "/events"])
def test_an_unknown_filter_gets_400_and_one_line_saying_what_to_send(
    view: WebView, path: str
) -> None:
    answer = Answer(view, path, "state=SLEEPING")
    assert answer.status == "400 Bad Request"
    lines = answer.text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("synfin web: 'SLEEPING' is not a TCP state")
    assert view.hub.pages == 0


def test_the_event_stream_starts_with_a_snapshot_and_frees_its_place_when_closed(
    view: WebView,
) -> None:
    answer = Answer(view, "/events", "port=443")
    assert answer.status == "200 OK"
    assert answer.headers["Content-Type"] == "text/event-stream"
    assert isinstance(answer.body, Streaming)
    chunks = iter(answer.body)
    assert next(chunks) == b"retry: 2000\n\n"
    first = next(chunks).decode()
    assert first.startswith("data: ") and json.loads(first[6:])["t"] == "snapshot"
    assert view.hub.pages == 1
    answer.body.close()  # what the server does when the browser goes away
    assert view.hub.pages == 0


def test_more_pages_than_allowed_get_503_saying_to_close_one(view: WebView) -> None:
    streams = [Answer(view, "/events") for _ in range(2)]
    for stream in streams:
        next(iter(stream.body))  # the generator runs: the page is open
    refused = Answer(view, "/events")
    assert refused.status == "503 Service Unavailable"
    assert "2 pages are open already; close one and reload" in refused.text
    for stream in streams:
        stream.body.close()  # type: ignore[attr-defined]


def test_a_ladder_not_kept_is_a_404_saying_which_are_kept(view: WebView) -> None:
    answer = Answer(view, "/ladder/7.svg")
    assert answer.status == "404 Not Found"
    assert "no ladder for connection 7 (only the newest 50 are kept" in answer.text


@pytest.mark.parametrize("path", ["/metrics", "/ladder/x.svg", "/static/../app.py", "/events/"])
def test_anything_else_is_404(view: WebView, path: str) -> None:
    assert Answer(view, path).status == "404 Not Found"


def test_only_get_is_answered(view: WebView) -> None:
    answer = Answer(view, "/", method="POST")
    assert answer.status == "405 Method Not Allowed"
