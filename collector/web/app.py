"""The web view's paths: the page, its script and style, a snapshot, the live event stream
and the ladders. Served by synfin.exporter.web, behind the same web configuration as /metrics
(TLS, basic auth, rate limit, headers)."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from typing import Any

from synfin.exporter.web import Streaming, WSGIApp
from synfin.records import json_lines
from synfin.web import diagram
from synfin.web.hub import BadFilter, Hub, Page, PageFilter

STATIC = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
LADDER = re.compile(r"/ladder/([1-9][0-9]{0,11})\.(svg|json)")
COUNTS_EVERY_S = 1.0
KEEP_ALIVE_S = 15.0
BURST = 200  # updates sent at most between two looks at the clock


def _static(name: str) -> bytes:
    return resources.files("synfin.web").joinpath("static", name).read_bytes()


def page_html() -> bytes:
    """The page with the diagram drawn in, so the script can light its parts."""
    return _static("index.html").replace(b"<!-- diagram -->", diagram.svg().encode())


def _answer(
    start_response: Callable[..., Any], status: str, body: bytes, content_type: str
) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))),
         ("Cache-Control", "no-store")],
    )  # fmt: skip
    return [body]


def _text(start_response: Callable[..., Any], status: str, line: str) -> list[bytes]:
    return _answer(start_response, status, f"{line}\n".encode(), "text/plain; charset=utf-8")


def _json(start_response: Callable[..., Any], record: object) -> list[bytes]:
    return _answer(start_response, "200 OK", json_lines.dumps(record).encode(), "application/json")


def _event(record: object) -> bytes:
    return f"data: {json_lines.dumps(record)}\n\n".encode()


class WebView:
    """The WSGI application: one instance per `synfin web`, sharing the hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.stopping = threading.Event()
        self._page = page_html()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "synfin web only answers GET")
        if path == "/":
            return _answer(start_response, "200 OK", self._page, "text/html; charset=utf-8")
        if path in STATIC:
            name, content_type = STATIC[path]
            return _answer(start_response, "200 OK", _static(name), content_type)
        if path in ("/api/snapshot", "/events"):
            return self._filtered(path, environ.get("QUERY_STRING", ""), start_response)
        ladder = LADDER.fullmatch(path)
        if ladder:
            return self._ladder(int(ladder[1]), ladder[2], start_response)
        return _text(start_response, "404 Not Found", "synfin web: no such page (try /)")

    def _filtered(
        self, path: str, query: str, start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            shown = PageFilter.from_query(query)
        except BadFilter as error:
            return _text(start_response, "400 Bad Request", f"synfin web: {error}")
        if path == "/api/snapshot":
            return _json(start_response, self.hub.snapshot(shown))
        return self._events(shown, start_response)

    def _ladder(self, number: int, kind: str, start_response: Callable[..., Any]) -> list[bytes]:
        found = self.hub.ladder(number)
        if found is None:
            return _text(
                start_response, "404 Not Found",
                f"synfin web: no ladder for connection {number} (only the newest "
                f"{self.hub.ladders_max} are kept, and only for connections with segments seen)",
            )  # fmt: skip
        svg, checks = found
        if kind == "json":
            return _json(start_response, {"id": number, "checks": checks})
        return _answer(start_response, "200 OK", svg.encode(), "image/svg+xml")

    def _events(self, shown: PageFilter, start_response: Callable[..., Any]) -> Iterable[bytes]:
        page = self.hub.open_page(shown)
        if page is None:
            return _text(
                start_response, "503 Service Unavailable",
                f"synfin web: {self.hub.pages_max} pages are open already; close one and reload",
            )  # fmt: skip
        start_response(
            "200 OK",
            [("Content-Type", "text/event-stream"), ("Cache-Control", "no-store"),
             ("X-Accel-Buffering", "no")],
        )  # fmt: skip
        return Streaming(self._follow(page))

    def _follow(self, page: Page) -> Iterator[bytes]:
        """The page's stream: a snapshot, then each update, with the counts every second."""
        try:
            yield b"retry: 2000\n\n"
            yield _event({"t": "snapshot", **self.hub.snapshot(page.shown)})
            counted = spoke = time.monotonic()
            while not self.stopping.is_set():
                sent = 0
                try:
                    while sent < BURST:
                        update = page.updates.get(timeout=0.25 if sent == 0 else 0)
                        yield _event(update)
                        sent += 1
                except queue.Empty:
                    pass
                now = time.monotonic()
                if now - counted >= COUNTS_EVERY_S:
                    counted = spoke = now
                    yield _event({
                        "t": "counts", "counts": self.hub.counts(page.shown),
                        "losses": self.hub.losses.to_dict(), "missed": page.missed,
                    })  # fmt: skip
                elif sent:
                    spoke = now
                elif now - spoke >= KEEP_ALIVE_S:
                    spoke = now
                    yield b": still here\n\n"
        finally:
            self.hub.close_page(page)


def router(view: WebView) -> Callable[[WSGIApp], WSGIApp]:
    """For synfin.exporter.web.serve: the web view's paths in place of /metrics'."""
    return lambda _unused: view
