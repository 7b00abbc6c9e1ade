// Charts for the page: hand-written SVG, no library, no build step (bench/charts.py compares
// this with uPlot). One Chart per number: a time axis, a value axis with the unit, a tooltip
// under the pointer or a finger, and the keyboard (focus the chart, then ←/→, Home/End, Esc).
//
//   const chart = new Chart(host, { name: "Home battery" });
//   chart.draw(points, { range: 86400, unit: "%" });   // [[epoch_seconds, value], …], oldest first
//   chart.append([t, v]);  // a live point: one more segment, no redraw while it fits the axes
//   chart.tick();          // every second or so: redraws once time has run past the right edge
//
// Entity text (the unit, the name) only ever goes in as textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TIME_STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const HEADROOM = 0.04; // room on the right for live points, as a share of the time span
const MIN_SPAN = 60; // seconds: a single point still gets a minute of axis
const hour = new Intl.DateTimeFormat(undefined, { hour: "numeric" });
const hm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const hms = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dayHm = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function node(name, attributes, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  parent?.append(el);
  return el;
}

// A round step for about `count` ticks over `span`: 1, 2, 2.5 or 5 times a power of ten.
function niceStep(span, count) {
  const raw = span / count, power = 10 ** Math.floor(Math.log10(raw));
  return power * ([1, 2, 2.5, 5, 10].find((m) => m * power >= raw) ?? 10);
}

// The time of day a point shows in the tooltip: with the weekday when it is not today.
function when(t) {
  const date = new Date(t * 1000);
  return date.toDateString() === new Date().toDateString() ? hms.format(date) : dayHm.format(date);
}

class Chart {
  constructor(host, { name = "" } = {}) {
    this.host = host;
    this.name = name;
    this.series = []; // what is drawn: [[t, v], …], oldest first
    this.first = 0; // index in series of the first point in view
    this.range = 86400;
    this.unit = "";
    this.axes = null; // {x0, x1, y0, y1, left, top, width, height} of the last full draw
    this.cursor = -1; // index of the point under the tooltip, or -1
    this.draws = 0; // full draws, and points appended without one (the tests read both)
    this.appends = 0;
    this.line = ""; // the line's path, extended by append()

    const svg = this.svg = node("svg", { class: "plot", tabindex: "0", role: "img" }, host);
    this.grid = node("g", { class: "grid" }, svg);
    this.labels = node("g", { class: "labels" }, svg);
    node("clipPath", { id: `clip-${++Chart.count}` }, svg).append(this.clipRect = node("rect", {}));
    const plot = node("g", { "clip-path": `url(#clip-${Chart.count})` }, svg);
    this.area = node("path", { class: "area" }, plot);
    this.path = node("path", { class: "line" }, plot);
    this.rule = node("line", { class: "rule", visibility: "hidden" }, svg);
    this.last = node("circle", { class: "last", r: "3" }, svg);
    this.mark = node("circle", { class: "mark", r: "4", visibility: "hidden" }, svg);
    this.tip = document.createElement("div");
    this.tip.className = "tip";
    this.tip.hidden = true;
    this.tip.setAttribute("aria-live", "polite");
    this.tipValue = this.tip.appendChild(document.createElement("strong"));
    this.tipTime = this.tip.appendChild(document.createElement("span"));
    host.append(this.tip);

    // The pointer: a mouse hovers, a finger touches and slides (touch-action: pan-y in the CSS
    // keeps vertical scrolling for the page and gives horizontal moves to the chart).
    svg.addEventListener("pointermove", (e) => this.point(e));
    svg.addEventListener("pointerdown", (e) => this.point(e));
    svg.addEventListener("pointerleave", (e) => { if (e.pointerType === "mouse") this.hide(); });
    svg.addEventListener("pointerup", (e) => {
      if (e.pointerType !== "mouse") { clearTimeout(this.tipTimer); this.tipTimer = setTimeout(() => this.hide(), 3000); }
    });
    svg.addEventListener("pointercancel", () => this.hide());
    svg.addEventListener("focus", () => this.show(this.cursor >= this.first ? this.cursor : this.series.length - 1));
    svg.addEventListener("blur", () => this.hide());
    svg.addEventListener("keydown", (e) => this.key(e));
    new ResizeObserver(() => { if (this.host.clientWidth !== this.axes?.outer) this.draw(); }).observe(host);
  }

