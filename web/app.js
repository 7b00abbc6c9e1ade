// The live page: one card per entity, fed by the bridge's stream. Plain JS, no build step.
//
// Query parameters: ?bridge=https://other.bridge (default: this origin), ?key=… (sent as
// ?key= on the stream and as a Bearer token on commands), ?entity_id=…&domain=… (stream filters).
// The stream itself is in stream.js: one EventSource shared by every tab (a SharedWorker), or
// one in this tab where the browser has no SharedWorker.
"use strict";

const params = new URLSearchParams(location.search);
const BRIDGE = (params.get("bridge") || "").replace(/\/+$/, "");
const KEY = params.get("key");
const SWITCHES = ["switch", "input_boolean"]; // domains that get a toggle (turn_on / turn_off)
const CONFIRM_MS = 10000; // how long a toggle waits for the stream to confirm it
const WORKER_SILENCE_MS = 2000; // the worker speaks every second: past this it is gone (its process crashed)

const cards = new Map(); // entity_id -> {el, state, points, pending, note}
let link = null; // where this tab's events come from: the shared worker's port, or a Feed of its own
let linkHeard = Date.now(); // the last message from it
let conn = { open: false, refused: false, busy: "" }; // the stream's state, as the Feed reports it
let upstream = { status: "connecting", since: Date.now() };
let lastHeard = Date.now(); // any event at all, pings included
let lastEventId = ""; // of the last event shown
let heartbeat = 0; // as the snapshot said: passed on in a seed
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
      linkHeard = Date.now();
      port.postMessage({ kind: "hello", url: STREAM, seed: seed() });
      document.documentElement.dataset.stream = "shared";
      return;
    } catch { /* e.g. a sandboxed page: no shared worker for it */ }
  }
  ownFeed();
}

function ownFeed() {
  const feed = new Feed(STREAM, receive);
  link = feed;
  feed.start();
  document.documentElement.dataset.stream = "tab";
}

// What this tab shows, in the snapshot's shape: a new worker resumes from it (see Feed.seed).
function seed() {
  if (!started || !lastEventId) return null;
  const entities = {}, history = {};
  for (const [id, card] of cards) { entities[id] = card.state; history[id] = card.points; }
  return { id: lastEventId, view: { status: upstream.status, since: upstream.since, heartbeat, entities, history } };
}

function detach() {
  if (link instanceof MessagePort) link.postMessage({ kind: "bye" });
  else link?.stop();
  link = null;
}

addEventListener("pagehide", detach);
addEventListener("pageshow", (event) => { if (event.persisted) attach(); }); // back from the back-forward cache

function receive(message) {
  linkHeard = Date.now();
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

const HANDLERS = {
  snapshot: onSnapshot,
  state: onState,
  remove: ({ entity_id }) => { cards.get(entity_id)?.el.remove(); cards.delete(entity_id); },
  status: ({ status, since }) => { upstream = { status, since: Date.parse(since) || Date.now() }; },
  history: ({ history }) => {
    for (const [id, points] of Object.entries(history)) {
      const card = cards.get(id);
      if (card) { card.points = points.slice(-POINTS); paint(card); }
    }
  },
};

function handle(name, data, id) {
  if (id) lastEventId = id;
  HANDLERS[name]?.(data);
  // Other scripts on this page can use its stream instead of opening one more.
  document.dispatchEvent(new CustomEvent("bridge-event", { detail: { name, id, data } }));
}

function onSnapshot({ status, since, heartbeat: seconds, entities, history }) {
  started = true;
  if (seconds) heartbeat = seconds;
  if (since) upstream = { status, since }; // a view from the worker knows since when
  else if (status !== upstream.status) upstream = { status, since: Date.now() };
  for (const [id, card] of cards) if (!(id in entities)) { card.el.remove(); cards.delete(id); }
  for (const state of Object.values(entities)) {
    const card = cardFor(state.entity_id);
    card.points = (history?.[state.entity_id] ?? []).slice(-POINTS);
    onState(state);
  }
}

function onState(state) {
  const card = cardFor(state.entity_id);
  card.state = state;
  addPoint(card.points, state);
  if (card.pending === state.state) settle(card, "");
  paint(card);
}

// --- cards ------------------------------------------------------------------------------

function cardFor(id) {
  let card = cards.get(id);
  if (card) return card;
  const el = document.getElementById("card").content.firstElementChild.cloneNode(true);
  el.dataset.entity = id;
  card = { el, state: null, points: [], pending: null, note: "", timer: 0, toggle: $(el, ".toggle") };
  if (SWITCHES.includes(id.split(".")[0])) card.toggle.addEventListener("click", () => toggle(card));
  else { $(el, ".control").remove(); card.toggle = null; }
  cards.set(id, card);
  document.getElementById("cards").append(el);
  return card;
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
    put($(el, ".note"), card.pending ? `Turning ${card.pending}…` : card.note);
    $(el, ".note").classList.toggle("error", Boolean(card.note) && !card.pending);
  }
  sparkline(card);
  ago(card);
}

