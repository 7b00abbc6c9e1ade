"""bench/wire.py, the SSE wire parser every bench client shares: head, chunked body, frames, fields.

Whatever the reads' boundaries, the frames and their fields are the same: every split point
of a small stream, then random splits (hypothesis) of a larger one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from wire import Dechunker, Event, Head, SSEReader, WireError, parse_event

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
PLAIN_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"

# The fields each stream below must give, frame by frame, whatever its line ends.
EVENTS = [
    Event(comments=[" ping"]),
    Event(event="snapshot", data='{"entities": {}}', id="e1-0"),
    Event(event="state", data='{"t": 1, "seq": 1}\n{"second": "line"}', id="e1-1"),
    Event(data="", retry=2500),
    Event(event="status", data="é ünïcode", id="e1-2", comments=["note"]),
]
LINES = [
    [": ping"],
    ["event: snapshot", 'data: {"entities": {}}', "id: e1-0"],
    ["id: e1-1", "event: state", 'data: {"t": 1, "seq": 1}', 'data:{"second": "line"}'],
    ["data", "retry: 2500"],
    [":note", "event: status", "data: é ünïcode", "id: e1-2"],
]


def body(eol: str) -> bytes:
    return "".join(eol.join(lines) + eol + eol for lines in LINES).encode()


def chunked(raw: bytes, sizes: list[int]) -> bytes:
    """``raw`` in chunks of the given sizes (cycled), an extension on one, then the last chunk."""
    out, pos, k = [], 0, 0
    while pos < len(raw):
        size = max(1, sizes[k % len(sizes)])
        piece = raw[pos : pos + size]
        ext = ";x=1" if k == 1 else ""
        out.append(f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n")
        pos, k = pos + size, k + 1
    return b"".join(out) + b"0\r\n\r\n"


def feed_all(reader: SSEReader, reads: list[bytes]) -> list[Event]:
    frames: list[bytes] = []
    for data in reads:
        frames += reader.feed(data)
    return [parse_event(f) for f in frames if f.strip(b"\r\n")]


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


STREAMS = {
    "lf chunked": (HEAD, "\n", True),
    "crlf chunked": (HEAD, "\r\n", True),
    "cr chunked": (HEAD, "\r", True),
    "lf plain": (PLAIN_HEAD, "\n", False),
    "crlf plain": (PLAIN_HEAD, "\r\n", False),
}


@pytest.mark.parametrize("one_line_end", [False, True], ids=["any-line-ends", "one-line-end"])
@pytest.mark.parametrize("name", list(STREAMS))
def test_every_two_way_split_gives_the_same_events(name: str, one_line_end: bool) -> None:
    head, eol, is_chunked = STREAMS[name]
    raw = head + (chunked(body(eol), [7, 40, 1, 300]) if is_chunked else body(eol))
    assert feed_all(SSEReader(one_line_end=one_line_end), [raw]) == EVENTS
    for cut in range(1, len(raw)):
        reader = SSEReader(one_line_end=one_line_end)
        assert feed_all(reader, [raw[:cut], raw[cut:]]) == EVENTS, cut
        assert reader.head is not None and reader.head.status == 200
        assert reader.ended == is_chunked


@settings(max_examples=300, deadline=None)
@given(
    eols=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=8),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_mixed_line_ends_and_any_reads(eols: list[str], sizes: list[int], cuts: list[int]) -> None:
    """Any mix of LF, CRLF and CR line ends, chunked in any sizes, read in any pieces."""
    k = 0
    text = ""
    for lines in LINES:
        for line in [*lines, ""]:
            eol = eols[k % len(eols)]
            if not line and eol == "\n" and text.endswith("\r"):
                eol = "\r\n"  # CR then LF would be one CRLF line end, not two
            text += line + eol
            k += 1
    raw = HEAD + chunked(text.encode(), sizes)
    assert feed_all(SSEReader(), split(raw, cuts)) == EVENTS


@settings(max_examples=200, deadline=None)
@given(eol=st.sampled_from(["\n", "\r\n"]), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_one_line_end_streams_split_anywhere(eol: str, cuts: list[int]) -> None:
    raw = HEAD + chunked(body(eol) * 3, [13, 200])
    frames: list[bytes] = []
    reader = SSEReader(one_line_end=True)
    for data in split(raw, cuts):
        frames += reader.feed(data)
    assert [parse_event(f) for f in frames if f.strip(b"\r\n")] == EVENTS * 3
    if eol == "\r\n":  # the frames keep the stream's line end (nothing was copied to change it)
        assert all(b"\r\n" in f for f in frames if f.count(b"\n") > 1)


def test_one_whole_chunk_per_read_gives_its_frame_as_sent() -> None:
    reader = SSEReader(one_line_end=True)
    assert reader.feed(HEAD) == ()
    frame = b'id: e1-7\nevent: state\ndata: {"t": 5, "seq": 7}'
    assert list(reader.feed(f"{len(frame) + 2:x}\r\n".encode() + frame + b"\n\n\r\n")) == [frame]
    two = b"data: a\n\ndata: b\n\n"
    assert list(reader.feed(f"{len(two):x}\r\n".encode() + two + b"\r\n")) == [b"data: a", b"data: b"]


def test_fields_as_an_event_source_reads_them() -> None:
    ev = parse_event(b"event\ndata:  two spaces\nid: a\0b\nretry: 1x\n: c1\nunknown: x\ndata")
    assert ev == Event(event="message", data=" two spaces\n", id=None, retry=None, comments=[" c1"])
    assert parse_event(b"id\nevent: \ndata: x") == Event(data="x", id="")
    assert parse_event(b"\xff bad: utf-8\ndata: \xe2\x82") == Event(data="\ufffd")


@pytest.mark.parametrize(
    ("raw", "error", "status"),
    [
        (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", "http_404", 404),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "bad_status_line", None),
        (b"HTTP/1.1 200 OK\r\nx: " + b"y" * 70_000, "headers_too_large", None),
        (HEAD + b"zz\r\ndata: x\r\n", "bad_chunk_header", 200),
        (HEAD + b"3\r\nabcXY", "bad_chunk_end", 200),
        (HEAD + b"1" * 2000, "chunk_header_too_long", 200),
    ],
    ids=["404", "not-http", "head-too-long", "bad-size", "no-crlf-after-data", "size-too-long"],
)
def test_what_is_not_an_sse_stream_raises_once(raw: bytes, error: str, status: int | None) -> None:
    reader = SSEReader()
    with pytest.raises(WireError, match=error):
        reader.feed(raw)
    assert reader.error == error
    assert (reader.head.status if reader.head else None) == status
    assert reader.feed(b"data: more\n\n") == ()  # everything later is ignored


def test_the_last_chunk_ends_the_stream_and_on_head_is_called_once() -> None:
    heads: list[Head] = []
    reader = SSEReader(on_head=heads.append)
    assert list(reader.feed(HEAD[:20])) == [] and heads == []
    assert list(reader.feed(HEAD[20:] + b"9\r\ndata: x\n\n\r\n0\r\n\r\n")) == [b"data: x"]
    assert reader.ended and len(heads) == 1 and heads[0].chunked
    assert reader.feed(b"5\r\nhello\r\n") == ()


def test_dechunker_decodes_a_whole_body_in_any_pieces() -> None:
    raw = chunked(b"0123456789" * 30, [1, 17, 64])
    for cut in range(len(raw) + 1):
        d = Dechunker()
        assert d.feed(raw[:cut]) + d.feed(raw[cut:]) == b"0123456789" * 30
        assert d.done and d.error is None
    d = Dechunker()
    assert d.feed(b"4\r\nabcd\r\nq\r\n") == b"abcd" and d.error == "bad_chunk_header" and not d.done
