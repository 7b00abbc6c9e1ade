"""The SSE wire as the bench clients read it: HTTP/1.1 response head, chunked body, SSE frames.

One parser for every raw client in bench/: the load generator (``subscribers.py``), the soaks'
viewers and requests (``soak_clients.py``) and the failover watch (``run.py``). No HTTP library:
the soaks send hostile bytes exactly as written, and the subscribers must stay cheap.

* :class:`SSEReader` is incremental: :meth:`SSEReader.feed` takes whatever a read returned and
  gives back the SSE frames it completed, as bytes, without the blank line that ended them. The
  common read of a stream, one whole chunk holding one whole frame, costs a few C-level searches
  and two slices; nothing is decoded or copied whole. Clients that only look for a pattern in a
  frame (the subscribers) search those bytes; the others call :func:`parse_event`.
* :func:`parse_event` reads one frame's fields the way an EventSource does (``event``,
  ``data`` lines joined with LF, ``id``, ``retry``, ``:`` comments).
* :class:`Dechunker` decodes a whole chunked body (the soaks' plain responses).

Line ends may be LF, CRLF or CR, mixed, split anywhere between reads: frames come out with LF
line ends, and a CR at the very end of a read waits for the next one (it may be half a CRLF).
That costs a one-byte search per read. The load generator, whose servers each send one kind
(ours LF, sse-starlette CRLF), skips it with ``SSEReader(one_line_end=True)``: the body's first
line end then says how every frame ends, and frames keep that line end (as the subscribers'
own parser did before this module). :func:`parse_event` reads any line ends. No byte order
mark is stripped: no server here sends one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

HEAD_LIMIT = 65536  # a response head longer than this is an error
CHUNK_HEADER_LIMIT = 1024
NONE: tuple[bytes, ...] = ()
LF2 = b"\n\n"
CRLF2 = b"\r\n\r\n"


@dataclass
class Head:
    """A response's status line and headers (names lower-cased, values stripped)."""

    status: int
    headers: list[tuple[str, str]]
    raw: bytes

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.get("transfer-encoding") or "").lower()


