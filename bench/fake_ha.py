#!/usr/bin/env python3
"""A minimal Home Assistant WebSocket API upstream for the benchmark (loopback only).

Adapted from the ssebench harness. It speaks enough of HA's protocol for an HA-to-SSE
bridge to connect, authenticate, fetch states and subscribe:

* ``auth_required`` on connect; ``auth`` with the right token -> ``auth_ok``, else
  ``auth_invalid`` and close (10 s auth timeout, as HA);
* ``get_states``; ``subscribe_events`` (state_changed) -> one ``state_changed`` event per
  change; ``subscribe_entities`` (optional ``entity_ids``) -> an ``{"a": ...}`` snapshot,
  then one ``{"c": {id: {"+": ...}}}`` diff per change;
* ``unsubscribe_events``, ``supported_features``, ``get_config``, ``call_service``,
  ``ping`` -> ``pong``; unknown types -> ``unknown_command``; ids must increase.

Changes come at ``--rate`` per second, round-robin over ``--entities`` entities
(``sensor.bench_0`` ...): change number ``seq`` (1, 2, ...) is for entity ``(seq - 1) %
entities``. Each change stamps ``t`` (``time.time_ns()`` when emitted) and ``seq`` into the
entity's attributes (``new_state.attributes`` for ``subscribe_events``, ``+.a`` for
``subscribe_entities``), so a subscriber can measure latency, count gaps and know which
entity a change is for.

Signals: with ``--wait-signal`` nothing is emitted before SIGUSR1. SIGUSR2 stops emitting
for good and writes ``{"last_seq": N, "entities": E, "states": {...}}`` to ``--status-file``:
the final state every subscriber must end with (``states`` is what ``get_states`` would
answer, by entity id). Like HA, each connection has a bounded send queue
(``--max-pending``, HA uses 4096): a client that does not read fast enough is dropped.

Invalid JSON from a client ends its connection, as HA does ("Received invalid JSON"). With
``--strict-json`` (used by ``soak.py``) that also covers what HA's parser cannot take:
integers outside the signed 64-bit range, numbers that are not finite (``1e309``,
``NaN``), nesting too deep for the parser. (HA 2024.3 dropped the connection on a
400-digit integer and on ``1e309``; the bridge's rule is stricter: nothing outside int64.)
Each such drop prints ``fake_ha: Received invalid JSON (...)`` to stderr;
``--log-connections`` also prints one line per authenticated connection. ``--pad N`` adds
an ``N``-character attribute to every entity, so every state the bridge sends is larger.

Bounded: exits after ``--max-seconds`` and emits at most ``--max-events`` changes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import json
import math
import os
import random
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


def dumps(o: Any) -> str:
    return json.dumps(o, separators=(",", ":"))


loads = json.loads

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class InvalidJSON(ValueError):
    """What HA's JSON parser would refuse: it then drops the connection."""


def _int64(text: str) -> int:
    if len(text.lstrip("-")) > 19:  # before int(): Python refuses more than 4300 digits itself
        raise InvalidJSON(f"integer of {len(text.lstrip('-'))} digits")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidJSON(f"integer {text} outside the signed 64-bit range")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"number {text[:30]} is not finite")
    return value


def _no_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not JSON")


