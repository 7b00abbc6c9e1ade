"""The benchmark's report (bench/run.py): the table of runs, and the targets of issues 6 and 14 checked on it.

Reads the records ``run.py`` writes (one per scenario, target and repeat, with the JSON of
``subscribers.py`` under ``result``) and the failover runs; prints nothing itself.
"""

from __future__ import annotations

import statistics
from typing import Any

FAILOVER_AIM_S = 5.0  # issue 14: a new leader's events within 5 s with the default lease


def get(rec: dict[str, Any], *path: str) -> Any:
    cur: Any = rec.get("result")
    for k in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
    return cur


def fmt(v: Any, spec: str = "{}") -> str:
    return "–" if v is None else spec.format(v)


COLUMNS = [
    "scenario", "server", "clients × rate/s", "connected", "ramp s", "deliv/s", "p50 ms", "p99 ms", "max ms",
    "server µs/deliv", "server CPU %", "missing / dup", "resets", "stale at end", "KiB/idle conn", "client CPU %",
    "others % srv/load core",
]  # fmt: skip


def others(rec: dict[str, Any], server_cpu: int, load_cpu: int) -> tuple[float | None, float | None]:
    """CPU of each core taken by processes this benchmark did not start (other jobs on the machine)."""

    def on(cpu: int, ours: float) -> float | None:
        busy, irq = get(rec, "cpu_busy_pct", str(cpu)), get(rec, "cpu_irq_pct", str(cpu))
        return None if busy is None or irq is None else max(0.0, busy - irq - ours)

    server = get(rec, "server", "cpu_pct") or 0.0
    load = (get(rec, "client_cpu_pct") or 0.0) + (get(rec, "load_procs_cpu_pct") or 0.0)
    if server_cpu == load_cpu:
        return on(server_cpu, (server + load) / 2), None
    return on(server_cpu, server), on(load_cpu, load)


def row(rec: dict[str, Any], server_cpu: int, load_cpu: int) -> list[str]:
    idle = rec["rate"] == 0
    if "result" not in rec:
        return [rec["scenario"], rec["target"], f"{rec['clients']} × {rec['rate']:g}", "error"] + [""] * 13
    missing, dup = get(rec, "missing_total"), get(rec, "dup_total")
    noise = others(rec, server_cpu, load_cpu)
    return [
        rec["scenario"],
        rec["target"],
        f"{rec['clients']} × {rec['rate']:g}",
        f"{get(rec, 'connected')}",
        fmt(get(rec, "ramp_s"), "{:.1f}"),
        "–" if idle else fmt(get(rec, "deliveries_per_s"), "{:,.0f}"),
        "–" if idle else fmt(get(rec, "latency_ms", "p50"), "{:.1f}"),
        "–" if idle else fmt(get(rec, "latency_ms", "p99"), "{:.1f}"),
        "–" if idle else fmt(get(rec, "latency_ms", "max"), "{:.0f}"),
        "–" if idle else fmt(get(rec, "server", "us_per_delivery"), "{:.1f}"),
        fmt(get(rec, "server", "cpu_pct"), "{:.0f}"),
        "–" if idle else f"{missing} / {dup}",
        "–" if idle else fmt(get(rec, "resets_total")),
        "–" if idle else fmt(get(rec, "stale_clients")),
        fmt(get(rec, "server", "kib_per_conn"), "{:.1f}") if idle else "–",
        "–" if idle else fmt(get(rec, "client_cpu_pct"), "{:.0f}"),
        f"{fmt(noise[0], '{:.0f}')} / {fmt(noise[1], '{:.0f}')}",
    ]


def table(records: list[dict[str, Any]], server_cpu: int, load_cpu: int) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r, server_cpu, load_cpu)) + " |" for r in records]
    return "\n".join(lines)


def mean_of(recs: list[dict[str, Any]], *path: str) -> float | None:
    vals = [v for v in (get(r, *path) for r in recs) if v is not None]
    return sum(vals) / len(vals) if vals else None


