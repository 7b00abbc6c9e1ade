#!/usr/bin/env python3
"""Where the memory of an idle ``/events`` stream goes (issue 27): a table of bytes per connection.

    .venv/bin/python bench/memory.py                  # 5000 connections, ~1 min
    .venv/bin/python bench/memory.py --clients 1000   # quicker

It starts ``fake_ha.py`` (no changes: the streams stay idle) and the service, as ``bench/run.py``
does (uvloop + httptools, the stream caps lifted), but through this file's ``--serve`` mode:
the same ``sse_service`` main, plus a SIGUSR1 handler that writes what the process holds to a
JSON file. Nothing in the service knows about it. Then it opens ``--warm`` connections (one-time
costs: caches, lazy imports, the first growth of sets), takes a reading (A), opens ``--clients``
more, waits, takes another (B); every figure is (B - A) / clients. Two passes, each on a fresh
server:

1. **plain**: VmRSS, the blocks Python's allocator hands out, glibc's heap in use
   (``mallinfo2``), and a census of the objects the garbage collector tracks, by type;
2. **traced**: the same under ``tracemalloc`` (which costs memory of its own, so no RSS from this
   pass), each traced allocation put in a category by the innermost frame of its traceback that
   is not a generic helper, and the source lines that hold the most.

tracemalloc sees what Python's allocators hand out (``PyObject_Malloc``, ``PyMem_Malloc`` and
``PyMem_RawMalloc``, which uvloop uses for libuv's handles), at the size asked for. RSS also
holds the allocators' own overhead and what a freed block leaves unusable (fragmentation).
The kernel's side of a socket is in no process's RSS: its slab caches (``/proc/slabinfo``: the TCP
socket, inode, file, dentry, epoll entry) and TCP's buffers (``/proc/net/sockstat``; an idle socket
holds none) are printed apart, per connection end. A block taken from one of Python's free lists
(dicts, tuples, floats) is charged to where it was first allocated, so a few lines in the table
name a place that only made the block.

Loopback only, bounded in time (``--timeout``), and it stops only the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import linecache
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

# bench/ is on sys.path: this file runs as a script
from procs import HERE, LOOPBACK, PY, Procs, child_env, fake_ha_argv, free_port, http_get, raise_nofile, wait_port

TOKEN = "bench-token"
ENTITIES = 10

# Innermost frames in these are helpers: the allocation is charged to the frame that called them.
GENERIC = ("<frozen ", "/tracemalloc.py", "/linecache.py", "/functools.py", "/typing.py", "/enum.py", "/copy.py")
# Category by the file of the charged frame: first match wins.
CATEGORIES = [
    ("/uvicorn/protocols/http/flow_control.py", "uvicorn: flow control (FlowControl, its Event)"),
    ("/uvicorn/protocols/http/", "uvicorn: HTTP protocol, parser, scope, headers, cycle, task"),
    ("/uvicorn/protocols/utils.py", "uvicorn: client/server addresses"),
    ("/uvicorn/", "uvicorn: other"),
    # Made by the event loop's C code with no Python frame of its own: uvloop's transport, its
    # libuv handle, the pseudo-socket; charged to the frame that runs the loop.
    ("/asyncio/runners.py", "event loop, C (uvloop: transport, libuv handle, socket)"),
    ("/uvloop/", "event loop, C (uvloop: transport, libuv handle, socket)"),
    ("<unknown>", "event loop, C (uvloop: transport, libuv handle, socket)"),
    ("/asyncio/locks.py", "asyncio: Event.wait (waiter future)"),
    ("/asyncio/timeouts.py", "asyncio: timeout context"),
    ("/asyncio/", "asyncio: other"),
    ("/sse_service/stream.py", "sse_service: stream (ClientStream, endpoint frames)"),
    ("/sse_service/hub.py", "sse_service: hub (subscriber sets)"),
    ("/sse_service/server.py", "sse_service: server (uvicorn's events and pipeline queue, made lean)"),
    ("/sse_service/", "sse_service: other (app, proxy, access)"),
    ("/starlette/", "starlette"),
    ("/logging/", "logging"),
]


def category(filename: str) -> str:
    for needle, name in CATEGORIES:
        if needle in filename:
            return name
    return "other"


def charged_frame(tb: tracemalloc.Traceback) -> tracemalloc.Frame:
    frames = list(tb)[::-1]  # a Traceback holds the oldest frame first
    for frame in frames:
        if not any(g in frame.filename for g in GENERIC):
            return frame
    return frames[0]


# ------------------------------------------------------------------------ server side --
def _mallinfo_uordblks() -> int | None:
    """glibc's heap bytes in use (``mallinfo2().uordblks``), or None elsewhere."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip

    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    fn.restype = MallInfo2
    return int(fn().uordblks)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def reading(frames: int) -> dict[str, Any]:
    """What this process holds now (run in the server, on SIGUSR1)."""
    gc.collect()
    out: dict[str, Any] = {}
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        by_category: collections.Counter[str] = collections.Counter()
        by_line: collections.Counter[str] = collections.Counter()
        for stat in snapshot.statistics("traceback"):
            frame = charged_frame(stat.traceback)
            by_category[category(frame.filename)] += stat.size
            by_line[f"{frame.filename}:{frame.lineno}"] += stat.size
        out["traced"] = dict(by_category)
        out["lines"] = dict(by_line)
    else:
        census: dict[str, list[int]] = {}
        for obj in gc.get_objects():
            kind = type(obj)
            entry = census.setdefault(f"{kind.__module__}.{kind.__qualname__}", [0, 0])
            entry[0] += 1
            entry[1] += sys.getsizeof(obj)
        out["census"] = census
        out["rss_kib"] = _rss_kib()
        out["blocks"] = sys.getallocatedblocks()
        out["heap"] = _mallinfo_uordblks()
    out["module"] = sys.modules["sse_service"].__file__
    return out


