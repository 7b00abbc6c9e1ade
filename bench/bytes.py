#!/usr/bin/env python3
"""Bytes per change and the snapshot's size, full and compact stream, next to HA's own WebSocket (issue 27).

    .venv/bin/python bench/bytes.py [--changes 10] [--no-real-ha] [--home-entities 2000]

**(a) Bytes per change.** A real Home Assistant 2026.11 (tests/real_ha.py's ``RealHA``, its test
configuration plus HA's ``demo`` integration, in a fresh config dir) holds three kinds of entity:
``input_number.battery``, ``sensor.house_power`` (device_class power, state_class measurement, W;
written with ``POST /api/states``) and the demo's ``light.bed_light`` (colour modes, effect list,
kelvin range...). ``python -m sse_service`` bridges those three. Then, for each kind, one change
to warm up (it creates the sensor and turns the light on) and ``--changes`` measured ones
(``input_number.set_value``, a REST state write, ``light.turn_on`` with a new brightness), one at
a time, each waited for everywhere before the next, and seen by four clients:

* two WebSockets of our own to HA (``ha_ws.py``, frames read byte by byte), each
  ``subscribe_entities`` to the three: one offers nothing, one offers permessage-deflate as
  browsers do. Per change: the message's text bytes, its frame bytes (header included), and the
  frame bytes when deflated (with the compression context of everything before, as a browser's
  connection has it);
* raw socket readers of ``/events`` and ``/events?format=compact`` (``wire.py``): every byte on
  the wire per change event, the HTTP chunk header and trailing CRLF included.

A change is matched across the four by its context id, which HA's REST answer gives. The table
shows medians over the measured changes.

**(b) The snapshot.** The snapshot event's bytes on the wire (chunk header, frame, CRLF) of both
streams, once the bridge's recorder history is in: for the real HA above with ``ENTITIES`` unset
(next to HA's own first ``subscribe_entities`` message, measured), the bridge's built-in demo
(no ``HA_URL``), a home of ``--home-entities`` realistic states served by ``fake_home.py``, and
as many of ``fake_ha.py``'s ``sensor.bench_<i>``. For the two fakes, the HA column is their own
first ``subscribe_entities`` message: HA's compressed form of the same states as the fakes build
it, not measured on HA.

``--no-real-ha`` runs (a) against ``fake_home.py`` instead: its HA columns are then the fake's
port of HA's compressed format, labelled so. Without the compact format on the server (the
compact stream's snapshot does not say ``"format":"compact"``), the compact columns read n/a.

Loopback only; every process started here (HA, the bridge, the fake) is stopped by its PID at
the end, whatever happens; the whole run is bounded by ``--max-seconds``. Logs and a JSON of
every measured change go to ``$TMPDIR/sse-service-bytes/<stamp>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# bench/ is on sys.path: this file runs as a script
from fake_home import INPUT_NUMBER, LIGHT, POWER_SENSOR
from ha_ws import Message, WSClient, WSError
from procs import (
    LOOPBACK,
    PY,
    ROOT,
    Procs,
    child_env,
    fake_ha_argv,
    free_port,
    http_get,
    service_argv,
    wait_port,
)
from wire import Event, SSEReader, WireError, parse_event

HERE = Path(__file__).resolve().parent
KINDS = (
    ("input_number", INPUT_NUMBER),
    ("power sensor", POWER_SENSOR),
    ("light (demo)", LIGHT),
)
POWER_ATTRIBUTES = {
    "state_class": "measurement",
    "unit_of_measurement": "W",
    "device_class": "power",
    "friendly_name": "House power",
}
# The real HA: tests/real_ha.py's configuration, plus the demo integration for its light.
DEMO_CONFIG = "demo:\n"
TOKEN = "bytes-bench-token"  # the fake's
WAIT = 10.0  # seconds a change may take to reach every client


async def until(done: Callable[[], bool], changed: asyncio.Event, within: float) -> bool:
    """Whether ``done()`` came true within ``within`` s, checked each time ``changed`` is set."""
    end = time.monotonic() + within
    while True:
        changed.clear()
        if done():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), left)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- the SSE side --
class ChunkLedger:
    """The books of a chunked body: which raw bytes (chunk header, data, CRLF) carried which
    decoded ones. ``wire.py``'s SSEReader de-chunks and parses the stream; this only counts, so
    that a frame's bytes on the wire are exact whatever the reads or the chunks."""

    def __init__(self) -> None:
        self.decoded = bytearray()
        self.starts: list[int] = []  # decoded offset where each complete chunk's data starts
        self.ends: list[int] = []  # ... ends
        self.raw: list[int] = []  # each complete chunk's bytes on the wire
        self._buf = b""
        self._left = 0  # data bytes of the current chunk still to come
        self._in_chunk = False  # between a chunk's header and its CRLF
        self._raw = 0  # wire bytes of the current chunk so far
        self.ended = False

    def feed(self, data: bytes) -> None:
        buf, pos = self._buf + data, 0
        while not self.ended:
            if not self._in_chunk:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                size = int(buf[pos:i].split(b";")[0], 16)
                self._raw, pos = i + 2 - pos, i + 2
                if size == 0:
                    self.ended = True
                    break
                self._in_chunk, self._left = True, size
                self.starts.append(len(self.decoded))
            take = min(self._left, len(buf) - pos)
            self.decoded += buf[pos : pos + take]
            pos, self._left, self._raw = pos + take, self._left - take, self._raw + take
            if self._left or len(buf) - pos < 2:
                break
            pos, self._raw, self._in_chunk = pos + 2, self._raw + 2, False  # the CRLF after the data
            self.ends.append(len(self.decoded))
            self.raw.append(self._raw)
        self._buf = buf[pos:]

    def wire(self, start: int, end: int) -> int:
        """The wire bytes of the decoded bytes [start, end) (a frame and its blank line): those
        bytes, plus the chunk header and CRLF of each chunk whose last data byte is among them.
        So a frame alone in its chunk counts the whole chunk, and when frames share a chunk
        (the ``retry:`` line and the snapshot do) its header goes to the frame that ends it;
        the frames' counts add up to the body."""
        first, last = bisect.bisect_right(self.ends, start), bisect.bisect_right(self.ends, end)
        return end - start + sum(self.raw[i] - (self.ends[i] - self.starts[i]) for i in range(first, last))

    def alone(self, start: int, end: int) -> bool:
        """Whether the chunks holding [start, end) hold nothing else."""
        first, last = bisect.bisect_left(self.starts, start), bisect.bisect_left(self.ends, end)
        return (
            first < len(self.starts)
            and self.starts[first] == start
            and last < len(self.ends)
            and self.ends[last] == end
        )


