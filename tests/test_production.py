"""Running in production: metrics, JSON logs, forwarded headers, stream lifetime, readiness."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.datastructures import Headers

from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.proxy import TrustedProxies, _forwarded_chain

from .helpers import LiveServer, SSEStream, StreamEnded, live_server, open_stream, service_process, settings_for

READ_KEY = "read-key-5f0e2d9c8b7a6143"
WRITE_KEY = "write-key-0a1b2c3d4e5f6789"


async def scrape(live: LiveServer, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Every sample of /metrics as ``name{label="v"}`` -> value."""
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_metrics_count_the_streams_of_each_format(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        async with (
            open_stream(live.url + "/events") as full,
            open_stream(live.url + "/events?format=compact") as lean,
            open_stream(live.url + "/events?format=compact&entity_id=sensor.*") as leaner,
        ):
            for stream in (full, lean, leaner):
                await stream.next()
            during = await scrape(live)
        assert during['sse_clients_by_format{format="full"}'] == 1
        assert during['sse_clients_by_format{format="compact"}'] == 2


async def test_metrics_follow_a_scripted_session(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, allowed_services=("switch.turn_on",))
    async with live_server(settings) as live:
        before = await scrape(live)
        assert before['sse_upstream_status{status="connected"}'] == 1
        assert before["sse_upstream_connects_total"] == 1
        assert before["sse_entities"] == 5
        async with (
            open_stream(live.url + "/events") as everything,
            open_stream(live.url + "/events?entity_id=sensor.battery_level") as one,
        ):
            await everything.next()
            snapshot = await one.next()
            ha.set_state("sensor.battery_level", "51.0")
            ha.set_state("sensor.solar_power", "900")
            await everything.until_state("sensor.solar_power", "900")
            await one.until_state("sensor.battery_level", "51.0")
            during = await scrape(live)
            async with httpx.AsyncClient(base_url=live.url) as client:
                ok = await client.post("/api/services/switch/turn_on", json={"entity_id": "switch.charger"})
                refused = await client.post("/api/services/lock/unlock", json={"entity_id": "lock.door"})
            assert (ok.status_code, refused.status_code) == (200, 403)
        assert during['sse_clients{filter="all"}'] == 1
        assert during['sse_clients{filter="filtered"}'] == 1
        assert during["sse_upstream_changes_total"] - before["sse_upstream_changes_total"] == 2
        # battery_level reached both streams, solar_power only the unfiltered one.
        assert during["sse_deliveries_total"] - before["sse_deliveries_total"] == 3
        assert during["sse_bytes_total"] > before["sse_bytes_total"]
        assert during["sse_fanout_seconds_count"] >= 2

        # A resume inside the buffer is a replay; an unknown id gets a snapshot.
        async with open_stream(live.url + "/events", {"last-event-id": snapshot.id or ""}) as resumed:
            assert (await resumed.next()).event == "state"
        async with open_stream(live.url + "/events?last_event_id=0-0") as fresh:
            assert (await fresh.next()).event == "snapshot"

        await ha.stop()
        while live.service.hub.status.value == "connected":
            await asyncio.sleep(0.01)
        down = await scrape(live)
        await ha.start()
        while live.service.hub.status.value != "connected":
            await asyncio.sleep(0.01)
        after = await scrape(live)

    assert after['sse_resumes_total{kind="replay"}'] - before['sse_resumes_total{kind="replay"}'] == 1
    assert after['sse_resumes_total{kind="snapshot"}'] - before['sse_resumes_total{kind="snapshot"}'] == 3
    assert after['sse_commands_total{outcome="ok"}'] == 1
    assert after['sse_commands_total{outcome="service_not_allowed"}'] == 1
    assert down['sse_upstream_status{status="connected"}'] == 0
    assert down['sse_upstream_status{status="disconnected"}'] == 1
    assert after["sse_upstream_connects_total"] == 2
    assert after['sse_clients{filter="all"}'] == 0


async def test_metrics_need_the_read_key_when_there_is_one(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, read_key=Secret(READ_KEY))) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            assert (await client.get("/metrics")).status_code == 401
        assert "sse_clients" in str(await scrape(live, {"authorization": f"Bearer {READ_KEY}"}))


async def test_readyz_is_503_until_the_first_snapshot(ha: DemoHomeAssistant) -> None:
    await ha.stop()
    async with live_server(settings_for(ha), wait_connected=False) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            not_ready = await client.get("/readyz")
            alive = await client.get("/healthz")
            assert not_ready.status_code == 503
            assert not_ready.json()["error"]["code"] == "not_ready"
            assert alive.status_code == 200, "liveness holds while HA is down"
            await ha.start()
            async with asyncio.timeout(5):
                while (ready := await client.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.05)
            assert ready.json() == {"ready": True, "upstream": "connected"}