def serve(args: argparse.Namespace) -> int:
    """The service's own main, with a SIGUSR1 handler that writes a reading to ``--out``."""
    if args.trace:
        tracemalloc.start(args.trace)
    out = Path(args.out)
    counter = [0]

    def on_usr1(signum: int, frame: object) -> None:
        counter[0] += 1
        data = reading(args.trace)
        tmp = out.with_suffix(f".{counter[0]}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(out.with_suffix(f".{counter[0]}.json"))

    signal.signal(signal.SIGUSR1, on_usr1)
    from sse_service.__main__ import main

    return main(["--host", LOOPBACK, "--port", str(args.port), "--graceful-timeout", "2"])


# ------------------------------------------------------------------------ client side --
class Idle(asyncio.Protocol):
    """One idle EventSource: sends the request, waits for the snapshot, then only reads."""

    def __init__(self, request: bytes, ready: asyncio.Future[bool]) -> None:
        self.request = request
        self.ready = ready
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.ready.done():
            return
        self.head += data
        if b"event: snapshot" in self.head:
            ok = self.head.startswith(b"HTTP/1.1 200")
            self.head = b""
            self.ready.set_result(ok)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)


async def open_idle(port: int, count: int, into: list[Idle], deadline: float) -> int:
    """Open ``count`` streams, 250 at a time; returns how many reached their snapshot."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET /events HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nConnection: keep-alive\r\nUser-Agent: sse-service-bench\r\n\r\n"
    ).encode()

    async def one() -> bool:
        fut: asyncio.Future[bool] = loop.create_future()
        client = Idle(request, fut)
        try:
            await asyncio.wait_for(loop.create_connection(lambda: client, LOOPBACK, port), deadline - loop.time())
            into.append(client)
            return await asyncio.wait_for(fut, deadline - loop.time())
        except (OSError, TimeoutError):
            return False

    ok = 0
    for start in range(0, count, 250):
        results = await asyncio.gather(*(one() for _ in range(min(250, count - start))))
        ok += sum(results)
    return ok


# The kernel's memory for a socket: its TCP state, inode, open file, dentry and epoll entry.
SLABS = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi")


def kernel_memory() -> dict[str, int]:
    """Bytes in the socket-related slab caches (``/proc/slabinfo``, when readable) and in TCP's
    buffers (``/proc/net/sockstat``, ``TCP: ... mem`` pages)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] in SLABS:
                out[fields[0]] = int(fields[1]) * int(fields[3])  # active objects × object size
    except OSError:
        pass
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            out["tcp buffers"] = int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return out


