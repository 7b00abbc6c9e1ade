"""The bridge against a real Home Assistant Core (tests/real_ha.py), once per installed release.

Where the fake upstream follows the protocol as documented, these show what real HA does:
how each version closes on SIGTERM, coalesced arrays, error texts, what each accepts.
Runs under ``CI=true`` (a missing install fails); elsewhere a release that is not installed
skips with the reason. Timings measured here go to the terminal summary and to
test-artifacts/real-ha-reconnect.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from sse_service.config import Secret

from .helpers import LiveServer, SSEEvent, SSEStream, StreamEnded, live_server, open_stream
from .real_ha import RealHA, RealHAError, bridge_settings, record_measurement

# Reconnect after HA accepts connections again, per the issue ("within about 2 s").
RECONNECT_WITHIN = 2.5
CLOSE_NOTICED_WITHIN = 1.0
COMMAND_ANSWERED_WITHIN = 0.5


class Recorder:
    """Every event of one stream, with the time.monotonic() it arrived at, read in the background."""

    def __init__(self, stream: SSEStream) -> None:
        self.stream = stream
        self.events: list[tuple[float, SSEEvent]] = []
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(StreamEnded):
            while True:
                event = await self.stream.next(timeout=3600)
                self.events.append((time.monotonic(), event))
                self._new.set()

    async def wait(
        self, predicate: Callable[[SSEEvent], bool], timeout: float, *, start: int = 0
    ) -> tuple[int, float, SSEEvent] | None:
        """The first event from index ``start`` on that matches (index, arrival, event); None on timeout."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.events):
                arrived, event = self.events[index]
                if predicate(event):
                    return index, arrived, event
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._new.wait()

    def statuses(self, start: int = 0) -> list[str]:
        return [e.json()["status"] for _, e in self.events[start:] if e.event == "status"]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def is_status(status: str) -> Callable[[SSEEvent], bool]:
    return lambda e: e.event == "status" and e.json()["status"] == status


def is_state(entity_id: str, state: str) -> Callable[[SSEEvent], bool]:
    return lambda e: e.event == "state" and e.json()["entity_id"] == entity_id and e.json()["state"] == state


@contextlib.asynccontextmanager
async def bridge(
    ha: RealHA, *, wait_connected: bool = True, **overrides: Any
) -> AsyncIterator[tuple[LiveServer, Recorder]]:
    """The bridge in front of ``ha``, with one stream recorded from its first event (the snapshot)."""
    async with (
        live_server(bridge_settings(ha, **overrides), wait_connected=wait_connected) as live,
        open_stream(live.url + "/events") as stream,
    ):
        recorder = Recorder(stream)
        try:
            assert await recorder.wait(lambda e: e.event == "snapshot", 5.0), "no snapshot on the stream"
            yield live, recorder
        finally:
            await recorder.close()


async def post(live: LiveServer, domain: str, service: str, body: Any) -> tuple[httpx.Response, float]:
    """A command through the bridge; returns the response and how long it took."""
    async with httpx.AsyncClient(base_url=live.url, timeout=15.0) as client:
        started = time.monotonic()
        response = await client.post(f"/api/services/{domain}/{service}", json=body)
        return response, time.monotonic() - started


async def healthz(live: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url, timeout=5.0) as client:
        body: dict[str, Any] = (await client.get("/healthz")).json()
        return body


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, str] = body["error"]
    return error


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between the bridge's entities and HA's /api/states, field by field."""
    found = []
    for entity_id in sorted(set(ours) | set(theirs)):
        if entity_id not in ours:
            found.append(f"{entity_id}: missing from the bridge")
        elif entity_id not in theirs:
            found.append(f"{entity_id}: not in HA")
        else:
            for field in sorted(set(ours[entity_id]) | set(theirs[entity_id])):
                a, b = ours[entity_id].get(field, "<absent>"), theirs[entity_id].get(field, "<absent>")
                if a != b:
                    found.append(f"{entity_id}.{field}: bridge {a!r}, HA {b!r}")
    return found


async def stable_states(ha: RealHA, during: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """HA's /api/states taken before and after ``during()``, retried until nothing changed between them."""
    for _ in range(5):
        before = await ha.states()
        result = await during()
        after = await ha.states()
        if before == after:
            return result, {s["entity_id"]: s for s in after}
        await asyncio.sleep(0.5)
    raise AssertionError("HA's states kept changing")


# --- reading ----------------------------------------------------------------------------