// "on" -> "On", "not_home" -> "Not home": HA's machine words, readable.
const words = (text) => (text.charAt(0).toUpperCase() + text.slice(1)).replaceAll("_", " ");

function sparkline({ el, points }) {
  const svg = $(el, ".spark");
  svg.toggleAttribute("hidden", points.length === 0); // an <svg> has no .hidden property
  put($(el, ".range"), "");
  if (!points.length) return;
  const pts = points.length > 1 ? points : [[points[0][0] - 1, points[0][1]], points[0]];
  const t0 = pts[0][0], t1 = pts.at(-1)[0];
  let lo = Math.min(...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
  if (hi > lo) put($(el, ".range"), `${lo} – ${hi}`);
  else { lo -= 1; hi += 1; }
  const x = (t) => ((t - t0) / (t1 - t0 || 1)) * 100;
  const y = (v) => 30 - ((v - lo) / (hi - lo)) * 28;
  const line = pts.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(2)},${y(v).toFixed(2)}`).join("");
  $(svg, ".line").setAttribute("d", line);
  $(svg, ".area").setAttribute("d", `${line}L100,32L0,32Z`);
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
      throw new Error(body?.error?.message || `HTTP ${response.status}`);
    }
    if (card.state.state === want) settle(card, ""); // the stream was faster than the answer
    else card.timer = setTimeout(() => settle(card, "Not confirmed by Home Assistant"), CONFIRM_MS);
  } catch (error) {
    settle(card, error instanceof TypeError ? "The bridge is unreachable" : error.message);
  }
  paint(card);
}

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
  auth_invalid: ["HA rejected the token", "Home Assistant rejected the bridge's token"],
};

function render() {
  const { refused, busy } = conn;
  // A silent stream counts as closed (the Feed reopens it), and so does a silent worker (we join a new one).
  const open = conn.open && !(link instanceof MessagePort && Date.now() - linkHeard > WORKER_SILENCE_MS);
  const haUp = upstream.status === "connected";
  const haDown = HA_DOWN[upstream.status] ?? HA_DOWN.disconnected;
  const [state, text] =
    refused ? ["refused", "Key refused"]
    : !open && !busy && !started && performance.now() < 1500 ? ["connecting", "Connecting…"] // the first try
    : !open ? ["reconnecting", busy ? "Bridge busy, retrying…" : "Reconnecting…"]
    : !haUp ? ["upstream-down", haDown[0]]
    : started ? ["live", "Live"] : ["connecting", "Connecting…"];
  document.getElementById("conn").dataset.state = state;
  put(document.getElementById("conn-text"), text);

  // The banner: what is on screen may be old.
  const banner = document.getElementById("stale");
  const why = open ? haDown[1] : busy ? `The bridge is busy (${busy})` : "No connection to the bridge";
  const since = new Date(open ? upstream.since : lastHeard).toLocaleTimeString();
  banner.hidden = !started || (open && haUp);
  put(banner, `${why} since ${since}. Values may be out of date.`);

  const empty = document.getElementById("empty");
  empty.hidden = cards.size > 0;
  put(empty, refused ? "The bridge refused the key: open this page with ?key=<read key>."
    : started ? "No entities to show." : busy ? `The bridge is busy (${busy}); retrying…` : "Waiting for data…");
  for (const { toggle, el } of cards.values()) {
    if (toggle) toggle.disabled = !open || !haUp || el.classList.contains("unavailable");
  }
}

setInterval(() => {
  for (const card of cards.values()) ago(card);
  // A shared worker dies with its process (a tab's crash can take it along): join a new one.
  if (link instanceof MessagePort && Date.now() - linkHeard > WORKER_SILENCE_MS) { detach(); attach(); }
  render();
}, 1000);
attach();
