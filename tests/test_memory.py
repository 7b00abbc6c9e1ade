"""What an idle stream keeps (issue 27): the lean parts uvicorn's connection is given, and that
they behave as what they replace. bench/memory.py measures the bytes."""

from __future__ import annotations

import asyncio
from typing import Any

from sse_service import server
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import live_server, settings_for


async def test_the_lean_event_wakes_every_waiter_and_forgets_the_cancelled() -> None:
    event = server._LeanEvent()
    assert not event.is_set()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    await asyncio.sleep(0)
    assert len(event._waiters) == 2
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters[1:]), 1) == [True, True]
    assert waiters[0].cancelled() and event._waiters == []
    event.clear()
    assert not event.is_set()
    late = asyncio.create_task(event.wait())
    await asyncio.sleep(0.01)
    assert not late.done()
    event.set()
    assert await asyncio.wait_for(late, 1) is True
    assert server._LeanEvent(True).is_set()


def test_the_pipeline_queue_is_first_in_first_out() -> None:
    queue = server._Pipeline()
    assert not queue
    queue.appendleft("first")
    queue.appendleft("second")
    assert queue and queue.pop() == "first" and queue.pop() == "second" and not queue


async def _read_until(reader: asyncio.StreamReader, marker: bytes, into: bytearray) -> None:
    async with asyncio.timeout(10):
        while marker not in into:
            chunk = await reader.read(65536)
            assert chunk, f"the connection ended before {marker!r}: {bytes(into)[-300:]!r}"
            into += chunk


async def test_pipelined_requests_are_answered_in_order_then_the_stream_ends_when_the_client_goes(
    ha: DemoHomeAssistant, protocol: str
) -> None:
    async with live_server(settings_for(ha)) as live:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        try:
            # Three requests in one write: two wait in uvicorn's pipeline queue (httptools).
            head = "HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            writer.write(f"GET /healthz {head}\r\nGET /readyz {head}\r\nGET /events {head}\r\n".encode())
            received = bytearray()
            await _read_until(reader, b"event: snapshot", received)
            assert received.count(b"HTTP/1.1 200 OK") == 3
            order = [received.index(marker) for marker in (b'"upstream":{', b'"ready":true', b"event: snapshot")]
            assert order == sorted(order)

            # The stream's connection holds the lean parts, and they work: a state change flows,
            # and when the client goes, the request task sees the disconnect and the stream ends.
            connections: list[Any] = list(live.server.server_state.connections)  # uvicorn's, internals and all
            [conn] = [c for c in connections if c.cycle and not c.cycle.response_complete]
            assert type(conn.flow._is_writable_event) is server._LeanEvent
            assert type(conn.cycle.message_event) is server._LeanEvent
            if protocol == "httptools":
                assert type(conn.pipeline) is server._Pipeline
            ha.set_state("sensor.solar_power", "1234", {"unit_of_measurement": "W"})
            await _read_until(reader, b'"1234"', received)
            assert live.service.hub.client_count == 1
        finally:
            writer.close()
        async with asyncio.timeout(5):
            while live.service.hub.client_count:
                await asyncio.sleep(0.01)


async def test_an_open_stream_holds_four_coroutine_frames(ha: DemoHomeAssistant, protocol: str) -> None:
    # Every frame under an idle stream is memory per connection: uvicorn's task and its receive()
    # (and the Event it waits on), and the stream's own; no layer of the app's stays in between.
    async with live_server(settings_for(ha)) as live:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        try:
            writer.write(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await _read_until(reader, b"event: snapshot", bytearray())
            await asyncio.sleep(0.05)  # the request task is back in receive()
            [task] = list(live.server.server_state.tasks)
            chain: list[str] = []
            coro: Any = task.get_coro()
            while coro is not None and hasattr(coro, "cr_code"):
                chain.append(coro.cr_code.co_qualname)
                coro = coro.cr_await
            assert chain == [
                "RequestResponseCycle.run_asgi",
                "EventsEndpoint._stream",
                "RequestResponseCycle.receive",
                "Event.wait",
            ]
        finally:
            writer.close()


async def test_an_open_stream_keeps_no_request_headers_and_a_closing_request_is_still_answered_so(
    ha: DemoHomeAssistant, protocol: str
) -> None:
    async with live_server(settings_for(ha)) as live:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        try:
            cookie = "session=" + "c" * 1500  # what a browser's headers can weigh
            request = f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            received = bytearray()
            await _read_until(reader, b"event: snapshot", received)
            head = bytes(received).split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 200") and b"\r\nconnection: close" in head
            connections: list[Any] = list(live.server.server_state.connections)
            [conn] = [c for c in connections if c.cycle and not c.cycle.response_complete]
            assert conn.cycle.scope["headers"] == [] and conn.headers == []
            ha.set_state("sensor.solar_power", "4321", {"unit_of_measurement": "W"})
            await _read_until(reader, b'"4321"', received)
        finally:
            writer.close()
