// The live page: one card per entity, fed by the bridge's stream. Plain JS, no build step.
// Numbers get a chart (chart.js) of the snapshot's history, the live values appended as they come.
//
// Query parameters: ?bridge=https://other.bridge (default: this origin), ?key=… (sent as
// ?key= on the stream and as a Bearer token on commands), ?entity_id=…&domain=… (stream filters).
// The stream itself is in stream.js: one EventSource shared by every tab (a SharedWorker, or
// without one the tab that holds a Web Lock), or one in this tab where neither can be had.
"use strict";

const params = new URLSearchParams(location.search);
// Default ".": the folder this page came from, so it also works under a prefix (Home Assistant's Ingress).
const BRIDGE = (params.get("bridge") || ".").replace(/\/+$/, "") || ".";
const KEY = params.get("key");
const SWITCHES = ["switch", "input_boolean"]; // domains that get a toggle (turn_on / turn_off)
const CONFIRM_MS = 10000; // how long a toggle waits for the stream to confirm it
const WORKER_CHECK_MS = 250; // how often this tab asks the worker whether it lives
const WORKER_MISSES = 3; // questions left unanswered in a row: it is gone (its process crashed)

const RANGES = [3600, 21600, 86400]; // the range switch: 1 h, 6 h, 24 h
const MORE_AFTER = 300; // seconds before a range's history is asked for again

const cards = new Map(); // entity_id -> {el, state, points, chart, extra, pending, note}: state and points are the view's
const RANGE_KEY = "sse_service/range"; // the range chosen last, kept in this browser (a wall tablet keeps its 6 h)
const remembered = (() => { try { return Number(localStorage.getItem(RANGE_KEY)); } catch { return 0; } })();
let range = RANGES.includes(remembered) ? remembered : RANGES.at(-1); // seconds of history the charts show
let link = null; // where this tab's events come from: the shared worker's port, or a Feed of its own
let unanswered = 0; // questions the worker has not answered since it last said anything
let lastCheck = 0; // Date.now() of the last question
let heard = false; // any message from the stream's holder yet
let conn = { open: false, refused: false, ended: "", busy: "" }; // the stream's state, as the Feed reports it
// What the stream has said, applied by reduce() (stream.js) as the Feed applies it; the cards show it.
let view = { status: "connecting", reason: "", cause: "", since: Date.now(), heartbeat: 0, entities: {}, history: {} };
let lastHeard = Date.now(); // any event at all, pings included
let lastEventId = ""; // of the last event shown
let started = false; // a snapshot has arrived

const $ = (root, selector) => root.querySelector(selector);
// Entity text only ever goes in as textContent, never as HTML. Unchanged text is not rewritten,
// so live regions do not repeat themselves every second.
const put = (el, text) => { if (el.textContent !== text) el.textContent = text; };
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });

// --- the stream -------------------------------------------------------------------------

function streamUrl() {
  const query = new URLSearchParams();
  for (const name of ["entity_id", "domain", "key"]) if (params.has(name)) query.set(name, params.get(name));
  return new URL(`${BRIDGE}/events?${query}`, location.href).href;
}
const STREAM = streamUrl();

// Join the worker that holds the stream for this URL (the browser starts it if no tab has);
// without SharedWorker, or if it cannot run, hold a stream in this tab.
function attach() {
  if (typeof SharedWorker === "function") {
    try {
      const worker = new SharedWorker("stream.js", { name: `sse_service/${PROTOCOL} ${STREAM}` });
      const port = worker.port;
      worker.onerror = () => { if (link === port) ownFeed(); }; // the script did not load
      port.onmessage = ({ data }) => {
        if (link !== port) return;
        if (data.kind === "unsupported") ownFeed();
        else receive(data);
      };
      link = port;
      unanswered = 0;
      port.postMessage({ kind: "hello", url: STREAM, seed: seed() });
      document.documentElement.dataset.stream = "shared";
      return;
    } catch { /* e.g. a sandboxed page: no shared worker for it */ }
  }
  if (navigator.locks && typeof BroadcastChannel === "function") lockedFeed();
  else ownFeed();
}

