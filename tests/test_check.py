"""``sse-service check``: one connection to Home Assistant, and what a user needs to know."""

from __future__ import annotations

import asyncio

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


async def test_the_demo_needs_no_check() -> None:
    status, lines = await check(Settings())
    assert status == 0 and "embedded demo" in lines[-1]


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
