"""A headless Chromium driven over the DevTools protocol, for the web view's tests.

Debian's chromium with --remote-debugging-pipe: JSON messages separated by NUL bytes on file
descriptors 3 (to the browser) and 4 (from it), so nothing beyond the standard library is
needed, and the browser exits by itself when the pipe closes (even if the test process is
killed). It runs in its own session, so one killpg stops every process it started.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

# The binary itself: /usr/bin/chromium is a shell wrapper that adds flags of its own.
CHROMIUM = Path("/usr/lib/chromium/chromium")
FLAGS = (
    "--headless=new", "--no-sandbox",  # root needs --no-sandbox
    "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--password-store=basic", "--hide-scrollbars",
    "--force-color-profile=srgb",  # exact colours for the pixel checks
)  # fmt: skip


class BrowserError(RuntimeError):
    pass


def _above_stdio(fd: int) -> int:
    """The descriptor moved to 10 or above (close-on-exec), so the child's dup2 onto 3 and 4
    cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    def __init__(self, binary: Path = CHROMIUM) -> None:
        self.binary = binary
        self.pid: int | None = None
        self.profile = Path(tempfile.mkdtemp(prefix="synfin-chromium-"))
        self._next = 0
        self._send_lock = threading.Lock()
        self._answered = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._gone = False
        self.listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}

    def __enter__(self) -> Browser:
        to_browser, self._write_fd = map(_above_stdio, os.pipe())
        self._read_fd, from_browser = map(_above_stdio, os.pipe())
        log = str(self.profile / "stderr.log")
        self.pid = os.posix_spawn(
            str(self.binary),
            [str(self.binary), *FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-pipe", "about:blank"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
                (os.POSIX_SPAWN_DUP2, to_browser, 3),
                (os.POSIX_SPAWN_DUP2, from_browser, 4),
            ],
            setsid=True,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        threading.Thread(target=self._read, name="devtools", daemon=True).start()
        try:
            self.send("Browser.getVersion", timeout=30)
        except BrowserError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.pid is not None:
            with contextlib.suppress(BrowserError):
                self.send("Browser.close", timeout=3)
            self.kill()
        os.close(self._write_fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def kill(self) -> None:
        """Every process of the browser, at once (a user closing it, or a crash)."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None

    def _read(self) -> None:
        pending = b""
        with os.fdopen(self._read_fd, "rb", buffering=0) as stream:
            while chunk := stream.read(1 << 20):
                pending += chunk
                *messages, pending = pending.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        with self._answered:
                            self._answers[message["id"]] = message
                            self._answered.notify_all()
                    else:
                        for listener in self.listeners.get(message.get("sessionId", ""), []):
                            listener(message)
        with self._answered:
            self._gone = True
            self._answered.notify_all()

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str = "",
        timeout: float = 15,
    ) -> dict[str, Any]:  # fmt: skip
        with self._send_lock:
            self._next += 1
            number = self._next
            message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
            if session:
                message["sessionId"] = session
            data = memoryview(json.dumps(message).encode() + b"\0")
            try:
                while data:
                    data = data[os.write(self._write_fd, data) :]
            except OSError as error:
                raise BrowserError(f"{method}: the browser is gone ({error})") from None
        deadline = time.monotonic() + timeout
        with self._answered:
            while number not in self._answers:
                if self._gone:
                    raise BrowserError(f"{method}: the browser is gone")
                if not self._answered.wait(max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"{method}: no answer in {timeout} s")
            answer = self._answers.pop(number)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def new_page(self, width: int = 1400, height: int = 1000) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, target, session["sessionId"], width, height)


class Page:
    """One tab. ``errors`` collects console errors, uncaught exceptions and failed loads."""

    def __init__(
        self, browser: Browser, target: str, session: str, width: int, height: int
    ) -> None:
        self.browser, self.target, self.session = browser, target, session
        self.errors: list[str] = []
        self._loaded = threading.Event()
        browser.listeners.setdefault(session, []).append(self._on_event)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        size = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", size)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def _on_event(self, message: dict[str, Any]) -> None:
        method, params = message["method"], message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"])
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")
        elif method == "Page.loadEventFired":
            self._loaded.set()

    def goto(self, url: str, timeout: float = 20) -> None:
        self._loaded.clear()
        failed = self.send("Page.navigate", {"url": url}).get("errorText")
        if failed:
            raise BrowserError(f"cannot load {url}: {failed}")
        if not self._loaded.wait(timeout):
            raise BrowserError(f"{url} did not finish loading in {timeout} s")

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details["text"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, explain: str = "") -> Any:
        """The expression's value once it is true; ``explain``'s value says why if it never is."""
        deadline = time.monotonic() + timeout
        while not (value := self.eval(expression)):
            if time.monotonic() > deadline:
                said = f" ({self.eval(explain)})" if explain else ""
                raise BrowserError(f"still false after {timeout} s: {expression}{said}")
            time.sleep(0.1)
        return value

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre."""
        found = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) "
            "return null; e.scrollIntoView({block: 'center'}); const r = "
            "e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if found is None:
            raise BrowserError(f"nothing on the page matches {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": found[0], "y": found[1],
                                                   "button": "left", "clickCount": 1})  # fmt: skip

    def screenshot(self) -> bytes:
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        return base64.b64decode(shot["data"])
