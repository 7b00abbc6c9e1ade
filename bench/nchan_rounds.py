#!/usr/bin/env python3
"""Ours next to Nchan in the shared ssebench harness, interleaved over rounds, as medians.

Runs ssebench (``--ssebench``, default ``../shared/ssebench`` from the repository root) once per
target and round, through its ``run.sh`` (it raises ``ulimit -n`` and pins the runner), with the
server on CPU 0 and the load on CPU 1. The targets:

* ``nchan``: nginx + Nchan, ssebench's own target (``--pad`` makes its messages HA-sized);
* ``ours``: this tree's ``python -m sse_service`` (the repository's ``.venv`` python, ``--python``)
  through ssebench's ``cmd`` target, ``--sse-path /events --health-path /readyz``, with
  ``MAX_STREAMS_PER_IP`` and ``MAX_STREAMS`` raised to 100000 in its environment;
* ``ours-compact``: the same, with ``--sse-path '/events?format=compact'`` (LF-framed frames,
  no ``event:`` line for a change; ssebench's subscriber keeps the query string and takes the
  framing from the first body line, and finds ``"t"``/``"seq"`` in the change's ``"a":{...}``).

The order rotates each round: round 1 nchan, ours, ours-compact; round 2 ours-compact, nchan,
ours; round 3 ours, ours-compact, nchan; and so on. Each run writes its results JSON to its own
temporary ``--out`` (and logs to its own ``--rundir``), so nothing is written into ssebench's
folder. The markdown table (medians over rounds, a line per round with the raw figures, ratios
to Nchan) is printed and written to ``bench/results/nchan-rounds-<stamp>.md``, with every run's
records in ``nchan-rounds-<stamp>.json``.

**µs per delivery** is not a field of ssebench's JSON. It is computed as ssebench's README and
the 2026-12-06 table do: the server's CPU seconds in the measurement window divided by the
deliveries the subscribers received in that window, i.e.
``result.server.cpu_pct / 100 * result.window_s / result.deliveries * 1e6`` (``cpu_pct`` is
utime+stime of the server's process tree over the window, rounded by ssebench to 0.1 %).
``p50``/``p99`` are ``result.latency_ms``; KiB per idle connection is
``result.server.kib_per_conn`` of the idle test; missing/dup are ``missing_total``/``dup_total``.
A round's figure is the median of its repeats (``--repeats``, default 1); the table's figure is
the median of the rounds' figures; the ratios are of those medians.

Full run (nine runs of about 45 s each, about 7 minutes; wants two quiet cores):

    .venv/bin/python bench/nchan_rounds.py

Tiny run, to check that everything works end to end:

    .venv/bin/python bench/nchan_rounds.py --rounds 1 --clients 100 --duration 3 --idle-clients 200
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("nchan", "ours", "ours-compact")
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
OURS_ENV = {"MAX_STREAMS_PER_IP": "100000", "MAX_STREAMS": "100000"}
SSE_PATHS = {"ours": "/events", "ours-compact": "/events?format=compact"}

Record = dict[str, Any]


@dataclass
class Run:
    """One target's ssebench run in one round."""

    round: int
    position: int  # 1-based place in the round's order
    target: str
    argv: list[str]
    returncode: int | None = None
    json_path: Path | None = None
    records: list[Record] = field(default_factory=list)
    problem: str | None = None


def order(round_number: int, targets: Sequence[str]) -> list[str]:
    """The targets' order in a round (1-based): rotated right by one each round."""
    n = len(targets)
    shift = (round_number - 1) % n if n else 0
    return [targets[(i - shift) % n] for i in range(n)]


def missing_prerequisites(ssebench: Path) -> list[str]:
    """What the harness needs and this machine lacks (empty: it can run)."""
    lacks = [f"{ssebench / name} is missing" for name in ("run.sh", "run.py") if not (ssebench / name).is_file()]
    if shutil.which("nginx") is None:
        lacks.append("nginx is not on PATH")
    if not NCHAN_MODULE.exists():
        lacks.append(f"{NCHAN_MODULE} (libnginx-mod-nchan) is missing")
    if shutil.which("taskset") is None:
        lacks.append("taskset is not on PATH")
    return lacks