async def one_pass(args: argparse.Namespace, trace: int, logdir: Path) -> dict[str, Any]:
    """A fresh fake HA and server; readings A (after the warm-up) and B (after ``--clients`` more)."""
    procs = Procs(logdir)
    clients: list[Idle] = []
    loop = asyncio.get_running_loop()
    try:
        ha_port, port = free_port(), free_port()
        fake = fake_ha_argv(ha_port, TOKEN, 0, ENTITIES, args.timeout + 30)
        procs.spawn("fake_ha", fake, set(os.sched_getaffinity(0)))
        if not wait_port(ha_port, 15):
            raise RuntimeError(f"fake_ha did not come up; see {logdir}")
        env = {
            **child_env(),
            "HA_URL": f"ws://{LOOPBACK}:{ha_port}/api/websocket",
            "HA_TOKEN": TOKEN,
            "LOG_LEVEL": "warning",
            "MAX_STREAMS": "1000000",
            "MAX_STREAMS_PER_IP": "1000000",
        }
        out = logdir / f"reading-{trace}"
        argv = [PY, str(HERE / "memory.py"), "--serve", "--port", str(port), "--out", str(out), "--trace", str(trace)]
        server = procs.spawn("server", argv, set(os.sched_getaffinity(0)), env)
        end = time.monotonic() + 30
        while True:
            status, body = http_get(f"http://{LOOPBACK}:{port}/healthz")
            if status == 200 and json.loads(body)["entities"] == ENTITIES:
                break
            if server.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the server did not come up; see {logdir}/server.log")
            await asyncio.sleep(0.1)

        async def take(n: int) -> dict[str, Any]:
            await asyncio.sleep(args.settle)
            kernel = kernel_memory()
            server.send_signal(signal.SIGUSR1)
            path = out.with_suffix(f".{n}.json")
            until = time.monotonic() + 120
            while not path.exists():
                if server.poll() is not None or time.monotonic() > until:
                    raise RuntimeError(f"no reading from the server; see {logdir}/server.log")
                await asyncio.sleep(0.1)
            data: dict[str, Any] = json.loads(path.read_text())
            data["kernel"] = kernel
            return data

        deadline = loop.time() + args.timeout
        warm = await open_idle(port, args.warm, clients, deadline)
        a = await take(1)
        opened = await open_idle(port, args.clients, clients, deadline)
        b = await take(2)
        if warm < args.warm or opened < args.clients:
            raise RuntimeError(f"only {warm}/{args.warm} + {opened}/{args.clients} streams opened")
        return {"a": a, "b": b, "n": opened, "warm": warm}
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
        procs.stop_all()


def per_conn(a: dict[str, Any], b: dict[str, Any], n: int) -> dict[str, float]:
    return {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}


def source(key: str) -> str:
    filename, _, lineno = key.rpartition(":")
    text = linecache.getline(filename, int(lineno)).strip() if lineno.isdigit() else ""
    short = filename.split("/site-packages/")[-1].split("/wt-mem/")[-1].split("/lib/python3")[-1]
    return f"{short}:{lineno} `{text[:70]}`"