def parse_head(raw: bytes) -> Head | None:
    """The head before the blank line (``raw`` without its final CRLFCRLF); None if the status line is not HTTP."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers.append((k.strip().lower().decode("latin-1"), v.strip().decode("latin-1")))
    return Head(int(parts[1]), headers, raw)


class _Chunks:
    """The state of a ``Transfer-Encoding: chunked`` decoder, and its general (any split) path."""

    __slots__ = ("_cbuf", "_crlf_due", "_left", "_mid", "ended", "error")

    def __init__(self) -> None:
        self._cbuf = b""  # an incomplete chunk header (or the CRLF after a chunk's data)
        self._left = 0  # bytes of the current chunk's data still to come
        self._crlf_due = False  # the CRLF that ends a chunk's data is next
        self._mid = 0  # not 0: any of the three above (not at a chunk boundary); -1: ended or broken
        self.ended = False  # the last chunk (size 0) arrived
        self.error: str | None = None

    def _dechunk(self, data: bytes) -> bytes:
        """The chunk data in ``data``; sets ``ended`` at the last chunk and ``error`` on a malformed body."""
        buf = self._cbuf + data if self._cbuf else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        left, crlf_due = self._left, self._crlf_due
        while pos < n:
            if left:
                if n - pos < left:
                    out.append(buf[pos:])
                    left -= n - pos
                    pos = n
                    break
                out.append(buf[pos : pos + left])
                pos += left
                left = 0
                crlf_due = True
            if crlf_due:
                if n - pos < 2:
                    break
                if not buf.startswith(b"\r\n", pos):
                    return self._stop(out, "bad_chunk_end")
                pos += 2
                crlf_due = False
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if n - pos > CHUNK_HEADER_LIMIT:
                    return self._stop(out, "chunk_header_too_long")
                break
            try:
                left = int(buf[pos:end].split(b";", 1)[0], 16)
            except ValueError:
                left = -1
            if left <= 0:
                return self._stop(out, "bad_chunk_header" if left else None)
            pos = end + 2
        self._cbuf = buf[pos:] if pos < n else b""
        self._left, self._crlf_due = left, crlf_due
        self._mid = left + crlf_due + n - pos  # not 0: not at a chunk boundary
        return b"".join(out) if len(out) != 1 else out[0]

    def _stop(self, out: list[bytes], error: str | None) -> bytes:
        """The last chunk (``error`` None) or a malformed one: what came before it; nothing more is read."""
        self.ended = error is None
        self.error = error
        self._cbuf = b""
        self._mid = -1
        return b"".join(out)


class Dechunker(_Chunks):
    """Incremental ``Transfer-Encoding: chunked`` decoder: ``feed`` returns the data decoded so far."""

    __slots__ = ()

    def feed(self, data: bytes) -> bytes:
        return b"" if self._mid < 0 else self._dechunk(data)

    @property
    def done(self) -> bool:
        return self.ended


class WireError(Exception):
    """Not an SSE stream (any more): the reason, a short code such as ``http_404`` or ``bad_chunk_header``."""


class SSEReader(_Chunks):
    """One SSE response, fed read by read: the head, then the body's frames.

    ``head`` is set once the head is complete. :meth:`feed` raises :class:`WireError` (and sets
    ``error``; later reads are ignored) when the head is too long (``headers_too_large``) or not
    HTTP (``bad_status_line``; ``head`` stays None), when the status is not 200 (``http_<status>``,
    ``head`` is set), or when the chunked coding is broken. ``ended`` is set when the last chunk
    arrives. (An exception rather than a flag: the load generator's common read checks nothing.)
    """

    __slots__ = ("_hbuf", "_mode", "_on_head", "_sbuf", "_state", "chunked", "head")

    def __init__(self, *, one_line_end: bool = False, on_head: Callable[[Head], object] | None = None) -> None:
        super().__init__()
        self.head: Head | None = None
        self._on_head = on_head  # called once the head is in and says 200
        self.chunked = False
        self._state = 0  # 0: reading the head, 1: the body, 2: done (error or ended)
        self._hbuf = b""
        self._sbuf = b""  # the start of an incomplete frame
        # How frames end. one_line_end: 0 until the body's first line end, then 1 (LF: at LF2) or
        # 2 (CRLF: at CRLF2). Otherwise 3: any line ends, made LF, at LF2; 4 is 3 with a CR held
        # back from the last read (it may be half a CRLF).
        self._mode = 0 if one_line_end else 3

    def feed(self, data: bytes) -> Sequence[bytes]:
        """The frames this read completed (often none, or one)."""
        if self._state != 1:
            if self._state == 2:
                return NONE
            data = self._head(data)
            if not data:
                return NONE
        if self.chunked:
            # The common read is exactly one whole chunk, SIZE\r\nDATA\r\n: this copy of _dechunk's
            # arithmetic, for that read only, is the load generator's fast path.
            whole = False
            if not self._mid:
                i = data.find(b"\r\n")
                if 0 < i <= 8:
                    try:
                        size = int(data[:i], 16)
                    except ValueError:
                        size = 0
                    if size > 0 and len(data) == i + size + 4 and data[-2:] == b"\r\n":
                        data = data[i + 2 : -2]
                        whole = True
            if not whole:
                data = self._dechunk(data)
                if self._mid < 0:  # the last chunk, or a malformed one
                    self._state = 2
                    if self.error is not None:
                        raise WireError(self.error)
        mode = self._mode
        if mode == 1:
            sep, skip = LF2, 2
        elif mode == 2:
            sep, skip = CRLF2, 4
        elif mode == 3:
            sep, skip = LF2, 2
            if 13 in data:  # a CR (a one-byte search, memchr)
                data = self._lf(data)
        else:
            sep, data = self._other(data)
            if not sep:
                return NONE
            skip = len(sep)
        buf = self._sbuf + data if self._sbuf else data
        end = buf.rfind(sep)
        if end < 0:
            self._sbuf = buf
            return NONE
        self._sbuf = buf[end + skip :]
        if buf.find(sep) == end:  # one frame: no split
            return (buf[:end],)
        return buf[:end].split(sep)

    def _other(self, data: bytes) -> tuple[bytes, bytes]:
        """Modes 0 and 4: the separator for this read and its data (b"" when it is too soon to say)."""
        if self._mode == 4:
            self._mode = 3
            return LF2, self._lf(b"\r" + data)
        data = self._sbuf + data
        self._sbuf = b""
        lf, cr = data.find(b"\n"), data.find(b"\r")
        if lf < 0 and (cr < 0 or cr == len(data) - 1):
            self._sbuf = data  # no line end yet (or a CR whose next byte is still to come)
            return b"", b""
        if cr < 0 or 0 <= lf < cr:
            self._mode = 1
            return LF2, data
        if cr == lf - 1:
            self._mode = 2
            return CRLF2, data
        self._mode = 3  # a bare CR first: make every line end LF
        return LF2, self._lf(data)

    def _lf(self, data: bytes) -> bytes:
        """``data`` with CRLF and CR line ends made LF; a CR at the end waits for the next read (mode 4), if any."""
        if data[-1:] == b"\r" and not self.ended:
            data = data[:-1]
            self._mode = 4
        data = data.replace(b"\r\n", b"\n")
        return data.replace(b"\r", b"\n") if 13 in data else data

    def _head(self, data: bytes) -> bytes:
        buf = self._hbuf + data if self._hbuf else data
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            if len(buf) > HEAD_LIMIT:
                self._fail("headers_too_large")
            self._hbuf = buf
            return b""
        self._hbuf = b""
        head = self.head = parse_head(buf[:i])
        if head is None:
            self._fail("bad_status_line")
        elif head.status != 200:
            self._fail(f"http_{head.status}")
        self.chunked = head.chunked
        self._state = 1
        if self._on_head is not None:
            self._on_head(head)
        return buf[i + 4 :]

    def _fail(self, why: str) -> NoReturn:
        self.error = why
        self._state = 2
        self._hbuf = self._sbuf = b""
        raise WireError(why)


@dataclass(slots=True)
class Event:
    """One frame's fields. ``data`` is None when the frame has no ``data`` field."""

    event: str = "message"
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def parse_event(frame: bytes) -> Event:
    """The fields of one frame (any line ends), as an EventSource reads them (UTF-8, bad bytes replaced)."""
    ev = Event()
    data: list[str] | None = None
    text = frame.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] == ":":
            ev.comments.append(line[1:])
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            if data is None:
                data = [value]
            else:
                data.append(value)
        elif name == "event":
            ev.event = value or "message"
        elif name == "id":
            if "\0" not in value:
                ev.id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                ev.retry = int(value)
    if data is not None:
        ev.data = "\n".join(data)
    return ev
