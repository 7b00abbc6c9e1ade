#!/usr/bin/env python3
"""The cluster soak: three instances through Redis while the leader and Redis are SIGKILLed.

Long for the same reason as soak.py: one file reads as the run, phase by phase.

One command, loopback only, bounded in time; it stops every process it started, by PID:

    .venv/bin/python bench/soak_cluster.py            # the full run, about 2-3 minutes
    .venv/bin/python bench/soak_cluster.py --quick    # about a minute (tests/test_soak.py runs this)

It starts ``fake_ha.py`` (``--strict-json``, with a status file), a ``redis-server`` with a
password and no persistence, and three ``python -m sse_service`` with ``REDIS_URL`` (the
password in it) and ``REDIS_LEASE_TTL=1``. Viewers (``soak_clients.Viewer``, some filtered)
are spread over the three; now and then one moves to another instance with its
``Last-Event-ID``. At random moments (seeded) it

* SIGKILLs the leader and starts it again on the same port 1-2 s later; its viewers come back
  with ``Last-Event-ID``, to the same port once it is up again or to another instance;
* SIGKILLs redis-server and starts it again, empty, on the same port (a new epoch: clients must
  get a snapshot, never a wrong replay).

At the end the fake stops its changes and writes its states (the truth). Within 15 s every
viewer's view must equal it; no viewer may have seen a change twice, an id go back within an
epoch, or a snapshot take an entity back; exactly one instance leads and exactly one connection
to the fake is open; no instance log has a traceback; the HA token, the keys and the Redis
password are in no log and no response; every instance is alive and its memory did not grow
past a bound. One table (check, figure, expected, OK/FAIL); exit status 1 when any is off. Logs
and a JSON of everything go to ``$TMPDIR/sse-service-soak-cluster/<stamp>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import soak  # bench/ is on sys.path: this file runs as a script
from procs import LOOPBACK, Procs, child_env, free_port, kill, redis_argv, rss_kib, service_argv, stop, wait_port
from soak import SETTINGS, Row, Soak, key
from soak_clients import Secrets, Shared, Viewer, http_exchange
from soak_hostile import Ctx, request

NAMES = ("a", "b", "c")
MIB = 1024
# Growth allowed to each instance from RSS_SETTLE_S after its last start (its viewers are back
# on) to the end. What it keeps for good is small and bounded: REPLAY_BUFFER events of about
# 0.6 KiB (under 1 MiB), ten entities with their history, a few dozen streams and their
# buffers. Quick runs grew 0.0-1.2 MiB (45-47 MiB in all). 8 MiB is several times that noise,
# and still catches a leak of ~40 KiB per reconnect (each instance takes ~200 in a quick run)
# or ~5 KiB per event (~1500 per instance between faults).
RSS_GROWTH_KIB = 8 * MIB
# After a fault the cluster is settled (every instance ready, one leader) before the followers
# have read the new leader's first snapshot; seq gaps (changes made while nobody led) are
# allowed until this long after that. Outside these windows a gap is a lost change.
CALM_AFTER_S = 1.5
RSS_SETTLE_S = 3.0
RSS_CAP_KIB = 120 * MIB  # any instance, any time (a healthy one: 45-47 MiB)


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    rate: float
    entities: int
    viewers: int
    leader_kills: int
    redis_kills: int
    gap_s: tuple[float, float]  # quiet time before each fault
    move_every_s: float  # each viewer moves to another instance about this often
    limit_s: float


QUICK = Plan("quick", 30, 10, 60, 3, 2, (3.0, 7.0), 10.0, 150)
FULL = Plan("full", 40, 10, 150, 8, 3, (5.0, 11.0), 8.0, 330)


@dataclasses.dataclass
class Instance:
    name: str
    port: int
    shared: Shared
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    rss: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (t, KiB) of this incarnation
    rss_start: int | None = None  # this incarnation, RSS_SETTLE_S after it started (its viewers are on)
    rss_peak: int = 0  # every incarnation
    started_at: float = 0.0
    earlier: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # killed incarnations' RSS

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ClusterViewer(Viewer):
    """A Viewer that notes its connections and its last frames, for the report of one that fails."""

    def __init__(self, base: Viewer, calm: Callable[[], bool]) -> None:
        self.__dict__.update(base.__dict__)  # Soak.viewer's choice of filter and key
        self.calm = calm  # no fault is under way or settling: a seq gap now is a lost change
        self.calm_gaps = 0
        self.calm_gap_notes: list[str] = []
        self.behind_notes: list[str] = []
        self.behind_live = 0  # entities a snapshot with status 'connected' took back to an older seq
        self.behind_stale = 0  # the same in a snapshot that says its data may be stale
        self.log: list[str] = []
        self.last_data = 0.0
        self.last_ping = 0.0
        self.first_id: str | None = None

    async def connect(self, *, resume: bool = False, within: float = 10.0) -> bool:
        sent = self.last_id if resume else None
        self.first_id = None
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        self.log = [*self.log[-7:], f"{stamp} :{self.shared.port} from {sent}"]  # frames may come before it returns
        ok = await super().connect(resume=resume, within=within)
        if not ok:  # Viewer keeps the failed connection, which never reports itself lost: not alive
            self.conn = None
            self.log[-1] += ": failed"
        return ok

    def on_frame(self, event: str, data: str, event_id: str | None, now_ns: int) -> None:
        if event == "ping":
            self.last_ping = time.monotonic()
        elif event_id is not None or data:
            self.last_data = time.monotonic()
            if self.first_id is None:
                self.first_id = f"{event} {event_id}"
                self.log[-1:] = [f"{self.log[-1]}, first {self.first_id}"] if self.log else []
        lost, behind, held = self.lost, self.behind, dict(self.seqs)
        super().on_frame(event, data, event_id, now_ns)
        if self.behind > behind:
            # An instance that cannot reach Redis serves what it had, flagged: the snapshot says
            # 'disconnected' (the data may be stale). Going back is a fault only in a 'connected' one.
            stale = self.status != "connected"
            if stale:
                self.behind_stale += self.behind - behind
            else:
                self.behind_live += self.behind - behind
            if len(self.behind_notes) < 3:
                back = {e: (held[e], q) for e, q in self.seqs.items() if e in held and q < held[e]}
                self.behind_notes.append(
                    f"{self.name} {'calm' if self.calm() else 'in a fault'}: {self.log[-1:]}: snapshot {event_id} "
                    f"(status {self.status}) has (held, got) {dict(list(back.items())[:3])}"
                )
        if self.lost > lost and self.calm():
            self.calm_gaps += self.lost - lost
            if len(self.calm_gap_notes) < 3:
                self.calm_gap_notes.append(f"{self.name} at {event_id} on :{self.shared.port}: {self.log[-1:]}")


class ClusterSoak(Soak):
    """Soak's fake upstream, truth and convergence; here with three instances and a Redis.

    It does not call Soak.__init__ (one bridge, its own log directory): it sets what the
    inherited methods use (start_fake, truth, viewer, converge, describe, scan_log).
    """

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.mode = dataclasses.replace(soak.QUICK, rate=plan.rate, entities=plan.entities, limit_s=plan.limit_s)
        self.rng = random.Random(args.seed)  # the faults: their order, moments and downtimes
        self.vrng = random.Random(args.seed + 1)  # the viewers' choices (drawn in whatever order they run)
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.logdir = Path(os.environ.get("TMPDIR", "/tmp")) / "sse-service-soak-cluster" / self.stamp
        self.procs = Procs(self.logdir)
        self.cpus = os.sched_getaffinity(0)
        self.token = key("ha-token-")
        self.read_key = key("rk-")
        self.write_key = key("wk-")
        self.redis_password = key("redis-pw-")
        self.secrets = Secrets(
            {
                "HA token": self.token,
                "read key": self.read_key,
                "write key": self.write_key,
                "Redis password": self.redis_password,
            }
        )
        self.ha_port = free_port()
        self.redis_port = free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_starts = 0
        self.instances = [Instance(n, free_port(), Shared(0, self.secrets)) for n in NAMES]
        for inst in self.instances:
            inst.shared.port = inst.port
            (self.logdir / f"node-{inst.name}").mkdir(exist_ok=True)
        self.shared = self.instances[0].shared  # Soak.viewer's default; each viewer gets its instance's
        self.ring = int(plan.rate * 40)  # REPLAY_BUFFER: 40 s of changes, more than any outage here
        self.fake: subprocess.Popen[bytes] | None = None
        self.fakes = 0
        self.status_file: Path | None = None
        self.running = True
        self.moving = True
        self.calm = True  # False from just before a fault until CALM_AFTER_S after the cluster settled
        self.faults: list[dict[str, Any]] = []
        self.moves = 0
        self.reconnects = 0
        self.reconnect_failures = 0
        self.results: dict[str, Any] = {"mode": plan.name, "seed": args.seed}
        self.started = time.monotonic()

    def t(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def say(self, what: str) -> None:
        print(f"soak-cluster: {self.t():6.1f} s  {what}", flush=True)

    # ------------------------------------------------------------------ processes --
    async def start_redis(self) -> None:
        """redis-server on its fixed port, empty: no persistence. The password is in a file, not argv."""
        self.redis_starts += 1
        conf = self.logdir / "redis.conf"
        if not conf.exists():
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"requirepass {self.redis_password}\n")
        argv = redis_argv(self.redis_port, self.logdir / "redis-data", conf)
        self.redis = self.procs.spawn("redis", argv, self.cpus)
        if not await asyncio.to_thread(wait_port, self.redis_port, 10):
            raise RuntimeError("redis-server did not come up (is the redis-server package installed?)")

    async def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None:
            await asyncio.to_thread(kill, proc, 10)  # SIGKILL, by PID

    def start_instance(self, inst: Instance) -> None:
        env = {k: v for k, v in child_env().items() if k not in SETTINGS and not k.startswith("REDIS_")}
        env.update(
            HA_URL=f"ws://{LOOPBACK}:{self.ha_port}/api/websocket",
            HA_TOKEN=self.token,
            READ_KEY=self.read_key,
            WRITE_KEY=self.write_key,
            ENTITIES=soak.ENTITIES,
            REDIS_URL=f"redis://:{self.redis_password}@{LOOPBACK}:{self.redis_port}/0",
            REDIS_LEASE_TTL="1",
            HA_BACKOFF_MAX="1",
            HA_CONNECT_TIMEOUT="3",
            REPLAY_BUFFER=str(self.ring),
            CLIENT_BUFFER_BYTES=str(soak.CLIENT_BUFFER),
            MAX_STREAMS="100000",
            MAX_STREAMS_PER_IP="100000",  # every soak client is 127.0.0.1
            HEARTBEAT="5",
            LOG_LEVEL="info",
        )
        argv = service_argv(inst.port)
        inst.starts += 1
        if inst.rss:
            inst.earlier.append({"start_kib": inst.rss_start, "last_kib": inst.rss[-1][1]})
        inst.rss, inst.rss_start, inst.started_at = [], None, time.monotonic()
        inst.proc = self.procs.spawn(f"node-{inst.name}/bridge", argv, self.cpus, env)

    # ------------------------------------------------------------------- requests --
    async def get_json(self, inst: Instance, path: str, auth: bool = False) -> tuple[int, Any]:
        ctx = Ctx(inst.port, "", self.read_key, self.write_key)
        headers = [("Authorization", f"Bearer {self.read_key}")] if auth else []
        ex = await http_exchange(inst.port, request("GET", path, ctx, headers), within=2)
        self.secrets.scan(ex.raw, f"GET {path} on {inst.name}")
        if ex.head is None:
            return 0, None
        try:
            return ex.head.status, json.loads(ex.body)
        except ValueError:
            return ex.head.status, None

    async def roles(self) -> dict[str, str]:
        """Each live instance's role ('leader', 'follower', or '?' when it does not answer)."""

        async def one(inst: Instance) -> str:
            status, body = await self.get_json(inst, "/healthz")
            if status != 200 or not isinstance(body, dict):
                return "?"
            return str(body.get("cluster", {}).get("role", "?"))

        live = [i for i in self.instances if i.alive]
        got = await asyncio.gather(*(one(i) for i in live))
        return {i.name: r for i, r in zip(live, got, strict=True)}

    async def settled(self, within: float) -> float:
        """Until every instance is up and ready and exactly one leads; returns the seconds it took."""
        t0 = time.monotonic()
        end = t0 + within
        while time.monotonic() < end:
            if all(i.alive for i in self.instances):
                ready = await asyncio.gather(*(self.get_json(i, "/readyz") for i in self.instances))
                roles = await self.roles()
                if all(s == 200 for s, _ in ready) and list(roles.values()).count("leader") == 1:
                    return time.monotonic() - t0
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the cluster did not settle within {within:g} s: roles {await self.roles()}")

    async def event_ids(self) -> dict[str, str]:
        got = await asyncio.gather(*(self.get_json(i, "/healthz") for i in self.instances))
        return {
            i.name: str(b.get("event_id")) if isinstance(b, dict) else "?"
            for i, (_, b) in zip(self.instances, got, strict=True)
        }

    def ha_connections(self) -> int:
        """Established TCP connections to the fake upstream's port, from /proc/net/tcp."""
        count = 0
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                local = fields[1]
                if int(local.rpartition(":")[2], 16) == self.ha_port and fields[3] == "01":
                    count += 1
        return count

    def sample_rss(self) -> None:
        for inst in self.instances:
            if inst.alive and inst.proc is not None:
                kib = rss_kib([inst.proc.pid])
                if kib is not None:
                    inst.rss.append((self.t(), kib))
                    inst.rss_peak = max(inst.rss_peak, kib)
                    if inst.rss_start is None and time.monotonic() - inst.started_at >= RSS_SETTLE_S:
                        inst.rss_start = kib

    # -------------------------------------------------------------------- viewers --
    def live_other(self, inst: Instance) -> list[Instance]:
        return [i for i in self.instances if i is not inst and i.alive]

    async def keep(self, v: Viewer) -> None:
        """Reconnect a viewer whose stream ended (with Last-Event-ID); move it now and then."""
        while self.running:
            await asyncio.sleep(0.1)
            if not self.running:
                return
            if v.alive:
                if self.moving and self.vrng.random() < 0.1 / self.plan.move_every_s:
                    others = self.live_other(self.by_port(v.shared.port))
                    if others:
                        self.moves += 1
                        v.close(abort=self.vrng.random() < 0.3)
                        v.shared = self.vrng.choice(others).shared
                        await self.reconnect(v)
                continue
            # Lost: its instance died. Half wait for it on the same port, half go to another one.
            home = self.by_port(v.shared.port)
            others = self.live_other(home)
            if not home.alive and others and self.vrng.random() < 0.5:
                v.shared = self.vrng.choice(others).shared
            while self.running and not await self.reconnect(v):
                pass

    async def reconnect(self, v: Viewer) -> bool:
        self.reconnects += 1
        if await v.connect(resume=True, within=3):
            return True
        self.reconnect_failures += 1
        await asyncio.sleep(0.3)
        return False

    def by_port(self, port: int) -> Instance:
        return next(i for i in self.instances if i.port == port)

    # --------------------------------------------------------------------- faults --
    async def kill_leader(self) -> None:
        roles = await self.roles()
        leaders = [n for n, r in roles.items() if r == "leader"]
        if len(leaders) != 1:
            raise RuntimeError(f"no single leader to kill: {roles}")
        inst = next(i for i in self.instances if i.name == leaders[0])
        t0 = time.monotonic()
        await self.kill(inst.proc)
        inst.kills += 1
        down = self.rng.uniform(1.0, 2.0)
        self.say(f"SIGKILLed the leader {inst.name}; back in {down:.1f} s")
        await asyncio.sleep(down)
        self.start_instance(inst)
        await self.settled(20)
        new = [n for n, r in (await self.roles()).items() if r == "leader"]
        self.faults.append(
            {"at_s": self.t(), "kind": "leader", "instance": inst.name, "down_s": round(down, 2), "new_leader": new}
        )
        self.say(f"{inst.name} back; leader now {new}; settled {time.monotonic() - t0:.1f} s after the kill")

    async def kill_redis(self) -> None:
        t0 = time.monotonic()
        await self.kill(self.redis)
        down = self.rng.uniform(0.5, 2.0)
        self.say(f"SIGKILLed redis-server; back (empty) in {down:.1f} s")
        await asyncio.sleep(down)
        await self.start_redis()
        await self.settled(20)
        self.faults.append({"at_s": self.t(), "kind": "redis", "down_s": round(down, 2)})
        self.say(f"redis back; cluster settled {time.monotonic() - t0:.1f} s after the kill")

    async def quiet(self, seconds: float) -> None:
        """No fault for ``seconds``; the instances' RSS is sampled meanwhile."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample_rss()
            await asyncio.sleep(0.5)
        self.sample_rss()

    # ------------------------------------------------------------------------ run --
    async def run(self) -> None:
        p = self.plan
        await self.start_fake(p.entities)
        await self.start_redis()
        for inst in self.instances:
            self.start_instance(inst)
        self.say(
            f"started fake_ha, redis and {len(self.instances)} instances; settled in {await self.settled(30):.1f} s"
        )
        viewers: list[ClusterViewer] = []
        for i in range(p.viewers):
            v = ClusterViewer(self.viewer(f"v{i}", i, entities=p.entities), lambda: self.calm)
            v.shared = self.instances[i % len(self.instances)].shared
            viewers.append(v)
        connected = await self.connect_all(list[Viewer](viewers))
        self.results["viewers_connected_first"] = connected
        self.say(f"{connected} of {len(viewers)} viewers connected")
        await asyncio.sleep(1.0)
        self.sample_rss()
        keepers = [asyncio.create_task(self.keep(v)) for v in viewers]
        faults = ["leader"] * p.leader_kills + ["redis"] * p.redis_kills
        self.rng.shuffle(faults)
        while faults[0] == "redis" and "leader" in faults:  # a leader kill on a warm log first
            faults.append(faults.pop(0))
        try:
            for fault in faults:
                await self.quiet(self.rng.uniform(*p.gap_s))
                self.calm = False
                await (self.kill_leader() if fault == "leader" else self.kill_redis())
                await asyncio.sleep(CALM_AFTER_S)
                self.calm = True
            await self.quiet(self.rng.uniform(*p.gap_s))
            await self.settled(15)
            await asyncio.sleep(1.0)
            self.moving = False
            truth = await self.truth()
            self.say("fake_ha stopped its changes; waiting for the views")
            t0 = time.monotonic()
            bad = await self.converge(list[Viewer](viewers), truth, 15.0)
            converge_s = time.monotonic() - t0
        finally:
            self.running = False
            await asyncio.gather(*keepers)
        await asyncio.sleep(0.5)
        self.sample_rss()
        roles = await self.roles()
        not_connected = [v for v in viewers if v.status != "connected"]
        self.results.update(
            {
                "viewers": len(viewers),
                "differ": len(bad),
                "differ_example": self.describe(bad, truth),
                "converge_s": round(converge_s, 2),
                "dup": sum(v.dup for v in viewers),
                "id_regressions": sum(v.id_regressions for v in viewers),
                "behind": sum(v.behind_live for v in viewers),
                "behind_stale": sum(v.behind_stale for v in viewers),
                "gaps": sum(v.lost for v in viewers),
                "calm_gaps": sum(v.calm_gaps for v in viewers),
                "calm_gap_examples": [n for v in viewers for n in v.calm_gap_notes][:5],
                "behind_examples": [n for v in viewers for n in v.behind_notes][:8],
                "snapshots": sum(v.snapshots for v in viewers),
                "resumes": {
                    "replay": sum(v.resumes["replay"] for v in viewers),
                    "snapshot": sum(v.resumes["snapshot"] for v in viewers),
                },
                "anomalies": [a for v in viewers for a in v.anomalies if not_a_gap(a)][:10],
                "bad_viewers": [self.detail(v, truth) for v in viewers if v in bad][:5],
                "event_ids_end": await self.event_ids(),
                "not_connected": len(not_connected),
                "not_connected_example": f"{not_connected[0].name}: {not_connected[0].status}" if not_connected else "",
                "states_seen": sum(v.states for v in viewers),
                "viewer_errors": sum(len(v.errors) for v in viewers),
                "moves": self.moves,
                "reconnects": self.reconnects,
                "reconnect_failures": self.reconnect_failures,
                "faults": self.faults,
                "roles_end": roles,
                "ha_connections_end": self.ha_connections(),
                "fake_connections_total": self.fake_connections(),
                "alive_end": {i.name: i.alive for i in self.instances},
                "instances": {
                    i.name: {
                        "port": i.port,
                        "starts": i.starts,
                        "kills": i.kills,
                        "rss_start_kib": i.rss_start,
                        "rss_end_kib": i.rss[-1][1] if i.rss else None,
                        "rss_peak_kib": i.rss_peak,
                        "rss": i.rss,
                        "earlier_incarnations": i.earlier,
                    }
                    for i in self.instances
                },
            }
        )
        for v in viewers:
            v.close()
        # SIGTERM each (by PID), side by side, so the logs end with a clean shutdown; SIGKILL after 10 s.
        await asyncio.gather(*(asyncio.to_thread(stop, i.proc, 10) for i in self.instances if i.proc is not None))
        self.results["exit_codes"] = {i.name: i.proc.returncode if i.proc else None for i in self.instances}
        self.results["logs"] = {i.name: self.scan_instance_log(i) for i in self.instances}
        self.results["redis_log_secrets"] = self.scan_other_log("redis.log")

    def detail(self, v: ClusterViewer, truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "connections": v.log,
            "data_s_ago": round(now - v.last_data, 1),
            "ping_s_ago": round(now - v.last_ping, 1) if v.last_ping else "never",
            "frames": v.frames,
            "name": v.name,
            "instance": self.by_port(v.shared.port).name,
            "alive": v.alive,
            "connects": v.connects,
            "last_id": v.last_id,
            "status": v.status,
            "statuses": v.statuses[-6:],
            "errors": v.errors[-4:],
            "differs": v.differs(truth)[:4],
        }

    def fake_connections(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            assert self.status_file is not None
            return int(json.loads(self.status_file.read_text())["connections"])
        return None

    def scan_instance_log(self, inst: Instance) -> dict[str, Any]:
        logdir = self.logdir
        self.logdir = logdir / f"node-{inst.name}"  # Soak.scan_log reads <logdir>/bridge.log
        try:
            return self.scan_log()
        finally:
            self.logdir = logdir

    def scan_other_log(self, name: str) -> dict[str, int]:
        hits = dict.fromkeys(self.secrets.named, 0)
        with contextlib.suppress(OSError):
            for line in (self.logdir / name).read_bytes().split(b"\n"):
                if not line.startswith(b"$ "):  # the command line the runner wrote
                    for what, forms in self.secrets.forms.items():
                        hits[what] += any(form in line for form in forms)
        return hits


def not_a_gap(anomaly: str) -> bool:
    """A Viewer's note of a duplicate, an id that went back or a snapshot that went back (not a seq gap)."""
    what = anomaly.partition("): ")[2]
    return what.startswith(("id ", "snapshot has")) or " again " in what