def check(ok: bool | None) -> str:
    return "?" if ok is None else ("PASS" if ok else "FAIL")


def targets(records: list[dict[str, Any]]) -> list[str]:
    """The targets of issue 6, for each server that ran."""
    out = []
    last = max((r["rep"] for r in records), default=0)
    by = {(r["scenario"], r["target"]): r for r in records if r["rep"] == last}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec["rep"] == last and "result" in rec:
            runs.setdefault((rec["scenario"], rec["target"]), []).append(rec)
    for tname in ("ours", "baseline"):
        lines = []
        r = by.get(("fanout", tname))
        if r and "result" in r:
            p99, us = get(r, "latency_ms", "p99"), get(r, "server", "us_per_delivery")
            exact = all(get(r, k) == 0 for k in ("missing_total", "dup_total", "resets_total", "stale_clients"))
            complete = get(r, "connected") == r["clients"] and exact and get(r, "clients_zero_events") == 0
            ok = complete and p99 is not None and p99 <= 50 and us is not None and us <= 25
            lines.append(
                f"{check(ok)} fanout {r['clients']}×{r['rate']:g}/s: every event to every client "
                f"({'yes' if complete else 'NO'}), p99 {fmt(p99, '{:.1f}')} ms (≤ 50), "
                f"{fmt(us, '{:.1f}')} µs/delivery (≤ 25)"
            )
        r = by.get(("fanout-5k", tname))
        if r and "result" in r:
            p99 = get(r, "latency_ms", "p99")
            current = get(r, "connected") == r["clients"] and get(r, "stale_clients") == 0
            ok = current and p99 is not None and p99 <= 250
            lines.append(
                f"{check(ok)} fanout-5k {r['clients']}×{r['rate']:g}/s: all end with the latest state "
                f"({'yes' if current else 'NO: ' + str(get(r, 'stale_clients')) + ' stale'}), "
                f"p99 {fmt(p99, '{:.1f}')} ms (≤ 250)"
            )
        r = by.get(("idle", tname))
        if r and "result" in r:
            kib = get(r, "server", "kib_per_conn")
            ok = get(r, "connected") == r["clients"] and kib is not None and kib <= 15
            lines.append(f"{check(ok)} idle {r['clients']}: {fmt(kib, '{:.1f}')} KiB per connection (≤ 15)")
        r = by.get(("ramp", tname))
        if r and "result" in r:
            ramp, conn, early = get(r, "ramp_s"), get(r, "connected"), get(r, "connected_within_5s")
            ok = early == r["clients"]
            lines.append(
                f"{check(ok)} ramp: with events at {r['rate']:g}/s, {early} of {r['clients']} new clients connected "
                f"within 5 s (target: all), {conn} in {fmt(ramp, '{:.1f}')} s"
            )
        f, ref = runs.get(("filter", tname), []), runs.get(("filter-ref", tname), [])
        if f and ref:
            a, b = mean_of(f, "server", "us_per_delivery"), mean_of(ref, "server", "us_per_delivery")
            ratio = a / b if a and b else None
            exact = all(get(x, "missing_total") == 0 and get(x, "stale_clients") == 0 for x in f + ref)
            ok = None if ratio is None else (ratio <= 1.25 and exact)
            lines.append(
                f"{check(ok)} filter: {fmt(a, '{:.1f}')} µs/delivery with {f[0]['clients']} clients on one entity "
                f"each vs {fmt(b, '{:.1f}')} with {ref[0]['clients']} unfiltered, same events/s and deliveries/s "
                f"(mean of {len(f)} and {len(ref)} runs): ratio {fmt(ratio, '{:.2f}')} (≤ 1.25: unwatched "
                "entities cost nothing)"
            )
        if lines:
            out.append(f"{tname}:")
            out += [f"  {x}" for x in lines]
    return out