@dataclasses.dataclass(slots=True)
class Frame:
    """One SSE frame: its fields and where it is in the decoded body (its blank line included)."""

    event: Event
    start: int
    end: int
    ledger: ChunkLedger

    @property
    def wire(self) -> int:
        """Its bytes on the wire: the frame, its blank line, its chunk's header and CRLF (see ``ChunkLedger.wire``)."""
        return self.ledger.wire(self.start, self.end)

    @property
    def alone(self) -> bool:
        return self.ledger.alone(self.start, self.end)


class SSEWatch:
    """A raw reader of one ``/events`` stream that keeps every frame with its bytes on the wire."""

    def __init__(self, name: str, port: int, path: str) -> None:
        self.name = name
        self.port = port
        self.path = path
        self.frames: list[Frame] = []
        self.snapshot: Frame | None = None
        self.error: str | None = None
        self.changed = asyncio.Event()
        self.head_bytes = 0
        self.total = 0  # bytes read
        self.ledger = ChunkLedger()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, self.port), 5)
        self._writer = writer
        request = f"GET {self.path} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\nAccept: text/event-stream\r\n\r\n"
        writer.write(request.encode())
        self._task = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        sse = SSEReader()
        total = pos = 0
        try:
            while data := await reader.read(1 << 20):
                before, total = total, total + len(data)
                self.total = total
                had_head = sse.head is not None
                frames = sse.feed(data)
                if sse.head is not None and not sse.chunked:
                    raise WireError("not chunked: no per-frame count")
                if not had_head and sse.head is not None:
                    self.head_bytes = len(sse.head.raw) + 4  # the head is the stream's first bytes
                    self.ledger.feed(data[self.head_bytes - before :])
                elif had_head:
                    self.ledger.feed(data)
                for frame in frames:
                    # Where it ends in the body: the blank line after it. Lines may end in CRLF or
                    # LF, mixed in one chunk (the compact stream's frames follow a CRLF retry:).
                    decoded = self.ledger.decoded
                    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := decoded.find(sep, pos)) >= 0]
                    end = min(ends) if ends else len(decoded)
                    self._add(Frame(parse_event(frame), pos, end, self.ledger))
                    pos = end
        except WireError as e:
            self.error = str(e)
        except (OSError, ConnectionError) as e:
            self.error = repr(e)
        finally:
            self.changed.set()

    def _add(self, frame: Frame) -> None:
        self.frames.append(frame)
        if frame.event.event == "snapshot" and self.snapshot is None:
            self.snapshot = frame
        self.changed.set()

    @property
    def compact(self) -> bool:
        """Whether the server sent the compact format (its snapshot says so)."""
        if self.snapshot is None or self.snapshot.event.data is None:
            return False
        return bool(json.loads(self.snapshot.event.data).get("format") == "compact")

    def by_context(self) -> dict[str, Frame]:
        """The change frames (full ``state`` or compact), by the context id of the change."""
        out: dict[str, Frame] = {}
        for frame in self.frames:
            if frame.event.event not in ("state", "message") or frame.event.data is None:
                continue
            data = json.loads(frame.event.data)
            ctx = data.get("context", data.get("c"))
            ctx_id = ctx if isinstance(ctx, str) else ctx.get("id") if isinstance(ctx, dict) else None
            if isinstance(ctx_id, str):
                out[ctx_id] = frame
        return out

    async def wait_snapshot(self, within: float) -> None:
        if not await until(lambda: self.snapshot is not None or self.error is not None, self.changed, within):
            raise TimeoutError(f"{self.name}: no snapshot within {within:.0f} s")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -------------------------------------------------------------------------------- HA's side --
