// The page's connection to the bridge: one EventSource and what it has said so far. Plain JS, no build step.
//
// Browsers open at most six HTTP/1.1 connections per host, and an EventSource holds one for as
// long as its tab is open: a seventh tab of the page would never connect, and with six open no
// command gets through. So the stream lives in a SharedWorker, one per bridge and stream URL,
// that every tab of the origin shares: it relays each event to every tab, and gives a tab that
// joins late the current view at once (the last snapshot with every later event merged in).
// Where there is no SharedWorker, app.js runs a Feed in the tab itself: a stream per tab, as
// before. This one file is both: loaded by index.html for the Feed and reduce(), and the worker's script.
"use strict";

const KEEP = 2000; // points per chart kept: the snapshot's history (HISTORY_POINTS) and what the stream adds
const NUMBER = /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i; // the bridge's rule for what a numeric state is
const EVENTS = ["snapshot", "state", "remove", "status", "history", "ping", "busy", "expired", "revoked"];
const HEARTBEAT = 15; // seconds between pings at most, until a snapshot says the bridge's own
const ALIVE_MS = 250; // how often the worker tells its tabs it lives (app.js: WORKER_SILENCE_MS)
const PROTOCOL = 3; // of the messages below: part of the worker's name, so an old worker is never reused

// A chart gets a point each time the number changes, as the bridge's history does.
function addPoint(points, state) {
  if (!NUMBER.test(state.state)) return;
  const value = Number(state.state);
  if (points.at(-1)?.[1] !== value) points.push([Date.parse(state.last_updated) / 1000, value]);
  if (points.length > KEEP) thin(points);
}

// Past KEEP points (a tab open for days), the older half is halved: of every four points the
// lowest and the highest stay, in time order, so the chart keeps its shape (as the bridge does).
function thin(points) {
  const half = points.length >> 1, kept = [];
  for (let i = 0; i < half; i += 4) {
    let lo = points[i], hi = points[i];
    for (let j = i + 1; j < Math.min(i + 4, half); j++) {
      if (points[j][1] < lo[1]) lo = points[j];
      if (points[j][1] > hi[1]) hi = points[j];
    }
    if (lo === hi) kept.push(lo);
    else kept.push(...(lo[0] < hi[0] ? [lo, hi] : [hi, lo]));
  }
  points.splice(0, half, ...kept);
}

// What the stream has said so far, {status, reason, cause, since, heartbeat, entities, history},
// or null before the first snapshot. This is the only place its events are applied: the Feed keeps
// a view for tabs that join late, the page renders from its own, and so the two cannot disagree.
// A snapshot makes a new view; the other events change the one given; the rest (ping, busy…) leave it.
function reduce(view, name, data) {
  if (name === "snapshot") {
    const history = {};
    for (const state of Object.values(data.entities)) {
      addPoint(history[state.entity_id] = (data.history?.[state.entity_id] ?? []).slice(-KEEP), state);
    }
    // The bridge's snapshot has no `since`, so an unchanged status keeps its own; a view passed on by a Feed has one.
    const since = data.since ?? (view?.status === data.status ? view.since : Date.now());
    const heartbeat = data.heartbeat || view?.heartbeat || 0;
    // can_call: whether this viewer's key or token may call a service at all (false: a read-only screen).
    const can_call = data.can_call ?? view?.can_call ?? true;
    return { status: data.status, reason: data.reason ?? "", cause: data.cause ?? "", since, heartbeat, can_call, entities: { ...data.entities }, history };
  }
  if (!view) return view; // a stream always starts with a snapshot
  if (name === "state") {
    view.entities[data.entity_id] = data;
    addPoint(view.history[data.entity_id] ??= [], data);
  } else if (name === "remove") {
    delete view.entities[data.entity_id];
    delete view.history[data.entity_id];
  } else if (name === "status") {
    Object.assign(view, { status: data.status, reason: data.reason ?? "", cause: data.cause ?? "", since: Date.parse(data.since) || Date.now() });
  } else if (name === "history") {
    for (const [id, points] of Object.entries(data.history)) if (id in view.entities) view.history[id] = points.slice(-KEEP);
  }
  return view;
}