SCALE_CPU = 0.15  # issue 14: through Redis, at most 15 % more CPU per delivery than alone
SCALE_P50_MS = 3.0  # and at most 3 ms more p50 latency


def scale_targets(records: list[dict[str, Any]]) -> list[str]:
    """The targets of issue 14 for the Redis scale-out, on the fanout rows (means over the repeats).

    CPU per delivery counts every instance and the redis-server. ours-redis2 is held to ours (one
    process, the target) and to ours2 (two processes without Redis: what sharing one core costs).
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec["scenario"] == "fanout" and "result" in rec:
            runs.setdefault(rec["target"], []).append(rec)

    def line(name: str, ref: str) -> str | None:
        a, b = runs.get(name), runs.get(ref)
        if not a or not b:
            return None
        ua, ub = mean_of(a, "server", "us_per_delivery"), mean_of(b, "server", "us_per_delivery")
        pa, pb = mean_of(a, "latency_ms", "p50"), mean_of(b, "latency_ms", "p50")
        rel = ua / ub - 1 if ua and ub else None
        dp = pa - pb if pa is not None and pb is not None else None
        exact = all(
            get(r, "connected") == r["clients"]
            and all(get(r, k) == 0 for k in ("missing_total", "dup_total", "resets_total", "stale_clients"))
            for r in a
        )
        ok = None if rel is None or dp is None else (rel <= SCALE_CPU and dp <= SCALE_P50_MS and exact)
        reps = f" (mean of {len(a)} / {len(b)} runs)" if len(a) > 1 or len(b) > 1 else ""
        return (
            f"{check(ok)} {name} vs {ref}: {fmt(ua, '{:.1f}')} vs {fmt(ub, '{:.1f}')} µs/delivery, "
            f"{fmt(None if rel is None else 100 * rel, '{:+.0f}')} % (≤ +{100 * SCALE_CPU:.0f} %); "
            f"p50 {fmt(pa, '{:.1f}')} vs {fmt(pb, '{:.1f}')} ms, {fmt(dp, '{:+.1f}')} ms (≤ +{SCALE_P50_MS:g} ms); "
            f"every event to every client ({'yes' if exact else 'NO'}){reps}"
        )

    lines = [x for x in (line("ours-redis", "ours"), line("ours-redis2", "ours"), line("ours-redis2", "ours2")) if x]
    return ["redis scale-out (issue 14), fanout:", *[f"  {x}" for x in lines]] if lines else []


def failover_table(runs: list[dict[str, Any]]) -> list[str]:
    def spread(vals: list[float]) -> str:
        if not vals:
            return "–"
        vals = sorted(vals)
        return f"{vals[0]:.2f} / {statistics.median(vals):.2f} / {vals[-1]:.2f}"

    out = [
        "| lease TTL s | runs | to the new leader's first event, s (min / median / max) | to role leader, s "
        "(min / median / max) | failed |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for ttl in sorted({r["ttl_s"] for r in runs}, reverse=True):
        rs = [r for r in runs if r["ttl_s"] == ttl]
        first = [r["first_new_event_s"] for r in rs if r.get("first_new_event_s") is not None]
        roles = [r["leader_role_s"] for r in rs if r.get("leader_role_s") is not None]
        failed = sum(1 for r in rs if r.get("error"))
        name = f"{ttl:g}" + (" (default)" if rs[0]["ttl_default"] else "")
        out.append(f"| {name} | {len(rs)} | {spread(first)} | {spread(roles)} | {failed} |")
        if rs[0]["ttl_default"]:
            ok = None if not first else (failed == 0 and max(first) < FAILOVER_AIM_S)
            verdicts.append(
                f"{check(ok)} failover with the default lease: the follower's stream carries the new leader's "
                f"events {fmt(max(first) if first else None, '{:.2f}')} s after the leader's SIGKILL at the worst of "
                f"{len(rs)} (< {FAILOVER_AIM_S:g} s)"
            )
    return [*out, "", *verdicts]
