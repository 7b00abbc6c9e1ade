"""Clients for the soak test (bench/soak.py): SSE viewers, non-readers, raw HTTP requests.

Past 300 lines: three kinds of client, each a small state machine over raw sockets.

No HTTP library: a hostile request must go out byte for byte as written, and the SSE
clients must be cheap enough to run a few hundred in the soak's own process.

* :class:`Viewer` is one logical SSE client. It keeps what a page would keep across
  reconnects: its view of the entities (built only from ``snapshot``, ``state`` and
  ``remove`` events), the upstream status, the last event id, and per entity the ``seq``
  that ``fake_ha.py`` stamps into every change, so a lost or duplicated event shows.
* :class:`SSEConnection` is one HTTP connection of a viewer (an asyncio Protocol); it reads
  the response with ``wire.SSEReader`` and the frames with ``wire.parse_event``.
* :func:`http_exchange` sends raw bytes and reads one response (or the start of a stream).
* :class:`Secrets` counts the secret values in anything received.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

from procs import LOOPBACK  # bench/ is on sys.path: the soaks run as scripts
from wire import Dechunker, Head, SSEReader, WireError, parse_event, parse_head


class Secrets:
    """The secret values the soak gave the bridge, and how often each was seen where it must not be."""

    def __init__(self, named: dict[str, str]) -> None:
        self.named = {name: value.encode() for name, value in named.items()}
        # URL-quoted forms too: a value echoed from a query string or a cookie comes out quoted.
        self.forms = {name: {value.encode(), quote(value, safe="").encode()} for name, value in named.items() if value}
        self.hits: dict[str, int] = dict.fromkeys(named, 0)
        self.where: list[str] = []
        self.longest = max((len(v) for v in self.named.values()), default=0) * 3

    def scan(self, data: bytes, where: str) -> None:
        for name, forms in self.forms.items():
            if any(form in data for form in forms):
                self.hits[name] += 1
                if len(self.where) < 10:
                    self.where.append(f"{name} in {where}")

    def scan_text(self, text: str, where: str) -> None:
        self.scan(text.encode("utf-8", "surrogateescape"), where)


@dataclass
class Shared:
    """What every connection of one soak run shares."""

    port: int
    secrets: Secrets
    measuring: bool = False  # record latencies now
    latencies_ns: list[int] = field(default_factory=list)


def _matcher(globs: list[str] | None) -> Any:
    if not globs:
        return None
    return lambda entity_id: any(fnmatch.fnmatchcase(entity_id, g) for g in globs)


class Viewer:
    """One logical SSE client (a browser tab), across its reconnects.

    ``entities`` > 0 turns on the loss check: ``fake_ha.py`` changes its entities round-robin,
    so each entity's next ``seq`` is its last one plus ``entities``. Only meaningful while
    the upstream is not restarted (the resume and non-reader phases).
    """

    def __init__(
        self,
        shared: Shared,
        name: str,
        auth: tuple[str, str],
        *,
        filter_query: str = "",
        globs: list[str] | None = None,
        entities: int = 0,
        first_event_id: str | None = None,
    ) -> None:
        self.shared = shared
        self.name = name
        self.auth = auth  # ("header" | "query" | "cookie", key)
        self.filter_query = filter_query
        self.matches = _matcher(globs)
        self.entities = entities
        self.view: dict[str, dict[str, Any]] = {}
        self.status: str | None = None
        self.statuses: list[str] = []
        self.last_id: str | None = first_event_id
        self.last_id_key: tuple[str, int] | None = None
        self.seqs: dict[str, int] = {}  # entity id -> seq of the state held
        self.lost = 0
        self.dup = 0
        self.behind = 0  # entities a snapshot took back to an older seq
        self.id_regressions = 0
        self.snapshots = 0
        self.resets = 0  # snapshots that were not the answer to a (re)connect
        self.resumes = {"replay": 0, "snapshot": 0}
        self.frames = 0
        self.states = 0
        self.errors: list[str] = []
        self.anomalies: list[str] = []  # what each lost / duplicated / regressed event was, the first few
        self.conn: SSEConnection | None = None
        self.connects = 0
        self.awaiting_first = False  # no data event yet on the current connection
        self.resuming = False
        self.got_data = asyncio.Event()

    # -- connections ------------------------------------------------------------------
    def request(self, resume: bool) -> bytes:
        kind, key = self.auth
        query = self.filter_query
        if kind == "query":
            query += ("&" if query else "") + f"key={quote(key, safe='')}"
        path = "/events" + (f"?{query}" if query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {LOOPBACK}:{self.shared.port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
            "User-Agent: sse-soak",
        ]
        if kind == "header":
            lines.append(f"Authorization: Bearer {key}")
        elif kind == "cookie":
            lines.append(f"Cookie: theme=dark; sse_key={key}")
        if resume and self.last_id is not None:
            lines.append(f"Last-Event-ID: {self.last_id}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def connect(self, *, resume: bool = False, within: float = 10.0) -> bool:
        loop = asyncio.get_running_loop()
        head: asyncio.Future[Head | None] = loop.create_future()
        conn = SSEConnection(self, self.request(resume), head)
        self.conn = conn
        self.resuming = resume and self.last_id is not None
        self.awaiting_first = True
        self.got_data.clear()
        self.connects += 1
        try:
            async with asyncio.timeout(within):
                await loop.create_connection(lambda: conn, LOOPBACK, self.shared.port)
                got = await head
        except (OSError, TimeoutError) as e:
            self.errors.append(f"connect: {type(e).__name__}")
            conn.close()
            return False
        if got is None or got.status != 200:
            self.errors.append(f"connect: HTTP {got.status if got else '?'}")
            conn.close()
            return False
        return True

    def close(self, abort: bool = False) -> None:
        if self.conn is not None:
            self.conn.close(abort)
            self.conn = None

    @property
    def alive(self) -> bool:
        return self.conn is not None and not self.conn.lost

    # -- frames -----------------------------------------------------------------------
    def on_frame(self, event: str, data: str, event_id: str | None, now_ns: int) -> None:
        self.frames += 1
        if event == "ping" or (event_id is None and event == "message" and not data):
            return
        first = self.awaiting_first
        self.awaiting_first = False
        self.got_data.set()
        if event_id is not None:
            self._check_id(event_id, snapshot=event == "snapshot")
        try:
            doc = json.loads(data)
        except ValueError:
            self.errors.append(f"{event}: data is not JSON")
            return
        if event == "snapshot":
            self._snapshot(doc, first)
        elif event == "state":
            self._state(doc, now_ns)
        elif event == "remove":
            self.view.pop(str(doc.get("entity_id")), None)
        elif event == "status":
            self.status = str(doc.get("status"))
            self.statuses.append(self.status)
        else:
            self.errors.append(f"unexpected event {event!r}")
        if first and self.resuming and event != "snapshot":
            self.resumes["replay"] += 1
        if event_id is not None:
            self.last_id = event_id

    def _check_id(self, event_id: str, *, snapshot: bool) -> None:
        """Ids grow. A snapshot carries the id of the latest event: the one last seen, if nothing happened since."""
        epoch, _, seq = event_id.rpartition("-")
        if not seq.isascii() or not seq.isdigit():
            self.errors.append(f"odd event id {event_id[:40]!r}")
            return
        key = (epoch, int(seq))
        last = self.last_id_key
        if last is not None and key[0] == last[0] and (key[1] < last[1] or key[1] == last[1] and not snapshot):
            self.id_regressions += 1
            self._note(f"id {event_id} after {last[0]}-{last[1]}")
        self.last_id_key = key

    def _snapshot(self, doc: dict[str, Any], first: bool) -> None:
        self.snapshots += 1
        if first and self.resuming:
            self.resumes["snapshot"] += 1
        elif not first:
            self.resets += 1
        entities = doc.get("entities") or {}
        self.status = str(doc.get("status"))
        if self.entities:
            for entity_id, state in entities.items():
                seq = _seq(state)
                held = self.seqs.get(entity_id)
                if held is not None and seq is not None and seq < held:
                    self.behind += 1
                    self._note(f"snapshot has {entity_id} at seq {seq}, held {held}")
            self.seqs = {eid: s for eid, s in ((eid, _seq(st)) for eid, st in entities.items()) if s is not None}
        self.view = dict(entities)

    def _state(self, state: dict[str, Any], now_ns: int) -> None:
        self.states += 1
        entity_id = str(state.get("entity_id"))
        self.view[entity_id] = state
        attributes = state.get("attributes") or {}
        t = attributes.get("t")
        if self.shared.measuring and isinstance(t, int):
            self.shared.latencies_ns.append(now_ns - t)
        seq = attributes.get("seq")
        if not self.entities or not isinstance(seq, int):
            return
        held = self.seqs.get(entity_id)
        if held is None:
            # Never changed before (the fake's initial state): its first seq is its index + 1.
            index = int(entity_id.rpartition("_")[2]) if entity_id.rpartition("_")[2].isdigit() else 0
            expected = index + 1
        else:
            expected = held + self.entities
        if seq > expected:
            self.lost += (seq - expected) // self.entities
            self._note(f"{entity_id} seq {seq}, expected {expected}")
        elif seq < expected:
            self.dup += 1
            self._note(f"{entity_id} seq {seq} again (held {held})")
        if held is None or seq > held:
            self.seqs[entity_id] = seq

    def _note(self, what: str) -> None:
        if len(self.anomalies) < 5:
            kind = "resumed" if self.resuming else "first"
            self.anomalies.append(f"{self.name} connection {self.connects} ({kind}, last id {self.last_id}): {what}")

    # -- checks -----------------------------------------------------------------------
    def truth_for(self, truth: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in truth.items() if self.matches is None or self.matches(k)}

    def differs(self, truth: dict[str, dict[str, Any]]) -> list[str]:
        """Entities whose state or attributes differ from ``truth`` (filtered like this client)."""
        want = self.truth_for(truth)
        out = []
        for entity_id in sorted(set(want) | set(self.view)):
            have, should = self.view.get(entity_id), want.get(entity_id)
            if have is None or should is None:
                out.append(f"{entity_id}: {'missing' if have is None else 'not upstream'}")
            elif have.get("state") != should.get("state") or have.get("attributes") != should.get("attributes"):
                out.append(f"{entity_id}: seq {_seq(have)} instead of {_seq(should)}")
        return out


def _seq(state: Any) -> int | None:
    seq = (state.get("attributes") or {}).get("seq") if isinstance(state, dict) else None
    return seq if isinstance(seq, int) else None


class SSEConnection(asyncio.Protocol):
    """One ``GET /events``: response head, chunked body, SSE frames handed to the viewer."""

    def __init__(self, viewer: Viewer, request: bytes, head: asyncio.Future[Head | None]) -> None:
        self.viewer = viewer
        self.request = request
        self.head = head
        self.tr: asyncio.Transport | None = None
        self.wire = SSEReader()
        self.tail = b""
        self.lost = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = cast(asyncio.Transport, transport)
        self.tr.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.head.done():
            self.head.set_result(None)
        elif not self.closing:
            self.viewer.errors.append("stream closed by the server" + (f" ({type(exc).__name__})" if exc else ""))

    def close(self, abort: bool = False) -> None:
        self.closing = True
        if self.tr is not None:
            self.tr.abort() if abort else self.tr.close()
        if not self.head.done():
            self.head.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        shared = self.viewer.shared
        shared.secrets.scan(self.tail + data, f"stream of {self.viewer.name}")
        self.tail = data[-shared.secrets.longest :]
        if self.closing:
            return
        try:
            frames = self.wire.feed(data)
        except WireError as e:
            if self.head.done():  # the chunked body
                self.viewer.errors.append(f"chunked body: {e}")
                self.close(abort=True)
            else:  # the head: not HTTP, too long, or not 200 (the viewer reports the status)
                self.head.set_result(self.wire.head)
                self.close(abort=self.wire.head is None and self.wire.error == "headers_too_large")
            return
        if not self.head.done():
            if self.wire.head is None:
                return
            self.head.set_result(self.wire.head)
        for frame in frames:
            ev = parse_event(frame)
            if ev.data is not None or ev.event != "message":
                self.viewer.on_frame(ev.event, ev.data or "", ev.id, now)


class NonReader:
    """A stream that is opened and never read: the server's writes pile up behind it."""

    def __init__(self, port: int, key: str, rcvbuf: int = 4096) -> None:
        self.port = port
        self.key = key
        self.rcvbuf = rcvbuf
        self.sock: socket.socket | None = None

    async def open(self) -> bool:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)  # a small window fills fast
        sock.setblocking(False)
        try:
            async with asyncio.timeout(5):
                await loop.sock_connect(sock, (LOOPBACK, self.port))
                request = (
                    f"GET /events HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\nAccept: text/event-stream\r\n"
                    f"Authorization: Bearer {self.key}\r\n\r\n"
                )
                await loop.sock_sendall(sock, request.encode())
        except (OSError, TimeoutError):
            sock.close()
            return False
        self.sock = sock
        return True

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