async def test_snapshot_equals_ha_rest_states_entity_for_entity(real_ha: RealHA) -> None:
    async def read_bridge() -> tuple[dict[str, Any], dict[str, Any]]:
        async with bridge(real_ha) as (live, recorder), httpx.AsyncClient(base_url=live.url) as client:
            snapshot = recorder.events[0][1].json()
            assert snapshot["status"] == "connected"
            rest = (await client.get("/api/states")).json()
            return snapshot["entities"], rest["entities"]

    (snapshot, rest), ha_states = await stable_states(real_ha, read_bridge)
    assert {"input_number.battery", "counter.cycles", "sensor.battery_mirror", "zone.home"} <= set(ha_states)
    found = differences(snapshot, ha_states)
    assert not found, "the stream's snapshot differs from HA's /api/states:\n" + "\n".join(found)
    found = differences(rest, ha_states)
    assert not found, "the bridge's /api/states differs from HA's:\n" + "\n".join(found)


async def test_a_change_made_in_ha_reaches_the_stream_as_ha_shows_it(real_ha: RealHA) -> None:
    async with bridge(real_ha) as (_, recorder):
        current = float((await real_ha.state("input_number.battery"))["state"])
        value = 10.0 if current != 10.0 else 20.0
        started = time.monotonic()
        response = await real_ha.call_service(
            "input_number", "set_value", {"entity_id": "input_number.battery", "value": value}
        )
        assert response.status_code == 200, response.text
        seen = await recorder.wait(is_state("input_number.battery", str(value)), 5.0)
        assert seen is not None, "the change made in HA did not reach the stream"
        latency = seen[1] - started
        mirror = await recorder.wait(is_state("sensor.battery_mirror", str(value)), 5.0)
        assert mirror is not None, "the template sensor mirroring it did not follow"
        assert seen[2].json()["state"] == str(value)
        record_measurement(
            f"{real_ha.release.id}: REST set_value -> state event on the stream in {latency * 1000:.1f} ms"
        )
    ha_view = await real_ha.state("input_number.battery")
    found = differences({"e": seen[2].json()}, {"e": ha_view})
    assert not found, "the state event differs from what HA's REST API shows:\n" + "\n".join(found)


# --- commands -----------------------------------------------------------------------------


