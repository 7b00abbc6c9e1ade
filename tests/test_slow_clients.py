"""A client that does not read must not hold back the others nor make memory grow."""

from __future__ import annotations

import asyncio
import json
import resource
import socket

from sse_service.ha.demo import DemoHomeAssistant
from sse_service.stream import ClientStream

from .helpers import live_server, open_stream, settings_for

BLOB = "x" * 4_000


class RawSSE:
    """A bare socket client with a tiny receive buffer: it sends the request and then reads only when told."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = b""

    @classmethod
    async def connect(cls, port: int, path: str = "/events") -> RawSSE:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        return cls(sock)

    async def read_more(self) -> None:
        chunk = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.raw += chunk

    async def read_until(self, marker: bytes, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while marker not in self.raw:
                await self.read_more()

    def events(self) -> list[tuple[str, dict[str, object]]]:
        """De-chunk the body and parse its SSE frames."""
        _, _, rest = self.raw.partition(b"\r\n\r\n")
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0 or len(rest) < size + 2:
                break  # the end, or a chunk still on its way
            body, rest = body + rest[:size], rest[size + 2 :]
        out = []
        for frame in body.decode().split("\r\n\r\n"):
            fields = dict(line.split(": ", 1) for line in frame.split("\r\n") if line and not line.startswith(":"))
            if "data" in fields:
                out.append((fields["event"], json.loads(fields["data"])))
        return out

    def close(self) -> None:
        self.sock.close()


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def view_after(events: list[tuple[str, dict[str, object]]]) -> dict[str, object]:
    """What a client knows after applying the events in order."""
    view: dict[str, object] = {}
    for name, data in events:
        if name == "snapshot":
            view = {k: v["state"] for k, v in data["entities"].items()}  # type: ignore[attr-defined]
        elif name == "state":
            view[str(data["entity_id"])] = data["state"]
        elif name == "remove":
            view.pop(str(data["entity_id"]), None)
    return view


async def test_a_stalled_client_does_not_slow_the_reader_and_memory_stays_bounded(ha: DemoHomeAssistant) -> None:
    limit = 256 * 1024
    async with live_server(settings_for(ha, client_buffer_bytes=limit)) as live:
        stalled = await RawSSE.connect(live.port)
        async with open_stream(live.url + "/events") as reader:
            await reader.next()
            await stalled.read_until(b"event: snapshot", timeout=5)
            rss_before = rss_kib()

            # ~32 MB of changes in bursts of 20: far more than all the buffers between us and
            # the stalled client. After every burst the reader must have caught up.
            total, burst = 8000, 20
            got: list[int] = []
            for start in range(0, total, burst):
                for i in range(start, start + burst):
                    ha.set_state("sensor.house_load", str(i), {"blob": BLOB, "friendly_name": "House load"})
                async with asyncio.timeout(2):
                    while not got or got[-1] != start + burst - 1:
                        event = await reader.next()
                        assert event.event == "state", f"the reader was reset ({event.event}) instead of served"
                        got.append(int(event.json()["state"]))
            assert got == list(range(total)), "the reading client got every change, in order"

            streams = [s for s in live.service.hub.subscribers() if isinstance(s, ClientStream)]
            assert sorted(s.resets > 0 for s in streams) == [False, True], "only the stalled client was reset"
            assert live.service.hub.resets == sum(s.resets for s in streams), "/metrics counts the resets"
            assert all(s.buffered_bytes <= limit for s in streams)
            growth_mib = (rss_kib() - rss_before) / 1024
            assert growth_mib < 16, f"memory grew by {growth_mib:.1f} MiB while ~32 MB went past a stalled client"

            # The stalled client finally reads: it ends with the latest state of every entity.
            ha.set_state("sensor.solar_power", "end-of-test")
            await reader.until_state("sensor.solar_power", "end-of-test")
            await stalled.read_until(b'"state":"end-of-test"', timeout=10)
            async with asyncio.timeout(10):
                while view_after(stalled.events()).get("sensor.solar_power") != "end-of-test":
                    await stalled.read_more()  # the rest of the chunk that holds the marker
            assert view_after(stalled.events()) == {k: v["state"] for k, v in ha.states.items()}
        stalled.close()
