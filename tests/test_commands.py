"""POST /api/services/<domain>/<service>: every answer the route can give, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sse_service.config import Secret, Settings
from sse_service.ha.demo import DemoHomeAssistant, ServiceCall, ServiceError

from .helpers import LiveServer, live_server, open_stream, settings_for

WRITE_KEY = "write-key-8d1f0c2b7a6e5d4c"
SWITCHES = ("switch.turn_on", "switch.turn_off", "switch.toggle")


@pytest.fixture
async def server(ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
    settings = settings_for(ha, allowed_services=(*SWITCHES, "switch.slow", "switch.missing", "light.turn_on"))
    async with live_server(settings) as live:
        yield live


async def post(
    live: LiveServer,
    path: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        if content is None:
            return await client.post(path, json=body, headers=headers)
        return await client.post(path, content=content, headers=headers)


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    error: dict[str, str] = body["error"]
    assert error["message"], "every error says what is wrong"
    return error


async def test_turn_on_reaches_every_stream_as_a_state_event(server: LiveServer, ha: DemoHomeAssistant) -> None:
    async with open_stream(server.url + "/events") as a, open_stream(server.url + "/events?domain=switch") as b:
        assert (await a.next()).event == "snapshot"
        assert (await b.next()).event == "snapshot"
        response = await post(server, "/api/services/switch/turn_on", {"entity_id": "switch.charger"})
        assert response.status_code == 200
        body = response.json()
        assert body["ok"] is True and body["service"] == "switch.turn_on"
        assert body["entity_id"] == ["switch.charger"] and body["context_id"]
        await a.until_state("switch.charger", "on")
        await b.until_state("switch.charger", "on")
    assert ha.service_calls[-1] == ServiceCall("switch", "turn_on", {}, ["switch.charger"])


async def test_service_data_and_entity_lists_are_forwarded(server: LiveServer, ha: DemoHomeAssistant) -> None:
    response = await post(
        server, "/api/services/light/turn_on", {"entity_id": ["light.kitchen"], "brightness": 40, "transition": 1.5}
    )
    # The fake HA has no light service: its not_found comes back as ours, with HA's message.
    assert response.status_code == 404
    assert error_of(response)["code"] == "ha_not_found"
    assert ha.service_calls == [] or ha.service_calls[-1].data == {"brightness": 40, "transition": 1.5}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/services/switch", 404, "not_found"),
        ("/api/services/switch/turn_on/extra", 404, "not_found"),
        ("/api/services/homeassistant/restart", 403, "service_not_allowed"),
        ("/api/services/switch/turn_on_all", 403, "service_not_allowed"),
    ],
)
async def test_route_shape_and_allowlist(server: LiveServer, path: str, status: int, code: str) -> None:
    response = await post(server, path, {"entity_id": "switch.charger"})
    assert response.status_code == status
    assert error_of(response)["code"] == code
    if code == "service_not_allowed":
        assert path.split("/")[-2] + "." + path.split("/")[-1] in error_of(response)["message"]


async def test_get_on_the_command_route_is_405(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/api/services/switch/turn_on")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty body"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"brightness": 3}', "entity_id: required"),
        (b'{"entity_id": 5}', "entity_id: expected a string or a list of strings"),
        (b'{"entity_id": ["switch.charger", 5]}', "entity_id: expected"),
        (b'{"entity_id": []}', "entity_id: must name at least one entity"),
        (b'{"entity_id": "switch.charger", "value": NaN}', "NaN is not valid JSON"),
        (b'{"entity_id": "switch.charger", "value": 1e999}', "value: the number 1e999 is out of range"),
        (b'{"entity_id": "switch.charger", "name": "\\ud800"}', "name: contains an unpaired surrogate"),
        (b'{"entity_id": "switch.charger", "area_id": "kitchen"}', "area_id: not accepted"),
        (b'{"entity_id": "switch.charger", "target": {"entity_id": "lock.door"}}', "target: not accepted"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[" * 3000 + b"]" * 3000, "nested deeper"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    server: LiveServer, ha: DemoHomeAssistant, body: bytes, field: str
) -> None:
    response = await post(
        server, "/api/services/switch/turn_on", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "invalid_body"
    assert field in error["message"]
    assert ha.service_calls == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_415(server: LiveServer, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await post(
        server, "/api/services/switch/turn_on", content=b'{"entity_id":"switch.charger"}', headers=headers
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


async def test_json_with_a_charset_is_accepted(server: LiveServer) -> None:
    response = await post(
        server,
        "/api/services/switch/turn_on",
        content=b'{"entity_id":"switch.charger"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


async def test_oversized_body_is_413_declared_or_streamed(server: LiveServer) -> None:
    big = b'{"entity_id":"switch.charger","x":"' + b"a" * 10_000 + b'"}'
    response = await post(
        server, "/api/services/switch/turn_on", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: chunked transfer
        for _ in range(20):
            yield b" " * 1000

    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/api/services/switch/turn_on", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


async def test_entity_not_exposed_is_403_and_unknown_is_404(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, entities=("sensor.*", "switch.*"), allowed_services=SWITCHES)
    async with live_server(settings) as live:
        response = await post(live, "/api/services/switch/turn_on", {"entity_id": ["switch.charger", "light.kitchen"]})
        assert response.status_code == 403
        assert error_of(response) == {
            "code": "entity_not_allowed",
            "message": "the entity light.kitchen is not exposed by this bridge",
        }
        response = await post(live, "/api/services/switch/turn_on", {"entity_id": "switch.ghost"})
        assert response.status_code == 404
        assert error_of(response)["code"] == "unknown_entity"
    assert ha.service_calls == []


async def test_commands_are_off_against_real_ha_unless_allowed(ha: DemoHomeAssistant) -> None:
    async with live_server(settings_for(ha)) as live:
        response = await post(live, "/api/services/switch/turn_on", {"entity_id": "switch.charger"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "service_not_allowed"


@pytest.mark.parametrize(
    ("ha_code", "status"),
    [("invalid_format", 422), ("unauthorized", 403), ("service_validation_error", 400), ("home_assistant_error", 502)],
)
async def test_ha_errors_are_mapped_with_their_message(
    server: LiveServer, ha: DemoHomeAssistant, ha_code: str, status: int
) -> None:
    def refuse(call: ServiceCall) -> None:
        raise ServiceError(ha_code, f"HA says no ({ha_code})")

    ha.services[("switch", "turn_on")] = refuse
    response = await post(server, "/api/services/switch/turn_on", {"entity_id": "switch.charger"})
    assert response.status_code == status
    assert error_of(response) == {
        "code": f"ha_{ha_code}",
        "message": f"Home Assistant refused the call: HA says no ({ha_code})",
    }


async def test_service_unknown_to_ha_is_404(server: LiveServer) -> None:
    response = await post(server, "/api/services/switch/missing", {"entity_id": "switch.charger"})
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "ha_not_found",
        "message": "Home Assistant refused the call: Service switch.missing not found.",
    }


async def test_no_answer_from_ha_is_504(ha: DemoHomeAssistant) -> None:
    async def never(call: ServiceCall) -> None:
        await asyncio.sleep(3600)

    ha.services[("switch", "slow")] = never
    settings = settings_for(ha, allowed_services=("switch.slow",), command_timeout=0.3)
    async with live_server(settings) as live:
        response = await post(live, "/api/services/switch/slow", {"entity_id": "switch.charger"})
        assert response.status_code == 504
        assert error_of(response)["code"] == "upstream_timeout"
        assert live.service.client is not None and live.service.client._session is not None
        assert live.service.client._session.pending == {}, "the timed-out call leaves nothing behind"


async def test_command_in_flight_when_upstream_drops_fails_at_once_with_503(
    server: LiveServer, ha: DemoHomeAssistant
) -> None:
    started = asyncio.Event()

    async def hang(call: ServiceCall) -> None:
        started.set()
        await asyncio.sleep(3600)

    ha.services[("switch", "slow")] = hang
    call = asyncio.create_task(post(server, "/api/services/switch/slow", {"entity_id": "switch.charger"}))
    await asyncio.wait_for(started.wait(), 5)
    await ha.stop()
    response = await asyncio.wait_for(call, 2)  # far below the 10 s command timeout
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert error_of(response)["code"] == "upstream_unavailable"


async def test_upstream_down_is_503_with_retry_after(server: LiveServer, ha: DemoHomeAssistant) -> None:
    await ha.stop()
    while server.service.hub.status.value == "connected":
        await asyncio.sleep(0.01)
    response = await post(server, "/api/services/switch/turn_on", {"entity_id": "switch.charger"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"  # the next try is 0.2 s away (ha_backoff_max)
    error = error_of(response)
    assert error["code"] == "upstream_unavailable" and "not connected" in error["message"]
    assert "reconnect in 1 s" in error["message"]


async def test_rate_limit_is_429_with_retry_after(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, allowed_services=SWITCHES, command_rate=6.0, command_burst=3)
    async with live_server(settings) as live:
        answers = [await post(live, "/api/services/switch/toggle", {"entity_id": "switch.charger"}) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert error_of(answers[-1])["code"] == "rate_limited"
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 10


class TestWriteKey:
    @pytest.fixture
    async def keyed(self, ha: DemoHomeAssistant) -> AsyncIterator[LiveServer]:
        settings = settings_for(ha, allowed_services=SWITCHES, write_key=Secret(WRITE_KEY))
        async with live_server(settings) as live:
            yield live

    @pytest.mark.parametrize(
        "authorization", [None, "Bearer wrong-key-0000000000", f"Basic {WRITE_KEY}", "Bearer", WRITE_KEY]
    )
    async def test_missing_or_wrong_key_is_401(self, keyed: LiveServer, authorization: str | None) -> None:
        headers = {"authorization": authorization} if authorization is not None else {}
        response = await post(keyed, "/api/services/switch/turn_on", {"entity_id": "switch.charger"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert error_of(response)["code"] == "unauthorized"
        assert WRITE_KEY not in response.text

    async def test_the_key_in_a_cookie_or_query_does_not_authorize_commands(self, keyed: LiveServer) -> None:
        # A cookie travels with any page's form post; commands take the header only.
        response = await post(
            keyed,
            f"/api/services/switch/turn_on?key={WRITE_KEY}",
            {"entity_id": "switch.charger"},
            headers={"cookie": f"sse_key={WRITE_KEY}"},
        )
        assert response.status_code == 401

    async def test_bearer_key_is_accepted(self, keyed: LiveServer) -> None:
        response = await post(
            keyed,
            "/api/services/switch/turn_on",
            {"entity_id": "switch.charger"},
            headers={"authorization": f"Bearer {WRITE_KEY}"},
        )
        assert response.status_code == 200


async def test_the_demo_charger_turns_on_end_to_end() -> None:
    # The embedded demo, as a fresh clone runs it: its commands are allowed by default.
    async with live_server(Settings(demo_interval=0.2)) as live, open_stream(live.url + "/events") as stream:
        snapshot = (await stream.next()).json()
        assert snapshot["entities"]["switch.charger"]["state"] == "off"
        response = await post(live, "/api/services/switch/turn_on", {"entity_id": "switch.charger"})
        assert response.status_code == 200, response.text
        await stream.until_state("switch.charger", "on")
        response = await post(live, "/api/services/switch/toggle", {"entity_id": "switch.charger"})
        await stream.until_state("switch.charger", "off")
