// One EventSource and what it has said: reduce() applies the events, expand() the compact stream's
// first, Feed holds the stream, lockedRelay() shares it between tabs. Loaded by the page, kit.js and worker.js.
"use strict";

const KEEP = 2000;
const NUMBER = /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i;
const EVENTS = ["snapshot", "state", "remove", "status", "history", "ping", "busy", "expired", "revoked"];
const HEARTBEAT = 15;
const PROTOCOL = 3;

function addPoint(points, state) {
  if (!NUMBER.test(state.state)) return;
  const value = Number(state.state);
  if (points.at(-1)?.[1] !== value) points.push([Date.parse(state.last_updated) / 1000, value]);
  if (points.length > KEEP) thin(points);
}

// Past KEEP points the older half is halved: of every four, the lowest and highest stay, in order.
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

// The view, {status, reason, cause, since, heartbeat, can_call, entities, history}, or null before a snapshot.
// The only place events are applied: a snapshot makes a new view, the others change the one given.
function reduce(view, name, data) {
  if (name === "snapshot") {
    const history = {};
    for (const state of Object.values(data.entities)) {
      addPoint(history[state.entity_id] = (data.history?.[state.entity_id] ?? []).slice(-KEEP), state);
    }
    // The bridge's snapshot has no `since`: an unchanged status keeps its own. A Feed's view has one.
    const since = data.since ?? (view?.status === data.status ? view.since : Date.now());
    const heartbeat = data.heartbeat || view?.heartbeat || 0;
    return { status: data.status, reason: data.reason ?? "", cause: data.cause ?? "", since, heartbeat, can_call: data.can_call ?? view?.can_call ?? true, entities: { ...data.entities }, history };
  }
  if (!view) return view;
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

// The compact stream (docs/stream.md) as the full one's events: nothing after this knows the format.
// A number is Unix seconds, as Python's isoformat writes them (µs rounded half up, none when zero).
const isoOf = (t) => {
  if (typeof t !== "number") return t;
  let s = Math.floor(t), us = Math.round((t - s) * 1e6);
  if (us === 1e6) { s++; us = 0; }
  return new Date(s * 1000).toISOString().slice(0, 19) + (us ? "." + String(us).padStart(6, "0") : "") + "+00:00";
};
const ctx = (c, old) => (typeof c === "string" ? { ...(old ?? { parent_id: null, user_id: null }), id: c } : { ...old, ...c });

function whole(id, w) {
  if ("entity_id" in w) return w; // another shape than HA's: sent as is
  const lc = isoOf(w.lc), lu = "lu" in w ? isoOf(w.lu) : lc, s = { entity_id: id, state: w.s, attributes: w.a, last_changed: lc };
  if (w.lr !== null) s.last_reported = "lr" in w ? isoOf(w.lr) : lu;
  return Object.assign(s, { last_updated: lu, context: ctx(w.c) });
}

// null: a change to an entity `view` does not hold (a stream out of step: start over with a snapshot).
function expand(view, name, d) {
  if (name === "snapshot" && d.format) {
    const entities = {};
    for (const id in d.entities) entities[id] = whole(id, d.entities[id]);
    return [name, { ...d, entities }];
  }
  if (name === "state" && !("entity_id" in d)) return [name, whole(d.e, d)];
  if (name !== "message") return [name, d];
  const old = view?.entities[d.e];
  if (!old) return null;
  const s = { ...old };
  if ("s" in d) s.state = d.s;
  if (d.a || d["-"]) {
    s.attributes = { ...old.attributes, ...d.a };
    for (const k of d["-"] ?? []) delete s.attributes[k];
  }
  if ("lc" in d) s.last_changed = s.last_updated = isoOf(d.lc);
  if ("lu" in d) s.last_updated = isoOf(d.lu);
  if ("lr" in d) s.last_reported = isoOf(d.lr);
  else if (("lc" in d || "lu" in d) && "last_reported" in old) s.last_reported = s.last_updated;
  if ("c" in d) s.context = ctx(d.c, old.context);
  return ["state", s];
}

// One EventSource to `url` (in the compact format) and its reconnects. It tells `emit` {kind: "event", name, id, data}
// and {kind: "conn", open, refused, ended, busy, lastHeard}; current() is {kind: "view", id, snapshot, conn}.
class Feed {
  constructor(url, emit) {
    this.url = url;
    this.emit = emit;
    this.source = null;
    this.lastEventId = "";
    this.lastHeard = Date.now();
    this.busy = "";
    this.refused = false;
    this.ended = "";
    this.retry = 0;
    this.watchdog = 0;
    this.view = null;
  }

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
    const url = new URL(this.url);
    url.searchParams.set("format", "compact");
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    const source = this.source = new EventSource(url.href);
    source.onopen = () => { this.lastHeard = Date.now(); this.conn(); };
    source.onerror = () => { if (source.readyState === EventSource.CLOSED) this.closed(source, url.href); this.conn(); };
    for (const name of EVENTS) source.addEventListener(name, (event) => this.receive(name, event));
    source.onmessage = (event) => this.receive("message", event);
    this.conn();
  }

  // An HTTP error closes the EventSource for good: a 401 stays refused, anything else (a proxy's 502) is retried.
  async closed(source, url) {
    const status = await fetch(url, { method: "HEAD" }).then((r) => r.status, () => 0);
    if (source !== this.source) return;
    if (status === 401) this.refused = true;
    else this.retry = setTimeout(() => this.connect(), 5000);
    this.conn();
  }

  watch() {
    const silent = Date.now() - this.lastHeard > (this.view?.heartbeat || HEARTBEAT) * 2000 + 1000;
    if (silent && this.source?.readyState === EventSource.OPEN) this.connect();
    this.conn();
  }

  receive(kind, event) {
    this.lastHeard = Date.now();
    const expanded = expand(this.view, kind, JSON.parse(event.data));
    if (!expanded) { this.lastEventId = ""; this.connect(); return; }
    if (event.lastEventId) this.lastEventId = event.lastEventId;
    const [name, data] = expanded;
    this.view = reduce(this.view, name, data);
    if (name === "snapshot") this.busy = "";
    else if (name === "busy") this.busy = data.message;
    this.emit({ kind: "event", name, id: event.lastEventId, data });
    if ((name === "expired" || name === "revoked") && /[?&](key|token)=/.test(this.url)) {
      // The token in the URL is over: stop. (With a cookie, the browser's reconnect carries a renewed one.)
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

// Tabs share one stream without a SharedWorker (another origin's page, Chrome on Android): the tab
// holding the Web Lock `name` runs the Feed and relays it on a BroadcastChannel; a new tab says hello
// and gets the view at once; the next holder resumes from seed() ({id, view} or null). Needs https.
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
    if (resume) feed.seed(structuredClone(resume));
    feed.start();
  }));
  channel.postMessage({ kind: "hello" });
  return relay;
}
