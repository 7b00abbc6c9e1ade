#!/usr/bin/env python3
"""The fan-out benchmark: our service next to the textbook sse-starlette app, on loopback.

Longer than most files here: it holds every scenario (fanout, 5k, idle, ramp, Redis, failover)
and their shared measuring loop; the wire parser (wire.py), processes (procs.py) and the table
(report.py) live apart.

For every scenario, and for each server in turn (ours, then the baseline), it starts a
fake Home Assistant (``fake_ha.py``) and the server, connects many raw SSE clients
(``subscribers.py``), measures, and stops every process it started, by PID. The server runs
on one CPU, the load (fake HA, subscribers, this script) on another. At the end it prints
one table and checks the targets of issue 6 (``report.py``). See README.md ("Benchmark") and
bench/README.md. Processes and ports: ``procs.py``; the failover watch reads its stream with
``wire.py``.

    .venv/bin/python bench/run.py                      # everything, ~6 min
    .venv/bin/python bench/run.py --quick              # small numbers, ~2 min
    .venv/bin/python bench/run.py --scenarios fanout,idle --no-baseline
    .venv/bin/python bench/run.py --scenarios fanout --no-baseline --redis   # + through Redis (issue 14)

With ``--redis`` the targets are ours, ours2 (two processes, no Redis), ours-redis and ours-redis2;
the scale-out targets of issue 14 follow the table, then a failover measurement (SIGKILL of the
leader of two instances; ``--no-failover`` skips it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# bench/ is on sys.path: this file runs as a script
from procs import (
    HERE,
    LOOPBACK,
    PY,
    Procs,
    child_env,
    fake_ha_argv,
    free_port,
    http_get,
    kill,
    raise_nofile,
    redis_argv,
    service_argv,
    wait_port,
)
from report import failover_table, scale_targets, table, targets
from wire import SSEReader, WireError, parse_event

TOKEN = "bench-token"


# --------------------------------------------------------------------------- scenarios --
@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    clients: int
    rate: float
    quick_clients: int
    idle: bool = False  # no events: memory per connection
    events_during_ramp: bool = False  # clients connect while events flow
    filtered: bool = False  # client i watches sensor.bench_<i % entities> only
    window: float | None = None  # measurement window, if not --duration
    part: int = 0  # runs twice in a row (A-B-B-A); 1 or 2 tells them apart


SCENARIOS = [
    Scenario("fanout", "every client gets every event", 1000, 10, 200),
    Scenario("fanout-5k", "every client ends with the latest state", 5000, 10, 1000),
    Scenario("idle", "idle connections: server RSS per connection", 5000, 0, 500, idle=True),
    Scenario("ramp", "new clients connect while events flow", 1000, 100, 300, events_during_ramp=True, window=3),
    # The filter pair: same events/s and deliveries/s, so a difference in cost per delivery is
    # the cost of the events a filtered client does not watch. 1000 events/s keeps the cost of
    # receiving each upstream event from swamping the 2 deliveries it makes.
    Scenario("filter", "one entity per client, 10 entities change", 20, 1000, 20, filtered=True),
    Scenario("filter-ref", "unfiltered, same events/s and deliveries/s as filter", 2, 1000, 2),
]
# The filter pair runs A-B-B-A with half windows, and is judged on the means: on a shared
# machine the cost of the same work drifts over a minute by more than the effect looked for.
GROUPS = {"filter": [("filter", 1), ("filter-ref", 1), ("filter-ref", 2), ("filter", 2)]}


# ----------------------------------------------------------------------------- targets --
class Target:
    name = ""
    desc = ""
    redis = False  # run_one starts a redis-server for it (on the server's CPU) and passes REDIS_URL
    instances = 1  # more: run_one starts that many on the server's CPU; clients take turns
    path = "/events"  # what the subscribers open

    def argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def env(self, port: int, ha_url: str) -> dict[str, str]:
        return {**child_env(), "HA_URL": ha_url, "HA_TOKEN": TOKEN, "PORT": str(port)}

    def ready(self, port: int, entities: int) -> bool:
        raise NotImplementedError


class Ours(Target):
    name = "ours"
    desc = "sse_service: python -m sse_service (uvicorn, uvloop + httptools, 1 worker)"

    def argv(self, port: int) -> list[str]:
        return service_argv(port)

    def env(self, port: int, ha_url: str) -> dict[str, str]:
        # Every bench client comes from 127.0.0.1: lift the per-address cap on streams.
        caps = {"MAX_STREAMS": "1000000", "MAX_STREAMS_PER_IP": "1000000"}
        return {**super().env(port, ha_url), "LOG_LEVEL": "warning", **caps}

    def ready(self, port: int, entities: int) -> bool:
        status, body = http_get(f"http://{LOOPBACK}:{port}/healthz")
        if status != 200:
            return False
        health = json.loads(body)
        return bool(health["upstream"]["status"] == "connected" and health["entities"] == entities)


class Baseline(Target):
    name = "baseline"
    desc = "bench/naive_app.py: Starlette + sse-starlette, a Queue per client (uvicorn, uvloop + httptools, 1 worker)"

    def argv(self, port: int) -> list[str]:
        return [
            PY, "-m", "uvicorn", "naive_app:app", "--app-dir", str(HERE), "--host", LOOPBACK, "--port", str(port),
            "--http", "httptools", "--loop", "uvloop", "--workers", "1", "--no-access-log",
            "--log-level", "warning", "--backlog", "4096",
        ]  # fmt: skip

    def ready(self, port: int, entities: int) -> bool:
        return http_get(f"http://{LOOPBACK}:{port}/health")[0] == 200


class OursRedis(Ours):
    name = "ours-redis"
    desc = (
        "sse_service through Redis (REDIS_URL): one instance that leads and follows the log; CPU includes redis-server"
    )
    redis = True


class OursRedis2(OursRedis):
    name = "ours-redis2"
    desc = (
        "sse_service through Redis, two instances on the server's CPU, clients alternating; CPU includes redis-server"
    )
    instances = 2


class Ours2(Ours):
    name = "ours2"
    desc = (
        "sse_service, two independent instances on the server's CPU (no Redis, each with its own upstream "
        "connection), clients alternating: the reference for ours-redis2"
    )
    instances = 2


class OursCompact(Ours):
    name = "ours-compact"
    desc = "sse_service, clients on the compact stream (/events?format=compact, issue 27)"
    path = "/events?format=compact"


TARGETS: dict[str, Target] = {
    "ours": Ours(),
    "ours-compact": OursCompact(),
    "ours2": Ours2(),
    "ours-redis": OursRedis(),
    "ours-redis2": OursRedis2(),
    "baseline": Baseline(),
}


def start_redis(procs: Procs, cpus: set[int], logdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's redis-server on a free loopback port, no persistence; stopped by PID with the rest."""
    port = free_port()
    argv = redis_argv(port, logdir / "redis-data")
    proc = procs.spawn("redis", argv, cpus)
    if not wait_port(port, 10):
        raise RuntimeError("redis-server did not come up (is the redis-server package installed?)")
    return proc, f"redis://{LOOPBACK}:{port}/0"


