#!/usr/bin/env python3
"""SSE load generator: N concurrent EventSource-like subscribers in one process.

Past 300 lines: the load generator is its own process with its own CLI, stats and latency
collection; the parsing is wire.py's.

Adapted from the ssebench harness. Raw asyncio Protocols on uvloop, no HTTP client library,
so the load side stays cheap. Each connection sends one HTTP/1.1 GET and reads the response
with ``wire.SSEReader`` (head, ``Transfer-Encoding: chunked``, SSE frames); it searches each
frame's bytes for what it needs without decoding it.

What it understands of a frame's data (the upstream is ``fake_ha.py``): the pair
``"t": <ns>, "seq": <n>`` that fake_ha stamps into every change. Change ``seq`` is for
entity ``(seq - 1) % entities``, so a client knows which entity each change is for.

* A frame with ``event: snapshot`` (our service) sets the state of every entity it holds.
  The first one is the client's starting point; a later one is a **reset** (the server
  dropped pending events of a client that fell behind and sent a fresh snapshot instead).
* Any other frame with a ``t``/``seq`` pair is a **delivery**: its latency is receive time
  (``time.time_ns()`` in ``data_received``) minus ``t``; a jump in ``seq`` past the next
  expected one counts as **missing** (for a client filtered to one entity, the next
  expected one is ``entities`` further on), a ``seq`` not above the last as **duplicate**.
  Changes covered by a snapshot are not missing.
* Frames with data but no pair (``status``, ``remove``) are counted as ``other_frames``.

Phases: ramp (``--ramp-batch`` connections at a time, each batch waits for its response
headers) -> optional settle -> SIGUSR1 to each ``--signal-pid`` (starts the injector) ->
warm-up -> measurement window of ``--duration`` s -> SIGUSR2 to ``--stop-pid`` (the
injector stops for good and writes its last seq to ``--status-file``) -> wait until every
client has the latest state of every entity it watches, at most ``--drain-timeout`` s ->
close everything and report. Only deliveries inside the window count for throughput and
latency; missing/duplicate/resets count over each connection's whole life.

For the ``--watch-pid`` processes it reports CPU time over the window (from
``/proc/<pid>/task/*/schedstat``, ns resolution), CPU per delivery and VmRSS before the ramp
and after it (KiB per connection). Limits: one process on one core; watch
``client_cpu_pct``: near 100 % the numbers describe the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import re
import resource
import signal
import sys
import time
from array import array
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # still usable, only slower
    uvloop = None  # type: ignore[assignment]

from procs import raise_nofile, rss_kib  # bench/ is on sys.path: this file runs as a script
from wire import Head, SSEReader, WireError

PAIR = re.compile(rb'"t"\s*:\s*(\d+)\s*,\s*"seq"\s*:\s*(\d+)')
PAIR_SEARCH = PAIR.search
PAIR_FINDITER = PAIR.finditer
SNAPSHOT = b"event: snapshot"
_time_ns = time.time_ns
CLK_TCK = os.sysconf("SC_CLK_TCK")


class G:
    """Run state shared by every protocol instance."""

    phase = 0  # 0 = ramp/settle/warm-up, 1 = measuring, 2 = draining/done
    entities = 10
    lat = array("q")  # latencies (ns) of deliveries inside the window


class Sub(asyncio.Protocol):
    __slots__ = (
        "closing",
        "comments",
        "dup",
        "error",
        "events",
        "hdr_fut",
        "based",
        "last_seq",
        "latest",
        "lost",
        "missing",
        "no_pair",
        "request",
        "resets",
        "snapshots",
        "state",
        "status",
        "step",
        "tr",
        "watch",
        "wevents",
        "wire",
    )

    def __init__(self, request: bytes, hdr_fut: asyncio.Future[bool], watch: int | None) -> None:
        self.request = request
        self.tr: asyncio.Transport | None = None
        self.state = 0  # 0 = waiting for headers, 2 = streaming body, 3 = closed
        self.wire = SSEReader(one_line_end=True, on_head=self._streaming)  # ours sends LF, sse-starlette CRLF
        self.watch = watch  # the one entity index this client asked for, or None for all
        self.step = 1 if watch is None else G.entities
        self.based = False  # has a starting point: a snapshot, or the first change received
        self.last_seq = 0
        self.latest = [0] * G.entities  # per entity: seq of the state this client holds (0: initial)
        self.missing = 0
        self.dup = 0
        self.resets = 0
        self.snapshots = 0
        self.events = 0  # deliveries over the connection's whole life
        self.wevents = 0  # deliveries inside the window
        self.no_pair = 0  # data frames that are neither snapshots nor changes (status, remove)
        self.comments = 0
        self.hdr_fut = hdr_fut
        self.error: str | None = None
        self.closing = False
        self.lost = False  # the server closed the stream
        self.status = 0

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.tr = tr = cast(asyncio.Transport, transport)
        tr.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = 3
        if not self.hdr_fut.done():
            self.error = self.error or ("closed_before_headers" if exc is None else type(exc).__name__)
            self.hdr_fut.set_result(False)
        elif not self.closing:
            self.lost = True
            if self.error is None:
                self.error = "closed_by_server" if exc is None else type(exc).__name__

    def data_received(self, data: bytes) -> None:
        now = _time_ns()
        try:
            frames = self.wire.feed(data)
        except WireError as e:
            self._fail(str(e))
            return
        if not frames:
            return
        measuring = G.phase == 1
        for fr in frames:
            if fr.find(SNAPSHOT, 0, 200) >= 0:
                self._snapshot(fr)
                continue
            m = PAIR_SEARCH(fr)
            if m is None:
                if fr.startswith(b"data:") or b"\ndata:" in fr:
                    self.no_pair += 1
                elif fr.strip():
                    self.comments += 1
                continue
            self.events += 1
            seq = int(m.group(2))
            last = self.last_seq
            if seq > last:
                if self.based:
                    self.missing += (seq - last) // self.step - 1
                else:
                    self.based = True  # no snapshot (the baseline app): the first change is the start
                self.last_seq = seq
                self.latest[(seq - 1) % G.entities] = seq
            else:
                self.dup += 1
            if measuring:
                self.wevents += 1
                G.lat.append(now - int(m.group(1)))

    def _streaming(self, head: Head) -> None:
        """The head is in and said 200 (SSEReader raises WireError otherwise)."""
        self.status = head.status
        self.state = 2
        if not self.hdr_fut.done():
            self.hdr_fut.set_result(True)

    def _snapshot(self, frame: bytes) -> None:
        if self.snapshots:
            self.resets += 1
        self.snapshots += 1
        top = 0
        latest = self.latest
        n = G.entities
        for m in PAIR_FINDITER(frame):
            seq = int(m.group(2))
            latest[(seq - 1) % n] = seq
            top = max(top, seq)
        if not self.based:
            self.based = True
            # Nothing changed yet (top == 0): the next change this client should see is its first.
            self.last_seq = top if top or self.watch is None else self.watch + 1 - n
        elif top > self.last_seq:
            self.last_seq = top

    def current(self, final: list[int]) -> bool:
        if self.watch is not None:
            return self.latest[self.watch] == final[self.watch]
        return self.latest == final

    # -- helpers ----------------------------------------------------------------------
    def _fail(self, why: str) -> None:
        self.error = why
        self.closing = True
        if not self.hdr_fut.done():
            self.hdr_fut.set_result(False)
        if self.tr is not None:
            self.tr.close()


# -- /proc helpers ----------------------------------------------------------------------
def cpu_ns(pids: list[int]) -> int | None:
    """On-CPU time of every thread of these processes, from schedstat (ns)."""
    total = 0
    seen = False
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                    seen = True
            except (OSError, ValueError, IndexError):
                continue
    return total if seen else None


def cpu_times(cpus: set[int]) -> dict[int, tuple[int, int, int]]:
    """{cpu: (busy ticks, irq + softirq ticks, total ticks)} from /proc/stat."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for ln in f:
                if not ln.startswith("cpu") or ln.startswith("cpu "):
                    continue
                name, *vals = ln.split()
                c = int(name[3:])
                if c in cpus:
                    v = [int(x) for x in vals[:8]]
                    total = sum(v)
                    out[c] = (total - v[3] - v[4], v[5] + v[6], total)
    except OSError:
        pass
    return out