// Without SharedWorker, the tab that holds a Web Lock holds the stream for all (stream.js, lockedRelay).
// (Web Locks need a secure context: plain http on a LAN gets ownFeed.)
function lockedFeed() {
  link = lockedRelay(`sse_service/${PROTOCOL} ${STREAM}`, STREAM, receive, seed);
  document.documentElement.dataset.stream = "lock";
}

function ownFeed() {
  const feed = new Feed(STREAM, receive);
  link = feed;
  feed.start();
  document.documentElement.dataset.stream = "tab";
}

// What this tab shows: a new worker resumes from it (see Feed.seed).
function seed() {
  return started && lastEventId ? { id: lastEventId, view } : null;
}

function detach() {
  if (link instanceof MessagePort) link.postMessage({ kind: "bye" });
  else link?.stop();
  link = null;
}

addEventListener("pagehide", detach);
addEventListener("pageshow", (event) => { if (event.persisted) attach(); }); // back from the back-forward cache

function receive(message) {
  unanswered = 0;
  heard = true;
  if (message.kind === "alive") return;
  if (message.kind === "event") {
    lastHeard = Date.now();
    handle(message.name, message.data, message.id);
  } else if (message.kind === "view") {
    if (message.snapshot) handle("snapshot", message.snapshot, message.id);
    receive(message.conn);
  } else if (message.kind === "conn") {
    conn = message;
    lastHeard = message.lastHeard;
  } else if (message.kind === "error") {
    throw new Error(`stream worker: ${message.message}`);
  }
  render();
}

// What each event changes on screen, once reduce() has applied it to the view (status: render() reads it).
const HANDLERS = {
  snapshot: onSnapshot,
  state: onState,
  remove: ({ entity_id }) => drop(entity_id),
  history: ({ history }) => {
    for (const id of Object.keys(history)) {
      if (cards.has(id)) { const card = cardFor(id); card.extra.clear(); drawChart(card); }
    }
    offerRanges();
  },
};

function handle(name, data, id) {
  if (id) lastEventId = id;
  // A state event redraws only what changed: what its card showed before is noted first.
  const before = name === "state" ? cards.get(data.entity_id) : null;
  const unit = before?.state?.attributes?.unit_of_measurement, last = before?.points.at(-1);
  view = reduce(view, name, data);
  HANDLERS[name]?.(data, unit, last);
  // Other scripts on this page can use its stream instead of opening one more.
  document.dispatchEvent(new CustomEvent("bridge-event", { detail: { name, id, data } }));
}

function onSnapshot() {
  started = true;
  for (const id of cards.keys()) if (!(id in view.entities)) drop(id);
  for (const state of Object.values(view.entities)) {
    const card = cardFor(state.entity_id);
    card.extra.clear();
    if (card.pending === state.state) settle(card, "");
    paint(card);
    drawChart(card);
  }
  offerRanges();
  if (range !== RANGES.at(-1)) for (const card of cards.values()) more(card);
  whoIsUpstream();
}

function onState(state, unit, last) {
  const card = cardFor(state.entity_id);
  if (card.pending === state.state) settle(card, "");
  paint(card);
  // A new point: one more segment on the chart, not a new chart.
  if (!card.chart || unit !== state.attributes?.unit_of_measurement) drawChart(card);
  else if (card.points.at(-1) !== last) { card.chart.append(card.points.at(-1)); extent(card); }
}

// --- cards ------------------------------------------------------------------------------

// An entity's card, made if it has none, pointed at what the view now holds for it. (A card
// that is gone keeps what it last showed: a toggle still waiting for its answer can end on it.)
function cardFor(id) {
  let card = cards.get(id);
  if (!card) {
    const el = document.getElementById("card").content.firstElementChild.cloneNode(true);
    el.dataset.entity = id;
    card = { el, chart: null, extra: new Map(), pending: null, note: "", timer: 0, toggle: $(el, ".toggle") };
    if (SWITCHES.includes(id.split(".")[0])) card.toggle.addEventListener("click", () => toggle(card));
    else { $(el, ".control").remove(); card.toggle = null; }
    cards.set(id, card);
    document.getElementById("cards").append(el);
  }
  card.state = view.entities[id];
  card.points = view.history[id];
  return card;
}

function drop(id) {
  cards.get(id)?.el.remove();
  cards.delete(id);
}