@dataclasses.dataclass(slots=True)
class HAChange:
    entity_id: str
    message: Message
    entities_in_message: int  # 1 unless HA put several changes into one message


class HAWatch:
    """Our own ``subscribe_entities`` on HA's WebSocket: every message, sized, by context id."""

    def __init__(self, name: str, client: WSClient) -> None:
        self.name = name
        self.client = client
        self.first: Message | None = None  # the first event: every entity, whole
        self.changes: dict[str, HAChange] = {}
        self.changed = asyncio.Event()
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, name: str, port: int, token: str, entity_ids: list[str] | None, *, deflate: bool) -> HAWatch:
        client = await WSClient.connect(LOOPBACK, port, offer_deflate=deflate)
        if json.loads((await client.recv()).text).get("type") != "auth_required":
            raise WSError("no auth_required")
        await client.send(json.dumps({"type": "auth", "access_token": token}))
        if (reply := json.loads((await client.recv()).text)).get("type") != "auth_ok":
            raise WSError(f"auth refused: {reply.get('type')}")
        subscribe: dict[str, Any] = {"id": 1, "type": "subscribe_entities"}
        if entity_ids:
            subscribe["entity_ids"] = entity_ids
        await client.send(json.dumps(subscribe))
        watch = cls(name, client)
        watch._task = asyncio.ensure_future(watch._read())
        return watch

    async def _read(self) -> None:
        try:
            while True:
                message = await self.client.recv(within=3600)
                parsed = json.loads(message.text)
                for m in parsed if isinstance(parsed, list) else [parsed]:
                    if m.get("type") == "event":
                        self._event(m.get("event") or {}, message)
        except (WSError, OSError, ConnectionError) as e:
            self.error = repr(e)
        finally:
            self.changed.set()

    def _event(self, event: dict[str, Any], message: Message) -> None:
        if self.first is None:
            self.first = message
            self.changed.set()
            return
        found: list[tuple[str, Any]] = []
        for eid, whole in (event.get("a") or {}).items():
            found.append((eid, whole.get("c")))
        for eid, diff in (event.get("c") or {}).items():
            found.append((eid, (diff.get("+") or {}).get("c")))
        for eid, ctx in found:
            ctx_id = ctx if isinstance(ctx, str) else ctx.get("id") if isinstance(ctx, dict) else None
            if isinstance(ctx_id, str):
                self.changes[ctx_id] = HAChange(eid, message, len(found))
        self.changed.set()

    async def wait_first(self, within: float) -> Message:
        if not await until(lambda: self.first is not None or self.error is not None, self.changed, within):
            raise TimeoutError(f"{self.name}: no first event within {within:.0f} s")
        if self.first is None:
            raise WSError(f"{self.name}: {self.error}")
        return self.first

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()