  // A full draw: axes, grid, labels, line. `points` is copied (live points go through append).
  draw(points = this.series, { range = this.range, unit = this.unit } = {}) {
    this.series = points === this.series ? points : points.slice();
    this.range = range;
    this.unit = unit;
    const outer = this.host.clientWidth, height = this.host.clientHeight;
    if (!outer || !height || !this.series.length) { this.axes = null; return; }
    this.draws++;
    const now = Date.now() / 1000;
    const last = this.series.at(-1)[0];
    const end = Math.max(now, last);
    let x0 = Math.max(end - range, this.series[0][0]);
    if (end - x0 < MIN_SPAN) x0 = end - MIN_SPAN;
    const x1 = end + (end - x0) * HEADROOM;
    // The points in view, and the one before (the line comes in from the left edge).
    let first = this.series.findIndex(([t]) => t >= x0);
    if (first < 0) first = this.series.length - 1;
    this.first = first;
    const shown = this.series.slice(Math.max(0, first - 1));
    let lo = Infinity, hi = -Infinity;
    for (let i = first; i < this.series.length; i++) { const v = this.series[i][1]; if (v < lo) lo = v; if (v > hi) hi = v; }
    const [y0, y1, step] = this.scale(lo, hi);
    this.lo = lo;
    this.hi = hi;

    // Value labels decide the left margin; the unit goes on the top one.
    const ticks = [];
    for (let v = y0; v <= y1 + step / 2; v += step) ticks.push(v);
    const texts = ticks.map((v, i) => (i === ticks.length - 1 && unit ? `${number.format(v)} ${unit}` : number.format(v)));
    const left = Math.min(outer / 2, 8 + 6.5 * Math.max(...texts.map((t) => t.length)));
    const top = 8, bottom = 18, width = Math.max(1, outer - left - 6), plotHeight = Math.max(1, height - top - bottom);
    this.axes = { x0, x1, end, y0, y1, left, top, width, height: plotHeight, outer };
    this.svg.setAttribute("viewBox", `0 0 ${outer} ${height}`);
    this.svg.setAttribute("width", outer);
    this.svg.setAttribute("height", height);
    for (const [k, v] of Object.entries({ x: left, y: top - 4, width, height: plotHeight + 8 })) this.clipRect.setAttribute(k, v);

    this.grid.replaceChildren();
    this.labels.replaceChildren();
    ticks.forEach((v, i) => {
      const y = this.y(v).toFixed(1);
      node("line", { x1: left, x2: left + width, y1: y, y2: y }, this.grid);
      node("text", { x: left - 5, y, class: "value-label" }, this.labels).textContent = texts[i];
    });
    const span = x1 - x0;
    // The shortest step whose labels (as wide as their text, about) leave room between them.
    const formatFor = (step) => (step < 60 ? hms : step % 3600 ? hm : hour);
    const fits = (step) => (step / span) * width >= formatFor(step).format(new Date(x1 * 1000)).length * 5.5 + 10;
    const tStep = TIME_STEPS.find(fits) ?? 86400;
    const format = formatFor(tStep);
    const zone = new Date().getTimezoneOffset() * 60; // ticks on round local times
    for (let t = Math.ceil((x0 - zone) / tStep) * tStep + zone; t <= x1; t += tStep) {
      const x = this.x(t), text = format.format(new Date(t * 1000)), half = text.length * 3 + 2;
      if (x - half < left - 4 || x + half > outer) continue; // clear of the value labels and the edge
      node("line", { x1: x.toFixed(1), x2: x.toFixed(1), y1: top + plotHeight, y2: top + plotHeight + 4, class: "tick" }, this.grid);
      node("text", { x: x.toFixed(1), y: height - 3, class: "time-label" }, this.labels).textContent = text;
    }
    node("line", { x1: left, x2: left + width, y1: top + plotHeight, y2: top + plotHeight, class: "axis" }, this.grid);

    this.line = this.pathOf(shown);
    this.paint();
    this.svg.setAttribute("aria-label", `${this.name}: chart of the last ${this.spanText()}, ${this.extentText()}. Arrow keys read the values.`);
    if (this.cursor >= 0) this.show(Math.min(Math.max(this.cursor, first), this.series.length - 1));
  }

