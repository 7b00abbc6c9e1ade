"""The page's charts, measured: hand-written SVG (web/chart.js) against uPlot, for issue 15.

What the page needs: 10 charts of 24 h each, drawn at load, then a live point now and then.
For each library and for 120 (the snapshot's HISTORY_POINTS), 1 440 (one a minute), 17 280
(one every 5 s) and 86 400 (one a second) points per chart, in Debian's chromium (headless,
no GPU, as the tests run it), median of ``--reps`` fresh pages:

* ``draw``: creating the 10 charts with their data, plus a forced layout (script + layout);
* ``frame``: from the start until the next frame after that (includes paint);
* ``append``: one live point on each of the 10 charts (ours: one more segment; uPlot: setData).

And the bytes each ships, raw and gzipped. uPlot comes from the npm registry
(``npm pack uplot``, MIT) unless ``--uplot DIR`` points at its ``dist/``; it is only measured
here, never served. Run: ``.venv/bin/python bench/charts.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIZES = (120, 1440, 17280, 86400)
CHARTS = 10

PAGE = """<!doctype html><meta charset=utf-8>
<style>
  body { margin: 0; display: grid; grid-template-columns: repeat(4, 280px); gap: 8px; font: 11px system-ui; }
  .chart { position: relative; width: 280px; height: 120px; }
</style>
<body></body>"""

# Data: a day of a wavy value ending now, `n` points per chart.
SETUP = """
window.CHARTS = CHARTS_COUNT;
window.makeData = (n) => {
  const now = Date.now() / 1000, step = 86400 / n, out = [];
  for (let c = 0; c < CHARTS; c++) {
    const points = [];
    for (let i = 0; i < n; i++) {
      points.push([now - 86400 + i * step, 50 + 30 * Math.sin((i / n) * 12 + c) + 5 * Math.sin(i * 1.7)]);
    }
    out.push(points);
  }
  return out;
};
window.HOST = { className: "chart" };
window.nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
""".replace("CHARTS_COUNT", str(CHARTS))

OURS = """
async (n) => {
  const data = makeData(n);
  const hosts = data.map(() => document.body.appendChild(Object.assign(document.createElement("div"), HOST)));
  const started = performance.now();
  const charts = data.map((points, i) => {
    const chart = new Chart(hosts[i], { name: "x" });
    chart.draw(points, { range: 86400, unit: "%" });
    return chart;
  });
  document.body.getBoundingClientRect();
  const drawn = performance.now();
  await nextFrame();
  const framed = performance.now();
  const t = Date.now() / 1000;
  const a0 = performance.now();
  charts.forEach((c, i) => c.append([t + 1, data[i].at(-1)[1]]));
  document.body.getBoundingClientRect();
  const appended = performance.now();
  const full = charts.reduce((sum, chart) => sum + chart.draws, 0);
  return { draw: drawn - started, frame: framed - started, append: appended - a0, full };
}
"""

UPLOT = """
async (n) => {
  const data = makeData(n);
  const hosts = data.map(() => document.body.appendChild(Object.assign(document.createElement("div"), HOST)));
  const started = performance.now();
  const charts = data.map((points, i) => new uPlot({
    width: 280, height: 120, legend: { show: false }, cursor: { show: true },
    scales: { x: { time: true } },
    series: [{}, { stroke: "#2563eb", fill: "#2563eb22", width: 2 }],
    axes: [{ size: 20 }, { size: 40, values: (u, vals) => vals.map((v) => v + " %") }],
  }, [points.map((p) => p[0]), points.map((p) => p[1])], hosts[i]));
  document.body.getBoundingClientRect();
  const drawn = performance.now();
  await nextFrame();
  const framed = performance.now();
  const t = Date.now() / 1000;
  const a0 = performance.now();
  charts.forEach((u, i) => {
    const xs = u.data[0].concat(t + 1), ys = u.data[1].concat(data[i].at(-1)[1]);
    u.setData([xs, ys]);
  });
  document.body.getBoundingClientRect();
  const appended = performance.now();
  return { draw: drawn - started, frame: framed - started, append: appended - a0 };
}
"""


def uplot_dist(given: str | None) -> Path:
    if given:
        return Path(given)
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is not installed: pass --uplot DIR (uPlot's dist/)")
    where = Path(tempfile.mkdtemp(prefix="uplot-"))
    subprocess.run([npm, "pack", "uplot", "--silent"], cwd=where, check=True, capture_output=True)
    (tarball,) = where.glob("uplot-*.tgz")
    with tarfile.open(tarball) as tar:
        tar.extractall(where, filter="data")
    return where / "package" / "dist"


def weight(*files: Path) -> tuple[int, int]:
    raw = b"".join(f.read_bytes() for f in files)
    return len(raw), len(gzip.compress(raw, 9))


async def measure(uplot: Path, reps: int) -> dict[str, dict[int, dict[str, float]]]:
    results: dict[str, dict[int, dict[str, float]]] = {"svg (web/chart.js)": {}, "uPlot": {}}
    async with async_playwright() as playwright:
        executable = shutil.which("chromium") or "chromium"
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        for name, scripts, run in (
            ("svg (web/chart.js)", [WEB / "chart.js"], OURS),
            ("uPlot", [uplot / "uPlot.iife.min.js"], UPLOT),
        ):
            for n in SIZES:
                runs = []
                for _ in range(reps):
                    page = await browser.new_page(viewport={"width": 1200, "height": 800})
                    await page.set_content(PAGE)
                    if name == "uPlot":
                        await page.add_style_tag(path=str(uplot / "uPlot.min.css"))
                    for script in scripts:
                        await page.add_script_tag(path=str(script))
                    await page.add_script_tag(content=SETUP)
                    runs.append(await page.evaluate(run, n))
                    await page.close()
                results[name][n] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uplot", help="uPlot's dist/ directory (default: npm pack uplot)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    uplot = uplot_dist(args.uplot)
    results = asyncio.run(measure(uplot, args.reps))

    print(f"{CHARTS} charts of 24 h, median of {args.reps} fresh pages, ms")
    print(f"{'':20} {'points/chart':>12} {'draw':>8} {'frame':>8} {'append':>8}")
    for name, by_size in results.items():
        for n, r in by_size.items():
            redrawn = f"  ({r['full'] - CHARTS:.0f} appends needed a full draw)" if "full" in r else ""
            print(f"{name:20} {n:>12,} {r['draw']:>8.1f} {r['frame']:>8.1f} {r['append']:>8.2f}{redrawn}")
    ours, uplots = weight(WEB / "chart.js"), weight(uplot / "uPlot.iife.min.js", uplot / "uPlot.min.css")
    print("\nbytes shipped (raw / gzip -9)")
    print(f"{'svg (web/chart.js)':20} {ours[0]:>8,} / {ours[1]:>6,}  (unminified, comments included)")
    print(f"{'uPlot 1.6 min+css':20} {uplots[0]:>8,} / {uplots[1]:>6,}  (plus glue for tooltip, keyboard, ranges)")
    page = weight(*sorted(WEB.glob("*.*")))
    print(f"{'the whole page':20} {page[0]:>8,} / {page[1]:>6,}  (web/: html, css, app.js, stream.js, chart.js)")
    if args.json:
        print(json.dumps({"timings_ms": results, "bytes": {"svg": ours, "uplot": uplots}}))


if __name__ == "__main__":
    main()
