// Charts: hand-written SVG, no library (bench/charts.py compares it with uPlot). A time axis, a value
// axis with the unit, a tooltip under the pointer or finger, and the keyboard (←/→, Home/End, Esc).
//   const chart = new Chart(host, { name }); chart.draw(points, { range, unit }) with [[epoch s, value], …];
//   chart.append([t, v]) adds a live point (one segment, no redraw while it fits); chart.tick() each second.
// Entity text (the unit, the name) only goes in as textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TIME_STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const HEADROOM = 0.04;
const MIN_SPAN = 60;
const dateFormat = (options) => new Intl.DateTimeFormat(undefined, options);
const hour = dateFormat({ hour: "numeric" });
const hm = dateFormat({ hour: "2-digit", minute: "2-digit" });
const hms = dateFormat({ hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dayHm = dateFormat({ weekday: "short", hour: "2-digit", minute: "2-digit" });
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const fixed = (x) => x.toFixed(1);

function attrs(el, attributes) {
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  return el;
}
function node(name, attributes, parent) {
  const el = attrs(document.createElementNS(SVG, name), attributes);
  parent?.append(el);
  return el;
}

function niceStep(span, count) {
  const raw = span / count, power = 10 ** Math.floor(Math.log10(raw));
  return power * ([1, 2, 2.5, 5, 10].find((m) => m * power >= raw) ?? 10);
}

function when(t) {
  const date = new Date(t * 1000);
  return date.toDateString() === new Date().toDateString() ? hms.format(date) : dayHm.format(date);
}

class Chart {
  constructor(host, { name = "" } = {}) {
    this.host = host;
    this.name = name;
    this.series = [];
    this.first = 0;
    this.range = 86400;
    this.unit = "";
    this.axes = null;
    this.cursor = -1;
    this.draws = 0;
    this.appends = 0;
    this.line = "";

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
    const tip = this.tip = attrs(document.createElement("div"), { class: "tip", "aria-live": "polite", hidden: "" });
    this.tipValue = tip.appendChild(document.createElement("strong"));
    this.tipTime = tip.appendChild(document.createElement("span"));
    host.append(tip);

    // A mouse hovers, a finger touches and slides (touch-action: pan-y leaves vertical scrolling to the page).
    const on = (type, handler) => svg.addEventListener(type, handler);
    on("pointermove", (e) => this.point(e));
    on("pointerdown", (e) => this.point(e));
    on("pointerleave", (e) => { if (e.pointerType === "mouse") this.hide(); });
    on("pointerup", (e) => {
      if (e.pointerType !== "mouse") { clearTimeout(this.tipTimer); this.tipTimer = setTimeout(() => this.hide(), 3000); }
    });
    on("pointercancel", () => this.hide());
    on("focus", () => this.show(this.cursor >= this.first ? this.cursor : this.series.length - 1));
    on("blur", () => this.hide());
    on("keydown", (e) => this.key(e));
    new ResizeObserver(() => { if (this.host.clientWidth !== this.axes?.outer) this.draw(); }).observe(host);
  }

  // A full draw: axes, grid, labels, line. `points` is copied (live points come through append).
  draw(points = this.series, { range = this.range, unit = this.unit } = {}) {
    this.series = points === this.series ? points : points.slice();
    this.range = range;
    this.unit = unit;
    const outer = this.host.clientWidth, height = this.host.clientHeight, series = this.series;
    if (!outer || !height || !series.length) { this.axes = null; return; }
    this.draws++;
    const end = Math.max(Date.now() / 1000, series.at(-1)[0]);
    let x0 = Math.max(end - range, series[0][0]);
    if (end - x0 < MIN_SPAN) x0 = end - MIN_SPAN;
    const x1 = end + (end - x0) * HEADROOM;
    let first = series.findIndex(([t]) => t >= x0);
    if (first < 0) first = series.length - 1;
    this.first = first;
    let lo = Infinity, hi = -Infinity;
    for (let i = first; i < series.length; i++) { const v = series[i][1]; if (v < lo) lo = v; if (v > hi) hi = v; }
    const [y0, y1, step] = this.scale(lo, hi);
    this.lo = lo;
    this.hi = hi;

    const ticks = [];
    for (let v = y0; v <= y1 + step / 2; v += step) ticks.push(v);
    const texts = ticks.map((v, i) => (i === ticks.length - 1 && unit ? `${number.format(v)} ${unit}` : number.format(v)));
    const left = Math.min(outer / 2, 8 + 6.5 * Math.max(...texts.map((t) => t.length)));
    const top = 8, width = Math.max(1, outer - left - 6), plotHeight = Math.max(1, height - top - 18), bottom = top + plotHeight;
    this.axes = { x0, x1, end, y0, y1, left, top, width, height: plotHeight, outer };
    attrs(this.svg, { viewBox: `0 0 ${outer} ${height}`, width: outer, height });
    attrs(this.clipRect, { x: left, y: top - 4, width, height: plotHeight + 8 });

    this.grid.replaceChildren();
    this.labels.replaceChildren();
    ticks.forEach((v, i) => {
      const y = fixed(this.y(v));
      node("line", { x1: left, x2: left + width, y1: y, y2: y }, this.grid);
      node("text", { x: left - 5, y, class: "value-label" }, this.labels).textContent = texts[i];
    });
    const span = x1 - x0;
    const formatFor = (s) => (s < 60 ? hms : s % 3600 ? hm : hour);
    const tStep = TIME_STEPS.find((s) => (s / span) * width >= formatFor(s).format(new Date(x1 * 1000)).length * 5.5 + 10) ?? 86400;
    const format = formatFor(tStep);
    const zone = new Date().getTimezoneOffset() * 60;
    for (let t = Math.ceil((x0 - zone) / tStep) * tStep + zone; t <= x1; t += tStep) {
      const x = this.x(t), text = format.format(new Date(t * 1000)), half = text.length * 3 + 2;
      if (x - half < left - 4 || x + half > outer) continue;
      node("line", { x1: fixed(x), x2: fixed(x), y1: bottom, y2: bottom + 4, class: "tick" }, this.grid);
      node("text", { x: fixed(x), y: height - 3, class: "time-label" }, this.labels).textContent = text;
    }
    node("line", { x1: left, x2: left + width, y1: bottom, y2: bottom, class: "axis" }, this.grid);

    this.line = this.pathOf(series.slice(Math.max(0, first - 1)));
    this.paint();
    this.svg.setAttribute("aria-label", `${this.name}: chart of the last ${this.spanText()}, ${this.extentText()}. Arrow keys read the values.`);
    if (this.cursor >= 0) this.show(Math.min(Math.max(this.cursor, first), series.length - 1));
  }

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
    return out.map(([t, v], i) => `${i ? "L" : "M"}${fixed(this.x(t))},${fixed(this.y(v))}`).join("");
  }

  paint() {
    const [t, v] = this.series.at(-1), bottom = this.axes.top + this.axes.height;
    this.path.setAttribute("d", this.line);
    this.area.setAttribute("d", `${this.line}L${fixed(this.x(t))},${bottom}L${fixed(this.x(this.series[Math.max(0, this.first - 1)][0]))},${bottom}Z`);
    attrs(this.last, { cx: fixed(this.x(t)), cy: fixed(this.y(v)) });
    Object.assign(this.svg.dataset, { points: this.series.length - this.first, draws: this.draws, appends: this.appends });
  }

  append(point) {
    const previous = this.series.at(-1);
    if (previous && point[0] < previous[0]) return;
    this.series.push(point);
    const a = this.axes;
    if (!a || point[0] > a.x1 || point[1] < a.y0 || point[1] > a.y1 || this.first >= this.series.length - 1) {
      this.draw();
      return;
    }
    this.appends++;
    this.line += `L${fixed(this.x(point[0]))},${fixed(this.y(point[1]))}`;
    if (point[1] < this.lo) this.lo = point[1];
    if (point[1] > this.hi) this.hi = point[1];
    this.paint();
    if (this.cursor === this.series.length - 2) this.show(this.series.length - 1);
  }

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


  point(event) {
    if (!this.axes) return;
    clearTimeout(this.tipTimer);
    const a = this.axes;
    this.show(this.nearest(a.x0 + ((event.clientX - this.svg.getBoundingClientRect().left - a.left) / a.width) * (a.x1 - a.x0)));
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
    attrs(this.rule, { x1: fixed(x), x2: fixed(x), y1: fixed(a.top), y2: fixed(a.top + a.height), visibility: "visible" });
    attrs(this.mark, { cx: fixed(x), cy: fixed(y), visibility: "visible" });
    const text = `${number.format(v)}${this.unit ? ` ${this.unit}` : ""}`;
    if (this.tipValue.textContent !== text) this.tipValue.textContent = text;
    this.tipTime.textContent = when(t);
    this.tip.hidden = false;
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
    const step = event.shiftKey ? jump : 1;
    const moves = { ArrowLeft: at - step, ArrowRight: at + step, PageUp: at - jump, PageDown: at + jump, Home: this.first, End: last };
    if (event.key === "Escape") this.hide();
    else if (event.key in moves) this.show(Math.max(this.first, Math.min(last, moves[event.key])));
    else return;
    event.preventDefault();
  }
}
Chart.count = 0;
