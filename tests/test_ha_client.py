"""The upstream client against a fake Home Assistant that follows the WebSocket protocol."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from sse_service.filters import EntityPattern
from sse_service.ha.client import HAClient, HAError, NotConnected
from sse_service.ha.demo import DemoHomeAssistant, ServiceCall
from sse_service.types import EntityState, UpstreamStatus

from .helpers import free_port


class Sink:
    def __init__(self) -> None:
        self.snapshots: list[dict[str, EntityState]] = []
        self.changes: list[tuple[dict[str, EntityState], list[str]]] = []
        self.statuses: list[UpstreamStatus] = []
        self.histories: list[dict[str, list[tuple[float, float]]]] = []
        self._changed = asyncio.Event()

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None:
        self.snapshots.append(states)
        self._changed.set()

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None:
        self.changes.append((dict(updated), list(removed)))
        self._changed.set()

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None:
        self.statuses.append(status)
        self._changed.set()

    def upstream_history(self, recorded: Mapping[str, Sequence[tuple[float, float]]]) -> None:
        self.histories.append({k: list(v) for k, v in recorded.items()})
        self._changed.set()

    async def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(client: HAClient) -> AsyncIterator[HAClient]:
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_client(ha: DemoHomeAssistant, sink: Sink, *, token: str | None = None, **kw: Any) -> HAClient:
    options: dict[str, Any] = {"exposed": EntityPattern(["*"]), "backoff_max": 0.1, "use_proxy": False}
    options.update(kw)
    return HAClient(ha.url, token or ha.token, sink, **options)


async def test_handshake_then_snapshot_with_increasing_ids(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
    assert set(sink.snapshots[0]) == {
        "sensor.battery_level",
        "sensor.solar_power",
        "sensor.house_load",
        "switch.charger",
        "light.kitchen",
    }
    assert sink.snapshots[0]["sensor.battery_level"]["state"] == "50.0"
    assert sink.statuses == [UpstreamStatus.CONNECTED]
    assert client.ha_version == "2026.11.0"
    assert ha.auth_failures == 0


async def test_commands_use_strictly_increasing_ids(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        await asyncio.gather(
            *(client.call_service("switch", "toggle", None, {"entity_id": "switch.charger"}) for _ in range(20))
        )
        (connection,) = ha.clients
        ids = [m["id"] for m in connection.received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [m["type"] for m in connection.received]
    assert kinds[:6] == [
        "supported_features",
        "auth/current_user",
        "subscribe_events",  # core_config_updated: HA says when it has finished starting
        "get_config",
        "get_states",
        "subscribe_entities",
    ]
    assert kinds.count("call_service") == 20


async def test_only_exposed_entities_are_subscribed_and_kept(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink, exposed=EntityPattern(["sensor.*", "switch.charger"]))) as client:
        await sink.wait(lambda: client.connected)
        (connection,) = ha.clients
        (subscribe,) = [m for m in connection.received if m["type"] == "subscribe_entities"]
        assert subscribe["include"] == {"entity_globs": ["sensor.*", "switch.charger"]}
        assert "light.kitchen" not in sink.snapshots[0]
        ha.set_state("light.kitchen", "off")
        ha.set_state("sensor.house_load", "700")
        await sink.wait(lambda: bool(sink.changes))
    assert [list(updated) for updated, _ in sink.changes] == [["sensor.house_load"]]


async def test_old_ha_without_the_include_filter_is_filtered_locally(ha: DemoHomeAssistant) -> None:
    ha.refuse_filtered_subscribe = True
    sink = Sink()
    async with running(make_client(ha, sink, exposed=EntityPattern(["sensor.*"]))) as client:
        await sink.wait(lambda: client.connected)
        ha.set_state("light.kitchen", "off")
        ha.set_state("sensor.house_load", "700")
        await sink.wait(lambda: bool(sink.changes))
    assert set(sink.snapshots[0]) == {"sensor.battery_level", "sensor.solar_power", "sensor.house_load"}
    assert [list(updated) for updated, _ in sink.changes] == [["sensor.house_load"]]


async def test_coalesced_frames_are_unpacked(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        for value in range(50):
            ha.set_state("sensor.house_load", str(value))
        await sink.wait(
            lambda: any(u["sensor.house_load"]["state"] == "49" for u, _ in sink.changes if "sensor.house_load" in u)
        )
    assert ha.arrays_sent >= 1, "the fake HA should have coalesced the burst into array frames"
    values = [u["sensor.house_load"]["state"] for u, _ in sink.changes]
    assert values == [str(v) for v in range(50)]


async def test_auth_invalid_is_a_state_and_is_not_retried_in_a_loop(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink, token="wrong-token", auth_retry=30)) as client:
        await sink.wait(lambda: client.status is UpstreamStatus.AUTH_INVALID)
        await asyncio.sleep(1.0)
    assert ha.auth_failures == 1
    assert "Invalid access token" in client.reason


async def test_auth_invalid_is_retried_rarely_and_recovers(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    real_token = ha.token
    ha.token = "rotated"
    async with running(make_client(ha, sink, token=real_token, auth_retry=0.3)) as client:
        await sink.wait(lambda: client.status is UpstreamStatus.AUTH_INVALID)
        await asyncio.sleep(1.0)
        assert 2 <= ha.auth_failures <= 5
        ha.token = real_token
        await sink.wait(lambda: client.connected, timeout=3)


async def test_after_ha_restarts_the_new_snapshot_corrects_values_and_removes_entities(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        await ha.stop()
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED)
        ha.set_state("sensor.battery_level", "42.0")  # changed while we were away
        ha.remove_state("light.kitchen")  # removed while we were away
        await ha.start()
        await sink.wait(lambda: len(sink.snapshots) == 2, timeout=5)
    assert sink.statuses == [UpstreamStatus.CONNECTED, UpstreamStatus.DISCONNECTED, UpstreamStatus.CONNECTED]
    assert sink.snapshots[1]["sensor.battery_level"]["state"] == "42.0"
    assert "light.kitchen" not in sink.snapshots[1]


async def test_while_ha_is_starting_its_partial_view_is_merged_and_nothing_is_removed(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        await ha.stop()
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED)
        ha.remove_state("light.kitchen")  # deleted while HA was down
        ha.begin_start(["switch.charger", "sensor.house_load"])
        ha.set_state("sensor.battery_level", "42.0")
        await ha.start()
        await sink.wait(lambda: client.status is UpstreamStatus.STARTING)
        assert client.reason == "Home Assistant is starting"
        assert client.connected, "a starting HA takes commands"
        ha.load(["switch.charger"])
        ha.set_state("switch.charger", "on")
        await sink.wait(
            lambda: any(u["switch.charger"]["state"] == "on" for u, _ in sink.changes if "switch.charger" in u)
        )
        assert len(sink.snapshots) == 1, "nothing HA said while starting replaced the view"
        ha.finish_start()
        await sink.wait(lambda: client.status is UpstreamStatus.CONNECTED)
    assert sink.statuses == [
        UpstreamStatus.CONNECTED,
        UpstreamStatus.DISCONNECTED,
        UpstreamStatus.STARTING,
        UpstreamStatus.CONNECTED,
    ]
    assert [removed for _, removed in sink.changes if removed] == []
    merged = sink.changes[0][0]
    assert merged["sensor.battery_level"]["state"] == "42.0" and "switch.charger" not in merged
    # Once HA runs, the snapshot is its whole view: the hub's diff removes only light.kitchen.
    assert (
        set(sink.snapshots[1])
        == set(ha.states)
        == {
            "sensor.battery_level",
            "sensor.solar_power",
            "sensor.house_load",
            "switch.charger",
        }
    )


async def test_an_ha_stopped_while_still_starting_is_a_plain_outage_that_removes_nothing(
    ha: DemoHomeAssistant,
) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        await ha.stop()
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED)
        ha.begin_start(["switch.charger"])
        await ha.start()
        await sink.wait(lambda: client.status is UpstreamStatus.STARTING)
        await ha.shut_down("starting")  # 2026.11 stopped before it runs: TCP drops, no close frame
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED)
        ha.finish_start()
        await ha.start()
        await sink.wait(lambda: client.status is UpstreamStatus.CONNECTED)
    assert [removed for _, removed in sink.changes if removed] == []
    assert set(sink.snapshots[-1]) == set(ha.states), "the view once HA runs is HA's whole view"


async def test_a_request_that_cannot_be_built_leaves_nothing_pending(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        with pytest.raises((ValueError, OverflowError, OSError)):
            await client.history(["sensor.battery_level"], 1e15, 1e15 + 60)  # past the year 9999
        assert client._session is not None and client._session.pending == {}
        await client.call_service("switch", "turn_on", None, {"entity_id": "switch.charger"})  # ids go on


async def test_an_ha_that_cannot_say_its_core_state_is_taken_as_running(ha: DemoHomeAssistant) -> None:
    ha.core_state = ""  # as an HA whose get_config has no state
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
    assert sink.statuses == [UpstreamStatus.CONNECTED]
    assert len(sink.snapshots) == 1


async def test_unreachable_ha_is_retried_with_growing_delays() -> None:
    port = free_port()
    ha = DemoHomeAssistant(port=port)  # not started: nothing listens there
    sink = Sink()
    async with running(make_client(ha, sink, backoff_max=0.4)) as client:
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED)
        assert client.reason == "cannot connect: connection refused"
        await asyncio.sleep(0.5)
        await ha.start()
        try:
            await sink.wait(lambda: client.connected, timeout=3)
        finally:
            await ha.stop()


async def test_a_missed_pong_drops_the_connection_and_reconnects(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    ha.answer_pings = False
    async with running(make_client(ha, sink, ping_interval=0.1, pong_timeout=0.2)) as client:
        await sink.wait(lambda: client.connected)
        await sink.wait(lambda: UpstreamStatus.DISCONNECTED in sink.statuses, timeout=3)
        ha.answer_pings = True
        await sink.wait(lambda: client.connected, timeout=3)
        await asyncio.sleep(0.5)  # pongs flow again: no further drop
    assert ha.connections_total == 2
    assert client.pong_rtt is not None


async def test_call_service_returns_the_result_and_the_change_follows(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        result = await client.call_service("switch", "turn_on", None, {"entity_id": ["switch.charger"]})
        assert "context" in result
        await sink.wait(
            lambda: any(u["switch.charger"]["state"] == "on" for u, _ in sink.changes if "switch.charger" in u)
        )


async def test_call_service_errors_carry_has_code_and_message(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        with pytest.raises(HAError) as caught:
            await client.call_service("switch", "explode")
    assert (caught.value.code, caught.value.message) == ("not_found", "Service switch.explode not found.")


async def test_a_call_in_flight_fails_at_once_when_the_connection_drops(ha: DemoHomeAssistant) -> None:
    never = asyncio.Event()

    async def hangs(call: ServiceCall) -> None:
        await never.wait()

    ha.services[("script", "slow")] = hangs
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        call = asyncio.create_task(client.call_service("script", "slow"))
        await asyncio.sleep(0.2)
        await ha.stop()
        async with asyncio.timeout(2):
            with pytest.raises(NotConnected):
                await call
        with pytest.raises(NotConnected):
            await client.call_service("switch", "turn_on")


async def test_snapshots_larger_than_one_mebibyte_pass(ha: DemoHomeAssistant) -> None:
    for i in range(40):
        ha.set_state(f"sensor.big_{i}", "1", {"blob": "x" * 40_000})
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
    assert len(sink.snapshots[0]) == 45


# --- what real HA releases do (shared/docs/real-ha-testing.md), played by the fake ------


async def _reconnect_lag(ha: DemoHomeAssistant, sink: Sink, client: HAClient, down: float) -> float:
    """Drop the connection the way HA 2024.3 does (1006), stay down ``down`` s, return the lag after the restart."""
    loop = asyncio.get_running_loop()
    await ha.shut_down("2024.3")
    await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED)
    await asyncio.sleep(down)
    connects = ha.connections_total
    await ha.start()
    back = loop.time()
    await sink.wait(lambda: client.connected and ha.connections_total > connects, timeout=10)
    return loop.time() - back


async def test_every_restart_is_noticed_within_about_a_second_however_the_connection_ended(
    ha: DemoHomeAssistant,
) -> None:
    sink = Sink()
    # The production cap: the schedule itself has to keep restarts short, not a test setting.
    async with running(make_client(ha, sink, backoff_max=30.0)) as client:
        await sink.wait(lambda: client.connected)
        lags = [await _reconnect_lag(ha, sink, client, down=2.0) for _ in range(3)]
    assert max(lags) < 1.5, lags


def test_the_schedule_is_fast_for_a_minute_then_grows_with_the_outage_up_to_the_cap() -> None:
    now = 0.0

    def delay_at(delays: Iterator[float], outage: float) -> float:
        nonlocal now
        now = outage
        return next(delays)

    client = HAClient("ws://127.0.0.1:1/api/websocket", "t", Sink(), exposed=EntityPattern(["*"]), backoff_max=30.0)
    delays = client._delays(0.0, lambda: now)
    assert delay_at(delays, 0.0) == 0.25
    assert all(0.8 <= delay_at(delays, n * 0.9) <= 1.0 for n in range(1, 60))
    assert 5.0 <= delay_at(delays, 120.0) <= 12.0
    assert delay_at(delays, 3600.0) <= 30.0
    capped = HAClient("ws://127.0.0.1:1/api/websocket", "t", Sink(), exposed=EntityPattern(["*"]), backoff_max=0.1)
    capped_delays = capped._delays(0.0, lambda: now)
    assert max(delay_at(capped_delays, n * 10.0) for n in range(20)) <= 0.1


async def test_a_close_frame_marks_the_upstream_disconnected_at_once_though_tcp_lingers(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    loop = asyncio.get_running_loop()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        started = loop.time()
        await ha.shut_down("2025.4", linger=10.0)  # HA 2025.4: close frame now, TCP end 10 s later
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED, timeout=5)
        assert loop.time() - started < 1.0
        assert "code 1000" in client.reason
        with pytest.raises(NotConnected):
            await client.call_service("switch", "turn_on", None, {"entity_id": ["switch.charger"]})


async def test_homeassistant_stop_ends_the_session_before_the_socket_goes(ha: DemoHomeAssistant) -> None:
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        (connection,) = ha.clients
        async with asyncio.timeout(2):
            while not any(m.get("event_type") == "homeassistant_stop" for m in connection.received):
                await asyncio.sleep(0.01)
        ha.announce_stop()  # the socket itself stays open
        await sink.wait(lambda: client.status is UpstreamStatus.DISCONNECTED, timeout=1.0)
        assert client.reason == "Home Assistant is shutting down"
    assert ha.errors_sent == []


async def test_a_non_admin_token_does_not_ask_for_the_stop_event(ha: DemoHomeAssistant) -> None:
    ha.admin = False
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        await asyncio.sleep(0.2)
        (connection,) = ha.clients
    subscribed = [m["event_type"] for m in connection.received if m["type"] == "subscribe_events"]
    assert subscribed == ["core_config_updated"]  # on HA's allowlist for every user; the stop event is not
    assert ha.errors_sent == []  # a refused subscription is an ERROR line in HA's log


@pytest.mark.parametrize(
    ("exposed", "expected"),
    [
        (["sensor.*"], {}),  # globs: HA 2024.3 takes no include; every entity, filtered here
        (["sensor.solar_power", "switch.charger"], {"entity_ids": ["sensor.solar_power", "switch.charger"]}),
    ],
)
async def test_ha_before_2024_9_gets_a_subscription_it_accepts(exposed: list[str], expected: dict[str, Any]) -> None:
    async with DemoHomeAssistant(version="2024.3.3") as old_ha:
        seed_old = {"sensor.solar_power": "1200", "sensor.house_load": "640", "switch.charger": "off"}
        for entity_id, value in seed_old.items():
            old_ha.set_state(entity_id, value)
        sink = Sink()
        async with running(make_client(old_ha, sink, exposed=EntityPattern(exposed))) as client:
            await sink.wait(lambda: client.connected)
            (connection,) = old_ha.clients
    (subscribe,) = [m for m in connection.received if m["type"] == "subscribe_entities"]
    assert {k: v for k, v in subscribe.items() if k not in ("id", "type")} == expected
    assert old_ha.errors_sent == []
    assert set(sink.snapshots[0]) == {e for e in seed_old if EntityPattern(exposed)(e)}
    assert "get_states" not in [m["type"] for m in connection.received]  # no last_reported before 2024.4
    assert all("last_reported" not in state for state in sink.snapshots[0].values())


async def test_states_carry_context_and_last_reported_as_ha_shows_them(ha: DemoHomeAssistant) -> None:
    ha.set_state("sensor.house_load", "640")  # a write that changes nothing: only last_reported moves
    assert ha.states["sensor.house_load"]["last_reported"] != ha.states["sensor.house_load"]["last_updated"]
    sink = Sink()
    async with running(make_client(ha, sink)) as client:
        await sink.wait(lambda: client.connected)
        assert sink.snapshots[0] == ha.states
        await client.call_service("switch", "turn_on", None, {"entity_id": ["switch.charger"]})
        await sink.wait(lambda: any("switch.charger" in u for u, _ in sink.changes))
    changed = sink.changes[-1][0]["switch.charger"]
    assert changed == ha.states["switch.charger"]
    assert changed["context"]["user_id"] == ha.user_id  # who made the change
