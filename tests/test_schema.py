"""The typed contract (issue 25): web/schema.json, served by the bridge, holds for a live stream.

Every kind of event is provoked on a stream from the demo Home Assistant (a recorded past,
a change, a removal, an outage, pings, a busy bridge, an expired token) and each event's data
is validated against the schema the bridge serves, as is a command's answer and an error's.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jsonschema
import jwt
import pytest

from sse_service.app import WEB_DIR
from sse_service.config import Secret
from sse_service.ha.demo import BatteryHome, DemoHomeAssistant

from .helpers import SSEStream, live_server, open_stream, settings_for

SECRET = "schema-token-secret-0123456789abcdef"


@pytest.fixture
async def home() -> Any:
    async with DemoHomeAssistant() as ha:
        BatteryHome(ha, interval=3600, seed=1)  # a recorded past, no ticks during the test
        yield ha


def validator(schema: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    """The schema of an event's data by its name, or of a body by its $defs name."""
    where = f"event/properties/{name}" if name in schema["$defs"]["event"]["properties"] else name
    part = {"$ref": f"#/$defs/{where}", "$defs": schema["$defs"]}
    return jsonschema.Draft202012Validator(part)


async def drain(stream: SSEStream, seen: dict[str, list[Any]], until: str, timeout: float = 5.0) -> None:
    """Records every event's data by name until one named ``until`` has come."""
    event = await stream.next(timeout)
    while True:
        seen.setdefault(event.event, []).append(event.json())
        if event.event == until:
            return
        event = await stream.next(timeout)


async def test_a_live_stream_from_the_demo_and_the_command_answers_hold_to_the_served_schema(
    home: DemoHomeAssistant,
) -> None:
    settings = settings_for(
        home, heartbeat=0.2, token_secret=Secret(SECRET), max_streams_per_ip=2, allowed_services=("switch.*",)
    )
    key = jwt.encode({"sub": "schema", "entities": ["*"], "services": ["switch.*"]}, SECRET, algorithm="HS256")
    seen: dict[str, list[Any]] = {}
    async with live_server(settings, web_dir=WEB_DIR) as live, httpx.AsyncClient() as client:
        served = await client.get(live.url + "/schema.json")
        assert served.status_code == 200
        schema = served.json()
        assert schema == json.loads((WEB_DIR / "schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)

        async with open_stream(f"{live.url}/events?key={key}") as stream:
            await drain(stream, seen, "snapshot")
            past = [(time.time() - 7200 + 60 * i, float(i)) for i in range(100)]
            live.service.log.upstream_history({"sensor.solar_power": past})
            await drain(stream, seen, "history")
            home.set_state("sensor.solar_power", "1234.5", {"unit_of_measurement": "W"})
            await drain(stream, seen, "state")
            home.remove_state("sensor.house_load")
            await drain(stream, seen, "remove")
            await drain(stream, seen, "ping")

            headers = {"authorization": f"Bearer {key}"}
            answer = await client.post(
                live.url + "/api/services/switch/turn_on", json={"entity_id": "switch.charger"}, headers=headers
            )
            assert answer.status_code == 200
            validator(schema, "command_answer").validate(answer.json())
            refused = await client.post(
                live.url + "/api/services/light/turn_on", json={"entity_id": "light.kitchen"}, headers=headers
            )
            assert refused.status_code == 403
            validator(schema, "error").validate(refused.json())

            async with open_stream(f"{live.url}/events?key={key}") as second:  # the second this address may have
                # As a browser asks (Accept: text/event-stream), the refusal is a 200 with event: busy.
                sse_accept = {"accept": "text/event-stream"}
                async with client.stream("GET", f"{live.url}/events?key={key}", headers=sse_accept) as third:
                    assert third.status_code == 200
                    body = (await third.aread()).decode()
                assert "event: busy" in body
                data = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
                seen.setdefault("busy", []).append(json.loads(data[0]))
                await second.close()

            await home.stop()
            await drain(stream, seen, "status")

        # Expires in 3 s: a 1 s token could be over before a loaded machine opens the stream (401).
        soon = jwt.encode({"entities": ["*"], "exp": int(time.time()) + 3}, SECRET, algorithm="HS256")
        async with open_stream(f"{live.url}/events?key={soon}") as stream:
            await drain(stream, seen, "expired", timeout=8)

    assert {"snapshot", "state", "remove", "status", "history", "ping", "busy", "expired"} <= set(seen)
    for name, payloads in seen.items():
        check = validator(schema, name)
        for data in payloads:
            check.validate(data)
    # The schema is not so loose that anything passes: a state without its entity_id fails.
    with pytest.raises(jsonschema.ValidationError):
        validator(schema, "state").validate({"state": "on", "attributes": {}})


async def test_the_compact_stream_holds_to_the_served_schema(home: DemoHomeAssistant) -> None:
    settings = settings_for(home, heartbeat=0.2)
    seen: dict[str, list[Any]] = {}
    async with live_server(settings, web_dir=WEB_DIR) as live, httpx.AsyncClient() as client:
        schema = (await client.get(live.url + "/schema.json")).json()
        async with open_stream(f"{live.url}/events?format=compact") as stream:
            await drain(stream, seen, "snapshot")
            home.set_state("sensor.solar_power", "1234.5", {"unit_of_measurement": "W"})
            await drain(stream, seen, "message")
            home.set_state("sensor.new_one", "1", {"friendly_name": "New"})
            await drain(stream, seen, "state")
            home.remove_state("sensor.house_load")
            await drain(stream, seen, "remove")
            await drain(stream, seen, "ping")
            await home.stop()
            await drain(stream, seen, "status")

    assert {"snapshot", "message", "state", "remove", "status", "ping"} <= set(seen)
    for name, payloads in seen.items():
        part = {"$ref": f"#/$defs/compact_event/properties/{name}", "$defs": schema["$defs"]}
        check = jsonschema.Draft202012Validator(part)
        for data in payloads:
            check.validate(data)
    change = {"$ref": "#/$defs/compact_change", "$defs": schema["$defs"]}
    with pytest.raises(jsonschema.ValidationError):  # a change names its entity
        jsonschema.Draft202012Validator(change).validate({"s": "on"})
