// Live values on any page: <live-value>, <live-chart>, <live-toggle>, <live-status>. See docs/embedding.md, kit.d.ts.
"use strict";
(() => {
  if (customElements.get("live-value")) return;
  const script = document.currentScript;
  const BASE = new URL(".", script.src).href;
  const SCRIPT_KEY = script.dataset.key || "";
  const SWITCHES = ["switch", "input_boolean", "light", "fan"];
  const CONFIRM_MS = 10000;
  const RANGES = [3600, 21600, 86400];

  const load = (name) => new Promise((resolve, reject) => {
    document.head.append(Object.assign(document.createElement("script"), { src: BASE + name, onload: resolve, onerror: reject }));
  });
  const streamJs = load("stream.js");
  let chartJs = null;

  // One stream per key, of the union of its elements' entities; a new entity reopens it with the larger union.
  const hubs = new Map();
  class Hub {
    constructor(key) {
      this.key = key;
      this.els = new Set();
      this.view = null;
      this.conn = { open: false, refused: false, ended: "", busy: "" };
      this.link = null;
      this.ids = null;
      this.lastId = "";
      this.base = BASE; // where commands and history go
    }
    add(el) { this.els.add(el); this.schedule(); }
    remove(el) { this.els.delete(el); }
    schedule() { if (this.fed) return; clearTimeout(this.timer); this.timer = setTimeout(() => streamJs.then(() => this.connect()), 0); }
    connect() {
      const wanted = new Set([...this.els].map((el) => el.entity).filter(Boolean));
      if (this.link && [...wanted].every((id) => this.ids.has(id))) return;
      this.link?.stop();
      this.ids = wanted;
      const query = new URLSearchParams();
      if (wanted.size) query.set("entity_id", [...wanted].sort().join(","));
      if (this.key) query.set("key", this.key);
      const url = `${BASE}events?${query}`;
      const seed = () => (this.view && this.lastId && [...wanted].every((id) => id in this.view.entities) ? { id: this.lastId, view: this.view } : null);
      if (navigator.locks && typeof BroadcastChannel === "function") {
        this.link = lockedRelay(`sse_service/kit/${PROTOCOL} ${url}`, url, (m) => this.receive(m), seed);
      } else { // no secure context, no Web Locks: a stream per tab
        this.link = new Feed(url, (m) => this.receive(m));
        this.link.start();
      }
    }
    receive(message) {
      if (message.kind === "event") this.apply(message.name, message.data, message.id);
      else if (message.kind === "view") {
        if (message.snapshot) this.apply("snapshot", message.snapshot, message.id);
        this.receive(message.conn);
      } else if (message.kind === "conn") {
        this.conn = message;
        for (const el of this.els) el.render();
      }
    }
    apply(name, data, id) {
      if (id) this.lastId = id;
      this.view = reduce(this.view, name, data);
      for (const el of this.els) if (!data.entity_id || data.entity_id === el.entity || !el.entity) el.render(name, data);
      document.dispatchEvent(new CustomEvent("live-event", { detail: { name, id, data } }));
    }
    get live() { return this.conn.open && this.view?.status === "connected"; }
  }
  const hubFor = (el) => {
    const key = el.closest("[data-key]")?.dataset.key ?? SCRIPT_KEY;
    if (!hubs.has(key)) hubs.set(key, new Hub(key));
    return hubs.get(key);
  };
  setInterval(() => { for (const hub of hubs.values()) for (const el of hub.els) el.tick?.(); }, 1000);

  // Colours: --live-accent, -ok, -bad, -muted, -line, -surface; shapes: ::part; the font is the page's.
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`
:host{--a:var(--live-accent,#2563eb);--ok:var(--live-ok,#15803d);--bad:var(--live-bad,#b91c1c);--m:var(--live-muted,#6b7280);--l:var(--live-line,#e5e7eb);--s:var(--live-surface,#fff)}
@media (prefers-color-scheme:dark){:host{--a:var(--live-accent,#58a6ff);--ok:var(--live-ok,#3fb950);--bad:var(--live-bad,#f85149);--m:var(--live-muted,#8b949e);--l:var(--live-line,#30363d);--s:var(--live-surface,#161b22)}}
:host([hidden]),[hidden]{display:none!important}
[part~=value]{font-variant-numeric:tabular-nums}
[part~=unit]{color:var(--m);font-size:.8em}
:host([data-state=unavailable]) [part~=value]{color:var(--m)}
button{font:inherit;color:inherit}
[part~=switch]{position:relative;width:3.25em;height:1.9em;padding:0;border:0;border-radius:999px;background:var(--l);cursor:pointer;vertical-align:middle;transition:background .2s}
[part~=switch][aria-checked=true]{background:var(--ok)}
[part~=switch]:disabled{cursor:not-allowed;opacity:.45}
:focus-visible{outline:3px solid var(--a);outline-offset:2px}
[part~=knob]{position:absolute;top:.2em;left:.2em;width:1.5em;height:1.5em;border-radius:50%;background:#fff;box-shadow:0 1px 3px #0004;transition:transform .2s}
[aria-checked=true] [part~=knob]{transform:translateX(1.35em)}
[aria-busy=true] [part~=knob]{transform:translateX(.675em)}
[part~=note]{margin-left:.6em;font-size:.85em;color:var(--m)}
:host([data-phase=failed]) [part~=note]{color:var(--bad)}
[part~=dot]{display:inline-block;width:.6em;height:.6em;margin-right:.4em;border-radius:50%;background:var(--m)}
:host([data-state=live]) [part~=dot]{background:var(--ok)}
:host([data-state=down]) [part~=dot],:host([data-state=refused]) [part~=dot]{background:var(--bad)}
:host(live-chart){display:block}
[part~=ranges]{display:inline-flex;border:1px solid var(--l);border-radius:999px;overflow:hidden}
[part~=ranges] button{border:0;background:none;padding:.15em .6em;font-size:.8em;cursor:pointer}
[part~=ranges] button[aria-pressed=true]{background:var(--a);color:var(--s)}
.chart{position:relative;height:var(--live-chart-height,7.5em);margin:.25em 0}
.plot{display:block;width:100%;height:100%;overflow:visible;touch-action:pan-y;cursor:crosshair}
.plot:focus{outline:none}
.line{fill:none;stroke:var(--a);stroke-width:2;stroke-linejoin:round}
.area{fill:color-mix(in srgb,var(--a) 14%,transparent)}
.grid line{stroke:var(--l);shape-rendering:crispEdges}
.grid .axis,.grid .tick{stroke:var(--m)}
.plot text{fill:var(--m);font-size:11px;font-variant-numeric:tabular-nums}
.value-label{text-anchor:end;dominant-baseline:middle}
.time-label{text-anchor:middle}
.last{fill:var(--a);stroke:var(--s);stroke-width:1.5}
.rule{stroke:var(--m);stroke-dasharray:3 3}
.mark{fill:var(--s);stroke:var(--a);stroke-width:2}
.tip{position:absolute;z-index:1;pointer-events:none;display:flex;flex-direction:column;padding:.25em .5em;border:1px solid var(--l);border-radius:.4em;white-space:nowrap;background:var(--s);font-size:.8em}
.tip span{color:var(--m)}
@media (prefers-reduced-motion:reduce){*{transition:none!important}}`);

  const words = (text) => (text.charAt(0).toUpperCase() + text.slice(1)).replaceAll("_", " ");
  const put = (el, text) => { if (el.textContent !== text) el.textContent = text; };
  const make = (parent, tag, part, attributes = {}) => {
    const el = Object.assign(document.createElement(tag), attributes);
    if (part) el.setAttribute("part", part);
    parent.append(el);
    return el;
  };
  const own = (el, name, value) => { if (!el.hasAttribute(name) || el[`kit-${name}`]) { el.setAttribute(name, value); el[`kit-${name}`] = true; } };

  class LiveElement extends HTMLElement {
    static observedAttributes = ["entity", "attribute", "digits"];
    connectedCallback() {
      if (!this.shadowRoot) { this.attachShadow({ mode: "open" }).adoptedStyleSheets = [sheet]; this.build(this.shadowRoot); }
      this.hub = hubFor(this);
      this.hub.add(this);
      this.render("draw");
    }
    disconnectedCallback() { this.hub?.remove(this); }
    attributeChangedCallback() { if (this.hub) { this.hub.schedule(); this.render("draw"); } }
    get entity() { return this.getAttribute("entity") || ""; }
    get state() { return this.hub?.view?.entities[this.entity]; }
    get label() { return this.getAttribute("label") || this.state?.attributes?.friendly_name || this.entity; }
    get locale() { return this.closest("[lang]")?.lang || undefined; }
  }

  class LiveValue extends LiveElement {
    build(root) {
      this.value = make(root, "span", "value");
      this.number = make(this.value, "span", "number");
      this.unit = make(this.value, "span", "unit");
    }
    render() {
      const state = this.state;
      own(this, "role", "status");
      own(this, "aria-label", this.label);
      if (!state) { put(this.number, this.hub?.view ? "—" : "…"); put(this.unit, ""); return; }
      const name = this.getAttribute("attribute");
      const text = String((name ? state.attributes?.[name] : state.state) ?? "");
      put(this.number, NUMBER.test(text) ? format(text, this.getAttribute("digits"), this.locale) : words(text));
      this.dataset.value = this.number.textContent; // for a DOM dump
      const unit = name ? this.getAttribute("unit") : state.attributes?.unit_of_measurement;
      put(this.unit, unit ? ` ${unit}` : ""); // a space: copied or read aloud, "50 %" stays two words
      this.dataset.state = state.state === "unavailable" || state.state === "unknown" ? "unavailable" : "ok";
    }
  }
  // digits="1" fixes the decimals; without it a value keeps those the bridge gave ("50.0" stays 50.0).
  const format = (text, digits, locale) => {
    const places = digits != null && digits !== "" ? Number(digits) : (text.split(".")[1] ?? "").replace(/e.*/i, "").length;
    return new Intl.NumberFormat(locale, { minimumFractionDigits: places, maximumFractionDigits: places }).format(Number(text));
  };

  // A switch: calls turn_on / turn_off, data-phase pending, confirmed (by the stream) or failed.
  class LiveToggle extends LiveElement {
    build(root) {
      this.button = make(root, "button", "switch", { type: "button" });
      this.button.setAttribute("role", "switch");
      make(this.button, "span", "knob");
      this.note = make(root, "span", "note");
      this.note.setAttribute("aria-live", "polite");
      this.button.addEventListener("click", () => this.toggle());
    }
    get allowed() { return mayCall(this.hub?.key, this.entity.split(".")[0]); }
    render() {
      const state = this.state, on = state?.state === "on", ro = this.hub?.view?.can_call === false;
      this.button.setAttribute("aria-checked", String(on));
      this.button.setAttribute("aria-label", this.label);
      this.button.setAttribute("aria-busy", String(Boolean(this.pending)));
      if (this.pending && state?.state === this.pending) this.settle("confirmed", "");
      const unavailable = !state || state.state === "unavailable" || state.state === "unknown";
      this.button.disabled = !this.allowed || ro || !this.hub?.live || unavailable;
      this.button.hidden = !this.allowed;
      put(this.note, this.pending ? `Turning ${this.pending}…` : !this.allowed ? (state ? words(state.state) : "") : this.message || (ro ? "read-only" : ""));
    }
    async toggle() {
      const state = this.state;
      if (this.pending || !state) return;
      const want = state.state === "on" ? "off" : "on";
      this.pending = want;
      this.dataset.phase = "pending";
      this.render();
      try {
        const headers = { "content-type": "application/json" };
        if (this.hub.key) headers.authorization = `Bearer ${this.hub.key}`;
        const response = await fetch(`${this.hub.base}api/services/${state.entity_id.split(".")[0]}/turn_${want}`, {
          method: "POST", headers, body: JSON.stringify({ entity_id: state.entity_id }),
        });
        if (!response.ok) {
          const body = await response.json().catch(() => null);
          throw new Error([401, 403].includes(response.status) ? "Not allowed with this page's key" : body?.error?.message || `HTTP ${response.status}`);
        }
        if (this.state?.state === want) this.settle("confirmed", "");
        else if (this.pending) this.timer = setTimeout(() => this.settle("failed", "Not confirmed by Home Assistant"), CONFIRM_MS);
      } catch (error) {
        this.settle("failed", error instanceof TypeError ? "The bridge is unreachable" : error.message);
      }
    }
    settle(phase, message) {
      clearTimeout(this.timer);
      this.pending = null;
      this.message = message;
      this.dataset.phase = phase;
      this.note.className = phase === "failed" ? "error" : "";
      this.render();
    }
  }
  // What a key may call: a token's `services` claim says; of any key, the snapshot's can_call.
  const mayCall = (key, domain) => {
    if (!SWITCHES.includes(domain)) return false;
    const parts = (key || "").split(".");
    if (parts.length !== 3) return true;
    try {
      const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
      const globs = typeof claims.services === "string" ? claims.services.split(",") : claims.services ?? [];
      return ["turn_on", "turn_off"].every((s) => globs.some((g) => new RegExp(`^${g.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`).test(`${domain}.${s}`)));
    } catch { return true; }
  };

  class LiveStatus extends LiveElement {
    build(root) { make(root, "span", "dot"); this.text = make(root, "span", "text"); }
    render() {
      const { conn, view } = this.hub ?? {};
      if (!conn) return;
      const [state, text] = conn.refused ? ["refused", conn.ended ? "Access ended" : "Key refused"]
        : !conn.open ? ["reconnecting", conn.busy ? "Bridge busy, retrying…" : view ? "Reconnecting…" : "Connecting…"]
        : !view ? ["connecting", "Connecting…"]
        : view.status === "connected" ? ["live", "Live"]
        : view.status === "starting" ? ["down", "Home Assistant is starting…"]
        : ["down", view.cause === "redis" ? "Bridge lost Redis" : "Home Assistant down"];
      this.dataset.state = state;
      own(this, "role", "status");
      own(this, "aria-label", "Connection");
      put(this.text, text);
    }
  }

  // The entity's chart (chart.js) with its history and a 1 h / 6 h / 24 h switch (or the range attribute).
  class LiveChart extends LiveElement {
    static observedAttributes = ["entity", "range"];
    get range() { const range = Number(this.getAttribute("range")); return RANGES.includes(range) ? range : 86400; }
    build(root) {
      this.extra = new Map();
      const ranges = this.buttons = make(root, "div", "ranges", { role: "group", ariaLabel: "Chart range" });
      for (const seconds of RANGES) {
        const button = make(ranges, "button", "range", { type: "button", textContent: `${seconds / 3600} h` });
        button.dataset.range = seconds;
        button.addEventListener("click", () => this.setAttribute("range", seconds));
      }
      this.box = make(root, "div", "chart", { className: "chart" });
      (chartJs ??= load("chart.js")).then(() => this.render("draw"));
    }
    connectedCallback() { super.connectedCallback(); if (this.range !== 86400) this.more(); }
    attributeChangedCallback(name) {
      if (name !== "range" || !this.box) return super.attributeChangedCallback();
      this.render("draw");
      this.more();
    }
    points() {
      const points = this.hub?.view?.history[this.entity] ?? [];
      const extra = this.extra.get(this.range);
      return extra?.points ? [...extra.points, ...points.filter(([t]) => t > extra.until)] : points;
    }
    render(name, data) {
      for (const b of this.buttons.children) b.setAttribute("aria-pressed", String(Number(b.dataset.range) === this.range));
      if (name === "history" && !data.history[this.entity]) return;
      if (name === "snapshot" || name === "history") {
        this.extra.clear();
        if (this.range !== 86400) this.more();
      } else if (name !== "state" && name !== "draw") return;
      const points = this.points();
      this.box.hidden = !points.length || typeof Chart !== "function";
      if (this.box.hidden) return;
      const unit = this.state?.attributes?.unit_of_measurement || "";
      this.chart ??= new Chart(this.box, { name: this.label });
      this.chart.name = this.label;
      if (name !== "state" || !this.chart.series.length || unit !== this.chart.unit) this.chart.draw(points, { range: this.range, unit });
      else if (points.at(-1) !== this.chart.series.at(-1)) this.chart.append(points.at(-1));
      this.dispatchEvent(new Event("draw"));
    }
    tick() { this.chart?.tick(); }
    // A range the stream's history holds too little of is asked of the recorder, again after five minutes.
    async more() {
      const now = Date.now() / 1000, asked = this.range, known = this.extra.get(asked), points = this.hub?.view?.history[this.entity] ?? [];
      if (!points.length || this.fetching === asked || (known && now - known.at < 300)) return;
      if (points.filter(([t]) => t >= now - asked).length >= 60 && points[0][0] <= now - asked * 0.9) return;
      this.fetching = asked;
      const query = new URLSearchParams({ since: String(Math.floor(now - asked)), points: String(Math.min(1000, Math.max(120, 2 * (this.box.clientWidth || 300)))) });
      if (this.hub.key) query.set("key", this.hub.key);
      const body = await fetch(`${this.hub.base}api/history/${encodeURIComponent(this.entity)}?${query}`).then((r) => (r.ok ? r.json() : null), () => null);
      const until = Date.parse(body?.until) / 1000;
      this.extra.set(asked, body?.points?.length && until ? { at: now, until, points: body.points } : { at: now });
      this.fetching = 0;
      if (this.range === asked) this.render("draw");
    }
  }

  // A page that holds the stream itself (the bridge's own) feeds a hub: LiveKit.feed(key, base).receive(message).
  window.LiveKit = {
    feed(key, base) {
      if (!hubs.has(key)) hubs.set(key, new Hub(key));
      return Object.assign(hubs.get(key), { fed: true, base });
    },
  };

  streamJs.then(() => {
    customElements.define("live-value", LiveValue);
    customElements.define("live-toggle", LiveToggle);
    customElements.define("live-status", LiveStatus);
    customElements.define("live-chart", LiveChart);
  });
})();
