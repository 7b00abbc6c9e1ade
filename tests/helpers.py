"""Test helpers: a real uvicorn server on 127.0.0.1, an SSE reader, and the fake home's seed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from sse_service.app import create_app
from sse_service.config import Secret, Settings
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.server import Server, listening_socket, uvicorn_config
from sse_service.service import Service


def seed_home(ha: DemoHomeAssistant) -> None:
    ha.set_state("sensor.battery_level", "50.0", {"unit_of_measurement": "%", "friendly_name": "Home battery"})
    ha.set_state("sensor.solar_power", "1200", {"unit_of_measurement": "W", "friendly_name": "Solar power"})
    ha.set_state("sensor.house_load", "640", {"unit_of_measurement": "W", "friendly_name": "House load"})
    ha.set_state("switch.charger", "off", {"friendly_name": "Battery charger"})
    ha.set_state("light.kitchen", "on", {"brightness": 180, "friendly_name": "Kitchen"})


def settings_for(ha: DemoHomeAssistant, **overrides: Any) -> Settings:
    """Settings pointing at the fake HA, with timings short enough for tests."""
    base = Settings(
        ha_url=ha.url,
        ha_token=Secret(ha.token),
        heartbeat=15.0,
        ha_backoff_max=0.2,
        ha_auth_retry=30.0,
        ha_ping_interval=30.0,
        ha_connect_timeout=2.0,
        graceful_timeout=3.0,
    )
    return dataclasses.replace(base, **overrides)


class _TestServer(Server):
    # Signal handlers belong to pytest here; shutdown is driven through should_exit.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclasses.dataclass
class LiveServer:
    service: Service
    app: Starlette
    server: Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings, *, port: int = 0, wait_connected: bool = True, web_dir: Path | None = None
) -> AsyncIterator[LiveServer]:
    """The app under a real uvicorn on 127.0.0.1 (an in-process transport cannot read endless streams).

    ``web_dir=WEB_DIR`` serves the page too.
    """
    service = Service(settings)
    app = create_app(service, web_dir=web_dir)
    sock = listening_socket("127.0.0.1", port)
    config = uvicorn_config(app, dataclasses.replace(settings, graceful_timeout=3))
    server = _TestServer(config, drain=service.drain)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start-up")
                await asyncio.sleep(0.01)
            if wait_connected:
                while service.hub.status.value != "connected":
                    await asyncio.sleep(0.01)
        yield LiveServer(service, app, server, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def live_server_in_thread(make_settings: Callable[[DemoHomeAssistant], Settings]) -> Iterator[LiveServer]:
    """A fake HA and the app under uvicorn on a loop of their own thread, for sync callers (hypothesis)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ready: asyncio.Future[LiveServer] = loop.create_future()
    stop = asyncio.Event()

    async def run() -> None:
        async with DemoHomeAssistant() as ha:
            seed_home(ha)
            async with live_server(make_settings(ha)) as live:
                ready.set_result(live)
                await stop.wait()

    done = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        yield asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 10), loop).result()
    finally:
        loop.call_soon_threadsafe(stop.set)
        done.result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclasses.dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


class StreamEnded(Exception):
    pass


class SSEStream:
    """Reads a ``text/event-stream`` body the way a browser's EventSource parses it.

    A background task parses the body into a queue, so a test may wait with a timeout
    without tearing the response apart.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.retry: int | None = None
        self.comments: list[str] = []
        self.last_event_id: str | None = None
        self.ended = False
        self._queue: asyncio.Queue[SSEEvent | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        event, event_id = "message", None
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        if event_id is not None:
                            self.last_event_id = event_id
                        self._queue.put_nowait(SSEEvent(event, "\n".join(data), event_id))
                    event, event_id = "message", None
                    data = []
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    self.comments.append(value)
                elif name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)
        except httpx.HTTPError:
            pass
        finally:
            self.ended = True
            self._queue.put_nowait(None)

    async def next(self, timeout: float = 5.0) -> SSEEvent:
        async with asyncio.timeout(timeout):
            event = await self._queue.get()
        if event is None:
            self._queue.put_nowait(None)
            raise StreamEnded()
        return event

    async def wait_ended(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def until(self, predicate: Callable[[SSEEvent], bool], timeout: float = 5.0) -> SSEEvent:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if predicate(event):
                    return event

    async def until_state(self, entity_id: str, state: str, timeout: float = 5.0) -> SSEEvent:
        return await self.until(
            lambda e: e.event == "state" and e.json()["entity_id"] == entity_id and e.json()["state"] == state,
            timeout,
        )


@contextlib.asynccontextmanager
async def open_stream(
    url: str, headers: dict[str, str] | None = None, client: httpx.AsyncClient | None = None
) -> AsyncIterator[SSEStream]:
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)))
        response = await stack.enter_async_context(client.stream("GET", url, headers=headers))
        assert response.status_code == 200, response.status_code
        stream = SSEStream(response)
        try:
            yield stream
        finally:
            await stream.close()


@contextlib.asynccontextmanager
async def service_process(log: list[str], *, ready: str = "/healthz", **env: str) -> AsyncIterator[str]:
    """``python -m sse_service`` in a subprocess on a free port; its stderr is appended to ``log`` at the end.

    A port free when chosen can be taken before the process binds it (another test's server):
    the process then says so and ends, and it is started again on another port.
    """
    environ = {k: v for k, v in os.environ.items() if k not in ("HA_URL", "HA_TOKEN", "CONFIG_FILE")}
    for attempt in range(3):
        port = free_port()
        environ.update(PORT=str(port), HOST="127.0.0.1", **env)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sse_service", env=environ, stderr=asyncio.subprocess.PIPE
        )
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client, asyncio.timeout(10):
            while proc.returncode is None:
                try:
                    if (await client.get(url + ready)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        if proc.returncode is None:
            break
        _, stderr = await proc.communicate()
        if "is in use" not in stderr.decode() or attempt == 2:
            log.append(stderr.decode())
            raise RuntimeError(f"sse-service ended at start: {stderr.decode()[-2000:]}")
    try:
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended by itself: its stderr says why
            proc.terminate()
        _, stderr = await proc.communicate()
        log.append(stderr.decode())