// One EventSource to `url` (absolute), its reconnects, and the current view. It tells `emit`:
//   {kind: "event", name, id, data}            every event, parsed, as it arrives
//   {kind: "conn", open, refused, busy, lastHeard}  the connection, on each change and every second
// and current() is {kind: "view", id, snapshot, conn}: a snapshot of now (null before the first).
class Feed {
  constructor(url, emit) {
    this.url = url;
    this.emit = emit;
    this.source = null;
    this.lastEventId = "";
    this.lastHeard = Date.now(); // any event at all, pings included
    this.busy = ""; // the bridge's message when it is at its stream limit (it asks us to come back later)
    this.refused = false; // the bridge answered 401: the key is missing or wrong; retrying will not help
    this.ended = ""; // why the bridge ended the stream for good (the token expired or was revoked)
    this.retry = 0;
    this.watchdog = 0;
    this.view = null; // see reduce()
  }

  // A worker that starts after another died (its process crashed) picks up where a tab was:
  // its view and last event id, so the stream resumes with exactly the events missed since.
  seed({ id, view }) {
    if (this.view || this.lastEventId || !id) return;
    this.view = view;
    this.lastEventId = id;
  }

  start() {
    if (!this.watchdog) this.watchdog = setInterval(() => this.watch(), 1000);
    if (!this.source || this.refused) { this.refused = false; this.ended = ""; this.connect(); } // a new tab tries a refused key again
  }

  stop() {
    clearInterval(this.watchdog);
    clearTimeout(this.retry);
    this.watchdog = 0;
    this.source?.close();
    this.source = null;
  }

  connect() {
    this.source?.close();
    clearTimeout(this.retry);
    // A stream we open ourselves resumes from the query; the browser's own reconnects send Last-Event-ID.
    const url = new URL(this.url);
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    const source = this.source = new EventSource(url.href);
    source.onopen = () => { this.lastHeard = Date.now(); this.conn(); };
    source.onerror = () => { if (source.readyState === EventSource.CLOSED) this.closed(source, url.href); this.conn(); };
    for (const name of EVENTS) source.addEventListener(name, (event) => this.receive(name, event));
    this.conn();
  }

  // A network error leaves readyState CONNECTING and the browser retries by itself. An HTTP
  // error closes the EventSource for good: a refused key stays refused, but anything else (a
  // proxy's 502 while the bridge restarts) is worth another try.
  async closed(source, url) {
    const status = await fetch(url, { method: "HEAD" }).then((r) => r.status, () => 0);
    if (source !== this.source) return; // stopped or replaced meanwhile
    if (status === 401) this.refused = true;
    else this.retry = setTimeout(() => this.connect(), 5000);
    this.conn();
  }

  // A half-open connection never errors: if even the pings stopped, start over (resuming).
  watch() {
    const silent = Date.now() - this.lastHeard > (this.view?.heartbeat || HEARTBEAT) * 2000 + 1000; // a ping comes every `heartbeat` s at most
    if (silent && this.source?.readyState === EventSource.OPEN) this.connect();
    this.conn();
  }

  receive(name, event) {
    this.lastHeard = Date.now();
    if (event.lastEventId) this.lastEventId = event.lastEventId;
    const data = JSON.parse(event.data);
    this.view = reduce(this.view, name, data);
    if (name === "snapshot") this.busy = "";
    else if (name === "busy") this.busy = data.message;
    this.emit({ kind: "event", name, id: event.lastEventId, data });
    if ((name === "expired" || name === "revoked") && /[?&](key|token)=/.test(this.url)) {
      // The token in the URL is over: reconnecting would only be refused. Say why, and stop.
      // (With a cookie instead, the browser's reconnect carries the one its backend renewed.)
      this.source?.close();
      this.refused = true;
      this.ended = data.message || "the token is no longer valid";
    }
    if (name === "snapshot" || name === "busy" || this.ended) this.conn();
  }