# ------------------------------------------------------------------------- making changes --
Change = Callable[[str, Any], Awaitable[str]]  # (entity id, value) -> the change's context id


def rest_changer(base: str, token: str) -> Change:
    """Changes through HA's REST API, as a script or the UI would: the context id from HA's answer."""

    def post(path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def change(eid: str, value: Any) -> str:
        if eid == POWER_SENSOR:
            state = post(f"/api/states/{eid}", {"state": value, "attributes": POWER_ATTRIBUTES})
        else:
            service = "/api/services/input_number/set_value" if eid == INPUT_NUMBER else "/api/services/light/turn_on"
            body = (
                {"entity_id": eid, "value": value} if eid == INPUT_NUMBER else {"entity_id": eid, "brightness": value}
            )
            state = next(s for s in post(service, body) if s["entity_id"] == eid)
        return str(state["context"]["id"])

    async def run(eid: str, value: Any) -> str:
        return await asyncio.to_thread(change, eid, value)

    return run


async def ws_changer(port: int, token: str) -> tuple[Change, WSClient]:
    """Changes through the fake's WebSocket: ``call_service``, and ``bench/set_state`` for the sensor."""
    client = await WSClient.connect(LOOPBACK, port, offer_deflate=False)
    await client.recv()
    await client.send(json.dumps({"type": "auth", "access_token": token}))
    await client.recv()
    ids = iter(range(1, 1 << 30))

    async def run(eid: str, value: Any) -> str:
        mid = next(ids)
        if eid == POWER_SENSOR:
            msg = {
                "id": mid,
                "type": "bench/set_state",
                "entity_id": eid,
                "state": value,
                "attributes": POWER_ATTRIBUTES,
            }
        else:
            domain, service, key = (
                ("input_number", "set_value", "value") if eid == INPUT_NUMBER else ("light", "turn_on", "brightness")
            )
            msg = {
                "id": mid,
                "type": "call_service",
                "domain": domain,
                "service": service,
                "service_data": {"entity_id": eid, key: value},
            }
        await client.send(json.dumps(msg))
        while True:
            answer = json.loads((await client.recv()).text)
            if answer.get("id") == mid:
                break
        if not answer.get("success"):
            raise WSError(f"{msg['type']} failed: {answer.get('error')}")
        return str(answer["result"]["context"]["id"])

    return run, client


def values(eid: str, count: int) -> list[Any]:
    """The warm-up value, then ``count`` others, each different from the one before."""
    if eid == INPUT_NUMBER:  # step 0.5 within 0..100
        return [10.0] + [20.0 + 7.5 * i for i in range(count)]
    if eid == POWER_SENSOR:  # W, as a meter reports them
        return ["1210.0"] + [f"{800 + (i * 373) % 1700 + 0.1 * (i % 10):.1f}" for i in range(count)]
    return [128] + [30 + (i * 23) % 225 for i in range(count)]  # brightness 1..255


# ------------------------------------------------------------------------------ processes --
def bridge_env(port: int, ha_url: str | None, token: str | None, entities: str | None) -> dict[str, str]:
    env = {k: v for k, v in child_env().items() if not k.startswith(("HA_", "SUPERVISOR_", "REDIS_", "CONFIG_FILE"))}
    env |= {"PORT": str(port), "LOG_LEVEL": "warning", "HEARTBEAT": "300"}  # no ping between changes
    if ha_url is not None and token is not None:
        env |= {"HA_URL": ha_url, "HA_TOKEN": token}
    if entities:
        env["ENTITIES"] = entities
    return env


async def wait_bridge(port: int, entities: int | None, within: float) -> int:
    """Until /healthz says connected (with ``entities`` entities, if given); returns the count."""
    end = time.monotonic() + within
    last: Any = None
    while time.monotonic() < end:
        status, body = await asyncio.to_thread(http_get, f"http://{LOOPBACK}:{port}/healthz")
        if status == 200:
            last = json.loads(body)
            if last["upstream"]["status"] == "connected" and (entities is None or last["entities"] == entities):
                return int(last["entities"])
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the bridge on :{port} was not ready within {within:.0f} s (last /healthz: {last})")


def start_bridge(procs: Procs, name: str, env: dict[str, str]) -> int:
    port = int(env["PORT"])
    procs.spawn(name, service_argv(port), os.sched_getaffinity(0), env)
    if not wait_port(port, 30):
        raise RuntimeError(f"{name} did not listen on :{port}; see {procs.logdir / (name + '.log')}")
    return port


def start_fake(procs: Procs, name: str, entities: int, seconds: float) -> int:
    port = free_port()
    argv = [PY, str(HERE / "fake_home.py"), "--port", str(port), "--token", TOKEN, "--entities", str(entities)]
    procs.spawn(name, [*argv, "--max-seconds", str(seconds)], os.sched_getaffinity(0))
    if not wait_port(port, 20):
        raise RuntimeError(f"{name} did not listen on :{port}")
    return port


# ------------------------------------------------------------------------------- (a) changes --
@dataclasses.dataclass
class Row:
    kind: str
    entity_id: str
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)