async def test_the_stream_is_never_compressed(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client:
        async with client.stream("GET", live.url + "/events", headers={"accept-encoding": "gzip, br"}) as response:
            assert "content-encoding" not in response.headers
            assert "no-transform" in response.headers["cache-control"]


# --- forwarded headers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "trusted", "client"),
    [
        ({"x-forwarded-for": "203.0.113.7"}, ["127.0.0.1"], "203.0.113.7"),
        # The client wrote the left-most entry itself: only the proxy's own entry counts.
        ({"x-forwarded-for": "1.1.1.1, 203.0.113.7"}, ["127.0.0.1"], "203.0.113.7"),
        ({"x-forwarded-for": "203.0.113.7, 10.0.0.2"}, ["127.0.0.1", "10.0.0.0/8"], "203.0.113.7"),
        ({"x-forwarded-for": "1.1.1.1, 203.0.113.7"}, ["*"], "203.0.113.7"),
        ({"forwarded": 'for=198.51.100.4;proto=https, for="[2001:db8::1]:4711"'}, ["127.0.0.1"], "2001:db8::1"),
        ({"forwarded": "for=198.51.100.4:8080"}, ["127.0.0.1"], "198.51.100.4"),
    ],
)
def test_the_client_address_comes_from_the_trusted_end_of_the_chain(
    headers: dict[str, str], trusted: list[str], client: str
) -> None:
    assert TrustedProxies(trusted).client(_forwarded_chain(Headers(headers))) == client


@pytest.mark.parametrize(
    ("trusted", "accepted"),
    [
        (("10.0.0.0/8",), False),  # the test client (127.0.0.1) is not a trusted proxy
        (("127.0.0.1",), True),
    ],
)
async def test_forwarded_headers_count_only_from_trusted_peers(
    ha: DemoHomeAssistant, trusted: tuple[str, ...], accepted: bool
) -> None:
    settings = settings_for(ha, forwarded_allow_ips=trusted, max_streams_per_ip=1)
    async with (
        live_server(settings) as live,
        open_stream(live.url + "/events", {"x-forwarded-for": "203.0.113.1"}) as first,
    ):
        await first.next()
        async with httpx.AsyncClient(base_url=live.url) as client:
            second = await client.get("/healthz", headers={"x-forwarded-for": "203.0.113.2"})
            assert second.status_code == 200
            if accepted:
                async with open_stream(live.url + "/events", {"x-forwarded-for": "203.0.113.2"}) as other:
                    assert (await other.next()).event == "snapshot"
                same = await client.get("/events", headers={"x-forwarded-for": "203.0.113.1"})
                assert same.status_code == 429, "the limit applies to the real client"
            else:
                spoofed = await client.get("/events", headers={"x-forwarded-for": "203.0.113.2"})
                assert spoofed.status_code == 429, "an untrusted peer cannot pick its address"


# --- stream lifetime ------------------------------------------------------------------


async def test_a_stream_past_its_max_age_ends_and_resumes_without_a_gap(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, max_stream_age=1.0, retry_ms=3000)
    received: list[int] = []
    ends = 0

    async def publish() -> None:
        for value in range(60):
            ha.set_state("sensor.house_load", str(value))
            await asyncio.sleep(0.05)

    async with (
        live_server(settings) as live,
        httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client,
        asyncio.timeout(30),
    ):
        publisher: asyncio.Task[None] | None = None
        last_id: str | None = None
        while received[-1:] != [59]:
            headers = {"last-event-id": last_id} if last_id else {}
            async with client.stream("GET", live.url + "/events", headers=headers) as response:
                stream = SSEStream(response)
                try:
                    while True:
                        event = await stream.next(timeout=5)
                        if event.event == "snapshot":
                            assert publisher is None, "a resume inside the buffer is a replay, not a snapshot"
                            publisher = asyncio.create_task(publish())
                        elif event.event == "state" and event.json()["entity_id"] == "sensor.house_load":
                            received.append(int(event.json()["state"]))
                        last_id = stream.last_event_id
                except StreamEnded:
                    ends += 1
                    assert stream.retry == 500, "the client is told to come back at once"
                finally:
                    await stream.close()
        assert publisher is not None
        await publisher
    assert ends >= 2, "the streams were ended by their age"
    assert received == list(range(60)), "no event missed, none twice"


# --- logs -----------------------------------------------------------------------------


async def test_json_logs_parse_and_hold_the_events_worth_knowing(ha: DemoHomeAssistant) -> None:
    ha.token = "token-9e8d7c6b5a4f3e2d1c0b"
    log: list[str] = []
    async with service_process(
        log,
        ready="/readyz",
        HA_URL=ha.url,
        HA_TOKEN=ha.token,
        LOG_FORMAT="json",
        READ_KEY=READ_KEY,
        WRITE_KEY=WRITE_KEY,
        ALLOWED_SERVICES="switch.turn_on",
    ) as url:
        async with open_stream(f"{url}/events?key={READ_KEY}&domain=switch") as stream:
            await stream.next()
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post(
                    "/api/services/switch/turn_on",
                    json={"entity_id": "switch.charger"},
                    headers={"authorization": f"Bearer {WRITE_KEY}"},
                )
                await client.get(f"/api/states?key={READ_KEY}")
            await stream.until_state("switch.charger", "on")
        await asyncio.sleep(0.2)
    lines = [line for line in log[0].splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    messages = [e["message"] for e in entries]
    assert any(m.startswith("Upstream authenticated") for m in messages)
    assert any(m.startswith("Stream opened for 127.0.0.1 (filter switch.*, snapshot)") for m in messages)
    assert any(m.startswith("Stream closed for 127.0.0.1 after") and "client left" in m for m in messages)
    assert any(m == "Command switch.turn_on on switch.charger from 127.0.0.1: ok" for m in messages)
    assert any(m.startswith("127.0.0.1 GET /api/states 200") for m in messages), "access log, without the query"
    assert not any("/events" in m and "GET" in m for m in messages), "streams are not in the access log"
    for secret in (ha.token, READ_KEY, WRITE_KEY):
        assert secret not in log[0]