  connection() {
    const open = this.source?.readyState === EventSource.OPEN;
    return { kind: "conn", open, refused: this.refused, ended: this.ended, busy: this.busy, lastHeard: this.lastHeard };
  }

  conn() {
    this.emit(this.connection());
  }

  current() {
    return { kind: "view", id: this.lastEventId, snapshot: this.view, conn: this.connection() };
  }
}

// Without SharedWorker (Chrome on Android, some WebViews; any page that embeds the kit, since a
// SharedWorker must come from the page's own origin) the tabs still share one stream: the tab
// that holds the Web Lock `name` runs the Feed and passes on everything it says on a
// BroadcastChannel; the others listen, and a new one says hello to get the current view at
// once. When the holder closes or crashes the browser gives the lock to the next tab, which
// resumes from seed() ({id, view} of what it shows, or null). Web Locks need a secure context.
// app.js (the bridge's page) and kit.js (the elements on any page) both use it.
function lockedRelay(name, url, receive, seed) {
  const channel = new BroadcastChannel(name);
  const relay = { feed: null, release: null, stopped: false };
  relay.stop = () => { relay.stopped = true; relay.feed?.stop(); relay.release?.(); channel.close(); };
  channel.onmessage = ({ data }) => {
    if (relay.stopped) return;
    if (!relay.feed) receive(data);
    else if (data.kind === "hello") channel.postMessage(relay.feed.current());
  };
  navigator.locks.request(name, () => new Promise((release) => {
    if (relay.stopped) { release(); return; }
    relay.release = release;
    const feed = relay.feed = new Feed(url, (message) => { receive(message); channel.postMessage(message); });
    const resume = seed();
    if (resume) feed.seed(structuredClone(resume)); // a copy: the Feed reduces each event into its own view, then the tab into its
    feed.start();
  }));
  channel.postMessage({ kind: "hello" });
  return relay;
}

// --- the SharedWorker ---------------------------------------------------------------------
// Tabs connect with {kind: "hello", url, seed}; each gets current() at once, then every message of
// the Feed. {kind: "bye"} (the tab's pagehide) lets go of a tab; with no tab left the stream is
// closed, and the next hello opens it again, resuming from the last event id.

if (typeof SharedWorkerGlobalScope === "function" && self instanceof SharedWorkerGlobalScope) {
  const ports = new Set();
  let feed = null;
  const broadcast = (message) => { for (const port of ports) port.postMessage(message); };
  // A tab cannot see a worker die (its process crashed): it hears this four times a second,
  // and after three missed it starts another worker, which resumes from the tab's last id.
  setInterval(() => broadcast({ kind: "alive" }), ALIVE_MS);
  self.addEventListener("error", (event) => broadcast({ kind: "error", message: String(event.message) }));
  self.addEventListener("unhandledrejection", (event) => broadcast({ kind: "error", message: String(event.reason) }));

  self.onconnect = ({ ports: [port] }) => {
    port.onmessage = ({ data }) => {
      if (data.kind === "hello") {
        if (typeof EventSource !== "function") { port.postMessage({ kind: "unsupported" }); return; }
        feed ??= new Feed(data.url, broadcast);
        if (data.seed) feed.seed(data.seed);
        ports.add(port);
        port.postMessage(feed.current());
        feed.start();
      } else if (data.kind === "ping") {
        port.postMessage({ kind: "alive" }); // app.js asks: a tab's timers may run ahead of the clock
      } else if (data.kind === "bye") {
        ports.delete(port);
        if (!ports.size) feed?.stop();
      }
    };
  };
}