def report(plain: dict[str, Any], traced: dict[str, Any], top: int) -> str:
    n = plain["n"]
    pa, pb = plain["a"], plain["b"]
    rss = (pb["rss_kib"] - pa["rss_kib"]) * 1024 / n
    lines = [f"Idle /events streams: {n} opened after a warm-up of {plain['warm']}; bytes per connection", ""]
    cats = per_conn(traced["a"]["traced"], traced["b"]["traced"], traced["n"])
    total = sum(cats.values())
    lines.append(f"sse_service from {plain['b']['module']}")
    lines += ["", "| category (tracemalloc, by the frame that allocated) | bytes/conn |", "|---|---:|"]
    for name, size in sorted(cats.items(), key=lambda kv: -kv[1]):
        if abs(size) >= 1:
            lines.append(f"| {name} | {size:,.0f} |")
    lines.append(f"| **traced in all** | **{total:,.0f}** |")
    heap = None
    if pa.get("heap") is not None and pb.get("heap") is not None:
        heap = (pb["heap"] - pa["heap"]) / n
    blocks = (pb["blocks"] - pa["blocks"]) / n
    kernel = per_conn(pa["kernel"], pb["kernel"], n)
    lines += [
        f"| not traced: RSS minus traced (allocator overhead, fragmentation, partly used pools) | {rss - total:,.0f} |",
        f"| **server VmRSS** | **{rss:,.0f}** ({rss / 1024:.2f} KiB) |",
        "",
        f"Python allocator blocks per connection: {blocks:.1f}; glibc heap in use (mallinfo2): "
        + (f"{heap:,.0f} B" if heap is not None else "n/a"),
        "Kernel memory per connection end, not in any process's RSS (half the change: both ends are on "
        "this host; slab caches are shared with the rest of the machine): "
        + ", ".join(f"{k} {kernel[k] / 2:,.0f} B" for k in (*SLABS, "tcp buffers") if k in kernel),
        "",
        f"Top {top} source lines (tracemalloc, bytes/conn):",
        "",
        "| line | bytes/conn |",
        "|---|---:|",
    ]
    by_line = per_conn(traced["a"]["lines"], traced["b"]["lines"], traced["n"])
    for key, size in sorted(by_line.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {source(key)} | {size:,.0f} |")
    ca, cb = pa["census"], pb["census"]
    rows = []
    for kind in set(ca) | set(cb):
        count = (cb.get(kind, [0, 0])[0] - ca.get(kind, [0, 0])[0]) / n
        size = (cb.get(kind, [0, 0])[1] - ca.get(kind, [0, 0])[1]) / n
        if count >= 0.05:
            rows.append((size, count, kind))
    lines += ["", "Objects the GC tracks (sys.getsizeof; a __dict__ is its own row):", "",
              "| type | objects/conn | bytes/conn |", "|---|---:|---:|"]  # fmt: skip
    for size, count, kind in sorted(rows, reverse=True):
        lines.append(f"| {kind} | {count:.2f} | {size:,.0f} |")
    return "\n".join(lines)


async def measure(args: argparse.Namespace, logroot: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    raise_nofile(args.warm + args.clients + 256)
    plain = await asyncio.wait_for(one_pass(args, 0, logroot / "plain"), args.timeout + 60)
    traced = await asyncio.wait_for(one_pass(args, args.frames, logroot / "traced"), args.timeout + 120)
    return plain, traced


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=5000, help="idle streams measured (default 5000)")
    ap.add_argument("--warm", type=int, default=200, help="streams opened before the first reading")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between the last connection and a reading")
    ap.add_argument("--frames", type=int, default=12, help="tracemalloc traceback depth")
    ap.add_argument("--top", type=int, default=25, help="source lines shown")
    ap.add_argument("--timeout", type=float, default=90.0, help="limit for opening the streams, per pass")
    ap.add_argument("--json-out", help="write both passes' readings here")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--trace", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    logroot = Path(os.environ.get("TMPDIR", "/tmp")) / "sse-service-memory" / time.strftime("%Y%m%d-%H%M%S")
    plain, traced = runner(measure(args, logroot))
    print(report(plain, traced, args.top))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"plain": plain, "traced": traced}))
    print(f"\nlogs and readings: {logroot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