def strict_loads(raw: str | bytes) -> Any:
    """``json.loads`` that refuses what HA's parser refuses (see the module docstring)."""
    try:
        return json.loads(raw, parse_int=_int64, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidJSON("nested too deep") from None


HA_VERSION = "2024.10.0"
CROCK = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_like(ns: int | None = None) -> str:
    ms = (ns or time.time_ns()) // 1_000_000
    v = ((ms & ((1 << 48) - 1)) << 80) | random.getrandbits(80)
    return "".join(CROCK[(v >> (5 * i)) & 31] for i in range(25, -1, -1))


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def context(ns: int) -> dict[str, Any]:
    return {"id": ulid_like(ns), "parent_id": None, "user_id": None}


class World:
    def __init__(self, entities: int, pad: int = 0) -> None:
        now = time.time_ns()
        self.states: dict[str, dict[str, Any]] = {}
        self.base: dict[str, dict[str, Any]] = {}  # the attributes every state of an entity has
        for i in range(entities):
            eid = f"sensor.bench_{i}"
            base: dict[str, Any] = {"unit_of_measurement": "%", "friendly_name": f"Bench {i}"}
            if pad:
                base["pad"] = "x" * pad
            self.base[eid] = base
            self.states[eid] = {
                "entity_id": eid,
                "state": "0",
                "attributes": dict(base),
                "last_changed": iso(now),
                "last_updated": iso(now),
                "context": context(now),
            }
        self.ids = list(self.states)
        self.lc = {eid: now / 1e9 for eid in self.ids}  # last_changed, float seconds
        self.lu = dict(self.lc)
        self.extra: dict[str, dict[str, Any]] = {eid: {} for eid in self.ids}  # t/seq last sent
        self.seq = 0

    def compressed(self, eid: str) -> dict[str, Any]:
        """State.as_compressed_state: s, a, c, lc (and lu when it differs)."""
        st = self.states[eid]
        out = {
            "s": st["state"],
            "a": {**st["attributes"], **self.extra[eid]},
            "c": st["context"]["id"],
            "lc": self.lc[eid],
        }
        if self.lu[eid] != self.lc[eid]:
            out["lu"] = self.lu[eid]
        return out

    def change(self) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Advance one entity; return (state_changed event, subscribe_entities diff, entity id)."""
        self.seq += 1
        seq = self.seq
        eid = self.ids[(seq - 1) % len(self.ids)]
        ns = time.time_ns()
        ts = iso(ns)
        old = self.states[eid]
        ctx = context(ns)
        new = {
            "entity_id": eid,
            "state": str(seq % 100),
            "attributes": {"t": ns, "seq": seq, **self.base[eid]},
            "last_changed": ts if str(seq % 100) != old["state"] else old["last_changed"],
            "last_updated": ts,
            "context": ctx,
        }
        # The old_state sent next time carries no t/seq, so the first "t"/"seq" in an event
        # is always the new one.
        self.states[eid] = dict(new, attributes=dict(self.base[eid]))
        self.extra[eid] = {"t": ns, "seq": seq}
        plus: dict[str, Any] = {"a": {"t": ns, "seq": seq}, "c": ctx["id"]}
        if new["state"] != old["state"]:
            plus["s"] = new["state"]
            plus["lc"] = ns / 1e9
            self.lc[eid] = ns / 1e9
        else:
            plus["lu"] = ns / 1e9
        self.lu[eid] = ns / 1e9
        ev = {
            "event_type": "state_changed",
            "data": {"entity_id": eid, "old_state": old, "new_state": new},
            "origin": "LOCAL",
            "time_fired": ts,
            "context": ctx,
        }
        return ev, {"c": {eid: {"+": plus}}}, eid


class Conn:
    """One client connection, with a bounded send queue like HA's."""

    def __init__(self, ws: ServerConnection, max_pending: int) -> None:
        self.ws = ws
        self.q: collections.deque[str] = collections.deque()
        self.wake = asyncio.Event()
        self.max_pending = max_pending
        self.subs: set[int] = set()  # subscribe_events (state_changed) ids
        self.ent_subs: dict[int, set[str] | None] = {}  # subscribe_entities id -> filter
        self.dead = False

    def send(self, msg: str) -> None:
        if self.dead:
            return
        if len(self.q) >= self.max_pending:
            self.dead = True
            print(f"fake_ha: client unable to keep up ({len(self.q)} pending), closing", file=sys.stderr, flush=True)
            asyncio.ensure_future(self.ws.close())
            return
        self.q.append(msg)
        self.wake.set()

    async def writer(self) -> None:
        try:
            while not self.dead:
                await self.wake.wait()
                self.wake.clear()
                while self.q:
                    await self.ws.send(self.q.popleft())
        except ConnectionClosed:
            pass
        finally:
            self.dead = True


class FakeHA:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.world = World(args.entities, args.pad)
        self.conns: set[Conn] = set()
        self.has_sub = asyncio.Event()
        self.go = asyncio.Event()  # SIGUSR1 with --wait-signal
        self.stopped = asyncio.Event()  # SIGUSR2
        self.emitted = 0
        self.max_lag_ms = 0.0
        self.connections = 0  # authenticated
        self.invalid_json_drops = 0

    async def handler(self, ws: ServerConnection) -> None:
        a = self.args
        await ws.send(dumps({"type": "auth_required", "ha_version": HA_VERSION}))
        try:
            msg = loads(await asyncio.wait_for(ws.recv(), 10))
        except (TimeoutError, ValueError, ConnectionClosed):
            return
        if (
            not isinstance(msg, dict)
            or msg.get("type") != "auth"
            or set(msg) != {"type", "access_token"}
            or msg.get("access_token") != a.token
        ):
            await ws.send(dumps({"type": "auth_invalid", "message": "Invalid access token or password"}))
            await ws.close()
            return
        await ws.send(dumps({"type": "auth_ok", "ha_version": HA_VERSION}))
        self.connections += 1
        if a.log_connections:
            print(f"fake_ha: connection {self.connections} authenticated", file=sys.stderr, flush=True)
        c = Conn(ws, a.max_pending)
        self.conns.add(c)
        wtask = asyncio.ensure_future(c.writer())
        last_id = 0
        parse = strict_loads if a.strict_json else loads
        try:
            async for raw in ws:
                try:
                    msg = parse(raw)
                except ValueError as e:  # HA disconnects on invalid JSON
                    self.invalid_json_drops += 1
                    why = str(e)[:120] if isinstance(e, InvalidJSON) else "malformed"
                    print(f"fake_ha: Received invalid JSON ({why}); disconnecting", file=sys.stderr, flush=True)
                    break
                for m in msg if isinstance(msg, list) else [msg]:
                    last_id = self.command(c, m, last_id)
                if c.dead:
                    break
        except ConnectionClosed:
            pass
        finally:
            c.dead = True
            c.wake.set()
            self.conns.discard(c)
            wtask.cancel()

    def command(self, c: Conn, m: Any, last_id: int) -> int:
        mid = m.get("id") if isinstance(m, dict) else None
        typ = m.get("type") if isinstance(m, dict) else None
        if not isinstance(mid, int) or isinstance(mid, bool) or mid <= 0 or not typ:
            error = {"code": "invalid_format", "message": "Message incorrectly formatted."}
            c.send(dumps({"id": mid, "type": "result", "success": False, "error": error}))
            return last_id
        if mid <= last_id:
            error = {"code": "id_reuse", "message": "Identifier values have to increase."}
            c.send(dumps({"id": mid, "type": "result", "success": False, "error": error}))
            return last_id

        def ok(result: Any = None) -> None:
            c.send(dumps({"id": mid, "type": "result", "success": True, "result": result}))

        if typ == "ping":
            c.send(dumps({"id": mid, "type": "pong"}))
        elif typ == "get_states":
            ok(
                [
                    dict(st, attributes={**st["attributes"], **self.world.extra[eid]})
                    for eid, st in self.world.states.items()
                ]
            )
        elif typ == "subscribe_events":
            if m.get("event_type", "state_changed") == "state_changed":
                c.subs.add(mid)
                self.has_sub.set()
            ok()
        elif typ == "subscribe_entities":
            ids = m.get("entity_ids")
            if isinstance(ids, str):
                ids = [x.strip() for x in ids.split(",")]
            flt = set(ids) if ids else None
            c.ent_subs[mid] = flt
            self.has_sub.set()
            ok()
            snap = {eid: self.world.compressed(eid) for eid in self.world.ids if flt is None or eid in flt}
            c.send(dumps({"type": "event", "event": {"a": snap}, "id": mid}))
        elif typ == "unsubscribe_events":
            sub = m.get("subscription")
            if sub in c.subs or sub in c.ent_subs:
                c.subs.discard(sub)
                c.ent_subs.pop(sub, None)
                ok()
            else:
                error = {"code": "not_found", "message": "Subscription not found."}
                c.send(dumps({"id": mid, "type": "result", "success": False, "error": error}))
        elif typ == "call_service":
            ok({"context": context(time.time_ns()), "response": None})
        elif typ == "supported_features":
            ok()
        elif typ == "get_config":
            ok({"version": HA_VERSION, "location_name": "Bench", "time_zone": "UTC", "state": "RUNNING"})
        else:
            error = {"code": "unknown_command", "message": "Unknown command."}
            c.send(dumps({"id": mid, "type": "result", "success": False, "error": error}))
        return mid

    async def emitter(self) -> None:
        a = self.args
        if a.rate <= 0:
            return
        await self.has_sub.wait()
        if a.wait_signal:
            await self.go.wait()
        period = 1.0 / a.rate
        t0 = time.monotonic()
        for n in range(a.max_events):
            if self.stopped.is_set():
                return
            due = t0 + n * period
            d = due - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
                if self.stopped.is_set():
                    return
            else:
                self.max_lag_ms = max(self.max_lag_ms, -d * 1000)
            ev, diff, eid = self.world.change()
            self.emitted += 1
            for c in list(self.conns):
                for sid in c.subs:
                    c.send(dumps({"id": sid, "type": "event", "event": ev}))
                for sid, flt in c.ent_subs.items():
                    if flt is None or eid in flt:
                        c.send(dumps({"type": "event", "event": diff, "id": sid}))

    def write_status(self) -> None:
        if not self.args.status_file:
            return
        tmp = self.args.status_file + ".tmp"
        w = self.world
        states = {eid: dict(st, attributes={**st["attributes"], **w.extra[eid]}) for eid, st in w.states.items()}
        status = {
            "last_seq": w.seq,
            "entities": len(w.ids),
            "emitted": self.emitted,
            "connections": self.connections,
            "invalid_json_drops": self.invalid_json_drops,
            "states": states,
        }
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, self.args.status_file)

    def stop_emitting(self) -> None:
        self.stopped.set()
        self.write_status()