def proc_ticks(pids: list[int]) -> tuple[int, int] | None:
    """(utime, stime) ticks of these processes, from /proc/<pid>/stat."""
    user = system = 0
    seen = False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return (user, system) if seen else None


def pct(sorted_vals: list[Any], q: float) -> Any:
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def final_states(last_seq: int, entities: int) -> list[int]:
    """Per entity, the seq of its last change when the injector stopped at ``last_seq``."""
    out = []
    for i in range(entities):
        out.append(0 if last_seq < i + 1 else i + 1 + entities * ((last_seq - 1 - i) // entities))
    return out


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return None


async def read_status(path: str, limit: float) -> dict[str, Any] | None:
    """The injector's status file, once it exists (a tiny local file: reading it does not block)."""
    for _ in range(max(1, round(limit / 0.05))):
        status = read_json(path)
        if status is not None:
            return status
        await asyncio.sleep(0.05)
    return None


# -- main -------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    u = urlsplit(args.url)
    if u.scheme != "http":
        raise SystemExit("only http:// URLs are supported")
    host = u.hostname or "127.0.0.1"
    port = u.port or 80
    ports = [port, *(args.also_port or [])]  # client i goes to ports[i % len(ports)]: instances side by side
    base_path = (u.path or "/") + (("?" + u.query) if u.query else "")

    def request_for(watch: int | None) -> bytes:
        path = base_path
        if watch is not None:
            path += ("&" if "?" in path else "?") + f"entity_id=sensor.bench_{watch}"
        return (
            f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Connection: keep-alive\r\nUser-Agent: sse-service-bench\r\n\r\n"
        ).encode()

    nofile = raise_nofile(args.clients + 64)
    if nofile < args.clients + 16:
        print(f"warning: RLIMIT_NOFILE={nofile} < clients+16", file=sys.stderr)

    watch_pids: list[int] = args.watch_pid or []
    res: dict[str, Any] = {
        "url": args.url,
        "clients_requested": args.clients,
        "filter_one_entity": args.filter_one_entity,
        "entities": G.entities,
        "ramp_batch": args.ramp_batch,
        "duration_s": args.duration,
        "rlimit_nofile": nofile,
    }
    srv: dict[str, Any] = {"pids": watch_pids, "rss_before_kib": rss_kib(watch_pids)}
    subs: list[Sub] = []
    errors: dict[str, int] = {}

    async def open_one(index: int, deadline: float) -> None:
        fut: asyncio.Future[bool] = loop.create_future()
        watch = index % G.entities if args.filter_one_entity else None
        p = Sub(request_for(watch), fut, watch)
        try:
            connect = loop.create_connection(lambda: p, host, ports[index % len(ports)])
            await asyncio.wait_for(connect, max(0.01, deadline - loop.time()))
        except Exception as e:  # every failure is a data point
            k = "timeout_connect" if isinstance(e, TimeoutError) else type(e).__name__
            errors[k] = errors.get(k, 0) + 1
            return
        subs.append(p)
        try:
            ok = await asyncio.wait_for(asyncio.shield(fut), max(0.01, deadline - loop.time()))
        except TimeoutError:
            p._fail("timeout_headers")
            ok = False
        if ok:
            connect_times.append(time.monotonic() - t0)
        else:
            errors[p.error or "unknown"] = errors.get(p.error or "unknown", 0) + 1

    connect_times: list[float] = []
    t0 = time.monotonic()
    ramp_deadline = loop.time() + args.ramp_timeout
    launched = 0
    while launched < args.clients and loop.time() < ramp_deadline:
        n = min(args.ramp_batch, args.clients - launched)
        batch_deadline = min(ramp_deadline, loop.time() + args.connect_timeout)
        await asyncio.gather(*(open_one(launched + i, batch_deadline) for i in range(n)))
        launched += n
    ramp_s = time.monotonic() - t0
    if launched < args.clients:
        errors["ramp_timeout_not_started"] = args.clients - launched
    connected = [p for p in subs if p.state == 2]
    connect_times.sort()
    res.update(
        connected=len(connected),
        ramp_s=round(ramp_s, 3),
        connected_within_5s=sum(1 for x in connect_times if x <= 5.0),
        connect_s={q: round(pct(connect_times, q) or 0.0, 3) for q in (25, 50, 75, 90, 100)} if connect_times else None,
        connect_errors=sum(errors.values()),
        connect_error_kinds=errors,
    )

    if args.settle > 0:
        await asyncio.sleep(args.settle)
    srv["rss_connected_kib"] = rss_kib(watch_pids)
    for pid in args.signal_pid or []:  # start the injector
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            print(f"warning: --signal-pid {pid} is not running", file=sys.stderr)
    if args.warmup > 0:
        await asyncio.sleep(args.warmup)

    gc.collect()
    gc.freeze()
    gc.disable()
    # Event-loop lag probe: how late a 5 ms timer fires is how long the client was busy,
    # which is also how much the client's own serial work adds to the measured latency.
    lags = array("q")

    async def probe() -> None:
        while G.phase < 2:
            a = _time_ns()
            await asyncio.sleep(0.005)
            if G.phase == 1:
                lags.append(_time_ns() - a - 5_000_000)

    probe_task = asyncio.ensure_future(probe())
    # ---- measurement window ----
    wcpus = set(args.watch_cpu or [])
    load_pids: list[int] = args.load_pid or []
    k0 = cpu_times(wcpus)
    c0 = self_cpu_s()
    s0 = cpu_ns(watch_pids)
    each0 = {pid: cpu_ns([pid]) for pid in watch_pids}
    t0s = proc_ticks(watch_pids)
    l0 = cpu_ns(load_pids)
    w0 = _time_ns()
    G.phase = 1
    await asyncio.sleep(args.duration)
    G.phase = 2
    w1 = _time_ns()
    c1 = self_cpu_s()
    s1 = cpu_ns(watch_pids)
    each1 = {pid: cpu_ns([pid]) for pid in watch_pids}
    t1s = proc_ticks(watch_pids)
    l1 = cpu_ns(load_pids)
    k1 = cpu_times(wcpus)
    probe_task.cancel()
    srv["rss_end_kib"] = rss_kib(watch_pids)
    window_s = (w1 - w0) / 1e9
    gc.enable()

    # ---- stop the injector; does every client end with the latest state? ----
    if args.stop_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(args.stop_pid, signal.SIGUSR2)
        status = await read_status(args.status_file, 5.0) if args.status_file else None
        if status is None:
            res["final_check"] = "no status from the injector"
        else:
            final = final_states(int(status["last_seq"]), G.entities)
            d0 = time.monotonic()
            live = [p for p in connected if not p.lost]
            while True:
                stale = sum(1 for p in live if not p.current(final))
                if not stale or time.monotonic() - d0 > args.drain_timeout:
                    break
                await asyncio.sleep(0.1)
            res.update(
                final_seq=int(status["last_seq"]),
                stale_clients=stale + sum(1 for p in connected if p.lost),
                drain_s=round(time.monotonic() - d0, 2),
            )
    for p in subs:
        p.closing = True
        if p.tr is not None:
            p.tr.close()
    await asyncio.sleep(0.05)

    # ---- report ----
    ev = sorted(p.wevents for p in connected)
    deliveries = sum(ev)
    lat = sorted(G.lat)

    def ms(v: int | None) -> float | None:
        return None if v is None else round(v / 1e6, 3)

    res.update(
        window_s=round(window_s, 3),
        deliveries=deliveries,
        deliveries_per_s=round(deliveries / window_s, 1) if window_s else None,
        events_per_client={
            "min": ev[0] if ev else None,
            "p50": pct(ev, 50),
            "mean": round(deliveries / len(ev), 2) if ev else None,
            "max": ev[-1] if ev else None,
        },
        latency_ms={
            "count": len(lat),
            "min": ms(lat[0] if lat else None),
            "p50": ms(pct(lat, 50)),
            "p90": ms(pct(lat, 90)),
            "p99": ms(pct(lat, 99)),
            "max": ms(lat[-1] if lat else None),
        },
        missing_total=sum(p.missing for p in connected),
        dup_total=sum(p.dup for p in connected),
        resets_total=sum(p.resets for p in connected),
        clients_with_missing=sum(1 for p in connected if p.missing),
        clients_with_dup=sum(1 for p in connected if p.dup),
        clients_with_resets=sum(1 for p in connected if p.resets),
        clients_zero_events=sum(1 for p in connected if p.wevents == 0),
        clients_lost=sum(1 for p in connected if p.lost),
        other_frames=sum(p.no_pair for p in connected),
        comment_frames=sum(p.comments for p in connected),
        client_cpu_pct=round(100.0 * (c1 - c0) / window_s, 1) if window_s else None,
        client_us_per_delivery=round((c1 - c0) * 1e6 / deliveries, 2) if deliveries else None,
        client_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    lg = sorted(lags)
    res["client_loop_lag_ms"] = {"p50": ms(pct(lg, 50)), "p99": ms(pct(lg, 99)), "max": ms(lg[-1] if lg else None)}
    if k0 and k1:
        res["cpu_busy_pct"] = {
            str(c): round(100.0 * (k1[c][0] - k0[c][0]) / max(1, k1[c][2] - k0[c][2]), 1) for c in sorted(k0) if c in k1
        }
        res["cpu_irq_pct"] = {
            str(c): round(100.0 * (k1[c][1] - k0[c][1]) / max(1, k1[c][2] - k0[c][2]), 1) for c in sorted(k0) if c in k1
        }
    if l0 is not None and l1 is not None and window_s:
        res["load_procs_cpu_pct"] = round(100.0 * (l1 - l0) / 1e9 / window_s, 1)
    if watch_pids:
        if s0 is not None and s1 is not None and window_s:
            srv["cpu_s"] = round((s1 - s0) / 1e9, 4)
            srv["cpu_pct"] = round(100.0 * (s1 - s0) / 1e9 / window_s, 1)
            if deliveries:
                srv["us_per_delivery"] = round((s1 - s0) / 1e3 / deliveries, 2)
            # Where it went, process by process (the watched PIDs in order: instances, redis-server).
            srv["cpu_pct_by_pid"] = {
                str(pid): round(100.0 * (b - a) / 1e9 / window_s, 1)
                for pid in watch_pids
                if (a := each0[pid]) is not None and (b := each1[pid]) is not None
            }
        if t0s is not None and t1s is not None and window_s:
            srv["user_pct"] = round(100.0 * (t1s[0] - t0s[0]) / CLK_TCK / window_s, 1)
            srv["system_pct"] = round(100.0 * (t1s[1] - t0s[1]) / CLK_TCK / window_s, 1)
        b, c = srv.get("rss_before_kib"), srv.get("rss_connected_kib")
        if b is not None and c is not None and connected:
            srv["kib_per_conn"] = round((c - b) / len(connected), 2)
        res["server"] = srv
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--url", required=True, help="SSE URL, http://127.0.0.1:PORT/path")
    ap.add_argument("--also-port", type=int, action="append", help="another instance's port: clients take turns")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--entities", type=int, default=10, help="entities the injector cycles through")
    ap.add_argument(
        "--filter-one-entity",
        action="store_true",
        help="client i asks for ?entity_id=sensor.bench_<i %% entities> only",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="measurement window (s)")
    ap.add_argument("--ramp-batch", type=int, default=250, help="connections opened at once per ramp step")
    ap.add_argument("--ramp-timeout", type=float, default=120.0, help="stop opening connections after this long")
    ap.add_argument("--connect-timeout", type=float, default=30.0, help="per-batch limit for connect + headers")
    ap.add_argument("--settle", type=float, default=0.0, help="pause between ramp-up and the signal (s)")
    ap.add_argument("--signal-pid", type=int, action="append", help="send SIGUSR1 after ramp-up (starts the injector)")
    ap.add_argument("--warmup", type=float, default=0.0, help="pause between the signal and the window (s)")
    ap.add_argument("--stop-pid", type=int, help="send SIGUSR2 after the window (stops the injector)")
    ap.add_argument("--status-file", help="where the injector writes its last seq on SIGUSR2")
    ap.add_argument("--drain-timeout", type=float, default=10.0, help="wait this long for clients to catch up")
    ap.add_argument("--watch-pid", type=int, action="append", help="server PID to sample (CPU, VmRSS)")
    ap.add_argument("--watch-cpu", type=int, action="append", help="CPU whose busy %% to report")
    ap.add_argument("--load-pid", type=int, action="append", help="other load process (the injector) to sample")
    ap.add_argument("--json-out", help="write the result JSON here")
    ap.add_argument("--label", help="free text copied into the JSON")
    args = ap.parse_args()
    if not (0 < args.clients <= 60000):
        ap.error("--clients must be in 1..60000")
    G.entities = args.entities
    hard_limit = args.ramp_timeout + args.settle + args.warmup + args.duration + args.drain_timeout + 30

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(run(args), hard_limit)

    if uvloop is not None:
        res = uvloop.run(bounded())
        res["loop"] = "uvloop"
    else:
        res = asyncio.run(bounded())
        res["loop"] = "asyncio"
    if args.label:
        res["label"] = args.label
    txt = json.dumps(res, indent=1)
    if args.json_out:
        Path(args.json_out).write_text(txt + "\n")
    else:
        print(txt)
    lm = res["latency_ms"]
    print(
        f"connected {res['connected']}/{args.clients} in {res['ramp_s']}s, errors {res['connect_errors']}; "
        f"deliveries/s {res['deliveries_per_s']}; latency ms p50 {lm['p50']} p99 {lm['p99']} max {lm['max']}; "
        f"missing {res['missing_total']} dup {res['dup_total']} resets {res['resets_total']} "
        f"stale {res.get('stale_clients')}; client CPU {res['client_cpu_pct']}%"
        + (f"; server {res['server'].get('us_per_delivery')} us/delivery" if "server" in res else ""),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