async def test_command_through_the_bridge_succeeds_and_its_state_comes_back(real_ha: RealHA) -> None:
    async with bridge(real_ha) as (live, recorder):
        current = float((await real_ha.state("input_number.setpoint"))["state"])
        value = 25.0 if current != 25.0 else 15.0
        start = len(recorder.events)
        response, _ = await post(
            live, "input_number", "set_value", {"entity_id": "input_number.setpoint", "value": value}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ok"] is True and body["service"] == "input_number.set_value"
        assert body["entity_id"] == ["input_number.setpoint"]
        assert isinstance(body.get("context_id"), str) and body["context_id"]
        seen = await recorder.wait(is_state("input_number.setpoint", str(value)), 5.0, start=start)
        assert seen is not None, "the new state did not reach the stream"
    assert (await real_ha.state("input_number.setpoint"))["state"] == str(value)


async def test_the_state_a_command_causes_carries_its_context(real_ha: RealHA) -> None:
    """Who made the change: HA's context id of the call is in the state event (and in HA's REST state)."""
    async with bridge(real_ha) as (live, recorder):
        start = len(recorder.events)
        response, _ = await post(live, "counter", "increment", {"entity_id": "counter.cycles"})
        assert response.status_code == 200, response.text
        context_id = response.json()["context_id"]
        seen = await recorder.wait(
            lambda e: e.event == "state" and e.json()["entity_id"] == "counter.cycles", 5.0, start=start
        )
        assert seen is not None
    ha_view = await real_ha.state("counter.cycles")
    assert ha_view["context"]["id"] == context_id
    assert seen[2].json().get("context") == ha_view["context"], "the state event carries HA's context"


async def test_ha_validation_error_is_passed_on_with_a_4xx(real_ha: RealHA) -> None:
    before = await real_ha.state("input_number.battery")
    theirs = await real_ha.call_service(
        "input_number", "set_value", {"entity_id": "input_number.battery", "value": 1000}
    )
    assert 400 <= theirs.status_code < 500, "HA itself refuses the value"
    async with bridge(real_ha) as (live, _):
        response, _ = await post(
            live, "input_number", "set_value", {"entity_id": "input_number.battery", "value": 1000}
        )
    assert 400 <= response.status_code < 500, response.text
    error = error_of(response)
    assert error["code"].startswith("ha_"), error
    assert "1000" in error["message"] and "input_number.battery" in error["message"], (
        f"HA's own message is passed on: {error['message']!r} (HA's REST API says {theirs.text!r})"
    )
    assert (await real_ha.state("input_number.battery"))["state"] == before["state"]


async def test_unknown_service_is_ha_not_found(real_ha: RealHA) -> None:
    async with bridge(real_ha) as (live, _):
        response, _ = await post(live, "input_boolean", "no_such_service", {"entity_id": "input_boolean.charger"})
    assert response.status_code == 404, response.text
    error = error_of(response)
    assert error["code"] == "ha_not_found", error
    assert "no_such_service" in error["message"], error


# --- ENTITIES and a bad token ------------------------------------------------------------


async def test_entities_filter_holds_and_ha_logs_no_error(real_ha: RealHA) -> None:
    mark = real_ha.log_mark()
    async with bridge(real_ha, entities=("input_number.*",)) as (_, recorder):
        snapshot = recorder.events[0][1].json()["entities"]
        ha_numbers = {s["entity_id"] for s in await real_ha.states() if s["entity_id"].startswith("input_number.")}
        assert set(snapshot) == ha_numbers
        start = len(recorder.events)
        await real_ha.call_service("input_boolean", "toggle", {"entity_id": "input_boolean.charger"})
        current = float((await real_ha.state("input_number.setpoint"))["state"])
        value = 12.0 if current != 12.0 else 13.0
        await real_ha.call_service("input_number", "set_value", {"entity_id": "input_number.setpoint", "value": value})
        assert await recorder.wait(is_state("input_number.setpoint", str(value)), 5.0, start=start)
        await asyncio.sleep(0.3)
        leaked = [e.json().get("entity_id") for _, e in recorder.events[start:] if e.event in ("state", "remove")]
        assert all(str(e).startswith("input_number.") for e in leaked), leaked
    assert real_ha.error_lines(mark) == [], "HA accepted the filtered subscription"


async def test_bad_token_is_auth_invalid_and_commands_say_so(real_ha: RealHA) -> None:
    mark = real_ha.log_mark()
    async with bridge(real_ha, wait_connected=False, ha_token=Secret("not-a-valid-token")) as (live, recorder):
        assert await recorder.wait(lambda e: e.json().get("status") == "auth_invalid", 5.0), recorder.statuses()
        health = await healthz(live)
        assert health["upstream"]["status"] == "auth_invalid"
        response, _ = await post(live, "input_boolean", "turn_on", {"entity_id": "input_boolean.charger"})
        await asyncio.sleep(1.0)
    assert response.status_code == 503, response.text
    error = error_of(response)
    message = error["message"]
    assert "token" in message.lower(), f"says what is wrong: {message!r}"
    assert "try again shortly" not in message, f"a new token is needed, not patience: {message!r}"
    retry_after = response.headers.get("retry-after")
    assert retry_after is None or int(retry_after) > 5, f"Retry-After {retry_after} though the next try is 30 s away"
    failures = real_ha.log_since(mark).count("Login attempt or request with invalid authentication")
    assert failures == 1, f"{failures} failed logins in HA's log: one per HA_AUTH_RETRY"


# --- HA going away ---------------------------------------------------------------------


async def test_three_restarts_in_a_row_each_reconnect_quickly(fresh_real_ha: RealHA) -> None:
    ha = fresh_real_ha
    delays: list[float] = []
    problems: list[str] = []
    async with bridge(ha) as (_, recorder):
        for restart in (1, 2, 3):
            # A value that HA's restart resets (input_number's initial: 50): the correction must arrive.
            start = len(recorder.events)
            await ha.call_service("input_number", "set_value", {"entity_id": "input_number.battery", "value": 77})
            assert await recorder.wait(is_state("input_number.battery", "77.0"), 5.0, start=start)
            start = len(recorder.events)
            sent = ha.terminate()
            try:
                stopped = await ha.await_exit(sent)
            except RealHAError as e:
                # HA's own shutdown hung (seen once in ~20 runs, 2024.3.3, after the bridge had
                # seen its connection close): it is killed, and the bridge must still come back.
                record_measurement(f"{ha.release.id}: restart {restart}: {e}")
                stopped = time.monotonic() - sent
            started = await ha.astart()
            assert ha.ready_at is not None
            disconnected = await recorder.wait(is_status("disconnected"), 0.0, start=start)
            if disconnected is None:
                problems.append(f"restart {restart}: no 'disconnected' while HA was down")
                after = start
            else:
                after = disconnected[0]
            connected = await recorder.wait(is_status("connected"), 60.0, start=after)
            if connected is None:
                problems.append(f"restart {restart}: not connected 60 s after HA was ready")
                break
            delay = connected[1] - ha.ready_at
            delays.append(delay)
            noticed = f"{disconnected[1] - sent:.3f} s" if disconnected else "never"
            record_measurement(
                f"{ha.release.id}: restart {restart}: connected {delay:.2f} s after HA was ready "
                f"(disconnected noticed {noticed} after SIGTERM; stop took {stopped:.1f} s, start {started:.1f} s)"
            )
            if delay > RECONNECT_WITHIN:
                problems.append(f"restart {restart}: connected {delay:.2f} s after HA was ready")
            # The new snapshot's changes come as state events (before or after the status event).
            corrected = await recorder.wait(is_state("input_number.battery", "50.0"), 5.0, start=after)
            if corrected is None:
                problems.append(f"restart {restart}: the value HA reset on restart did not reach the stream")
    assert problems == [], f"reconnect delays {[round(d, 2) for d in delays]}: {problems}"


async def test_after_sigterm_the_bridge_says_disconnected_at_once_and_commands_get_503(
    fresh_real_ha: RealHA, caplog: pytest.LogCaptureFixture
) -> None:
    """HA 2025.4 sends CLOSE 1000 ~10 ms after SIGTERM but ends the TCP connection only ~10 s later;
    2024.3 sends homeassistant_stop and drops the connection. Either way: disconnected at once."""
    caplog.set_level(logging.INFO)
    ha = fresh_real_ha
    async with bridge(ha) as (live, recorder):
        start = len(recorder.events)
        sent = ha.terminate()
        disconnected = await recorder.wait(is_status("disconnected"), CLOSE_NOTICED_WITHIN, start=start)
        health = await healthz(live)
        health_at = time.monotonic() - sent
        response, took = await post(live, "input_boolean", "turn_on", {"entity_id": "input_boolean.charger"})
        sent_at = time.monotonic() - sent - took
        stopped = await ha.await_exit(sent)
    gc.collect()  # "Future exception was never retrieved" is logged when the future is collected
    await asyncio.sleep(0)
    noticed = f"{disconnected[1] - sent:.3f} s" if disconnected else f"not within {CLOSE_NOTICED_WITHIN} s"
    record_measurement(
        f"{ha.release.id}: after SIGTERM: disconnected {noticed}; command {sent_at:.2f} s after SIGTERM "
        f"answered {response.status_code} in {took * 1000:.0f} ms; HA gone after {stopped:.1f} s"
    )
    problems = []
    if disconnected is None:
        problems.append(f"the stream still said connected {CLOSE_NOTICED_WITHIN} s after SIGTERM")
    if health["upstream"]["status"] != "disconnected":
        problems.append(f"/healthz said {health['upstream']['status']!r} {health_at:.2f} s after SIGTERM")
    if response.status_code != 503 or error_of(response).get("code") != "upstream_unavailable":
        problems.append(f"the command got {response.status_code} {response.text}")
    if took > COMMAND_ANSWERED_WITHIN:
        problems.append(f"the command took {took:.2f} s")
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    if logged or "Traceback" in caplog.text or "never retrieved" in caplog.text:
        problems.append(f"the bridge logged {[r.getMessage()[:120] for r in logged]}")
    assert problems == [], problems


# --- history from the recorder (issue 15) ---------------------------------------------------


async def test_a_new_bridge_shows_values_it_never_saw_from_has_recorder(real_ha: RealHA) -> None:
    written = [11.0, 42.5, 7.0, 63.0]
    for value in written:
        response = await real_ha.call_service(
            "input_number", "set_value", {"entity_id": "input_number.battery", "value": value}
        )
        assert response.status_code == 200, response.text
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.5)  # commit_interval: 1
    async with bridge(real_ha) as (_, recorder):
        snapshot = recorder.events[0][1].json()
        points = snapshot["history"].get("input_number.battery", [])
        if not set(written) <= {v for _, v in points}:
            seen = await recorder.wait(lambda e: e.event == "history", 10.0)
            assert seen is not None, f"no history from the recorder; the snapshot had {points}"
            points = seen[2].json()["history"]["input_number.battery"]
    values = [v for _, v in points]
    assert values[-len(written) :] == written, values
    assert points == sorted(points)
