"""History from Home Assistant's recorder: charts full from the first second (issue 15)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from sse_service.ha.demo import BatteryHome, DemoHomeAssistant

from .helpers import LiveServer, live_server, open_stream, settings_for


def span_hours(points: Sequence[Sequence[float]]) -> float:
    return (points[-1][0] - points[0][0]) / 3600 if points else 0.0


async def history_of(live: LiveServer, entity_id: str, timeout: float = 5.0) -> list[list[float]]:
    """The entity's history as a new stream sees it, once the recorder's past is in."""
    deadline = time.monotonic() + timeout
    while True:
        async with open_stream(live.url + "/events") as stream:
            snapshot = (await stream.next()).json()
        points: list[list[float]] = snapshot["history"].get(entity_id, [])
        if span_hours(points) > 1 or time.monotonic() > deadline:
            return points
        await asyncio.sleep(0.1)


@pytest.fixture
async def home() -> Any:
    async with DemoHomeAssistant() as ha:
        BatteryHome(ha, interval=3600, seed=1)  # a recorded past day, and no ticks during the test
        yield ha


async def test_the_snapshot_carries_a_day_of_the_recorders_past_downsampled(home: DemoHomeAssistant) -> None:
    async with live_server(settings_for(home, history_points=100)) as live:
        points = await history_of(live, "sensor.battery_level")
        (connection,) = home.clients
    assert 23.5 <= span_hours(points) <= 24.1
    assert 50 <= len(points) <= 100
    assert points == sorted(points)
    recorded = [float(v) for t, v in home.recorder["sensor.battery_level"]]
    # min/max downsampling keeps the day's extremes, not every n-th point
    assert max(v for _, v in points) == max(recorded) and min(v for _, v in points) == min(recorded)
    assert points[-1][1] == float(home.states["sensor.battery_level"]["state"])
    (request,) = [m for m in connection.received if m["type"] == "history/history_during_period"]
    assert request["minimal_response"] and request["no_attributes"]
    assert sorted(request["entity_ids"]) == ["sensor.battery_level", "sensor.house_load", "sensor.solar_power"]


async def test_a_stream_open_before_the_past_arrives_gets_it_as_a_history_event(home: DemoHomeAssistant) -> None:
    async with live_server(settings_for(home, history_window=0.0)) as live:
        async with open_stream(live.url + "/events?entity_id=sensor.solar_power") as stream:
            snapshot = (await stream.next()).json()
            assert span_hours(snapshot["history"]["sensor.solar_power"]) < 0.1
            past = [(time.time() - 7200 + 60 * i, float(i)) for i in range(100)]
            live.service.log.upstream_history({"sensor.solar_power": past, "sensor.house_load": past})
            event = await stream.until(lambda e: e.event == "history")
    assert event.id is None, "not part of the replayable sequence"
    assert list(event.json()["history"]) == ["sensor.solar_power"], "the stream's own filter holds"
    assert span_hours(event.json()["history"]["sensor.solar_power"]) > 1.5


async def test_without_a_recorder_the_snapshot_comes_as_ever_and_one_line_says_why(
    home: DemoHomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    home.has_recorder = False
    async with live_server(settings_for(home)) as live:
        async with open_stream(live.url + "/events") as stream:
            snapshot = (await stream.next()).json()
        await asyncio.sleep(0.3)
        home.set_state("sensor.house_load", "777")
        await asyncio.sleep(0.2)
        async with open_stream(live.url + "/events") as stream:
            later = (await stream.next()).json()
    assert snapshot["entities"]["sensor.battery_level"]
    said = [r.getMessage() for r in caplog.records if "No history from Home Assistant's recorder" in r.getMessage()]
    assert len(said) == 1 and "unknown_command" in said[0]
    assert later["history"]["sensor.house_load"][-1][1] == 777.0  # what the bridge sees itself


async def api(live: LiveServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        return await client.get(path)


async def test_the_history_route_reads_the_recorder_within_bounds(home: DemoHomeAssistant) -> None:
    async with live_server(settings_for(home, entities=("sensor.*",))) as live:
        now = int(time.time())
        response = await api(live, f"/api/history/sensor.solar_power?since={now - 6 * 3600}&points=50")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["entity_id"] == "sensor.solar_power" and len(body["points"]) <= 50
        assert 5.5 <= span_hours(body["points"]) <= 6.1
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
        assert (await api(live, f"/api/history/sensor.house_load?since={iso}")).status_code == 200
        for query, field in [
            ("since=yesterday", "since: expected an ISO 8601 time"),
            ("since=%C2%B2", "since: expected"),
            (f"since={now - 30 * 86400}", "since: the span is limited to 7 days"),
            (f"since={now}&until={now - 10}", "since: must be before until"),
            ("points=1", "points:"),
            ("points=" + "9" * 50, "points:"),
        ]:
            response = await api(live, f"/api/history/sensor.solar_power?{query}")
            assert response.status_code == 422, (query, response.text)
            assert response.json()["error"]["message"].startswith(field), query
        for entity in ("switch.charger", "sensor.nothing"):  # not exposed / not in HA
            assert (await api(live, f"/api/history/{entity}")).status_code == 404


async def test_the_history_route_says_when_ha_has_no_recorder_or_is_down(home: DemoHomeAssistant) -> None:
    async with live_server(settings_for(home)) as live:
        home.has_recorder = False
        response = await api(live, "/api/history/sensor.solar_power")
        assert response.status_code == 501
        assert response.json()["error"]["code"] == "history_unavailable"
        await home.stop()
        while live.service.hub.status.value == "connected":
            await asyncio.sleep(0.01)
        response = await api(live, "/api/history/sensor.solar_power")
        assert response.status_code == 503


async def test_a_large_answer_arrives_bounded_and_is_merged(home: DemoHomeAssistant) -> None:
    # ~6 MB of history in one frame: parsed in a worker thread (LARGE_FRAME), downsampled.
    for i in range(40):
        entity_id = f"sensor.big_{i}"
        home.set_state(entity_id, "1")
        start = time.time() - 86400
        home.recorder[entity_id] = [(start + 20 * k, str(k % 97)) for k in range(4000)]
    async with live_server(settings_for(home, history_entities=100, history_points=80)) as live:
        store = live.service.hub.store
        async with asyncio.timeout(10):
            while span_hours(store.history["sensor.big_39"].points) < 20:
                await asyncio.sleep(0.01)
        series = store.history["sensor.big_39"].points
    assert len(series) <= 80
    assert max(v for _, v in series) == 96.0 and series[-1][1] == 1.0