function paint(card) {
  const { el, state } = card;
  const attributes = state.attributes || {};
  const name = attributes.friendly_name || state.entity_id;
  const on = state.state === "on";
  put($(el, ".name"), name);
  put($(el, ".state"), NUMBER.test(state.state) ? state.state : words(state.state));
  put($(el, ".unit"), attributes.unit_of_measurement || "");
  el.classList.toggle("unavailable", state.state === "unavailable" || state.state === "unknown");
  if (card.toggle) {
    card.toggle.setAttribute("aria-checked", String(on));
    card.toggle.setAttribute("aria-label", name);
    card.toggle.setAttribute("aria-busy", String(Boolean(card.pending)));
    put($(el, ".note"), card.pending ? `Turning ${card.pending}…` : card.note || (readOnly() ? "read-only" : ""));
    $(el, ".note").classList.toggle("error", Boolean(card.note) && !card.pending);
  }
  ago(card);
}

// "on" -> "On", "not_home" -> "Not home": HA's machine words, readable.
const words = (text) => (text.charAt(0).toUpperCase() + text.slice(1)).replaceAll("_", " ");

// --- charts -----------------------------------------------------------------------------

// What a card's chart shows: its points, or for a range the snapshot did not hold, the
// recorder's answer (GET /api/history) followed by the points that came since.
function series(card) {
  const extra = card.extra.get(range);
  if (!extra?.points) return card.points;
  return [...extra.points, ...card.points.filter(([t]) => t > extra.until)];
}

function drawChart(card) {
  const box = $(card.el, ".chart");
  box.hidden = card.points.length === 0;
  if (box.hidden) { put($(card.el, ".range"), ""); return; }
  const name = card.state?.attributes?.friendly_name || card.state?.entity_id || "";
  card.chart ??= new Chart(box, { name });
  card.chart.name = name;
  card.chart.draw(series(card), { range, unit: card.state?.attributes?.unit_of_measurement || "" });
  extent(card);
}

// Beside the chart: the lowest and highest value in it, labelled.
function extent(card) {
  const [lo, hi] = card.chart?.extent() ?? [];
  const unit = card.state?.attributes?.unit_of_measurement;
  put($(card.el, ".range"), lo === hi ? "" : `min ${lo} · max ${hi}${unit ? ` ${unit}` : ""}`); // a flat line: the value says it all
}

// The range switch shows once the history reaches back further than half an hour.
function offerRanges() {
  const oldest = Math.min(...[...cards.values()].map((card) => card.points[0]?.[0] ?? Infinity));
  const ranges = document.getElementById("ranges");
  if (ranges.hidden && (oldest < Date.now() / 1000 - 1800 || range !== RANGES.at(-1))) ranges.hidden = false;
}

