"""``sse-service check``: one connection to Home Assistant, and what a user needs to know."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sse_service.check import run_check
from sse_service.config import Secret, Settings
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import free_port, settings_for


async def check(settings: Settings) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = await run_check(settings, lines.append)
    return status, lines


async def test_a_good_setup_prints_version_counts_services_and_the_recorder(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, entities=("sensor.*", "switch.charger"), allowed_services=("switch.turn_*",))
    status, lines = await check(settings)
    text = "\n".join(lines)
    assert status == 0, text
    assert "Home Assistant 2026.11.0, token accepted" in text
    assert "Home Assistant has 5, ENTITIES exposes 4: sensor.battery_level" in text
    assert "services: switch.turn_*: switch.turn_off, switch.turn_on" in text
    assert "the recorder answers" in text
    assert ha.token not in text
    assert lines[-1] == "check: OK"


async def test_each_problem_is_named_and_the_status_is_not_zero(ha: DemoHomeAssistant) -> None:
    ha.has_recorder = False
    settings = settings_for(ha, entities=("climate.*",), allowed_services=("lock.unlock",))
    status, lines = await check(settings)
    assert status == 1
    assert "problem: ENTITIES (climate.*) matches none of Home Assistant's entities" in lines
    assert "problem: ALLOWED_SERVICES: lock.unlock matches no service Home Assistant has" in lines
    status, lines = await check(settings_for(ha, entities=("sensor.*",)))
    assert any(line.startswith("history: no recorder") for line in lines) and status == 0


async def test_a_starting_ha_is_waited_for_so_the_counts_are_whole(ha: DemoHomeAssistant) -> None:
    ha.begin_start(["sensor.solar_power", "switch.charger"])  # not loaded yet: counts would be 3, not 5
    asyncio.get_running_loop().call_later(1.0, ha.finish_start)
    status, lines = await check(settings_for(ha))
    text = "\n".join(lines)
    assert status == 0, text
    assert "upstream: Home Assistant is starting (state STARTING); waiting up to 60 s for it to run" in lines
    assert "upstream: Home Assistant is running" in lines
    assert "Home Assistant has 5, ENTITIES exposes 5" in text


async def test_an_ha_that_does_not_finish_starting_is_a_problem(
    ha: DemoHomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sse_service.check.START_WAIT", 1.0)
    ha.begin_start(["switch.charger"])
    status, lines = await check(settings_for(ha))
    assert status == 1
    assert (
        "problem: Home Assistant was still starting (state STARTING) after 1 s: the entity counts may be short" in lines
    )


@pytest.mark.parametrize("problem", ["token", "unreachable"])
async def test_a_refused_token_or_an_unreachable_ha_is_one_clear_line(ha: DemoHomeAssistant, problem: str) -> None:
    if problem == "token":
        settings = settings_for(ha, ha_token=Secret("wrong-token-123"))
    else:
        settings = settings_for(ha, ha_url=f"ws://127.0.0.1:{free_port()}/api/websocket")
    status, lines = await check(settings)
    assert status == 1
    (line,) = [line for line in lines if line.startswith("problem:")]
    assert ("refused HA_TOKEN" if problem == "token" else "cannot connect to Home Assistant at ws://127.0.0.1") in line
    assert "wrong-token-123" not in "\n".join(lines)


async def test_the_demo_says_what_entities_exposes_of_its_own() -> None:
    status, lines = await check(Settings())
    assert status == 0 and "embedded demo" in lines[1] and lines[-1] == "check: OK"
    assert "entities: the demo has 4, ENTITIES exposes 4: sensor.battery_level" in "\n".join(lines)


async def test_in_the_demo_an_entities_that_matches_none_of_its_entities_is_a_problem() -> None:
    status, lines = await check(Settings(entities=("sensor.solar_production", "light.*")))
    assert status == 1
    assert (
        "problem: ENTITIES (sensor.solar_production,light.*) matches none of the demo's entities "
        "(sensor.battery_level, sensor.house_load, sensor.solar_power, switch.charger)"
    ) in lines
    assert lines[-1] == "check: 1 problem"


def without_get_services(ha: DemoHomeAssistant, monkeypatch: pytest.MonkeyPatch) -> None:
    """A minimal Home Assistant, as seen: no get_services (HA answers unknown_command)."""

    async def unknown(client: Any, msg_id: int, message: dict[str, Any]) -> None:
        client.send({"id": msg_id, "type": "result", "success": False,
                     "error": {"code": "unknown_command", "message": "Unknown command."}})  # fmt: skip

    monkeypatch.setattr(ha, "_cmd_get_services", unknown)


async def test_no_service_allowed_means_no_service_list_is_asked(
    ha: DemoHomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_get_services(ha, monkeypatch)
    status, lines = await check(settings_for(ha, allowed_services=()))
    assert status == 0, lines
    assert "services: ALLOWED_SERVICES is empty: commands are off" in lines and lines[-1] == "check: OK"


async def test_a_needed_answer_that_does_not_come_is_one_plain_problem_and_the_check_goes_on(
    ha: DemoHomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_get_services(ha, monkeypatch)
    status, lines = await check(settings_for(ha, allowed_services=("switch.turn_on",)))
    assert status == 1
    assert [line for line in lines if line.startswith("problem:")] == [
        "problem: Home Assistant did not list its services (Unknown command.); ALLOWED_SERVICES is unchecked"
    ]
    assert any(line.startswith("history: ") for line in lines), "the questions after it are still asked"
    assert lines[-1] == "check: 1 problem"
    assert "Error" not in "\n".join(lines), "no exception class names"


async def test_a_url_that_is_not_home_assistant_asks_if_it_is_its_port() -> None:
    async def not_a_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_a_websocket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        status, lines = await check(Settings(ha_url=f"ws://127.0.0.1:{port}/api/websocket", ha_token=Secret("t" * 20)))
    assert status == 1
    (line,) = [line for line in lines if line.startswith("problem:")]
    assert line.endswith("it answered HTTP 404, not a WebSocket: is this Home Assistant's port?"), line


async def test_a_refused_connection_says_so_without_errno_noise() -> None:
    url = f"ws://127.0.0.1:{free_port()}/api/websocket"
    status, lines = await check(Settings(ha_url=url, ha_token=Secret("t" * 20)))
    assert status == 1
    assert f"problem: cannot connect to Home Assistant at {url}: connection refused" in lines


async def test_an_ha_that_goes_away_during_the_check_is_one_clear_line(ha: DemoHomeAssistant) -> None:
    ha.begin_start(["switch.charger"])  # the check waits, asking get_config every 0.5 s
    stopping = asyncio.get_running_loop().call_later(0.7, lambda: asyncio.ensure_future(ha.stop()))
    try:
        async with asyncio.timeout(10):
            status, lines = await check(settings_for(ha))
    finally:
        stopping.cancel()
    assert status == 1
    (line,) = [line for line in lines if line.startswith("problem:")]
    assert line.startswith("problem: Home Assistant closed the connection ("), line
