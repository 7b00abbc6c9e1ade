// The bridge page's SharedWorker: one stream for every tab of the origin (browsers open at most six
// HTTP/1.1 connections per host, and an EventSource holds one per tab). It relays each event to every
// tab, and gives a tab that joins late the current view at once. kit.js cannot use one: a SharedWorker
// must come from the page's own origin; it has lockedRelay() (stream.js) instead.
//
// Tabs connect with {kind: "hello", url, seed}; each gets current() at once, then every message of the
// Feed. {kind: "bye"} (pagehide) lets go of a tab; with none left the stream closes, and the next hello
// opens it again, resuming from the last event id.
"use strict";
importScripts("stream.js");

const ALIVE_MS = 250; // how often the worker tells its tabs it lives (app.js also asks: {kind: "ping"})
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