async def measure_changes(
    change: Change, ha_port: int, ha_token: str, bridge_port: int, count: int
) -> tuple[list[Row], dict[str, Any]]:
    ids = [eid for _, eid in KINDS]
    plain = await HAWatch.open("HA", ha_port, ha_token, ids, deflate=False)
    deflated = await HAWatch.open("HA deflate", ha_port, ha_token, ids, deflate=True)
    full = SSEWatch("full", bridge_port, "/events")
    compact = SSEWatch("compact", bridge_port, "/events?format=compact")
    progress = asyncio.Event()  # set by any of the four on any message
    for w in (plain, deflated, full, compact):
        w.changed = progress
    info: dict[str, Any] = {"deflate_offer": "permessage-deflate; client_max_window_bits"}
    try:
        for watch in (full, compact):
            await watch.open()
        await plain.wait_first(20)
        await deflated.wait_first(20)
        await full.wait_snapshot(20)
        with contextlib.suppress(TimeoutError):
            await compact.wait_snapshot(20)
        has_compact = compact.compact
        info |= {
            "deflate_answer": deflated.client.extensions,
            "compact_stream": "compact" if has_compact else f"not compact ({compact.error or 'a full stream'})",
        }
        rows = [Row(kind, eid) for kind, eid in KINDS]
        made: list[tuple[Row, str, Any]] = []
        for row in rows:
            for n, value in enumerate(values(row.entity_id, count)):
                ctx = await change(row.entity_id, value)
                watches: list[HAWatch | SSEWatch] = [plain, deflated, full]
                if has_compact:
                    watches.append(compact)
                if not await until(functools.partial(_all_seen, ctx, watches), progress, WAIT):
                    _log(f"{row.kind}: change {n} ({ctx}) did not reach every client within {WAIT:.0f} s")
                if n:  # not the warm-up, which adds the sensor and turns the light on
                    made.append((row, ctx, value))
        await asyncio.sleep(0.5)  # a chunk's closing CRLF may come after the frame it ends
        for row, ctx, value in made:
            row.records.append(_record(ctx, value, plain, deflated, full, compact if has_compact else None))
        info["wire_check"] = _wire_check([full, compact] if has_compact else [full])
        return rows, info
    finally:
        for w in (plain, deflated, full, compact):
            await w.close()


def _all_seen(ctx: str, watches: list[HAWatch | SSEWatch]) -> bool:
    return all(ctx in (w.changes if isinstance(w, HAWatch) else w.by_context()) for w in watches)


def _record(
    ctx: str, value: Any, plain: HAWatch, deflated: HAWatch, full: SSEWatch, compact: SSEWatch | None
) -> dict[str, Any]:
    def sse(w: SSEWatch | None) -> dict[str, Any] | None:
        frame = w.by_context().get(ctx) if w is not None else None
        if frame is None:
            return None
        return {
            "wire": frame.wire,
            "chunk_of_its_own": frame.alone,
            "event": frame.event.event,
            "data": frame.event.data,
        }

    def ha(w: HAWatch) -> dict[str, Any] | None:
        c = w.changes.get(ctx)
        if c is None:
            return None
        m = c.message
        return {
            "text": m.text_bytes,
            "wire": m.wire_bytes,
            "compressed": m.compressed,
            "entities": c.entities_in_message,
            "message": m.text,
        }

    return {
        "context": ctx,
        "value": value,
        "ha": ha(plain),
        "ha_deflate": ha(deflated),
        "full": sse(full),
        "compact": sse(compact),
    }