@dataclass
class Exchange:
    """What came back for one raw request."""

    head: Head | None = None
    body: bytes = b""
    error: str | None = None  # connect failure, timeout, reset
    first_event: bool = False  # a stream: a data event arrived
    stream_ended: bool = False  # a stream: it ended (or the connection closed) before that
    raw: bytes = b""  # everything received, for the secret scan
    # body: a plain response's decoded body; a stream's complete frames (LF line ends), joined by a blank line


def _body_complete(head: Head, body: bytes, method: bytes) -> tuple[bool, bytes]:
    """Whether the whole body is in, and the decoded body."""
    if method == b"HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
        return True, b""
    te = (head.get("transfer-encoding") or "").lower()
    if "chunked" in te:
        d = Dechunker()
        decoded = d.feed(body)
        return d.done or d.error is not None, decoded
    length = head.get("content-length")
    if length is not None and length.isdigit():
        return len(body) >= int(length), body[: int(length)]
    return False, body


async def http_exchange(
    port: int,
    raw: bytes,
    *,
    within: float = 5.0,
    stream: bool = False,
    drip: Iterable[bytes] = (),
    drip_pause: float = 0.0,
) -> Exchange:
    """Send ``raw`` (then each ``drip`` piece after ``drip_pause`` s) and read one response.

    For a stream (``stream=True``), read until the first data event, or until it ends.
    The connection is closed at the end either way; nothing here waits past ``within`` seconds.
    """
    ex = Exchange()
    method = raw.split(b" ", 1)[0].upper()
    writer: asyncio.StreamWriter | None = None
    received = b""
    wire = SSEReader() if stream and method == b"GET" else None  # the stream's frames, if it is one
    frames: list[bytes] = []
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=1 << 20)
            writer.write(raw)
            for piece in drip:
                await writer.drain()
                await asyncio.sleep(drip_pause)
                writer.write(piece)
            await writer.drain()
            while True:
                data = await reader.read(65536)
                received += data
                got: Sequence[bytes] = ()
                if wire is not None:
                    with contextlib.suppress(WireError):  # not 200, or a broken body: read as before
                        got = wire.feed(data)
                    frames += got
                if ex.head is None:
                    end = received.find(b"\r\n\r\n")
                    if end >= 0:
                        ex.head = parse_head(received[:end])
                        if ex.head is None:
                            ex.error = "bad status line"
                            break
                if ex.head is not None:
                    body = received[received.find(b"\r\n\r\n") + 4 :]
                    if wire is not None and ex.head.status == 200:
                        if any(parse_event(frame).data is not None for frame in got):
                            ex.first_event = True
                            ex.body = b"\n\n".join(frames)
                            break
                        if not data:
                            ex.stream_ended = True
                            ex.body = b"\n\n".join(frames)
                            break
                    else:
                        complete, decoded = _body_complete(ex.head, body, method)
                        ex.body = decoded
                        if complete or not data:
                            break
                if not data:
                    if ex.head is None:
                        ex.error = "closed without an answer" if not received else "incomplete answer"
                    break
    except TimeoutError:
        ex.error = ex.error or ("timeout" if ex.head is None else "timeout in body")
        if ex.head is not None and not ex.body:
            ex.body = received[received.find(b"\r\n\r\n") + 4 :]
    except (OSError, asyncio.IncompleteReadError) as e:
        ex.error = f"{type(e).__name__}"
        if stream and ex.head is not None and ex.head.status == 200:
            ex.stream_ended = True
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)
    ex.raw = received
    return ex
