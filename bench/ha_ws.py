"""A WebSocket client on a raw asyncio stream that counts each message's bytes on the wire.

For ``bytes.py``: what Home Assistant's own WebSocket spends per change. A WebSocket library
hides its frames (and inflates permessage-deflate before anyone sees the size), so this reads
the frames itself (RFC 6455): each :class:`Message` has its text, the text's UTF-8 bytes, and its
frames' bytes as they came (headers included, payload compressed or not). With
``offer_deflate`` the handshake offers what Chromium and Firefox offer
(``permessage-deflate; client_max_window_bits``); :attr:`WSClient.extensions` is what the
server answered (None: not negotiated). A compressed message is inflated with one
decompressor kept across messages (context takeover) unless the server said
``server_no_context_takeover``. Messages sent are masked text frames, never compressed.
Pings are answered. Every read has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import zlib
from dataclasses import dataclass

from wire import parse_head  # bench/ is on sys.path: the scripts here run as scripts

OFFER = "permessage-deflate; client_max_window_bits"  # as browsers send it
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
HEAD_LIMIT = 65536


class WSError(Exception):
    """The handshake failed, the connection closed, or a frame broke the protocol."""


@dataclass(slots=True)
class Message:
    """One data message: its text, the text's UTF-8 bytes, its frames' bytes on the wire."""

    text: str
    text_bytes: int
    wire_bytes: int
    compressed: bool
    frames: int


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class WSClient:
    """One connection. :meth:`connect`, then :meth:`send` and :meth:`recv`; :meth:`close`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, extensions: str | None) -> None:
        self._reader = reader
        self._writer = writer
        self.extensions = extensions
        params = [p.strip().lower() for p in (extensions or "").split(";")]
        self.deflate = bool(params) and params[0] == "permessage-deflate"
        self._fresh_context = "server_no_context_takeover" in params
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.handshake_bytes = 0  # the server's 101 answer, on the wire

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str = "/api/websocket", *, offer_deflate: bool, within: float = 10.0
    ) -> WSClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=2**24), within)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if offer_deflate:
            lines.append(f"Sec-WebSocket-Extensions: {OFFER}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
            writer.close()
            raise WSError(f"no handshake answer: {e!r}") from None
        head = parse_head(raw[:-4])
        if head is None or head.status != 101:
            writer.close()
            raise WSError(f"handshake answered {head.status if head else raw[:40]!r}")
        client = cls(reader, writer, head.get("sec-websocket-extensions"))
        client.handshake_bytes = len(raw)
        return client

    async def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | TEXT, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | TEXT, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | TEXT, 0x80 | 127, n)
        key = os.urandom(4)
        self._writer.write(header + key + _mask(payload, key))
        await self._writer.drain()

    async def _frame(self, within: float) -> tuple[int, bool, bool, bytes, int]:
        """(opcode, fin, rsv1, payload, bytes on the wire) of the next frame."""
        read = self._reader.readexactly
        try:
            b0, b1 = await asyncio.wait_for(read(2), within)
            size, wire = b1 & 0x7F, 2
            if size == 126:
                (size,) = struct.unpack("!H", await asyncio.wait_for(read(2), within))
                wire += 2
            elif size == 127:
                (size,) = struct.unpack("!Q", await asyncio.wait_for(read(8), within))
                wire += 8
            key = b""
            if b1 & 0x80:  # a server must not mask, but count it if it does
                key = await asyncio.wait_for(read(4), within)
                wire += 4
            payload = await asyncio.wait_for(read(size), within) if size else b""
        except asyncio.IncompleteReadError:
            raise WSError("connection closed") from None
        if key:
            payload = _mask(payload, key)
        return b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), payload, wire + size

    async def recv(self, within: float = 10.0) -> Message:
        """The next data message (pings answered on the way); WSError on close. ``within``: seconds per frame."""
        parts: list[bytes] = []
        wire = frames = 0
        compressed = False
        while True:
            opcode, fin, rsv1, payload, size = await self._frame(within)
            if opcode == PING:
                await self._control(PONG, payload)
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                raise WSError(f"closed by the server: {payload[:2].hex()} {payload[2:].decode(errors='replace')}")
            if opcode in (TEXT, BINARY) and not parts:
                compressed = rsv1
            parts.append(payload)
            wire += size
            frames += 1
            if fin:
                break
        data = b"".join(parts)
        if compressed:
            if self._fresh_context:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            data = self._inflate.decompress(data + b"\x00\x00\xff\xff")
        return Message(data.decode(), len(data), wire, compressed, frames)

    async def _control(self, opcode: int, payload: bytes) -> None:
        key = os.urandom(4)
        self._writer.write(struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + _mask(payload, key))
        await self._writer.drain()

    async def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await self._control(CLOSE, struct.pack("!H", 1000))
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)
