"""What a hostile or careless client sends: a clear 4xx, nothing forwarded that would make HA
drop the connection, no stream killed, no forged log line (issue 13), and the shutdown window
of a real HA (issue 12)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from sse_service.app import WEB_DIR
from sse_service.config import Secret
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.types import UpstreamStatus

from .helpers import LiveServer, live_server, open_stream, settings_for

SWITCHES = ("switch.turn_on", "switch.turn_off", "input_number.set_value")
POST_JSON = {"content-type": "application/json"}


@pytest.fixture
async def server(ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
    ha.services[("input_number", "set_value")] = lambda call: None
    ha.set_state("input_number.target", "5")
    async with live_server(settings_for(ha, allowed_services=SWITCHES), web_dir=WEB_DIR) as live:
        yield live


async def command(live: LiveServer, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        return await client.post(path, content=body, headers=POST_JSON if headers is None else headers)


@pytest.mark.parametrize(
    "number",
    [
        "1" * 400,  # real HA 2024.3: "Received invalid JSON", and the connection is gone
        "9" * 5000,  # past Python's 4300-digit int() limit: was a 500
        str(2**63),
        str(-(2**63) - 1),
        str(2**64),
        "1e309",
        "-1e999",
    ],
)
async def test_numbers_ha_cannot_parse_are_422_naming_the_field_and_never_forwarded(
    server: LiveServer, ha: DemoHomeAssistant, number: str
) -> None:
    body = f'{{"entity_id": "input_number.target", "value": {number}}}'.encode()
    response = await command(server, "/api/services/input_number/set_value", body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["message"].startswith("value: the number") and "out of range" in error["message"]
    assert len(error["message"]) < 200
    assert ha.service_calls == []
    assert ha.connections_total == 1 and server.service.hub.status is UpstreamStatus.CONNECTED


async def test_numbers_deep_in_the_data_are_named_by_their_top_level_field(server: LiveServer) -> None:
    body = b'{"entity_id": "input_number.target", "options": {"list": [1, 2, ' + b"7" * 30 + b"]}}"
    response = await command(server, "/api/services/input_number/set_value", body)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("options: the number 777777777777… (30 characters)")


@pytest.mark.parametrize("number", [str(2**63 - 1), str(-(2**63)), "1e308", "-0.0"])
async def test_the_edges_of_the_range_are_forwarded_and_ha_stays_connected(
    server: LiveServer, ha: DemoHomeAssistant, number: str
) -> None:
    body = f'{{"entity_id": "input_number.target", "value": {number}}}'.encode()
    response = await command(server, "/api/services/input_number/set_value", body)
    assert response.status_code == 200, response.text
    assert [str(c.data["value"]) for c in ha.service_calls] == [str(float(number)) if "e" in number else number]
    await asyncio.sleep(0.1)
    assert ha.connections_total == 1 and server.service.hub.status is UpstreamStatus.CONNECTED


async def test_who_may_act_is_decided_before_the_body_is_read(server: LiveServer, ha: DemoHomeAssistant) -> None:
    for body, headers in ((b"{}", POST_JSON), (b"not json", POST_JSON), (b"x", {"content-type": "text/plain"})):
        response = await command(server, "/api/services/homeassistant/restart", body, headers)
        assert response.status_code == 403, (body, response.text)
        assert response.json()["error"]["code"] == "service_not_allowed"
    assert ha.service_calls == []


async def test_keys_come_before_the_allowlist(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, allowed_services=SWITCHES, write_key=Secret("write-key-0123456789abcdef"))
    async with live_server(settings) as live:
        response = await command(live, "/api/services/homeassistant/restart", b"{}")
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_any_method_but_post_on_the_command_route_is_405_with_allow(server: LiveServer, method: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.request(method, "/api/services/switch/turn_on")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("seq", ["²", "①", "٣", "1²", "+5", " 5", "1_0", "9" * 19, "-1", ""])
async def test_an_id_that_is_not_ours_gets_a_snapshot_never_a_dead_stream(
    server: LiveServer, caplog: pytest.LogCaptureFixture, seq: str
) -> None:
    async with open_stream(server.url + "/events") as stream:
        epoch = (await stream.next()).id.rpartition("-")[0]  # type: ignore[union-attr]
    last_id = quote(f"{epoch}-{seq}")
    async with open_stream(f"{server.url}/events?last_event_id={last_id}") as stream:
        assert (await stream.next()).event == "snapshot"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_client_text_never_forges_a_log_line(
    server: LiveServer, caplog: pytest.LogCaptureFixture, ha: DemoHomeAssistant
) -> None:
    caplog.set_level(logging.INFO)
    forged = "x\nFORGED line\r\x00\x1b[31m"
    async with open_stream(f"{server.url}/events?entity_id={quote(forged)}&domain={quote(forged)}") as stream:
        await stream.next()
    await command(server, "/api/services/switch/turn_on", f'{{"entity_id": "switch.{forged}"}}'.encode())
    await command(server, f"/api/services/switch/{quote(forged)}", b"{}")
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.get("/" + quote(forged))
    await asyncio.sleep(0.1)  # the stream's close line
    lines = [r.getMessage() for r in caplog.records]
    carrying = [line for line in lines if "FORGED" in line]
    assert len(carrying) >= 4, lines  # stream open and close, command, access
    for line in carrying:
        assert not any(c in line for c in "\n\r\x00\x1b"), repr(line)


async def test_a_command_while_ha_says_goodbye_is_503_at_once_without_a_traceback(
    server: LiveServer, ha: DemoHomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    await ha.shut_down("2025.4", linger=10.0)  # close frame now, TCP end 10 s later
    loop = asyncio.get_running_loop()
    started = loop.time()
    while server.service.hub.status is UpstreamStatus.CONNECTED:
        assert loop.time() - started < 1.0, "still 'connected' a second after HA's close frame"
        await asyncio.sleep(0.01)
    response = await command(server, "/api/services/switch/turn_on", b'{"entity_id": "switch.charger"}')
    assert loop.time() - started < 1.0
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert 1 <= int(response.headers["retry-after"]) <= 2
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_under_auth_invalid_a_command_says_the_token_is_refused_and_when_the_next_try_is(
    ha: DemoHomeAssistant,
) -> None:
    settings = settings_for(ha, ha_token=Secret("not-the-token"), ha_auth_retry=120.0, allowed_services=SWITCHES)
    async with live_server(settings, wait_connected=False) as live:
        while live.service.hub.status is not UpstreamStatus.AUTH_INVALID:
            await asyncio.sleep(0.01)
        response = await command(live, "/api/services/switch/turn_on", b'{"entity_id": "switch.charger"}')
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_invalid"
    assert "token" in error["message"] and "HA_TOKEN" in error["message"] and "not-the-token" not in error["message"]
    assert 110 <= int(response.headers["retry-after"]) <= 120