async def amain(args: argparse.Namespace) -> None:
    fh = FakeHA(args)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: None if stop.done() else stop.set_result(None))
    loop.add_signal_handler(signal.SIGUSR1, fh.go.set)
    loop.add_signal_handler(signal.SIGUSR2, fh.stop_emitting)
    compression = None if args.compression == "none" else "deflate"
    async with serve(
        fh.handler, args.host, args.port, compression=compression, max_size=None, ping_interval=55, ping_timeout=55
    ):
        print(
            f"fake_ha listening ws://{args.host}:{args.port}/api/websocket rate={args.rate}/s entities={args.entities}",
            flush=True,
        )
        em = asyncio.ensure_future(fh.emitter())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop, args.max_seconds)
        em.cancel()
    print(f"fake_ha: emitted {fh.emitted} events, max schedule lag {fh.max_lag_ms:.1f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--token", default="bench-token")
    ap.add_argument("--rate", type=float, default=10.0, help="changes per second in total")
    ap.add_argument("--entities", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long")
    ap.add_argument("--max-events", type=int, default=10_000_000)
    ap.add_argument("--max-pending", type=int, default=4096)
    ap.add_argument("--wait-signal", action="store_true", help="emit nothing until SIGUSR1")
    ap.add_argument("--status-file", help="where SIGUSR2 writes the final seq and states")
    ap.add_argument("--pad", type=int, default=0, help="add an attribute of this many characters to every entity")
    ap.add_argument(
        "--strict-json",
        action="store_true",
        help="also drop a connection on integers outside int64, non-finite numbers, deep nesting (as HA's parser)",
    )
    ap.add_argument("--log-connections", action="store_true", help="one stderr line per authenticated connection")
    ap.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="permessage-deflate offer (HA's aiohttp accepts it)",
    )
    args = ap.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        ap.error("--host must be a loopback address")
    if args.entities < 1:
        ap.error("--entities must be >= 1")
    if not 0 <= args.pad <= 1_000_000:
        ap.error("--pad must be in 0..1000000")
    try:
        import uvloop
    except ImportError:
        asyncio.run(amain(args))
    else:
        uvloop.run(amain(args))


if __name__ == "__main__":
    main()