def run_argv(args: argparse.Namespace, target: str, out: Path, rundir: Path) -> list[str]:
    """The run.sh command line for one target."""
    argv = ["bash", str(args.ssebench / "run.sh")]
    if target == "nchan":
        argv += ["--targets", "nchan"]
    else:
        command = f"{shlex.quote(str(args.python))} -m sse_service --host 127.0.0.1 --port {{port}}"
        argv += ["--targets", "cmd", "--cmd", command, "--sse-path", SSE_PATHS[target], "--health-path", "/readyz"]
    argv += ["--clients", args.clients, "--rates", args.rates, "--repeats", str(args.repeats), "--pad", str(args.pad)]
    if args.duration is not None:
        argv += ["--duration", f"{args.duration:g}"]
    if args.idle_clients is not None:
        argv += ["--idle-clients", str(args.idle_clients)]
    argv += list(args.extra)
    argv += ["--out", str(out), "--rundir", str(rundir)]
    return argv


def run_one(args: argparse.Namespace, run: Run, out: Path) -> None:
    """Run ssebench for one target; read its results JSON into ``run.records``."""
    env = dict(os.environ)
    if run.target != "nchan":
        env.update(OURS_ENV)
    print(f"\n=== round {run.round}, {run.position}: {run.target}\n$ {shlex.join(run.argv)}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(run.argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        run.returncode = proc.wait(args.run_timeout)
    except subprocess.TimeoutExpired:
        # SIGINT, not SIGTERM: run.py then stops what it started (its finally: stop_all) before it ends.
        run.problem = f"run.sh took longer than {args.run_timeout:g} s and was interrupted"
        proc.send_signal(signal.SIGINT)
        try:
            run.returncode = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            run.returncode = proc.wait()
    except KeyboardInterrupt:  # the terminal's SIGINT reached run.py too: let it stop its processes
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    found = sorted(out.glob("results-*.json"))
    if found:
        run.json_path = found[-1]
        run.records = json.loads(run.json_path.read_text())["records"]
    elif run.problem is None:
        run.problem = f"run.sh exited {run.returncode} without a results JSON"
    if run.problem is None and run.returncode != 0:
        run.problem = f"run.sh exited {run.returncode}"
    print(f"=== {run.target}: {time.monotonic() - started:.0f} s, {len(run.records)} records", flush=True)


# ------------------------------------------------------------------ figures --
def us_per_delivery(result: Record) -> float | None:
    """Server CPU seconds in the window / deliveries in the window, in µs."""
    server = result.get("server") or {}
    cpu_pct, window_s, deliveries = server.get("cpu_pct"), result.get("window_s"), result.get("deliveries")
    if cpu_pct is None or not window_s or not deliveries:
        return None
    return float(cpu_pct) / 100.0 * float(window_s) / float(deliveries) * 1e6


def load_figures(records: list[Record], clients: int, rate: float) -> dict[str, float | None]:
    """One run's figures at one load cell (median over its repeats)."""
    rows = [
        r.get("result") or {}
        for r in records
        if r.get("kind") == "load" and r.get("clients") == clients and float(r.get("rate", -1)) == rate
    ]
    latency = [row.get("latency_ms") or {} for row in rows]
    return {
        "us": median([us_per_delivery(row) for row in rows]),
        "p50": median([lat.get("p50") for lat in latency]),
        "p99": median([lat.get("p99") for lat in latency]),
    }


def idle_kib(records: list[Record]) -> float | None:
    return median(
        [((r.get("result") or {}).get("server") or {}).get("kib_per_conn") for r in records if r.get("kind") == "idle"]
    )


def lost(records: list[Record]) -> tuple[int, int] | None:
    """Missing and duplicate seq, summed over a run's load records (None: no result)."""
    results = [r["result"] for r in records if r.get("kind") == "load" and r.get("result")]
    if not results:
        return None
    return sum(int(x.get("missing_total") or 0) for x in results), sum(int(x.get("dup_total") or 0) for x in results)


def median(values: Sequence[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def notes(run: Run) -> list[str]:
    """What makes a run's figures doubtful: errors, clients missing, saturated cores, frames without t."""
    out: list[str] = []
    if run.problem:
        out.append(run.problem)
    for r in run.records:
        label, res = r.get("label", "?"), r.get("result") or {}
        if r.get("error"):
            out.append(f"{label}: {r['error']}")
        if r.get("server_alive_at_end") is False:
            out.append(f"{label}: the server died")
        if r.get("upstream_dropped_slow_client"):
            out.append(f"{label}: fake_ha dropped the server as a slow client")
        if res and res.get("connected") != r.get("clients"):
            out.append(f"{label}: {res.get('connected')} of {r.get('clients')} connected")
        if res.get("frames_without_t"):
            out.append(f"{label}: {res['frames_without_t']} frames without t")
        if r.get("kind") == "load" and res.get("clients_zero_events"):
            out.append(f"{label}: {res['clients_zero_events']} clients got no event in the window")
        busy = res.get("cpu_busy_pct") or {}
        hot = [f"CPU {cpu} {pct:.0f} %" for cpu, pct in sorted(busy.items()) if pct >= 90]
        if hot:
            out.append(f"{label}: core busy {', '.join(hot)} (saturated: the cell measures the pair)")
    return out


# -------------------------------------------------------------------- table --
def table(runs: list[Run], targets: Sequence[str], clients: list[int], rates: list[float]) -> str:
    cells = [(n, r) for n in clients for r in rates]
    rounds = sorted({run.round for run in runs})
    by = {(run.round, run.target): run for run in runs}
    idle_n = sorted({int(r["clients"]) for run in runs for r in run.records if r.get("kind") == "idle"})
    idle_label = "/".join(str(n) for n in idle_n) or "–"

    per_round: dict[tuple[int, str], dict[str, Any]] = {}
    for (rnd, target), run in by.items():
        per_round[(rnd, target)] = {
            "cells": {cell: load_figures(run.records, *cell) for cell in cells},
            "kib": idle_kib(run.records),
            "lost": lost(run.records),
        }

    def med(target: str, cell: tuple[int, float], key: str) -> float | None:
        return median([per_round[(rnd, target)]["cells"][cell][key] for rnd in rounds if (rnd, target) in per_round])

    def med_kib(target: str) -> float | None:
        return median([per_round[(rnd, target)]["kib"] for rnd in rounds if (rnd, target) in per_round])

    lines = [
        f"Medians over {len(rounds)} round(s); server on CPU 0, load on CPU 1. µs/deliv = server CPU s / deliveries.",
        "",
    ]
    head = ["target"]
    for n, r in cells:
        head += [f"{n}×{r:g}/s µs/deliv", "p50 ms", "p99 ms"]
    head += [f"KiB per idle conn ({idle_label})", "missing / dup (all rounds)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for target in targets:
        row = [target]
        for cell in cells:
            row += [
                fmt(med(target, cell, "us")),
                fmt(med(target, cell, "p50"), ".1f"),
                fmt(med(target, cell, "p99"), ".1f"),
            ]
        losses = [per_round[(rnd, target)]["lost"] for rnd in rounds if (rnd, target) in per_round]
        known = [x for x in losses if x is not None]
        lost_cell = f"{sum(m for m, _ in known)} / {sum(d for _, d in known)}" if known else "–"
        if known and len(known) < len(losses):
            lost_cell += f" ({len(losses) - len(known)} run(s) without result)"
        row += [fmt(med_kib(target)), lost_cell]
        lines.append("| " + " | ".join(row) + " |")

    if "nchan" in targets and len(targets) > 1:
        lines += ["", "Ratios of the medians to Nchan's:", ""]
        head = ["target"] + [f"µs/deliv {n}×{r:g}/s ÷ nchan" for n, r in cells] + ["KiB/idle conn ÷ nchan"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for target in targets:
            if target == "nchan":
                continue
            row = [target] + [ratio(med(target, cell, "us"), med("nchan", cell, "us")) for cell in cells]
            row.append(ratio(med_kib(target), med_kib("nchan")))
            lines.append("| " + " | ".join(row) + " |")

    lines += ["", "Per round (µs/deliv, p50 ms, p99 ms at " + ", ".join(f"{n}×{r:g}" for n, r in cells)]
    lines[-1] += "; KiB/idle conn; missing/dup), in the round's order:"
    lines.append("")
    for rnd in rounds:
        parts = []
        for run in sorted((run for run in runs if run.round == rnd), key=lambda x: x.position):
            fig = per_round[(rnd, run.target)]
            loads = "; ".join(
                f"{fmt(c['us'])} µs {fmt(c['p50'], '.1f')}/{fmt(c['p99'], '.1f')} ms"
                for c in (fig["cells"][cell] for cell in cells)
            )
            lo = fig["lost"]
            parts.append(f"{run.target}: {loads}; {fmt(fig['kib'])} KiB; {'–' if lo is None else f'{lo[0]}/{lo[1]}'}")
        lines.append(f"- round {rnd}: " + " | ".join(parts))

    doubts = [f"- round {run.round} {run.target}: {note}" for run in runs for note in notes(run)]
    if doubts:
        lines += ["", "Notes:", "", *doubts]
    return "\n".join(lines)


# --------------------------------------------------------------------- main --
def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Arguments after -- go to ssebench's run.py as they are (e.g. -- --warmup 1).",
    )
    ap.add_argument("--ssebench", type=Path, default=ROOT.parent / "shared" / "ssebench", help="the harness's folder")
    ap.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python", help="python that runs ours")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma list from {','.join(TARGETS)}")
    ap.add_argument("--clients", default="1000,5000")
    ap.add_argument("--rates", default="10")
    ap.add_argument("--repeats", type=int, default=1, help="ssebench repeats within each run")
    ap.add_argument("--pad", type=int, default=900, help="nchan: bytes of padding per message (900 ≈ an HA event)")
    ap.add_argument("--duration", type=float, default=None, help="measurement window, s (ssebench default: 10)")
    ap.add_argument("--idle-clients", type=int, default=None, help="idle test's clients (ssebench default: 5000)")
    ap.add_argument("--run-timeout", type=float, default=1800.0, help="limit for one target's run, s")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="where the table goes")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.extra and args.extra[0] == "--":
        args.extra = args.extra[1:]
    args.ssebench = args.ssebench.resolve()
    targets = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        ap.error(f"unknown targets {unknown}; choose from {','.join(TARGETS)}")
    args.target_list = targets
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    lacks = missing_prerequisites(args.ssebench)
    if any(t != "nchan" for t in args.target_list) and not Path(args.python).exists():
        lacks.append(f"{args.python} is missing (python3.11 -m venv .venv && .venv/bin/pip install -e .)")
    if lacks:
        print("cannot run: " + "; ".join(lacks), file=sys.stderr)
        return 2
    clients = [int(x) for x in args.clients.split(",") if x]
    rates = [float(x) for x in args.rates.split(",") if x]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix=f"nchan-rounds-{stamp}-"))
    print(f"nchan_rounds: {args.rounds} round(s) of {', '.join(args.target_list)}; ssebench {args.ssebench}")
    print(f"nchan_rounds: each run's results JSON and logs under {work}", flush=True)

    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        for position, target in enumerate(order(rnd, args.target_list), 1):
            base = work / f"round{rnd}-{position}-{target}"
            out, rundir = base / "out", base / "logs"
            out.mkdir(parents=True)
            run = Run(rnd, position, target, run_argv(args, target, out, rundir))
            runs.append(run)
            run_one(args, run, out)
            time.sleep(1)

    md = table(runs, args.target_list, clients, rates)
    args.results.mkdir(parents=True, exist_ok=True)
    md_path = args.results / f"nchan-rounds-{stamp}.md"
    json_path = args.results / f"nchan-rounds-{stamp}.json"
    header = [
        f"# ssebench, {stamp}: {', '.join(args.target_list)} over {args.rounds} interleaved round(s), medians",
        "",
        f"`{shlex.join([sys.executable, *sys.argv])}`; per run:",
        "",
        *[f"- round {run.round}, {run.target}: `{shlex.join(run.argv)}`" for run in runs if run.round == 1],
        "",
        f"ours with {' '.join(f'{k}={v}' for k, v in OURS_ENV.items())} in the environment.",
        "",
    ]
    md_path.write_text("\n".join(header) + md + "\n")
    json_path.write_text(
        json.dumps(
            {
                "stamp": stamp,
                "argv": sys.argv,
                "runs": [
                    {
                        "round": run.round,
                        "position": run.position,
                        "target": run.target,
                        "argv": run.argv,
                        "returncode": run.returncode,
                        "problem": run.problem,
                        "ssebench_json": str(run.json_path) if run.json_path else None,
                        "records": run.records,
                    }
                    for run in runs
                ],
            },
            indent=1,
        )
    )
    print()
    print(md)
    print(f"\ntable: {md_path}\nevery record: {json_path}\nlogs: {work}")
    failed = any(run.problem or not run.records or any(r.get("error") for r in run.records) for run in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
