"""``GET /events`` against a real uvicorn server on 127.0.0.1 and the fake HA."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
import pytest

from sse_service.access import Keys
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import LiveServer, SSEEvent, SSEStream, live_server, open_stream, settings_for


def seq(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.rsplit("-", 1)[1])


async def test_headers_are_set_for_browsers_and_proxies(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events") as stream:
        headers = stream.response.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "no-store" in headers["cache-control"]
        assert headers["x-accel-buffering"] == "no"
        assert "content-length" not in headers


async def test_snapshot_comes_first_then_state_changes_with_increasing_ids(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, retry_ms=2500)) as live, open_stream(live.url + "/events") as stream:
        started = time.monotonic()
        snapshot = await stream.next()
        assert time.monotonic() - started < 1.0
        assert stream.retry == 2500, "retry: comes before the first event"
        assert snapshot.event == "snapshot"
        body = snapshot.json()
        assert body["status"] == "connected"
        battery = body["entities"]["sensor.battery_level"]
        assert battery["state"] == "50.0"
        assert battery["attributes"]["unit_of_measurement"] == "%"
        assert {"last_changed", "last_updated"} <= set(battery)

        for value in ("51.0", "52.0", "53.0"):
            ha.set_state("sensor.battery_level", value)
        events = [await stream.next() for _ in range(3)]
        assert [e.event for e in events] == ["state"] * 3
        assert [e.json()["state"] for e in events] == ["51.0", "52.0", "53.0"]
        ids = [seq(snapshot.id)] + [seq(e.id) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 4


async def test_event_ids_do_not_repeat_across_service_restarts(ha: DemoHomeAssistant) -> None:
    ids = []
    for _ in range(2):
        async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events") as stream:
            ids.append((await stream.next()).id)
        await asyncio.sleep(0.01)
    assert ids[0] != ids[1]
    assert ids[0] is not None and ids[1] is not None and ids[0].split("-")[0] < ids[1].split("-")[0]


async def test_resume_with_last_event_id_replays_exactly_what_was_missed(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        async with open_stream(live.url + "/events") as stream:
            await stream.next()
            ha.set_state("sensor.solar_power", "1300")
            seen = await stream.next()
        ha.set_state("sensor.solar_power", "1400")
        ha.set_state("switch.charger", "on")
        await asyncio.sleep(0.2)
        async with open_stream(live.url + "/events", headers={"Last-Event-ID": seen.id or ""}) as stream:
            missed = [await stream.next(), await stream.next()]
            assert [(e.event, e.json()["state"]) for e in missed] == [("state", "1400"), ("state", "on")]
            assert seq(missed[0].id) == seq(seen.id) + 1
            ha.set_state("sensor.solar_power", "1500")
            live_event = await stream.next()
            assert (live_event.json()["state"], seq(live_event.id)) == ("1500", seq(missed[1].id) + 1)


async def test_first_connect_can_resume_from_the_query_parameter(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        async with httpx.AsyncClient() as client:
            bootstrap = (await client.get(live.url + "/api/states")).json()
        ha.set_state("switch.charger", "on")
        await asyncio.sleep(0.2)
        async with open_stream(f"{live.url}/events?last_event_id={bootstrap['event_id']}") as stream:
            event = await stream.next()
            assert (event.event, event.json()["entity_id"], event.json()["state"]) == ("state", "switch.charger", "on")


async def test_resume_outside_the_buffer_or_with_an_unknown_id_gets_a_snapshot(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, replay_buffer=3)) as live:
        async with open_stream(live.url + "/events") as stream:
            first = await stream.next()
        for value in range(10):
            ha.set_state("sensor.house_load", str(700 + value))
        await asyncio.sleep(0.2)
        for last_id in (first.id or "", "someone-else-12", "not an id"):
            async with open_stream(live.url + "/events", headers={"Last-Event-ID": last_id}) as stream:
                event = await stream.next()
                assert event.event == "snapshot", last_id
                assert event.json()["entities"]["sensor.house_load"]["state"] == "709"


async def test_entity_id_filter_with_globs_narrows_the_stream(ha: DemoHomeAssistant) -> None:
    async with (
        live_server(settings_for(ha)) as live,
        open_stream(live.url + "/events?entity_id=sensor.battery_*,switch.charger") as stream,
    ):
        snapshot = await stream.next()
        assert set(snapshot.json()["entities"]) == {"sensor.battery_level", "switch.charger"}
        ha.set_state("sensor.solar_power", "10")
        ha.set_state("light.kitchen", "off")
        ha.set_state("switch.charger", "on")
        event = await stream.next()
        assert event.json()["entity_id"] == "switch.charger"


async def test_domain_filter_narrows_the_stream(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events?domain=switch,light") as stream:
        snapshot = await stream.next()
        assert set(snapshot.json()["entities"]) == {"switch.charger", "light.kitchen"}
        ha.set_state("sensor.solar_power", "10")
        ha.set_state("light.kitchen", "off")
        assert (await stream.next()).json()["entity_id"] == "light.kitchen"


async def test_exposed_entities_limit_everything_a_client_can_see(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, entities=("sensor.*",))) as live:
        async with open_stream(live.url + "/events?entity_id=*") as stream:
            assert set((await stream.next()).json()["entities"]) == {
                "sensor.battery_level",
                "sensor.solar_power",
                "sensor.house_load",
            }
        async with httpx.AsyncClient() as client:
            assert (await client.get(live.url + "/api/states/light.kitchen")).status_code == 404


async def test_upstream_killed_and_restarted(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events") as stream:
        await stream.next()
        await ha.stop()
        down = await stream.until(lambda e: e.event == "status")
        assert down.json()["status"] == "disconnected"
        assert down.json()["cause"] == "home_assistant", "the link that is down, for machines"
        ha.set_state("sensor.battery_level", "33.3")
        ha.remove_state("light.kitchen")
        ha.set_state("sensor.new_probe", "1", {"friendly_name": "New probe"})
        await ha.start()
        seen: dict[str, list[str]] = {"state": [], "remove": [], "status": []}
        async with asyncio.timeout(5):
            while "connected" not in seen["status"]:
                event = await stream.next()
                body = event.json()
                seen[event.event].append(body.get("status") or f"{body['entity_id']}={body.get('state')}")
        assert sorted(seen["state"]) == ["sensor.battery_level=33.3", "sensor.new_probe=1"]
        assert seen["remove"] == ["light.kitchen=None"]
        async with httpx.AsyncClient() as client:
            states = (await client.get(live.url + "/api/states")).json()
        assert states["status"] == "connected"
        assert "light.kitchen" not in states["entities"]
        assert states["entities"]["sensor.battery_level"]["state"] == "33.3"


async def restart_into_starting(ha: DemoHomeAssistant, live: LiveServer, stream: SSEStream) -> None:
    """HA goes down, loses light.kitchen, and comes back STARTING with three entities not loaded yet."""
    await ha.stop()
    await stream.until(lambda e: e.event == "status" and e.json()["status"] == "disconnected")
    ha.remove_state("light.kitchen")  # really deleted while HA was down
    ha.begin_start(["switch.charger", "sensor.house_load", "sensor.solar_power"])
    await ha.start()
    async with asyncio.timeout(5):
        while live.app.state.hub.status.value == "disconnected":
            await asyncio.sleep(0.01)


async def test_after_a_restart_no_entity_that_still_exists_blinks_out(ha: DemoHomeAssistant) -> None:
    """Right after a start HA answers with part of its entities (2026.11: 4 of 15) and sends the
    rest over ~1.5 s: only what really vanished across the restart is removed, once HA runs."""
    async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events") as stream:
        await stream.next()
        await restart_into_starting(ha, live, stream)
        seen: list[tuple[str, str]] = []  # everything the restart causes on the stream

        async def read(until: Callable[[SSEEvent], bool] | None) -> None:
            with contextlib.suppress(TimeoutError):
                while True:  # until the event wanted, or else until the stream is quiet
                    event = await stream.next(timeout=1.0 if until is None else 5.0)
                    body = event.json()
                    seen.append((event.event, body.get("status") or body["entity_id"]))
                    if until is not None and until(event):
                        return

        ha.load(["switch.charger"])
        ha.set_state("switch.charger", "on")
        await read(
            lambda e: e.event == "state" and e.json() == {**e.json(), "entity_id": "switch.charger", "state": "on"}
        )
        ha.finish_start()
        await read(None)
        assert [name for kind, name in seen if kind == "remove"] == ["light.kitchen"], seen
        assert seen[-1] == ("status", "connected")
        async with httpx.AsyncClient() as client:
            states = (await client.get(live.url + "/api/states")).json()
        assert set(states["entities"]) == set(ha.states)


async def test_while_ha_is_starting_the_stream_healthz_and_readyz_say_so(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, open_stream(live.url + "/events") as stream:
        await stream.next()
        await restart_into_starting(ha, live, stream)
        starting = await stream.until(lambda e: e.event == "status")
        assert (starting.json()["status"], starting.json()["reason"]) == ("starting", "Home Assistant is starting")
        async with httpx.AsyncClient() as client:
            health = (await client.get(live.url + "/healthz")).json()
            ready = await client.get(live.url + "/readyz")
            ha.finish_start()
            await stream.until(lambda e: e.event == "status" and e.json()["status"] == "connected")
            running = (await client.get(live.url + "/healthz")).json()
        assert (health["upstream"]["status"], health["upstream"]["reason"]) == (
            "starting",
            "Home Assistant is starting",
        )
        assert (ready.status_code, ready.json()["upstream"]) == (200, "starting"), "it serves the last known view"
        assert running["upstream"]["status"] == "connected"


async def test_a_client_connecting_while_ha_is_down_sees_the_status_in_its_snapshot(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        await ha.stop()
        while live.app.state.hub.status.value == "connected":
            await asyncio.sleep(0.01)
        async with open_stream(live.url + "/events") as stream:
            snapshot = await stream.next()
            assert (snapshot.json()["status"], snapshot.json()["cause"]) == ("disconnected", "home_assistant")
            assert snapshot.json()["entities"]["sensor.battery_level"]["state"] == "50.0", "last known values stay"


async def test_heartbeat_pings_arrive_on_an_idle_stream_without_moving_the_event_id(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha, heartbeat=0.3)) as live, open_stream(live.url + "/events") as stream:
        snapshot = await stream.next()
        assert snapshot.json()["heartbeat"] == 0.3, "the snapshot says how often to expect a ping"
        started = time.monotonic()
        pings = [await stream.next(timeout=1.0) for _ in range(3)]
        assert [(p.event, p.data, p.id) for p in pings] == [("ping", "{}", None)] * 3
        assert time.monotonic() - started < 1.5
        assert stream.last_event_id == snapshot.id
        ha.set_state("switch.charger", "on")
        event = await stream.until(lambda e: e.event != "ping")
        assert seq(event.id) == seq(snapshot.id) + 1


async def test_head_gets_headers_and_other_methods_get_405(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient() as client:
        head = await client.head(live.url + "/events")
        assert (head.status_code, head.headers["content-type"]) == (200, "text/event-stream; charset=utf-8")
        post = await client.post(live.url + "/events")
        assert post.status_code == 405
        assert post.json()["error"]["code"] == "method_not_allowed"


async def test_an_internal_error_before_the_stream_starts_is_a_json_500_without_details(
    ha: DemoHomeAssistant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # /events runs ahead of Starlette's error middleware, so it must answer this itself.
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient() as client:
        limits = live.app.state.limits

        def broken(*args: object) -> bool:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(Keys, "reader", broken)
        response = await client.get(live.url + "/events")
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "secret internals" not in response.text
        assert "secret internals" in caplog.text, "the details go to the server log"
        assert limits.open == 0, "the slot is given back"

        monkeypatch.undo()
        async with open_stream(live.url + "/events") as stream:
            assert (await stream.next()).event == "snapshot"


async def test_the_stream_is_reached_with_a_trailing_slash_and_under_a_root_path(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        # Starlette redirects to /events, as EventSource follows it.
        redirected = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), follow_redirects=True)
        async with redirected, open_stream(live.url + "/events/", client=redirected) as stream:
            assert (await stream.next()).event == "snapshot"
        live.server.config.root_path = "/dash"  # a proxy strips /dash; uvicorn puts it back in the path
        async with open_stream(live.url + "/events") as stream:
            assert (await stream.next()).event == "snapshot"


async def test_states_and_health_routes(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient() as client:
        states = (await client.get(live.url + "/api/states?domain=switch")).json()
        assert list(states["entities"]) == ["switch.charger"]
        one = await client.get(live.url + "/api/states/switch.charger")
        assert one.json()["state"] == "off"
        missing = await client.get(live.url + "/api/states/switch.nope")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_entity")
        async with open_stream(live.url + "/events"):
            health = (await client.get(live.url + "/healthz")).json()
        assert health["upstream"]["status"] == "connected"
        assert (health["clients"], health["entities"]) == (1, 5)
        unknown = await client.get(live.url + "/nope")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")


async def test_the_snapshot_brings_recent_history_for_numeric_entities(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        for value in ("51.0", "52.5", "not a number", "53"):
            ha.set_state("sensor.battery_level", value)
        async with httpx.AsyncClient() as client:
            while (await client.get(live.url + "/api/states/sensor.battery_level")).json()["state"] != "53":
                await asyncio.sleep(0.01)
        async with open_stream(live.url + "/events?domain=sensor,switch") as stream:
            history = (await stream.next()).json()["history"]
        assert set(history) == {"sensor.battery_level", "sensor.solar_power", "sensor.house_load"}
        assert [value for _, value in history["sensor.battery_level"]] == [50.0, 51.0, 52.5, 53.0]
        times = [t for t, _ in history["sensor.battery_level"]]
        assert times == sorted(times) and abs(times[-1] - time.time()) < 5