function chooseRange(seconds) {
  range = seconds;
  try { localStorage.setItem(RANGE_KEY, String(seconds)); } catch { /* private mode, sandbox: not kept */ }
  for (const button of document.querySelectorAll("#ranges button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.range) === seconds));
  }
  for (const card of cards.values()) { drawChart(card); more(card); }
}

// A range the snapshot holds too little of (not back far enough, or a handful of points in a
// long-sampled day) is asked of the recorder, with the page's read key; until it answers, and
// if it cannot (HA has no recorder), the chart shows what the snapshot had.
async function more(card) {
  const now = Date.now() / 1000, asked = range, id = card.state?.entity_id;
  const known = card.extra.get(asked);
  if (!id || !card.points.length || card.fetching === asked || (known && now - known.at < MORE_AFTER)) return;
  const inRange = card.points.filter(([t]) => t >= now - asked).length;
  if (inRange >= 60 && card.points[0][0] <= now - asked * 0.9) return;
  card.fetching = asked;
  const width = $(card.el, ".chart").clientWidth || 300;
  const query = new URLSearchParams({ since: String(Math.floor(now - asked)), points: String(Math.min(1000, Math.max(120, 2 * width))) });
  if (KEY) query.set("key", KEY);
  try {
    const response = await fetch(`${BRIDGE}/api/history/${encodeURIComponent(id)}?${query}`);
    const body = response.ok ? await response.json() : null;
    const until = Date.parse(body?.until) / 1000;
    card.extra.set(asked, body?.points?.length && until ? { at: now, until, points: body.points } : { at: now });
  } catch {
    card.extra.set(asked, { at: now }); // the bridge is away: the stream's reconnect brings a new snapshot
  } finally {
    card.fetching = 0;
  }
  if (range === asked && cards.get(id) === card) drawChart(card);
}

// "Demo" in the header and footer when the bridge runs its embedded demo (GET /healthz says).
async function whoIsUpstream() {
  const health = await fetch(`${BRIDGE}/healthz`).then((r) => r.json()).catch(() => null);
  if (!health?.upstream) return;
  const demo = Boolean(health.upstream.demo);
  document.getElementById("demo").hidden = !demo;
  put(document.getElementById("source"), demo ? "Demo data from a simulated home (no HA_URL set)" : "Live from Home Assistant");
}

function ago({ el, state }) {
  const seconds = Math.max(0, (Date.now() - Date.parse(state.last_changed)) / 1000);
  const [value, unit] =
    seconds < 60 ? [seconds, "second"] : seconds < 3600 ? [seconds / 60, "minute"]
    : seconds < 86400 ? [seconds / 3600, "hour"] : [seconds / 86400, "day"];
  put($(el, ".ago"), `Changed ${relative.format(-Math.floor(value), unit)}`);
  $(el, ".ago").title = new Date(state.last_changed).toLocaleString();
}

// --- commands ---------------------------------------------------------------------------

async function toggle(card) {
  if (card.pending || !card.state) return;
  const [domain] = card.state.entity_id.split(".");
  const want = card.state.state === "on" ? "off" : "on";
  card.pending = want;
  card.note = "";
  paint(card);
  try {
    const headers = { "content-type": "application/json" };
    if (KEY) headers.authorization = `Bearer ${KEY}`;
    const response = await fetch(`${BRIDGE}/api/services/${domain}/turn_${want}`, {
      method: "POST", headers, body: JSON.stringify({ entity_id: card.state.entity_id }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      // A person reads this: the bridge's message for a refused key is a recipe for programs.
      throw new Error(response.status === 401 || response.status === 403 ? "Not allowed with this page's key"
        : body?.error?.message || `HTTP ${response.status}`);
    }
    if (card.state.state === want) settle(card, ""); // the stream was faster than the answer
    else card.timer = setTimeout(() => settle(card, "Not confirmed by Home Assistant"), CONFIRM_MS);
  } catch (error) {
    settle(card, error instanceof TypeError ? "The bridge is unreachable" : error.message);
  }
  paint(card);
}

// The snapshot says when this viewer's key or token may call no service: its toggles are never live.
const readOnly = () => view?.can_call === false;

function settle(card, note) {
  clearTimeout(card.timer);
  card.pending = null;
  card.note = note;
  paint(card);
}

// --- connection indicator and stale banner ---------------------------------------------------

const HA_DOWN = { // upstream status -> [indicator, banner]
  disconnected: ["Home Assistant down", "Home Assistant is unreachable"],
  connecting: ["Connecting to HA…", "The bridge is still connecting to Home Assistant"],
  starting: ["HA is starting…", "Home Assistant is starting"],
  auth_invalid: ["HA rejected the token", "Home Assistant rejected the bridge's token"],
};
// A bridge of several instances says so when it is Redis, not Home Assistant, that is out of reach:
// by its status's cause, or (a bridge from before causes) in the reason's words.
const REDIS_DOWN = ["Bridge lost Redis", "The bridge cannot reach its Redis"];

function render() {
  const { refused, ended, busy } = conn;
  // A silent stream counts as closed (the Feed reopens it), and so does a silent worker (we join a new one).
  const open = conn.open && !(link instanceof MessagePort && unanswered >= WORKER_MISSES);
  const haUp = view.status === "connected";
  const redis = view.cause ? view.cause === "redis" : /^Redis\b/.test(view.reason);
  const haDown = redis ? REDIS_DOWN : HA_DOWN[view.status] ?? HA_DOWN.disconnected;
  const [state, text] =
    refused ? ["refused", ended ? "Access ended" : "Key refused"]
    : !open && !busy && !started && performance.now() < 1500 ? ["connecting", "Connecting…"] // the first try
    : !open ? ["reconnecting", busy ? "Bridge busy, retrying…" : "Reconnecting…"]
    : !haUp ? ["upstream-down", haDown[0]]
    : started ? ["live", "Live"] : ["connecting", "Connecting…"];
  document.getElementById("conn").dataset.state = state;
  put(document.getElementById("conn-text"), text);

  // The banner: what is on screen may be old.
  const banner = document.getElementById("stale");
  const why = open ? haDown[1] : ended ? `The bridge ended this view (${ended})` : busy ? `The bridge is busy (${busy})` : "No connection to the bridge";
  const since = new Date(open ? view.since : lastHeard).toLocaleTimeString();
  banner.hidden = !started || (open && haUp);
  put(banner, `${why} since ${since}. Values may be out of date.`);

  const empty = document.getElementById("empty");
  empty.hidden = cards.size > 0;
  put(empty, ended ? `The bridge ended this view: ${ended}.` : refused ? "The bridge refused the key: open this page with ?key=<read key>."
    : started && !haUp ? "Waiting for Home Assistant…" : started ? "No entities to show." : busy ? `The bridge is busy (${busy}); retrying…` : "Waiting for data…");
  for (const { toggle, el } of cards.values()) {
    if (toggle) toggle.disabled = readOnly() || !open || !haUp || el.classList.contains("unavailable");
  }
}

setInterval(() => {
  for (const card of cards.values()) { ago(card); card.chart?.tick(); }
  render();
}, 1000);
// A shared worker dies with its process (a tab's crash can take it along): join a new one.
// Asked, not timed: a silence measured by the clock is also what timers that fire at once look
// like (a wake from sleep, a throttled tab, a headless capture's virtual time), and a live worker
// must not be left for it. Checks that come at once count as one; a live worker answers between.
setInterval(() => {
  if (!heard && !holding && unanswered >= 2) holdUntilStarted(); // not a word from a new worker: see below
  if (!(link instanceof MessagePort)) return;
  const now = Date.now(), spread = now - lastCheck >= WORKER_CHECK_MS / 2;
  lastCheck = now;
  if (spread && unanswered >= WORKER_MISSES) {
    // No "bye": a slow worker keeps its stream, and a new SharedWorker of this name is that same
    // worker while it lives (it answers the hello with the current view), a new one once it died.
    link.close();
    attach();
    render();
  } else if (spread) unanswered++;
  link.postMessage({ kind: "ping" });
}, WORKER_CHECK_MS);

// A headless capture (chromium --headless --screenshot --virtual-time-budget=…, as kiosk and e-ink
// scripts take them) runs this page's clock ahead, stopping it only while the page's own requests
// are pending; a shared worker's stream is not the page's, so the budget is spent before the first
// data. A page that has not heard its new worker after two checks (at once under virtual time; on
// a real clock only a worker slow to start) keeps one request of its own open until the first
// view is on screen: the stream URL, its snapshot shown, then cancelled.
let holding = false;
async function holdUntilStarted() {
  holding = true;
  const controller = new AbortController();
  const waiting = fetch(STREAM, { headers: { accept: "text/event-stream" }, signal: controller.signal })
    .then(async (response) => {
      const body = response.body?.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (body && !started) {
        const { value, done } = await body.read();
        if (done) break;
        // Its snapshot is shown if the worker's has not come yet: the capture may be taken before.
        const first = !started && /id: (.*)\r?\nevent: snapshot\r?\ndata: (.*)\r?\n\r?\n/.exec(text += value);
        if (first) { handle("snapshot", JSON.parse(first[2]), first[1]); render(); }
      }
    })
    .catch(() => {});
  const until = setInterval(() => { if (started || refusedOrEnded()) controller.abort(); }, 50);
  await waiting;
  clearInterval(until);
  controller.abort();
}
const refusedOrEnded = () => conn.refused || Boolean(conn.ended);
for (const button of document.querySelectorAll("#ranges button")) {
  button.addEventListener("click", () => chooseRange(Number(button.dataset.range)));
  button.setAttribute("aria-pressed", String(Number(button.dataset.range) === range));
}
attach();
