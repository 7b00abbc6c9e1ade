"""The HA token never reaches a response or a log line, even at DEBUG and on auth failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

import httpx

from sse_service.ha.demo import DemoHomeAssistant

from .helpers import SSEStream, free_port

GOOD_TOKEN = "good-token-5b2f6e1c9a7d4e3f8b0a"
WRONG_TOKEN = "wrong-token-0c8e7a6b5d4f3e2a1b9c"


@contextlib.asynccontextmanager
async def service(ha: DemoHomeAssistant, token: str, log: list[str]) -> AsyncIterator[str]:
    port = free_port()
    env = dict(os.environ, HA_URL=ha.url, HA_TOKEN=token, PORT=str(port), LOG_LEVEL="debug", HA_AUTH_RETRY="0.2")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sse_service", env=env, stderr=asyncio.subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(10):
            while True:
                try:
                    await client.get(url + "/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
        log.append(stderr.decode())


async def session(url: str) -> list[str]:
    """Streams, reads, commands-to-be and errors; returns everything the service answered."""
    seen: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client:
        for method, path in [
            ("GET", "/healthz"),
            ("GET", "/api/states"),
            ("GET", "/api/states/switch.charger"),
            ("GET", "/api/states/switch.nothing"),
            ("GET", "/nothing"),
            ("POST", "/events"),
            ("HEAD", "/events"),
            ("DELETE", "/api/states"),
            ("POST", "/api/services/switch/turn_on"),
        ]:
            response = await client.request(method, url + path, headers={"Authorization": "Bearer x"})
            seen.append(f"{response.status_code} {response.headers} {response.text}")
        async with client.stream("GET", url + "/events?last_event_id=bogus") as response:
            stream = SSEStream(response)
            with contextlib.suppress(TimeoutError):
                first = await stream.next(timeout=3)
                seen.append(first.data)
            await stream.close()
            seen.append(str(response.headers))
    return seen


async def test_the_token_appears_in_no_response_and_no_log_line(ha: DemoHomeAssistant) -> None:
    ha.token = GOOD_TOKEN
    logs: list[str] = []
    answers: list[str] = []
    async with service(ha, GOOD_TOKEN, logs) as url:
        answers += await session(url)
        ha.set_state("switch.charger", "on")
        await ha.stop()  # errors on the upstream side get logged too
        await asyncio.sleep(0.3)
        await ha.start()
        await asyncio.sleep(0.5)
        answers += await session(url)
    async with service(ha, WRONG_TOKEN, logs) as url:
        await asyncio.sleep(0.6)  # a few auth_invalid rounds
        answers += await session(url)
        assert any("auth_invalid" in a for a in answers)

    everything = "\n".join(answers + logs)
    assert "Upstream authenticated" in logs[0], "the log is captured (the test would be blind otherwise)"
    assert "refused the token" in logs[1]
    for token in (GOOD_TOKEN, WRONG_TOKEN):
        assert token not in everything
        assert token[-12:] not in everything
