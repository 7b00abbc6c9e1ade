// The live page: one card per entity, made of the kit's elements (kit.js: <live-value>, <live-chart>,
// <live-toggle>), fed by the bridge's stream. Plain JS, no build step. This file holds the stream
// (a SharedWorker shared by every tab, or without one the tab that holds a Web Lock, or a stream in
// this tab), hands what it says to the kit (LiveKit.feed), and shows what the cards do not: the
// connection, the banner, the range switch for every chart, when each entity last changed.
//
// Query parameters: ?bridge=https://other.bridge (default: this page's folder), ?key=… (sent as
// ?key= on the stream and as a Bearer token on commands), ?entity_id=…&domain=… (stream filters).
"use strict";

const params = new URLSearchParams(location.search);
// Default ".": the folder this page came from, so it also works under a prefix (Home Assistant's Ingress).
const BRIDGE = (params.get("bridge") || ".").replace(/\/+$/, "") || ".";
const KEY = params.get("key");
const SWITCHES = ["switch", "input_boolean"]; // domains that get a toggle (turn_on / turn_off)
const WORKER_CHECK_MS = 250; // how often this tab asks the worker whether it lives
const WORKER_MISSES = 3; // questions left unanswered in a row: it is gone (its process crashed)
const RANGES = [3600, 21600, 86400]; // the range switch: 1 h, 6 h, 24 h

const cards = new Map(); // entity_id -> {el, graph (its <live-chart>), chart (the graph's Chart)}
const RANGE_KEY = "sse_service/range"; // the range chosen last, kept in this browser (a wall tablet keeps its 6 h)
const remembered = (() => { try { return Number(localStorage.getItem(RANGE_KEY)); } catch { return 0; } })();
let range = RANGES.includes(remembered) ? remembered : RANGES.at(-1); // seconds of history the charts show
let hub = null; // the kit's hub for this page: it applies each event (reduce(), stream.js) and renders the elements
let link = null; // where this tab's events come from: the shared worker's port, or a Feed of its own
let unanswered = 0; // questions the worker has not answered since it last said anything
let lastCheck = 0; // Date.now() of the last question
let heard = false; // any message from the stream's holder yet
let conn = { open: false, refused: false, ended: "", busy: "" }; // the stream's state, as the Feed reports it
const loaded = Date.now();
let lastHeard = Date.now(); // any event at all, pings included
let lastEventId = ""; // of the last event shown
let started = false; // a snapshot has arrived

const $ = (root, selector) => root.querySelector(selector);
// Entity text only ever goes in as textContent. Unchanged text is not rewritten.
const put = (el, text) => { if (el.textContent !== text) el.textContent = text; };
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
// What the stream has said (hub.view), or before a snapshot what the page assumes.
const view = () => hub?.view ?? { status: "connecting", reason: "", cause: "", since: loaded, entities: {}, history: {} };

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
      const worker = new SharedWorker("worker.js", { name: `sse_service/${PROTOCOL} ${STREAM}` });
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
  return started && lastEventId ? { id: lastEventId, view: hub.view } : null;
}

function detach() {
  if (link instanceof MessagePort) link.postMessage({ kind: "bye" });
  else link?.stop();
  link = null;
}

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

// The kit applies the event and renders its elements; the page adds or drops cards around them.
function handle(name, data, id) {
  if (id) lastEventId = id;
  hub.receive({ kind: "event", name, data, id });
  if (name === "snapshot") onSnapshot();
  else if (name === "state") cardFor(data.entity_id);
  else if (name === "remove") drop(data.entity_id);
  else if (name === "history") offerRanges();
  // Other scripts on this page can use its stream instead of opening one more.
  document.dispatchEvent(new CustomEvent("bridge-event", { detail: { name, id, data } }));
}

function onSnapshot() {
  started = true;
  for (const id of cards.keys()) if (!(id in hub.view.entities)) drop(id);
  for (const id of Object.keys(hub.view.entities)) cardFor(id);
  offerRanges();
  whoIsUpstream();
}

// --- cards ------------------------------------------------------------------------------

// An entity's card: its name, then the kit's elements for it (a toggle for a switch only).
function cardFor(id) {
  let card = cards.get(id);
  if (!card) {
    const el = document.getElementById("card").content.firstElementChild.cloneNode(true);
    el.dataset.entity = id;
    for (const live of el.querySelectorAll("live-value, live-chart, live-toggle")) live.setAttribute("entity", id);
    if (!SWITCHES.includes(id.split(".")[0])) $(el, ".control").remove();
    const graph = $(el, "live-chart");
    graph.setAttribute("range", range);
    card = { id, el, graph, get chart() { return graph.chart; } };
    cards.set(id, card);
    document.getElementById("cards").append(el);
  }
  paint(card);
  return card;
}

