// synfin web: the state diagram lit by the live event stream, recent connections, ladders.
// Every value from the server is put into the page as text (textContent), never as markup.
"use strict";

const ROWS_MAX = 200;
const LIT_MS = 1500;
const RETRY_MS = 3000;
const view = { source: null, query: "", taken: {}, selected: null, ladders: new Set() };

function $(id) { return document.getElementById(id); }

function queryFromForm() {
  const params = new URLSearchParams();
  for (const name of ["port", "host", "state"]) {
    for (const value of $("filters").elements[name].value.split(/[\s,]+/)) {
      if (value) params.append(name, value);
    }
  }
  return params.toString();
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function connect() {
  const query = queryFromForm();
  // EventSource cannot read an error's body: ask for a snapshot first, which says why.
  const answer = await fetch("/api/snapshot?" + query);
  if (!answer.ok) {
    showError((await answer.text()).trim());
    return;
  }
  showError("");
  if (view.source) view.source.close();
  view.query = query;
  resetPage();
  view.source = new EventSource("/events?" + query);
  view.source.onmessage = (message) => handle(JSON.parse(message.data));
  view.source.onerror = () => {
    if (view.source.readyState === EventSource.CLOSED) explainRefusal(query);
    else $("status").textContent = "connection lost: reconnecting…";
  };
}

// The server refused the stream (too many pages open, say): EventSource gives up without
// the reason, so ask once more and show the answer's one line.
async function explainRefusal(query) {
  const stop = new AbortController();
  const answer = await fetch("/events?" + query, { signal: stop.signal });
  if (answer.ok) {
    stop.abort();
    setTimeout(connect, 2000);
    return;
  }
  $("status").textContent = "not live: trying again every few seconds";
  showError((await answer.text()).trim());
  setTimeout(() => { if (view.query === query) connect(); }, RETRY_MS);
}

function resetPage() {
  view.taken = {};
  $("connections").replaceChildren();
  for (const edge of document.querySelectorAll("#diagram .edge")) {
    edge.classList.remove("taken-observed", "taken-inferred");
    edge.dataset.observed = "0";
    edge.dataset.inferred = "0";
  }
}

function handle(update) {
  switch (update.t) {
    case "snapshot":
      for (const [edge, [observed, inferred]] of Object.entries(update.edges)) {
        setTaken(edge, observed, inferred);
      }
      for (const entry of update.connections) showConnection(entry);
      setCounts(update.counts);
      setStatus(update.losses, 0);
      break;
    case "counts":
      setCounts(update.counts);
      setStatus(update.losses, update.missed);
      break;
    case "step": light(update); break;
    case "connection": showConnection(update.connection); break;
    case "ladder": ladderReady(update); break;
  }
}

function setTaken(edgeId, observed, inferred) {
  const edge = $(edgeId);
  if (!edge) return;
  edge.dataset.observed = String(observed);
  edge.dataset.inferred = String(inferred);
  edge.classList.toggle("taken-observed", observed > 0);
  edge.classList.toggle("taken-inferred", observed === 0 && inferred > 0);
  edge.querySelector("title").textContent =
    edge.querySelector("title").textContent.split(" [")[0] +
    ` [taken ${observed} times seen, ${inferred} inferred]`;
}

function light(step) {
  if (!step.edge) return;
  const edge = $(step.edge);
  if (!edge) return;
  const observed = Number(edge.dataset.observed || 0) + (step.observed ? 1 : 0);
  const inferred = Number(edge.dataset.inferred || 0) + (step.observed ? 0 : 1);
  setTaken(step.edge, observed, inferred);
  const lit = step.observed ? "lit-observed" : "lit-inferred";
  edge.classList.add(lit);
  setTimeout(() => edge.classList.remove(lit), LIT_MS);
}

function setCounts(counts) {
  for (const [state, count] of Object.entries(counts)) {
    const box = $("state-" + state);
    if (!box || state === "CLOSED") continue;
    box.querySelector(".count").textContent = String(count);
    box.classList.toggle("occupied", count > 0);
  }
}

function setStatus(losses, missed) {
  const parts = [];
  if (losses.lost) parts.push(`${losses.lost} kernel records lost (ring buffer full)`);
  if (losses.undecodable) parts.push(`${losses.undecodable} undecodable`);
  if (losses.unfollowed) parts.push(`${losses.unfollowed} sockets not followed (table full)`);
  if (losses.segments_lost) parts.push(`${losses.segments_lost} segment records lost`);
  if (losses.skipped) parts.push(`${losses.skipped} probe runs skipped by the kernel`);
  if (missed) parts.push(`this page missed ${missed} updates (it read too slowly)`);
  $("status").textContent = parts.length ? "Missing: " + parts.join("; ") : "live, nothing lost";
  $("status").classList.toggle("losing", parts.length > 0);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showConnection(entry) {
  let row = document.querySelector(`#connections tr[data-id="${entry.id}"]`);
  const fresh = !row;
  if (fresh) {
    row = document.createElement("tr");
    row.dataset.id = String(entry.id);
    row.addEventListener("click", () => selectConnection(entry.id));
  }
  const inferred = entry.steps.some((step) => !step.observed);
  const closed = entry.result === "established" ? `${entry.initiator} ${entry.closed}` : entry.result;
  row.replaceChildren(
    cell(entry.local), cell(entry.remote), cell(entry.process),
    cell(entry.path.join(" → "), inferred ? "inferred-step" : ""),
    cell(entry.opened), cell(closed.trim()),
  );
  row.title = entry.detail;
  row.classList.toggle("has-ladder", entry.ladder || view.ladders.has(entry.id));
  if (fresh) {
    $("connections").prepend(row);
    while ($("connections").rows.length > ROWS_MAX) $("connections").lastElementChild.remove();
  }
}

function ladderReady(update) {
  for (const id of update.ids) {
    view.ladders.add(id);
    const row = document.querySelector(`#connections tr[data-id="${id}"]`);
    if (row) row.classList.add("has-ladder");
  }
  if ($("follow").checked) showLadder(update.ids[0], update.title);
}

function selectConnection(id) {
  $("follow").checked = false;
  for (const row of document.querySelectorAll("#connections tr.selected")) row.classList.remove("selected");
  const row = document.querySelector(`#connections tr[data-id="${id}"]`);
  if (row) row.classList.add("selected");
  showLadder(id, row ? `${row.cells[0].textContent} → ${row.cells[1].textContent}` : "");
}

async function showLadder(id, title) {
  view.selected = id;
  const answer = await fetch(`/ladder/${id}.json`);
  if (!answer.ok) {
    $("ladder-title").textContent = (await answer.text()).trim();
    $("ladder").hidden = true;
    $("checks").replaceChildren();
    return;
  }
  const { checks } = await answer.json();
  if (view.selected !== id) return;
  $("ladder-title").textContent = title;
  $("ladder").src = `/ladder/${id}.svg`;
  $("ladder").alt = `The ladder of ${title}`;
  $("ladder").hidden = false;
  $("checks").replaceChildren(...checks.map((check) => {
    const item = document.createElement("li");
    item.className = check.verdict.replace(" ", "-");
    item.textContent = `${check.rule}: ${check.detail}`;
    return item;
  }));
}

$("filters").addEventListener("submit", (event) => { event.preventDefault(); connect(); });
window.addEventListener("beforeunload", () => { if (view.source) view.source.close(); });
connect();
