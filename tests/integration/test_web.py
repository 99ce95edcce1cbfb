"""`synfin web` in a real headless Chromium (tests/browser.py), with the real probes: the page
loads without an error, a namespace scenario lights the arrows it takes (seen or inferred, as
the scenario says), the states' counts follow, the connection's ladder appears with its
checks, and the screenshot shows the diagram drawn. Bad filters, too many tabs and a browser
that goes away get a clear answer, and the server keeps serving."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from synfin.lab.hosts import HostPair
from synfin.lab.scenarios import SCENARIOS
from tests.browser import CHROMIUM, Browser, Page
from tests.paths import REPO
from tests.web_expectations import LISTENER_EDGES, expected_edges

from .servers import free_port

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

SYNFIN = str(REPO / ".venv" / "bin" / "synfin")
# The scenario's server ports: below the ephemeral range (32768 on), so no client socket of
# another test can hold one and show up on the page; no other test uses them. One per run:
# a rerun's rows and TIME-WAIT must not be taken for an earlier run's.
PORTS = iter((31810, 31812, 31814))
LAB_PORT = 31830
MAX_PAGES = 3
OBSERVED_GREEN = (26, 127, 55)  # style.css: an arrow taken, seen in the kernel
OCCUPIED_BLUE = (219, 234, 254)  # style.css: a state with connections in it now
LIVE = "document.getElementById('status').textContent.startsWith('live')"
SAID = (
    "document.getElementById('status').textContent + ' | ' + "
    "document.getElementById('error').textContent"
)
ROWS = (
    "[...document.querySelectorAll('#connections tr')].map(r => [...r.cells].map(c => "
    "c.textContent).join(' ')).join(' / ')"
)
# What a page's own refused requests log in the console: expected where a test asks for them.
REFUSED = "the server responded with a status of"


@pytest.fixture(scope="module")
def web(hosts: HostPair) -> Iterator[str]:
    """`synfin web` on the scenario's port, capturing segments in the client's namespace."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs chromium for the tests")
    listen = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [SYNFIN, "web", "--listen-address", listen, "--port", "31810", "--port", "31812",
         "--port", "31814", "--netns", hosts.client.namespace, "--max-pages", str(MAX_PAGES)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "synfin web: serving" in line, line + process.stderr.read()
    # Read what it says as it says it: a full pipe would stop it mid-write.
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        yield f"http://{listen}"
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0, "".join(said)
        reader.join(timeout=10)
        process.stderr.close()
        assert "stopped, probes detached" in "".join(said), "".join(said)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as started:
        yield started


@pytest.fixture
def page(browser: Browser, web: str) -> Iterator[Page]:
    opened = browser.new_page()
    opened.goto(web + "/")
    opened.wait_for(LIVE, explain=SAID)
    yield opened
    opened.close()


def edges_on_the_page(page: Page) -> dict[str, tuple[int, int]]:
    taken = page.eval(
        "Object.fromEntries([...document.querySelectorAll('#diagram .edge')].map("
        "e => [e.id, [Number(e.dataset.observed || 0), Number(e.dataset.inferred || 0)]]))"
    )
    return {edge: (seen, inferred) for edge, (seen, inferred) in taken.items() if seen + inferred}


def count_in(page: Page, state: str) -> str:
    return page.eval(f"document.querySelector('#state-{state} .count').textContent")


def test_a_scenario_lights_its_arrows_counts_its_states_and_draws_its_ladder(
    page: Page, hosts: HostPair, tmp_path: Path
) -> None:
    assert page.eval("document.querySelectorAll('#diagram .state').length") == 12
    port = next(PORTS)  # a rerun's own: this one's rows and TIME-WAIT stay on the page
    before = edges_on_the_page(page)
    waiting = int(count_in(page, "TIME_WAIT") or 0)
    SCENARIOS["client-closes"].run(hosts, socket.AF_INET, port)

    server = f"{hosts.server.ipv4}:{port}"
    ours = (
        "[...document.querySelectorAll('#connections tr')]"
        f".filter(r => r.textContent.includes('{server}'))"
    )
    page.wait_for(f"{ours}.length === 2", explain=ROWS + " + ' | ' + " + SAID)
    page.wait_for("!document.getElementById('ladder').hidden")
    page.wait_for("document.getElementById('ladder').complete && "
                  "document.getElementById('ladder').naturalWidth > 0")  # fmt: skip

    taken, inferable = expected_edges(SCENARIOS["client-closes"])

    def lit_edges() -> dict[str, tuple[int, int]]:
        after = edges_on_the_page(page)
        return {
            edge: (seen - before.get(edge, (0, 0))[0], inferred - before.get(edge, (0, 0))[1])
            for edge, (seen, inferred) in after.items()
            if edge not in LISTENER_EDGES and (seen, inferred) != before.get(edge)
        }

    # The rows and the arrows' counts come in separate updates: wait (a while) for the counts.
    deadline = time.monotonic() + 10
    while True:
        lit = lit_edges()
        totals = {edge: seen + inferred for edge, (seen, inferred) in lit.items()}
        if totals == dict(taken) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert totals == dict(taken)
    assert all(inferred == 0 or edge in inferable for edge, (_, inferred) in lit.items())

    # The client waits in TIME-WAIT (2MSL is a minute); nothing else is left open.
    page.wait_for(
        f"document.querySelector('#state-TIME_WAIT .count').textContent === '{waiting + 1}'"
    )
    assert count_in(page, "ESTABLISHED") == "0"
    assert page.eval("document.querySelector('#state-TIME_WAIT').classList.contains('occupied')")

    checks = page.eval("[...document.querySelectorAll('#checks li')].map(li => li.className)")
    assert checks and "deviation" not in checks, checks
    rows = page.eval(f"{ours}.map(r => [...r.cells].map(c => c.textContent))")
    assert sorted(row[4] for row in rows) == ["active", "passive"]
    assert {row[5] for row in rows} == {"local graceful", "remote graceful"}

    page.click(f"#connections tr[data-id='{page.eval(f'{ours}[1].dataset.id')}']")
    page.wait_for("!document.getElementById('follow').checked")
    page.wait_for("document.getElementById('ladder').complete && "
                  "document.getElementById('ladder').naturalWidth > 0")  # fmt: skip

    shot = page.screenshot()
    (tmp_path / "web.png").write_bytes(shot)
    if os.environ.get("SYNFIN_WEB_SCREENSHOT"):
        Path(os.environ["SYNFIN_WEB_SCREENSHOT"]).write_bytes(shot)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.width >= 1000 and image.height >= 800
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # drawn, not blank
    present = {colour for _count, colour in colours}
    assert OBSERVED_GREEN in present and OCCUPIED_BLUE in present
    assert page.errors == []


def test_a_filter_synfin_cannot_apply_is_shown_and_the_server_keeps_serving(
    page: Page, web: str
) -> None:
    page.eval("document.querySelector('#filters [name=state]').value = 'SLEEPING'")
    page.click("#filters button")
    page.wait_for("!document.getElementById('error').hidden")
    assert page.eval("document.getElementById('error').textContent") == (
        "synfin web: 'SLEEPING' is not a TCP state (one of CLOSED, LISTEN, SYN-SENT, SYN-RCVD, "
        "ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT)"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(web + "/events?port=0", timeout=10)
    assert refused.value.code == 400
    refused.value.close()
    with urllib.request.urlopen(web + "/api/snapshot?port=80", timeout=10) as answer:
        assert answer.status == 200
    assert all(REFUSED in error for error in page.errors), page.errors


def pages_open(web: str) -> int:
    with urllib.request.urlopen(web + "/api/snapshot", timeout=10) as answer:
        return int(json.load(answer)["pages"])


def until_no_page_is_open(web: str) -> None:
    """Closed pages are noticed at the server's next write to each: within a few seconds."""
    deadline = time.monotonic() + 20
    while pages_open(web):
        assert time.monotonic() < deadline, f"{pages_open(web)} closed pages still counted"
        time.sleep(0.2)


def test_more_tabs_than_allowed_are_told_to_close_one_and_a_closed_browser_frees_them(
    web: str,
) -> None:
    until_no_page_is_open(web)  # the other tests' pages
    with Browser() as crowded:
        tabs = [crowded.new_page() for _ in range(MAX_PAGES)]
        for tab in tabs:
            tab.goto(web + "/")
            tab.wait_for(LIVE, explain=SAID)
        one_more = crowded.new_page()
        one_more.goto(web + "/")
        one_more.wait_for("!document.getElementById('error').hidden")
        assert one_more.eval("document.getElementById('error').textContent") == (
            f"synfin web: {MAX_PAGES} pages are open already; close one and reload"
        )
        assert all(not tab.errors for tab in tabs)
        crowded.kill()  # the whole browser gone at once, as a crash or a closed window
    until_no_page_is_open(web)
    with Browser() as later:
        tabs = [later.new_page() for _ in range(MAX_PAGES)]
        for tab in tabs:
            tab.goto(web + "/")
            tab.wait_for(LIVE, explain=SAID)
            assert tab.errors == []


def test_synfin_lab_web_shows_its_scenarios_and_keeps_the_page_up_until_ctrl_c(
    browser: Browser,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    lab = subprocess.Popen(
        [SYNFIN, "lab", "client-closes", "--web", listen, "--port", str(LAB_PORT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert lab.stdout is not None and lab.stderr is not None
    try:
        said = [lab.stdout.readline() for _ in range(5)]
        assert said[-1].startswith(f"synfin lab: done; the page stays at http://{listen}/"), said
        page = browser.new_page()
        page.goto(f"http://{listen}/")
        page.wait_for(LIVE, explain=SAID)
        page.wait_for("document.querySelectorAll('#connections tr').length === 2")
        page.wait_for("!document.getElementById('ladder').hidden")
        taken, _inferable = expected_edges(SCENARIOS["client-closes"])
        shown = {e for e in edges_on_the_page(page) if e not in LISTENER_EDGES}
        assert shown == set(taken)
        assert page.errors == []
        page.close()
    finally:
        lab.send_signal(signal.SIGINT)
        _out, err = lab.communicate(timeout=30)
    assert lab.returncode == 0, err
    assert "synfin web: stopped, probes detached" in err
