"""Who may watch: read keys, CORS for embedding, and the caps on open streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from sse_service.access import RateLimiter
from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.tokens import mint

from .helpers import LiveServer, SSEStream, StreamEnded, live_server, open_stream, settings_for

READ_KEY = "read-key-3e9a1b7c5d2f4a60"
WRITE_KEY = "write-key-8d1f0c2b7a6e5d4c"


class TestReadKey:
    @pytest.fixture
    async def keyed(self, ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
        settings = settings_for(ha, read_key=Secret(READ_KEY), write_key=Secret(WRITE_KEY))
        async with live_server(settings) as live:
            yield live

    @pytest.mark.parametrize("path", ["/events", "/api/states", "/api/states/switch.charger"])
    @pytest.mark.parametrize(
        "headers", [{}, {"authorization": "Bearer not-the-key-123456789"}, {"cookie": "sse_key=nope"}]
    )
    async def test_without_a_valid_key_readers_get_401(
        self, keyed: LiveServer, path: str, headers: dict[str, str]
    ) -> None:
        async with httpx.AsyncClient(base_url=keyed.url, timeout=5) as client:
            response = await client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "unauthorized"
        assert READ_KEY not in response.text and WRITE_KEY not in response.text

    @pytest.mark.parametrize(
        ("query", "headers"),
        [
            (f"?key={READ_KEY}", {}),
            ("", {"authorization": f"Bearer {READ_KEY}"}),
            ("", {"cookie": f"theme=dark; sse_key={READ_KEY}"}),
            (f"?key={WRITE_KEY}", {}),  # the write key also reads
        ],
    )
    async def test_the_key_opens_the_stream_as_query_header_or_cookie(
        self, keyed: LiveServer, query: str, headers: dict[str, str]
    ) -> None:
        async with open_stream(keyed.url + "/events" + query, headers) as stream:
            assert (await stream.next()).event == "snapshot"
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            assert (await client.get("/api/states" + query, headers=headers)).status_code == 200

    async def test_health_stays_open_for_liveness_probes(self, keyed: LiveServer) -> None:
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            assert (await client.get("/healthz")).status_code == 200

    async def test_read_key_does_not_allow_commands_when_a_write_key_is_set(self, keyed: LiveServer) -> None:
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            response = await client.post(
                "/api/services/switch/turn_on",
                json={"entity_id": "switch.charger"},
                headers={"authorization": f"Bearer {READ_KEY}"},
            )
        assert response.status_code == 401


class TestCors:
    @pytest.fixture
    async def cors(self, ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
        settings = settings_for(ha, cors_origins=("https://dash.example.com",), allowed_services=("switch.turn_on",))
        async with live_server(settings) as live:
            yield live

    async def test_the_stream_works_from_an_allowed_origin(self, cors: LiveServer) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client:
            async with client.stream(
                "GET", cors.url + "/events", headers={"origin": "https://dash.example.com"}
            ) as response:
                assert response.headers["access-control-allow-origin"] == "https://dash.example.com"
                assert "access-control-allow-credentials" not in response.headers
                stream = SSEStream(response)
                assert (await stream.next()).event == "snapshot"
                await stream.close()

    async def test_other_origins_get_no_cors_headers(self, cors: LiveServer) -> None:
        async with httpx.AsyncClient(base_url=cors.url) as client:
            response = await client.get("/api/states", headers={"origin": "https://evil.example.net"})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers

    async def test_preflight_for_the_command_route(self, cors: LiveServer) -> None:
        preflight = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }
        async with httpx.AsyncClient(base_url=cors.url) as client:
            ok = await client.options(
                "/api/services/switch/turn_on", headers={"origin": "https://dash.example.com", **preflight}
            )
            refused = await client.options(
                "/api/services/switch/turn_on", headers={"origin": "https://evil.example.net", **preflight}
            )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

    async def test_no_cors_headers_unless_configured(self, ha: DemoHomeAssistant) -> None:
        async with live_server(settings_for(ha)) as live, httpx.AsyncClient(base_url=live.url) as client:
            response = await client.get("/api/states", headers={"origin": "https://dash.example.com"})
        assert "access-control-allow-origin" not in response.headers

    async def test_credentials_only_where_configured(self, ha: DemoHomeAssistant) -> None:
        settings = settings_for(ha, cors_origins=("https://dash.example.com",), cors_credentials=True)
        async with live_server(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
            response = await client.get("/api/states", headers={"origin": "https://dash.example.com"})
        assert response.headers["access-control-allow-credentials"] == "true"


class TestStreamCaps:
    @pytest.fixture
    async def capped(self, ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
        async with live_server(settings_for(ha, max_streams=3, max_streams_per_ip=2)) as live:
            yield live

    async def test_per_ip_cap_answers_plain_clients_429_and_browsers_come_back_later(self, capped: LiveServer) -> None:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                stream = await stack.enter_async_context(open_stream(capped.url + "/events"))
                await stream.next()
            async with httpx.AsyncClient(base_url=capped.url) as client:
                plain = await client.get("/events")
            assert plain.status_code == 429
            assert plain.headers["retry-after"] == "30"
            assert plain.json()["error"]["code"] == "too_many_streams"

            # An EventSource would give up for good on a 429; it gets a 200 that says why,
            # with a long retry, and the stream ends at once.
            async with open_stream(capped.url + "/events", {"accept": "text/event-stream"}) as browser:
                busy = await browser.next()
                assert busy.event == "busy"
                assert busy.json()["code"] == "too_many_streams"
                assert browser.retry is not None and 30_000 <= browser.retry <= 60_000
                with pytest.raises(StreamEnded):
                    await browser.next()

        # Closing streams frees their places.
        async with open_stream(capped.url + "/events") as again:
            assert (await again.next()).event == "snapshot"

    async def test_total_cap_is_503(self, capped: LiveServer) -> None:
        limits = capped.service.limits
        limits.acquire("192.0.2.1")  # streams from elsewhere fill the server
        limits.acquire("192.0.2.2")
        try:
            async with open_stream(capped.url + "/events") as stream:
                await stream.next()
                async with httpx.AsyncClient(base_url=capped.url) as client:
                    response = await client.get("/events")
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "server_full"
                assert response.headers["retry-after"]
        finally:
            limits.release("192.0.2.1")
            limits.release("192.0.2.2")
        await asyncio.sleep(0.05)
        assert limits.open == 0


def test_rate_limiter_refills_and_stays_bounded() -> None:
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=100)
    assert limiter.take("a", now=0.0) == 0
    assert limiter.take("a", now=0.0) == 0
    assert limiter.take("a", now=0.0) == pytest.approx(1.0)
    assert limiter.take("a", now=1.0) == 0  # one token per second came back
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}", now=2.0)
    assert len(limiter._buckets) <= 100


# --- read-only screens (issue 28): the snapshot says whether this viewer may call anything ----


async def can_call(url: str, headers: dict[str, str] | None = None) -> bool:
    async with open_stream(url, headers or {}) as stream:
        snapshot = await stream.next()
    assert snapshot.event == "snapshot"
    value = json.loads(snapshot.data)["can_call"]
    assert isinstance(value, bool)
    return value


async def test_the_snapshot_tells_a_read_only_viewer_from_one_that_may_call(ha: DemoHomeAssistant) -> None:
    secret = "t" * 40
    settings = settings_for(
        ha,
        read_key=Secret(READ_KEY),
        write_key=Secret(WRITE_KEY),
        token_secret=Secret(secret),
        allowed_services=("switch.turn_on", "switch.turn_off"),
    )
    looker = mint(Secret(secret), entities=("*",), services=(), expires=None, sub="tablet", jti="1")
    switcher = mint(Secret(secret), entities=("*",), services=("switch.*",), expires=None, sub="phone", jti="2")
    async with live_server(settings) as live:
        events = live.url + "/events"
        assert await can_call(f"{events}?key={READ_KEY}") is False
        assert await can_call(events, {"authorization": f"Bearer {READ_KEY}"}) is False
        assert await can_call(f"{events}?key={WRITE_KEY}") is True
        assert await can_call(f"{events}?token={looker}") is False
        assert await can_call(f"{events}?key={switcher}") is True


async def test_an_open_bridge_may_call_unless_no_service_is_allowed(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, allowed_services=("switch.toggle",))) as live:
        assert await can_call(live.url + "/events") is True
    async with live_server(settings_for(ha, allowed_services=())) as live:
        assert await can_call(live.url + "/events") is False
    # A read key alone also commands (no write key to prefer): that viewer is not read-only.
    async with live_server(settings_for(ha, read_key=Secret(READ_KEY), allowed_services=("switch.*",))) as live:
        assert await can_call(f"{live.url}/events?key={READ_KEY}") is True