def loaded_modules(pid: int) -> list[str]:
    """Which of uvloop/httptools the server process really has mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [m for m in ("uvloop", "httptools") if f"/{m}/" in maps]


# ---------------------------------------------------------------------------- scenario --
def run_one(args: argparse.Namespace, sc: Scenario, target: Target, rep: int, logroot: Path) -> dict[str, Any]:
    clients = args.clients or (sc.quick_clients if args.quick else sc.clients)
    window = args.duration if sc.window is None else min(sc.window, args.duration)
    if sc.part:
        window = max(1.0, args.duration * 0.6)
    if sc.idle:
        window = 1.0
    label = f"{sc.name}-{target.name}-rep{rep}" + (f"-{sc.part}" if sc.part else "")
    logdir = logroot / label
    procs = Procs(logdir)
    rec: dict[str, Any] = {
        "scenario": sc.name,
        "target": target.name,
        "rep": rep,
        "clients": clients,
        "rate": sc.rate,
        "label": label,
    }
    started = time.monotonic()
    wait_signal = sc.rate > 0 and not sc.events_during_ramp
    ramp_timeout = args.ramp_timeout_ramp if sc.events_during_ramp else args.ramp_timeout
    drain = 0.0 if sc.idle else args.drain_timeout
    limit = ramp_timeout + args.warmup + window + drain + 40
    try:
        ha_port, port = free_port(), free_port()
        status_file = logdir / "fake_ha-status.json"
        more = ["--status-file", str(status_file)] + (["--wait-signal"] if wait_signal else [])
        argv = fake_ha_argv(ha_port, TOKEN, sc.rate, args.entities, limit + 30, *more)
        fake = procs.spawn("fake_ha", argv, args.load_cpus)
        if not wait_port(ha_port, 15):
            raise RuntimeError("fake_ha did not come up")
        ha_url = f"ws://{LOOPBACK}:{ha_port}/api/websocket"
        env = target.env(port, ha_url)
        watched: list[int] = []
        if target.redis:
            redis, env["REDIS_URL"] = start_redis(procs, args.server_cpus, logdir)
            watched.append(redis.pid)
        server = procs.spawn(target.name, target.argv(port), args.server_cpus, env)
        others = []
        for k in range(2, target.instances + 1):
            other_port = free_port()
            other = procs.spawn(
                f"{target.name}-{k}", target.argv(other_port), args.server_cpus, {**env, "PORT": str(other_port)}
            )
            others.append((other, other_port))
            watched.append(other.pid)
        end = time.monotonic() + 30
        for proc, p in [(server, port), *others]:
            while not target.ready(p, args.entities):
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"{target.name} did not come up; see {logdir}/{target.name}.log")
                time.sleep(0.1)
        time.sleep(0.5)
        rec["server_modules"] = loaded_modules(server.pid)
        out = logdir / "subscribers.json"
        argv = [
            PY, str(HERE / "subscribers.py"), "--url", f"http://{LOOPBACK}:{port}{target.path}",
            "--clients", str(clients), "--entities", str(args.entities), "--duration", str(window),
            "--ramp-batch", str(args.ramp_batch), "--ramp-timeout", str(ramp_timeout),
            "--connect-timeout", str(ramp_timeout), "--json-out", str(out), "--label", label,
            "--watch-pid", str(server.pid), "--load-pid", str(fake.pid),
        ]  # fmt: skip
        for pid in watched:  # CPU per delivery counts redis-server and every instance
            argv += ["--watch-pid", str(pid)]
        for _, other_port in others:
            argv += ["--also-port", str(other_port)]
        if sc.filtered:
            argv.append("--filter-one-entity")
        if sc.idle:
            argv += ["--settle", "2"]
        else:
            argv += ["--stop-pid", str(fake.pid), "--status-file", str(status_file), "--drain-timeout", str(drain)]
            if wait_signal:
                argv += ["--signal-pid", str(fake.pid), "--warmup", str(args.warmup)]
        for cpu in sorted(args.server_cpus | args.load_cpus):
            argv += ["--watch-cpu", str(cpu)]
        sub = procs.spawn("subscribers", argv, args.load_cpus)
        try:
            sub.wait(limit)
        except subprocess.TimeoutExpired:
            rec["error"] = "subscribers did not finish in time"
        rec["server_alive_at_end"] = server.poll() is None and all(o.poll() is None for o, _ in others)
        if out.exists():
            rec["result"] = json.loads(out.read_text())
        elif "error" not in rec:
            rec["error"] = f"no result (subscribers exit {sub.returncode}); see {logdir}"
        with contextlib.suppress(OSError):
            if "unable to keep up" in (logdir / "fake_ha.log").read_text(errors="replace"):
                rec["upstream_dropped_server"] = True
    except Exception as e:  # record it and go on with the other scenarios
        rec["error"] = repr(e)
    finally:
        procs.stop_all()
    rec["wall_s"] = round(time.monotonic() - started, 1)
    return rec


# ---------------------------------------------------------------------------- failover --
FAILOVER_IN_FLIGHT = 0.05  # frames that arrive this soon after the kill were on their way: not the new leader's


class StreamWatch:
    """One SSE stream (GET /events), read in a thread: each frame, its arrival and the ``t`` fake_ha stamped."""

    def __init__(self, port: int) -> None:
        self.frames: list[tuple[float, str, int | None]] = []  # (monotonic arrival, event name, t in ns or None)
        self.error: str | None = None
        self._stop = threading.Event()
        self._sock = socket.create_connection((LOOPBACK, port), timeout=5)
        self._sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nAccept: text/event-stream\r\n"
            "User-Agent: sse-service-bench-failover\r\n\r\n".encode()
        )
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="failover-stream", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _run(self) -> None:
        wire = SSEReader()
        try:
            while not self._stop.is_set():
                try:
                    data = self._sock.recv(65536)
                except TimeoutError:
                    continue
                now = time.monotonic()
                if not data:
                    self.error = "the server closed the stream"
                    return
                for fr in wire.feed(data):
                    m = STAMP.search(fr)
                    self.frames.append((now, parse_event(fr).event, int(m.group(1)) if m else None))
                if wire.ended:
                    self.error = "the server ended the stream"
                    return
        except WireError as e:
            self.error = f"http {wire.head.status}" if wire.head and wire.head.status != 200 else str(e)
        except OSError as e:
            self.error = repr(e)

    def states(self) -> int:
        return sum(1 for _, name, _ in self.frames if name == "state")


STAMP = re.compile(rb'"t"\s*:\s*(\d+)\s*,\s*"seq"')


def role(port: int) -> str | None:
    status, body = http_get(f"http://{LOOPBACK}:{port}/healthz")
    if status != 200:
        return None
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(body)["cluster"]["role"])
    return None


def failover_once(args: argparse.Namespace, ttl: float | None, rep: int, logroot: Path) -> dict[str, Any]:
    """Two instances through Redis; SIGKILL the leader; how soon does the follower's stream carry new events?

    A frame counts as the new leader's when it is an ``event: state`` that arrives more than 50 ms
    after the kill and whose ``t`` (stamped by fake_ha when it made the change) is after the kill:
    the old leader was dead by then, so only the new one can have brought it.
    """
    label = f"failover-ttl{'default' if ttl is None else f'{ttl:g}'}-rep{rep}"
    logdir = logroot / label
    procs = Procs(logdir)
    rec: dict[str, Any] = {"ttl_s": 3.0 if ttl is None else ttl, "ttl_default": ttl is None, "rep": rep, "label": label}
    limit = 20 + 4 * rec["ttl_s"]  # from the kill: the new leader's first event or give up
    started = time.monotonic()
    watch: StreamWatch | None = None
    target = TARGETS["ours-redis"]
    try:
        ha_port = free_port()
        procs.spawn("fake_ha", fake_ha_argv(ha_port, TOKEN, 10, args.entities, 60 + limit), args.load_cpus)
        if not wait_port(ha_port, 15):
            raise RuntimeError("fake_ha did not come up")
        _, redis_url = start_redis(procs, args.server_cpus, logdir)
        ports = [free_port(), free_port()]
        nodes = []
        for k, port in enumerate(ports, 1):
            env = {**target.env(port, f"ws://{LOOPBACK}:{ha_port}/api/websocket"), "REDIS_URL": redis_url}
            env["LOG_LEVEL"] = "info"  # the election lines, for the log
            if ttl is not None:
                env["REDIS_LEASE_TTL"] = f"{ttl:g}"
            nodes.append(procs.spawn(f"instance-{k}", target.argv(port), args.server_cpus, env))
        end = time.monotonic() + 30
        while True:
            roles = [role(p) if target.ready(p, args.entities) else None for p in ports]
            if sorted(map(str, roles)) == ["follower", "leader"]:
                break
            if any(n.poll() is not None for n in nodes) or time.monotonic() > end:
                raise RuntimeError(f"no ready leader and follower (roles {roles}); see {logdir}")
            time.sleep(0.1)
        lead = roles.index("leader")
        leader, follower_port = nodes[lead], ports[1 - lead]
        watch = StreamWatch(follower_port)
        end = time.monotonic() + 10
        while watch.states() < 3:  # events flow through the follower
            if watch.error or time.monotonic() > end:
                raise RuntimeError(f"no events on the follower's stream ({watch.error or 'timeout'})")
            time.sleep(0.05)
        kill_ns = time.time_ns()
        t_kill = time.monotonic()
        kill(leader, 5)
        seen = len(watch.frames)
        first_event: float | None = None
        leader_role: float | None = None
        while time.monotonic() - t_kill < limit and (first_event is None or leader_role is None):
            if leader_role is None and role(follower_port) == "leader":
                leader_role = time.monotonic() - t_kill
            if first_event is None:
                for arrived, name, t in watch.frames[seen:]:
                    if name == "state" and arrived - t_kill > FAILOVER_IN_FLIGHT and t is not None and t > kill_ns:
                        first_event = arrived - t_kill
                        break
            if watch.error:
                rec["stream_error"] = watch.error
                break
            time.sleep(0.02)
        after = watch.frames[seen:]
        rec.update(
            first_new_event_s=None if first_event is None else round(first_event, 3),
            leader_role_s=None if leader_role is None else round(leader_role, 3),
            in_flight_frames=sum(1 for a, _, _ in after if a - t_kill <= FAILOVER_IN_FLIGHT),
            frames_after_kill={n: sum(1 for _, x, _ in after if x == n) for n in sorted({x for _, x, _ in after})},
        )
        if first_event is None:
            rec["error"] = rec.get("stream_error") or f"no event from a new leader within {limit:g} s"
    except Exception as e:
        rec["error"] = repr(e)
    finally:
        if watch is not None:
            watch.close()
        procs.stop_all()
    rec["wall_s"] = round(time.monotonic() - started, 1)
    return rec


# -------------------------------------------------------------------------------- main --
def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    names = [s.name for s in SCENARIOS if s.name != "filter-ref"]
    ap.add_argument("--scenarios", default=",".join(names), help=f"comma list from {names} (default: all)")
    ap.add_argument("--quick", action="store_true", help="fewer clients and shorter windows (~2 min)")
    ap.add_argument("--no-baseline", action="store_true", help="run our service only")
    ap.add_argument("--compact", action="store_true", help="also ours with clients on ?format=compact (issue 27)")
    ap.add_argument(
        "--redis", action="store_true", help="also run our service through Redis, one and two instances (redis-server)"
    )
    ap.add_argument(
        "--no-failover", action="store_true", help="with --redis: skip the failover measurement (SIGKILL the leader)"
    )
    ap.add_argument("--failover-repeats", type=int, default=3, help="failover runs per lease TTL (default 3)")
    ap.add_argument("--clients", type=int, help="clients for every selected scenario (overrides the defaults)")
    ap.add_argument("--duration", type=float, help="measurement window, s (default 10; --quick 3)")
    ap.add_argument("--warmup", type=float, help="events before the window opens, s (default 2; --quick 1)")
    ap.add_argument("--drain-timeout", type=float, help="wait for clients to catch up after the window, s (default 10)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--entities", type=int, default=10)
    ap.add_argument("--ramp-batch", type=int, default=250)
    ap.add_argument("--ramp-timeout", type=float, default=60.0, help="connect limit for the load scenarios, s")
    ap.add_argument("--ramp-timeout-ramp", type=float, default=20.0, help="connect limit for the ramp scenario, s")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for results-<stamp>.json and .md")
    ap.add_argument("--json-out", help="also write the JSON here")
    args = ap.parse_args()

    wanted = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    known = {s.name for s in SCENARIOS}
    for w in wanted:
        if w not in known:
            ap.error(f"unknown scenario {w!r}; choose from {names}")
    by_name = {s.name: s for s in SCENARIOS}
    plan = []
    for s in SCENARIOS:  # in the order of SCENARIOS, whatever the order asked for
        if s.name in wanted:
            group = GROUPS.get(s.name)
            plan += [dataclasses.replace(by_name[n], part=k) for n, k in group] if group else [s]
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.drain_timeout is None:
        args.drain_timeout = 5.0 if args.quick else 10.0

    available = os.sched_getaffinity(0)
    if {args.server_cpu, args.load_cpu} <= available and args.server_cpu != args.load_cpu:
        args.server_cpus, args.load_cpus = {args.server_cpu}, {args.load_cpu}
    else:
        print(f"warning: CPUs {sorted(available)}: cannot pin server and load apart; results are not comparable")
        args.server_cpus = args.load_cpus = available
    os.sched_setaffinity(0, args.load_cpus)  # this script mostly sleeps; keep it off the server's CPU
    most = max((args.clients or (s.quick_clients if args.quick else s.clients)) for s in plan) if plan else 0
    nofile = raise_nofile(most + 200)  # inherited by the server and the subscribers
    if nofile < most + 100:
        print(f"warning: open-files limit {nofile} is too low for {most} clients")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    logroot = Path(os.environ.get("TMPDIR", "/tmp")) / "sse-service-bench" / stamp
    tnames = ["ours"] if args.no_baseline else ["ours", "baseline"]
    if args.compact:
        tnames[1:1] = ["ours-compact"]
    if args.redis:
        tnames[1:1] = ["ours2", "ours-redis", "ours-redis2"]
    meta = {
        "stamp": stamp,
        "argv": sys.argv,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "server_cpus": sorted(args.server_cpus),
        "load_cpus": sorted(args.load_cpus),
        "nofile": nofile,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "entities": args.entities,
        "targets": {t: TARGETS[t].desc for t in tnames},
    }
    print(f"bench: {len(plan)} scenario(s) × {tnames}, logs in {logroot}", flush=True)
    records: list[dict[str, Any]] = []
    failovers: list[dict[str, Any]] = []
    jpath = outdir / f"results-{stamp}.json"

    def save() -> None:
        doc = json.dumps({"meta": meta, "records": records, "failover": failovers}, indent=1)
        jpath.write_text(doc)
        if args.json_out:
            Path(args.json_out).write_text(doc)

    try:
        for rep in range(1, args.repeats + 1):
            for sc in plan:
                for tname in tnames:  # side by side: ours, then the baseline, same scenario
                    rec = run_one(args, sc, TARGETS[tname], rep, logroot)
                    records.append(rec)
                    res = rec.get("result") or {}
                    lat = res.get("latency_ms") or {}
                    print(
                        f"[{rec['label']}] connected={res.get('connected')} ramp={res.get('ramp_s')}s "
                        f"deliv/s={res.get('deliveries_per_s')} p50={lat.get('p50')} p99={lat.get('p99')} "
                        f"us/deliv={(res.get('server') or {}).get('us_per_delivery')} "
                        f"missing={res.get('missing_total')} dup={res.get('dup_total')} "
                        f"resets={res.get('resets_total')} stale={res.get('stale_clients')} "
                        f"kib/conn={(res.get('server') or {}).get('kib_per_conn')} "
                        f"client_cpu={res.get('client_cpu_pct')}% err={rec.get('error')} ({rec['wall_s']} s)",
                        flush=True,
                    )
                    save()
        if args.redis and not args.no_failover:
            for ttl in (None, 1.0):  # the default lease (3 s), then a short one
                for rep in range(1, args.failover_repeats + 1):
                    rec = failover_once(args, ttl, rep, logroot)
                    failovers.append(rec)
                    print(
                        f"[{rec['label']}] first new event {rec.get('first_new_event_s')} s, role leader "
                        f"{rec.get('leader_role_s')} s, after the kill {rec.get('frames_after_kill')} "
                        f"err={rec.get('error')} ({rec['wall_s']} s)",
                        flush=True,
                    )
                    save()
    except KeyboardInterrupt:
        print("interrupted; tables of what ran so far:")
    md = table(records, min(args.server_cpus), min(args.load_cpus))
    summary = targets(records) + scale_targets(records)
    text = f"{md}\n\n" + "\n".join(summary) + "\n"
    if failovers:
        text += "\nfailover (two instances through Redis, SIGKILL of the leader, 10 events/s):\n\n"
        text += "\n".join(failover_table(failovers)) + "\n"
    (outdir / f"results-{stamp}.md").write_text(text)
    print()
    print(text)
    print(f"results: {jpath}")
    return 1 if any(r.get("error") for r in records + failovers) else 0


if __name__ == "__main__":
    sys.exit(main())
