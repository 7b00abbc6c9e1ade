"""Streams come and go without leaving anything behind; SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from sse_service.ha.demo import DemoHomeAssistant
from sse_service.hub import Hub

from .helpers import SSEStream, StreamEnded, free_port, live_server, open_stream, settings_for


async def test_200_connect_disconnect_cycles_leave_no_tasks_behind(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        hub = live.service.hub
        async with open_stream(live.url + "/events") as warm:
            await warm.next()
        await asyncio.sleep(0.1)
        tasks_before = len(asyncio.all_tasks())
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
            for i in range(200):
                query = "" if i % 2 else "?domain=sensor"
                async with open_stream(live.url + "/events" + query, client=client) as stream:
                    await stream.next()
                    if i % 10 == 0:
                        ha.set_state("sensor.house_load", str(i))
                        await stream.next()
        async with asyncio.timeout(5):
            while hub.client_count or live.server.server_state.tasks:
                await asyncio.sleep(0.02)
        assert len(asyncio.all_tasks()) <= tasks_before
        assert all(not watchers for audience in (hub._full, hub._compact) for watchers in audience.watchers.values())


async def test_a_client_that_goes_away_is_noticed_promptly(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        hub = live.service.hub
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        async with asyncio.timeout(2):
            while hub.client_count == 0:
                await asyncio.sleep(0.01)
        sock.close()
        started = time.monotonic()
        async with asyncio.timeout(2):
            while hub.client_count:
                await asyncio.sleep(0.01)
        assert time.monotonic() - started < 0.5


async def test_sigterm_ends_100_streams_with_a_retry_and_exits_in_time(ha: DemoHomeAssistant) -> None:
    port = free_port()
    env = dict(
        os.environ,
        HA_URL=ha.url,
        HA_TOKEN=ha.token,
        HOST="127.0.0.1",
        PORT=str(port),
        GRACEFUL_TIMEOUT="5",
        MAX_STREAMS_PER_IP="200",  # all 100 test clients share 127.0.0.1
        RETRY_MS="3000",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sse_service", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10.0, read=None)) as client:
            async with asyncio.timeout(10):
                while True:
                    try:
                        if (await client.get(url + "/healthz")).json()["upstream"]["status"] == "connected":
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)

            async def one_stream() -> SSEStream:
                response = await client.send(client.build_request("GET", url + "/events"), stream=True)
                stream = SSEStream(response)
                await stream.next()
                return stream

            streams = await asyncio.gather(*(one_stream() for _ in range(100)))
            assert {s.retry for s in streams} == {3000}
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for stream in streams:
                await stream.wait_ended(timeout=5)
            code = await asyncio.wait_for(proc.wait(), timeout=5)
            elapsed = time.monotonic() - started
            for stream in streams:
                await stream.response.aclose()
        # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM)
        assert elapsed < 5
        assert {s.retry for s in streams} == {1000}, "every client was told to come back soon"
        assert all(s.ended for s in streams)
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert "Traceback" not in stderr
        assert "did not drain" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_stalled_client_does_not_hold_shutdown_past_the_graceful_timeout(
    ha: DemoHomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    async with live_server(settings_for(ha)) as live:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", live.port))
        stalled.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        for i in range(3000):
            ha.set_state("sensor.house_load", str(i), {"blob": "x" * 4000})
            if i % 100 == 99:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        live.server.should_exit = True
        async with asyncio.timeout(8):
            while live.service.hub.client_count:
                await asyncio.sleep(0.05)
        assert time.monotonic() - started < 5
        stalled.close()
    assert "did not drain in time" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no task was cancelled mid-stream"


async def test_stream_end_is_seen_by_the_reader(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events") as stream:
        await stream.next()
        live.server.should_exit = True
        try:
            while True:
                await stream.next(timeout=5)
        except StreamEnded:
            pass
        assert stream.retry == 1000


# --- a background task that dies ---------------------------------------------------------


async def test_a_crashed_background_task_is_logged_and_makes_readyz_and_healthz_503(
    ha: DemoHomeAssistant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # It dies when the test says so, not after a fixed time: a loaded machine took longer than
    # that to answer the first /readyz, which then saw the crash already.
    release = asyncio.Event()

    async def crash(self: Hub, interval: float) -> None:
        await release.wait()
        raise RuntimeError("the heartbeat broke")

    monkeypatch.setattr(Hub, "run_heartbeat", crash)
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient(base_url=live.url) as client:
        stopped = asyncio.Event()
        live.service.on_failure = stopped.set
        assert (await client.get("/readyz")).status_code == 200
        release.set()
        async with asyncio.timeout(5):
            await stopped.wait()
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["error"] == {
        "code": "task_failed",
        "message": "the background task heartbeat crashed (RuntimeError); the process is ending",
    }
    assert health.status_code == 503 and health.json()["failure"].startswith("the background task heartbeat")
    crashed = [r for r in caplog.records if r.getMessage() == "Background task heartbeat crashed; stopping"]
    assert len(crashed) == 1 and crashed[0].exc_info is not None, "logged once, with its traceback"
    assert "the heartbeat broke" in caplog.text


def test_a_crashed_background_task_ends_the_process_with_a_non_zero_status() -> None:
    """What a supervisor (systemd, a container runtime, a PaaS) needs to restart it."""
    code = (
        "import asyncio, sys\n"
        "from sse_service.hub import Hub\n"
        "async def crash(self, interval):\n"
        "    await asyncio.sleep(0.5)\n"
        "    raise RuntimeError('the heartbeat broke')\n"
        "Hub.run_heartbeat = crash\n"
        "from sse_service.__main__ import main\n"
        "sys.exit(main([]))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("HA_URL", "HA_TOKEN", "CONFIG_FILE", "REDIS_URL")}
    environ.update(PORT=str(free_port()), HOST="127.0.0.1")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Background task heartbeat crashed; stopping" in done.stderr
    assert "RuntimeError: the heartbeat broke" in done.stderr, "with its traceback"
    assert time.monotonic() - started < 30