function drop(id) {
  cards.get(id)?.el.remove();
  cards.delete(id);
}

// What the card shows around the elements: the name, when it changed, the chart's lowest and highest.
function paint(card) {
  const state = hub.view?.entities[card.id];
  if (!state) return;
  put($(card.el, ".name"), state.attributes?.friendly_name || state.entity_id);
  const seconds = Math.max(0, (Date.now() - Date.parse(state.last_changed)) / 1000);
  const [value, unit] =
    seconds < 60 ? [seconds, "second"] : seconds < 3600 ? [seconds / 60, "minute"]
    : seconds < 86400 ? [seconds / 3600, "hour"] : [seconds / 86400, "day"];
  const ago = $(card.el, ".ago");
  put(ago, `Changed ${relative.format(-Math.floor(value), unit)}`);
  const title = new Date(state.last_changed).toLocaleString();
  if (ago.title !== title) ago.title = title;
  const [lo, hi] = card.chart?.extent() ?? [];
  const measure = state.attributes?.unit_of_measurement;
  put($(card.el, ".range"), lo === hi ? "" : `min ${lo} · max ${hi}${measure ? ` ${measure}` : ""}`); // a flat line: the value says it all
}

// --- the range switch -------------------------------------------------------------------

// Shown once the history reaches back further than half an hour.
function offerRanges() {
  const oldest = Math.min(...[...cards.keys()].map((id) => hub.view.history[id]?.[0]?.[0] ?? Infinity));
  const ranges = document.getElementById("ranges");
  if (ranges.hidden && (oldest < Date.now() / 1000 - 1800 || range !== RANGES.at(-1))) ranges.hidden = false;
}

function chooseRange(seconds) {
  range = seconds;
  try { localStorage.setItem(RANGE_KEY, String(seconds)); } catch { /* private mode, sandbox: not kept */ }
  for (const button of document.querySelectorAll("#ranges button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.range) === seconds));
  }
  for (const card of cards.values()) card.graph.setAttribute("range", seconds); // each chart asks the recorder if it must
}

// "Demo" in the header and footer when the bridge runs its embedded demo (GET /healthz says).
async function whoIsUpstream() {
  const health = await fetch(`${BRIDGE}/healthz`).then((r) => r.json()).catch(() => null);
  if (!health?.upstream) return;
  const demo = Boolean(health.upstream.demo);
  document.getElementById("demo").hidden = !demo;
  put(document.getElementById("source"), demo ? "Demo data from a simulated home (no HA_URL set)" : "Live from Home Assistant");
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
  const { status, cause, reason, since } = view();
  // A silent stream counts as closed (the Feed reopens it), and so does a silent worker (we join a new one).
  const open = conn.open && !(link instanceof MessagePort && unanswered >= WORKER_MISSES);
  // The toggles follow the connection as this page sees it.
  if (hub.conn.open !== open || hub.conn.refused !== refused) hub.receive({ ...conn, kind: "conn", open });
  const haUp = status === "connected";
  const redis = cause ? cause === "redis" : /^Redis\b/.test(reason);
  const haDown = redis ? REDIS_DOWN : HA_DOWN[status] ?? HA_DOWN.disconnected;
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
  banner.hidden = !started || (open && haUp);
  put(banner, `${why} since ${new Date(open ? since : lastHeard).toLocaleTimeString()}. Values may be out of date.`);

  const empty = document.getElementById("empty");
  empty.hidden = cards.size > 0;
  put(empty, ended ? `The bridge ended this view: ${ended}.` : refused ? "The bridge refused the key: open this page with ?key=<read key>."
    : started && !haUp ? "Waiting for Home Assistant…" : started ? "No entities to show." : busy ? `The bridge is busy (${busy}); retrying…` : "Waiting for data…");
}

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

// The kit defines its elements once it has stream.js; then this page starts.
customElements.whenDefined("live-value").then(() => {
  const cardsEl = document.getElementById("cards");
  cardsEl.dataset.key = KEY ?? ""; // the kit's elements find their hub by key
  hub = LiveKit.feed(cardsEl.dataset.key, new URL(`${BRIDGE}/`, location.href).href);
  // A chart drawn (chart.js loaded, the recorder answered): its lowest and highest beside it at once.
  cardsEl.addEventListener("draw", ({ target }) => { const card = cards.get(target.entity); if (card) paint(card); }, true);
  addEventListener("pagehide", detach);
  addEventListener("pageshow", (event) => { if (event.persisted) attach(); }); // back from the back-forward cache
  setInterval(() => {
    for (const card of cards.values()) paint(card);
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
  for (const button of document.querySelectorAll("#ranges button")) {
    button.addEventListener("click", () => chooseRange(Number(button.dataset.range)));
    button.setAttribute("aria-pressed", String(Number(button.dataset.range) === range));
  }
  attach();
});