def _wire_check(watches: list[SSEWatch]) -> str:
    """Whether each frame had chunks of its own, and the head and the frames add up to every byte read."""
    parts = []
    for w in watches:
        own = sum(f.alone for f in w.frames)
        total = w.head_bytes + sum(f.wire for f in w.frames)
        verdict = "=" if total == w.total else "!="
        alone = f"{own} of {len(w.frames)} frames in chunks of their own"
        parts.append(f"{w.name}: {alone}, head + frames {total} {verdict} {w.total} B read")
    return "; ".join(parts)


def _median(xs: list[int | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return statistics.median(got) if got else None


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def changes_table(rows: list[Row], ha_label: str) -> str:
    head = (
        f"| kind | changes | {ha_label} text B | {ha_label} frame B | {ha_label} frame, deflated B "
        "| full B | compact B | compact / HA frame | compact / HA deflated | full / HA frame |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:

        def pick(side: str, key: str, rec: list[dict[str, Any]] = row.records) -> list[int | None]:
            return [r[side][key] if r[side] is not None else None for r in rec]

        text, frame = _median(pick("ha", "text")), _median(pick("ha", "wire"))
        deflated, full, compact = (
            _median(pick("ha_deflate", "wire")),
            _median(pick("full", "wire")),
            _median(pick("compact", "wire")),
        )

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}" if a is not None and b else "n/a"

        cells = [
            f"{row.kind} (`{row.entity_id}`)", str(len(row.records)), _fmt(text), _fmt(frame), _fmt(deflated),
            _fmt(full), _fmt(compact), ratio(compact, frame), ratio(compact, deflated), ratio(full, frame),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ranges(rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        parts = []
        for side, key, label in (
            ("ha", "wire", "HA frame"),
            ("ha_deflate", "wire", "deflated"),
            ("full", "wire", "full"),
            ("compact", "wire", "compact"),
        ):
            xs = [r[side][key] for r in row.records if r[side] is not None and r[side][key] is not None]
            if xs:
                parts.append(f"{label} {min(xs)}–{max(xs)}")
        out.append(f"- {row.kind}: min–max {', '.join(parts)}")
    return out


# ----------------------------------------------------------------------------- (b) snapshots --
async def settle(port: int, within: float = 3.0) -> bool:
    """Whether the bridge sent its recorder history late (an ``event: history``) within ``within`` s
    of a snapshot. The bridge asks the recorder once connected, off the read loop: a snapshot taken
    before the answer lacks the history, and would not be the snapshot a viewer gets later."""
    watch = SSEWatch("settle", port, "/events")
    try:
        await watch.open()
        await watch.wait_snapshot(30)
        return await until(lambda: any(f.event.event == "history" for f in watch.frames), watch.changed, within)
    finally:
        await watch.close()


async def snapshot_sizes(port: int) -> dict[str, Any]:
    out: dict[str, Any] = {"late_history": await settle(port)}
    for name, path in (("full", "/events"), ("compact", "/events?format=compact")):
        watch = SSEWatch(name, port, path)
        try:
            await watch.open()
            with contextlib.suppress(TimeoutError):
                await watch.wait_snapshot(30)
            snap = watch.snapshot
            if snap is None or (name == "compact" and not watch.compact):
                out[name] = None
                out[name + "_why"] = watch.error or "no compact snapshot"
                continue
            data = json.loads(snap.event.data or "{}")
            out[name] = snap.wire
            out[name + "_check"] = _wire_check([watch])
            out[name + "_history"] = len(
                json.dumps(data.get("history", {}), separators=(",", ":"), ensure_ascii=False).encode()
            )
            out[name + "_entities"] = len(data.get("entities", {}))
        finally:
            await watch.close()
    return out


def snapshot_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        "| home | entities | full snapshot B | compact snapshot B | compact / full "
        "| of which history (full) B | HA-format first subscribe_entities message: text / frame / deflated B |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        full, compact = r.get("full"), r.get("compact")
        ratio = f"{compact / full:.2f}" if full and compact else "n/a"
        ha = r.get("ha")
        ha_cell = f"{ha['text']} / {ha['wire']} / {ha['deflated']} ({ha['source']})" if ha else "n/a"
        cells = [
            name,
            str(r.get("full_entities", "?")),
            _fmt(full),
            _fmt(compact),
            ratio,
            _fmt(r.get("full_history")),
            ha_cell,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def ha_first_message(port: int, token: str) -> dict[str, Any]:
    plain = await HAWatch.open("HA", port, token, None, deflate=False)
    deflated = await HAWatch.open("HA deflate", port, token, None, deflate=True)
    try:
        a, b = await plain.wait_first(30), await deflated.wait_first(30)
        return {"text": a.text_bytes, "wire": a.wire_bytes, "deflated": b.wire_bytes if b.compressed else None}
    finally:
        await plain.close()
        await deflated.close()


# ------------------------------------------------------------------------------------ main --
def real_ha_release() -> Any:
    """The installed HA 2026.11 release, or exit with what to do."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.install_real_ha import RELEASES, is_installed

    release = next(r for r in RELEASES if r.version.startswith("2026.11"))
    if not is_installed(release):
        try:
            why = release.failure_file().read_text().strip()
        except OSError:
            why = "not installed"
        sys.exit(
            f"bytes.py: Home Assistant {release.version} is not installed here ({why}).\n"
            "Install it with `.venv/bin/python tests/install_real_ha.py` (needs root and mmdebstrap; "
            "tests/run does it), or run with --no-real-ha (a fake HA, no HA columns measured on HA)."
        )
    if os.geteuid() != 0:
        sys.exit("bytes.py: Home Assistant 2026.11 runs in a Debian chroot, which needs root; or use --no-real-ha.")
    return release


async def part_a(
    args: argparse.Namespace, procs: Procs, workdir: Path
) -> tuple[list[Row], dict[str, Any], str, tuple[str, dict[str, Any]] | None]:
    entities = ",".join(eid for _, eid in KINDS)
    if args.no_real_ha:
        ha_port = start_fake(procs, "fake_home-a", 3, args.max_seconds)
        change, control = await ws_changer(ha_port, TOKEN)
        try:
            bridge = start_bridge(
                procs, "bridge-a", bridge_env(free_port(), f"ws://{LOOPBACK}:{ha_port}/api/websocket", TOKEN, entities)
            )
            await wait_bridge(bridge, 3, 30)
            rows, info = await measure_changes(change, ha_port, TOKEN, bridge, args.changes)
        finally:
            await control.close()
        info["ha"] = "fake_home.py (a port of HA 2026.11's compressed format; not measured on HA)"
        return rows, info, "fake HA", None

    from tests.real_ha import CONFIGURATION, RealHA

    release = real_ha_release()
    config = workdir / "ha-config"
    ha = RealHA(release, config)
    (config / "configuration.yaml").write_text(CONFIGURATION.format(port=ha.port) + DEMO_CONFIG)
    try:
        _log(f"starting Home Assistant {release.version} (its demo integration included) ...")
        seconds = await asyncio.to_thread(ha.start, 120.0)
        _log(f"HA running after {seconds:.1f} s")
        change = rest_changer(ha.http_url, ha.token)
        await change(POWER_SENSOR, "0.0")  # the sensor exists before the bridge starts
        bridge = start_bridge(procs, "bridge-a", bridge_env(free_port(), ha.http_url, ha.token, entities))
        await wait_bridge(bridge, 3, 60)
        rows, info = await measure_changes(change, ha.port, ha.token, bridge, args.changes)
        info["ha"] = f"Home Assistant {release.version} (real, {release.runs_on})"
        # While it runs: the snapshot of everything this HA has, next to HA's own first message.
        whole = start_bridge(procs, "bridge-all", bridge_env(free_port(), ha.http_url, ha.token, None))
        await wait_bridge(whole, None, 60)
        sizes = await snapshot_sizes(whole)
        sizes["ha"] = await ha_first_message(ha.port, ha.token) | {"source": "measured on HA"}
        info["ha_errors"] = ha.error_lines()
        return rows, info, "HA", (f"HA {release.version} with its demo integration (ENTITIES unset)", sizes)
    finally:
        procs.stop_all()  # the bridge before HA, so that it does not log HA going away
        await asyncio.to_thread(ha.close)


async def part_b(args: argparse.Namespace, procs: Procs) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    port = start_bridge(procs, "bridge-demo", bridge_env(free_port(), None, None, None))
    await wait_bridge(port, None, 30)
    out.append(("the bridge's demo (no HA_URL)", await snapshot_sizes(port)))
    procs.stop_all()

    n = args.home_entities
    ha_port = start_fake(procs, "fake_home-b", n, args.max_seconds)
    port = start_bridge(
        procs, "bridge-home", bridge_env(free_port(), f"ws://{LOOPBACK}:{ha_port}/api/websocket", TOKEN, None)
    )
    await wait_bridge(port, n, 60)
    sizes = await snapshot_sizes(port)
    sizes["ha"] = await ha_first_message(ha_port, TOKEN) | {"source": "fake_home.py's port of HA's format"}
    out.append((f"a {n}-entity home (fake_home.py)", sizes))
    procs.stop_all()

    # The bench's usual fake: sensor.bench_<i>, two attributes each, no last_reported.
    ha_port = free_port()
    procs.spawn("fake_ha-b", fake_ha_argv(ha_port, TOKEN, 0, n, args.max_seconds), os.sched_getaffinity(0))
    if not wait_port(ha_port, 20):
        raise RuntimeError("fake_ha.py did not listen")
    port = start_bridge(
        procs, "bridge-bench", bridge_env(free_port(), f"ws://{LOOPBACK}:{ha_port}/api/websocket", TOKEN, None)
    )
    await wait_bridge(port, n, 60)
    sizes = await snapshot_sizes(port)
    sizes["ha"] = await ha_first_message(ha_port, TOKEN) | {"source": "fake_ha.py's"}
    out.append((f"{n} × sensor.bench_<i> (fake_ha.py, 2 attributes each)", sizes))
    procs.stop_all()
    return out


def git_commit() -> str | None:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return rev.stdout.strip() or None


async def amain(args: argparse.Namespace, procs: Procs, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"commit": git_commit(), "at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print(f"bench/bytes.py at {result['at']}, sse_service commit {result['commit']}")
    snaps: list[tuple[str, dict[str, Any]]] = []
    if not args.skip_changes:
        rows, info, label, real = await part_a(args, procs, workdir)
        snaps += [real] if real is not None else []
        result["changes"] = {"info": info, "rows": [dataclasses.asdict(r) for r in rows]}
        print(f"\n(a) Bytes per change, median of {args.changes} changes per kind; {info['ha']}\n")
        print(changes_table(rows, label))
        print()
        print("\n".join(ranges(rows)))
        print(f"- HA's answer to `Sec-WebSocket-Extensions: {info['deflate_offer']}`: {info['deflate_answer']!r}")
        print(f"- /events?format=compact: {info['compact_stream']}")
        print(f"- wire check: {info['wire_check']}")
        if info.get("ha_errors"):
            print(f"- HA logged {len(info['ha_errors'])} ERROR lines (see {workdir / 'ha-config' / 'hass-output.log'})")
    if not args.skip_snapshots:
        snaps += await part_b(args, procs)
    if snaps:
        result["snapshots"] = snaps
        print("\n(b) The snapshot event on the wire (chunk header + frame + CRLF)\n")
        print(snapshot_table(snaps))
        for name, r in snaps:
            if r.get("compact") is None:
                print(f"- {name}: compact n/a ({r.get('compact_why')})")
            for side in ("full", "compact"):
                if r.get(side + "_check"):
                    print(f"- {name}, wire check: {r[side + '_check']}")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=10, help="measured changes per kind (after one warm-up)")
    ap.add_argument("--no-real-ha", action="store_true", help="(a) against fake_home.py, not Home Assistant 2026.11")
    ap.add_argument("--home-entities", type=int, default=2000, help="(b): the big home's entity count")
    ap.add_argument("--skip-changes", action="store_true", help="only (b)")
    ap.add_argument("--skip-snapshots", action="store_true", help="only (a)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="the whole run ends after this long")
    args = ap.parse_args()
    if not 1 <= args.changes <= 1000:
        ap.error("--changes must be in 1..1000")
    if not 3 <= args.home_entities <= 100_000:
        ap.error("--home-entities must be in 3..100000")
    if not args.no_real_ha and not args.skip_changes:
        real_ha_release()  # says what is missing before anything starts
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.gettempdir()) / "sse-service-bytes" / stamp
    procs = Procs(workdir)
    try:
        result = asyncio.run(asyncio.wait_for(amain(args, procs, workdir), args.max_seconds))
    except TimeoutError:
        sys.exit(f"bytes.py: not done within --max-seconds {args.max_seconds:.0f}; logs in {workdir}")
    finally:
        procs.stop_all()
    (workdir / "bytes.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"\nlogs and every change: {workdir} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