# ---------------------------------------------------------------------------- table --
def rows(s: ClusterSoak) -> tuple[list[Row], list[str]]:
    r = s.results
    out: list[Row] = []
    notes: list[str] = []
    if "differ" not in r:
        return out, notes
    kinds = [f["kind"] for f in r["faults"]]
    what = (
        f"{r['viewers']} viewers on 3 instances, leader SIGKILLed {kinds.count('leader')}×, "
        f"Redis SIGKILLed (restarted empty) {kinds.count('redis')}×"
    )
    out.append(
        Row(
            f"{what}: views ≠ fake_ha's truth 15 s after it stopped",
            f"{r['differ']} of {r['viewers']} (all equal after {r['converge_s']} s)"
            if not r["differ"]
            else f"{r['differ']} of {r['viewers']}",
            "0",
            r["differ"] == 0,
        )
    )
    out.append(
        Row(
            f"{what}: changes seen twice / ids back within an epoch / 'connected' snapshots that went back / "
            "changes lost outside a fault",
            f"{r['dup']} / {r['id_regressions']} / {r['behind']} / {r['calm_gaps']}",
            "0 / 0 / 0 / 0",
            r["dup"] == 0 and r["id_regressions"] == 0 and r["behind"] == 0 and r["calm_gaps"] == 0,
        )
    )
    out.append(
        Row(
            "viewers whose last status is not 'connected'",
            str(r["not_connected"]),
            "0",
            r["not_connected"] == 0,
        )
    )
    res = r["resumes"]
    want_kinds = kinds.count("leader") > 0 and kinds.count("redis") > 0
    out.append(
        Row(
            "resumes with Last-Event-ID answered by replay / by snapshot",
            f"{res['replay']} / {res['snapshot']} (of {r['reconnects']} reconnects, {r['moves']} moves)",
            "both kinds; faults of both kinds ran",
            res["replay"] > 0 and res["snapshot"] > 0 and want_kinds,
        )
    )
    roles = r["roles_end"]
    leaders = list(roles.values()).count("leader")
    out.append(
        Row(
            "at the end: leaders (/healthz) / open connections to fake_ha",
            f"{leaders} / {r['ha_connections_end']} (roles {roles})",
            "1 / 1",
            leaders == 1 and r["ha_connections_end"] == 1,
        )
    )
    alive = r["alive_end"]
    out.append(
        Row(
            "instances alive at the end / exit code after SIGTERM",
            f"{sum(alive.values())} of {len(alive)} / {r['exit_codes']}",
            "3 of 3 / 0 or -15 (uvicorn re-raises SIGTERM after a clean shutdown)",
            all(alive.values()) and all(c in (0, -signal.SIGTERM) for c in r["exit_codes"].values()),
        )
    )
    logs = r["logs"]
    tracebacks = {n: lg.get("tracebacks", "no log") for n, lg in logs.items()}
    out.append(
        Row(
            "instance logs: tracebacks",
            " / ".join(f"{n} {t}" for n, t in tracebacks.items()),
            "0 each",
            all(t == 0 for t in tracebacks.values()),
        )
    )
    names = list(s.secrets.named)
    log_hits = {n: 0 for n in names}
    for lg in logs.values():
        for n, c in lg.get("secret_lines", {n: 1 for n in names}).items():
            log_hits[n] += c
    for n, c in r["redis_log_secrets"].items():
        log_hits[n] += c
    out.append(
        Row(
            f"{' / '.join(names)} in a log line (instances, redis) / in a response",
            " / ".join(str(log_hits[n]) for n in names) + " ; " + " / ".join(str(s.secrets.hits[n]) for n in names),
            "0 everywhere",
            not any(log_hits.values()) and not any(s.secrets.hits.values()),
        )
    )
    rss_parts, rss_ok = [], True
    for n, i in r["instances"].items():
        start, end, peak = i["rss_start_kib"], i["rss_end_kib"], i["rss_peak_kib"]
        if end is None or peak > RSS_CAP_KIB:
            rss_ok = False
        if start is not None and end is not None:
            rss_parts.append(f"{n} {start / MIB:.1f}→{end / MIB:.1f}" + (" (restarted)" if i["kills"] else ""))
            rss_ok = rss_ok and end - start <= RSS_GROWTH_KIB
        else:
            rss_ok = False
            rss_parts.append(f"{n}: no figure")

    out.append(
        Row(
            f"instance RSS, {RSS_SETTLE_S:g} s after its (last) start → end (MiB)",
            ", ".join(rss_parts) + f"; peak of any {max(i['rss_peak_kib'] for i in r['instances'].values()) / MIB:.1f}",
            f"growth ≤ {RSS_GROWTH_KIB / MIB:.0f} MiB; peak of any ≤ {RSS_CAP_KIB / MIB:.0f}",
            rss_ok,
        )
    )
    if r["differ_example"]:
        notes.append(f"views: {r['differ_example']}")
    for b in r["bad_viewers"]:
        notes.append(f"differs: {b}")
    if r["bad_viewers"]:
        notes.append(f"event ids at the end: {r['event_ids_end']}")
    if r["not_connected_example"]:
        notes.append(f"status: {r['not_connected_example']}")
    notes += [f"anomaly: {a}" for a in r["anomalies"]]
    notes += [f"lost outside a fault: {a}" for a in r["calm_gap_examples"]]
    notes += [f"snapshot went back: {a}" for a in r["behind_examples"]]
    if r["behind_stale"]:
        notes.append(
            f"{r['behind_stale']} entities went back in snapshots flagged stale (a viewer that moved to an instance "
            "still cut off from Redis: it serves its last data with status 'disconnected'; allowed)"
        )
    notes.append(
        f"faults: {[(f['kind'], f.get('instance', ''), f['at_s']) for f in r['faults']]}; "
        f"fake_ha accepted {r['fake_connections_total']} connections in all"
    )
    notes.append(
        f"viewers: {r['states_seen']} state events, {r['snapshots']} snapshots, {r['gaps']} seq gaps "
        f"during faults (changes HA made while no instance led: allowed), "
        f"{r['reconnect_failures']} reconnects refused or timed out"
    )
    for n, lg in logs.items():
        if lg.get("raised"):
            notes.append(f"log {n}: raised {lg['raised']}")
        if lg.get("errors"):
            notes.append(f"log {n}: {lg['errors']} ERROR lines")
    return out, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller numbers, about a minute")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: new each run, printed)")
    ap.add_argument("--json-out", help="also write the results JSON here")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    plan = QUICK if args.quick else FULL
    s = ClusterSoak(args, plan)
    print(f"soak-cluster: {plan.name} run, seed {args.seed}, logs in {s.logdir}", flush=True)
    title = f"Cluster soak ({plan.name}, seed {args.seed})"
    return soak.conclude("soak-cluster", title, s, s.run, plan.limit_s, lambda: rows(s), args.json_out)


if __name__ == "__main__":
    sys.exit(main())