  // Round axis bounds with about three steps; a flat line gets some room above and below.
  scale(lo, hi) {
    if (hi - lo < 1e-9) { const pad = Math.abs(lo) * 0.05 || 1; lo -= pad; hi += pad; }
    const step = niceStep(hi - lo, 3);
    return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step, step];
  }

  x(t) { const a = this.axes; return a.left + ((t - a.x0) / (a.x1 - a.x0)) * a.width; }
  y(v) { const a = this.axes; return a.top + (1 - (v - a.y0) / (a.y1 - a.y0)) * a.height; }

  // The line through `points`; more points than pixels become each pixel column's min and max.
  pathOf(points) {
    const out = [];
    if (points.length > this.axes.width * 2) {
      let column = NaN, lo = null, hi = null;
      const flush = () => { if (lo) { out.push(lo[0] <= hi[0] ? lo : hi); if (lo !== hi) out.push(lo[0] <= hi[0] ? hi : lo); } };
      for (const p of points) {
        const c = Math.round(this.x(p[0]));
        if (c !== column) { flush(); column = c; lo = hi = p; }
        else { if (p[1] < lo[1]) lo = p; if (p[1] > hi[1]) hi = p; }
      }
      flush();
    } else out.push(...points);
    return out.map(([t, v], i) => `${i ? "L" : "M"}${this.x(t).toFixed(1)},${this.y(v).toFixed(1)}`).join("");
  }

  paint() {
    const a = this.axes;
    const [t, v] = this.series.at(-1);
    const firstX = this.x(this.series[Math.max(0, this.first - 1)][0]).toFixed(1);
    const bottom = a.top + a.height;
    this.path.setAttribute("d", this.line);
    this.area.setAttribute("d", `${this.line}L${this.x(t).toFixed(1)},${bottom}L${firstX},${bottom}Z`);
    this.last.setAttribute("cx", this.x(t).toFixed(1));
    this.last.setAttribute("cy", this.y(v).toFixed(1));
    this.svg.dataset.points = String(this.series.length - this.first);
    this.svg.dataset.draws = String(this.draws);
    this.svg.dataset.appends = String(this.appends);
  }

  // A live point: one more segment on the line while it fits the axes; otherwise a full draw.
  append(point) {
    const previous = this.series.at(-1);
    if (previous && point[0] < previous[0]) return; // older than what is drawn: a snapshot will bring it
    this.series.push(point);
    const a = this.axes;
    if (!a || point[0] > a.x1 || point[1] < a.y0 || point[1] > a.y1 || this.first >= this.series.length - 1) {
      this.draw();
      return;
    }
    this.appends++;
    this.line += `L${this.x(point[0]).toFixed(1)},${this.y(point[1]).toFixed(1)}`;
    if (point[1] < this.lo) this.lo = point[1];
    if (point[1] > this.hi) this.hi = point[1];
    this.paint();
    if (this.cursor === this.series.length - 2) this.show(this.series.length - 1); // a tooltip on the last point follows it
  }

  // Time passes: once it is past the right edge (or the range's left edge moved on) draw again.
  tick(now = Date.now() / 1000) {
    if (this.axes && now > this.axes.x1) this.draw();
  }

  extent() { return this.axes ? [this.lo, this.hi] : null; }
  extentText() {
    const unit = this.unit ? ` ${this.unit}` : "";
    return this.lo === this.hi ? `${number.format(this.lo)}${unit}` : `min ${number.format(this.lo)}, max ${number.format(this.hi)}${unit}`;
  }
  spanText() {
    const span = this.axes.end - this.axes.x0;
    return span >= 3600 ? `${Math.round(span / 3600)} h` : `${Math.max(1, Math.round(span / 60))} min`;
  }

  // --- the tooltip ---------------------------------------------------------------------------

  point(event) {
    if (!this.axes) return;
    clearTimeout(this.tipTimer);
    const rect = this.svg.getBoundingClientRect();
    const a = this.axes;
    const t = a.x0 + ((event.clientX - rect.left - a.left) / a.width) * (a.x1 - a.x0);
    this.show(this.nearest(t));
  }

  nearest(t) {
    let lo = this.first, hi = this.series.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.series[mid][0] < t) lo = mid + 1; else hi = mid; }
    return lo > this.first && t - this.series[lo - 1][0] < this.series[lo][0] - t ? lo - 1 : lo;
  }

  show(index) {
    if (!this.axes || index < 0 || index >= this.series.length) return;
    this.cursor = index;
    const [t, v] = this.series[index];
    const x = this.x(t), y = this.y(v), a = this.axes;
    for (const [k, value] of Object.entries({ x1: x, x2: x, y1: a.top, y2: a.top + a.height })) this.rule.setAttribute(k, value.toFixed(1));
    this.mark.setAttribute("cx", x.toFixed(1));
    this.mark.setAttribute("cy", y.toFixed(1));
    this.rule.setAttribute("visibility", "visible");
    this.mark.setAttribute("visibility", "visible");
    const text = `${number.format(v)}${this.unit ? ` ${this.unit}` : ""}`;
    if (this.tipValue.textContent !== text) this.tipValue.textContent = text;
    this.tipTime.textContent = when(t);
    this.tip.hidden = false;
    // Above the point (below it when there is no room), centred on it, clear of the value labels.
    const tipWidth = this.tip.offsetWidth, tipHeight = this.tip.offsetHeight;
    const left = Math.max(Math.min(a.left, a.outer - tipWidth), Math.min(a.outer - tipWidth, x - tipWidth / 2));
    const top = y - tipHeight - 8 >= 0 ? y - tipHeight - 8 : y + 8;
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${Math.min(top, a.top + a.height + 18 - tipHeight)}px`;
    this.svg.dataset.cursor = String(index - this.first);
  }

  hide() {
    clearTimeout(this.tipTimer);
    this.cursor = -1;
    this.tip.hidden = true;
    this.rule.setAttribute("visibility", "hidden");
    this.mark.setAttribute("visibility", "hidden");
    delete this.svg.dataset.cursor;
  }

  key(event) {
    const last = this.series.length - 1;
    const at = this.cursor >= this.first ? this.cursor : last;
    const jump = Math.max(1, Math.round((last - this.first) / 10));
    const moves = {
      ArrowLeft: at - (event.shiftKey ? jump : 1), ArrowRight: at + (event.shiftKey ? jump : 1),
      PageUp: at - jump, PageDown: at + jump, Home: this.first, End: last,
    };
    if (event.key === "Escape") this.hide();
    else if (event.key in moves) this.show(Math.max(this.first, Math.min(last, moves[event.key])));
    else return;
    event.preventDefault();
  }
}
Chart.count = 0;
