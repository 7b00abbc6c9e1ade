"""Random paths, bodies, content types, headers and query strings: never a 5xx, never a hang.

Hypothesis drives a synchronous client against a real server that runs, with its fake Home
Assistant, on an event loop in a background thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import LiveServer, live_server_in_thread, settings_for

TIMEOUT = httpx.Timeout(5.0)


def server_in_thread() -> contextlib.AbstractContextManager[LiveServer]:
    return live_server_in_thread(
        lambda ha: settings_for(
            ha, allowed_services=("switch.*", "light.turn_on"), command_rate=1e6, command_burst=1_000_000
        )
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with server_in_thread() as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        yield c


segments = st.one_of(
    st.sampled_from(["switch", "turn_on", "toggle", "light", "homeassistant", "restart", "..", "", "%2F"]),
    st.text(min_size=0, max_size=30),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"entity_id": st.one_of(st.sampled_from(["switch.charger", "light.kitchen", "sensor.x"]), json_values)},
        optional={"brightness": json_values, "area_id": st.text(max_size=5)},
    ).map(lambda v: json.dumps(v).encode()),
    st.just(b'{"entity_id": "switch.charger", "x": "' + b"a" * 9000 + b'"}'),
)
content_types = st.one_of(
    st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "", "APPLICATION/JSON"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
extra_headers = st.dictionaries(
    st.sampled_from(["authorization", "cookie", "origin", "accept", "last-event-id", "x-forwarded-for"]),
    header_values,
    max_size=4,
)


def _assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code in (503, 504), response.text
    if response.status_code >= 400 and response.headers.get("content-type") == "application/json":
        error = response.json()["error"]
        assert error["code"] and error["message"]
    assert "Traceback" not in response.text


fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(
    domain=segments,
    service=segments,
    body=bodies,
    content_type=content_types,
    headers=extra_headers,
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS"]),
)
def test_command_route_never_fails_or_hangs(
    client: httpx.Client,
    domain: str,
    service: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    method: str,
) -> None:
    path = f"/api/services/{quote(domain, safe='')}/{quote(service, safe='')}"
    all_headers = {**headers, "content-type": content_type} if content_type else headers
    response = client.request(method, path, content=body, headers=all_headers)
    _assert_clean(response)


query_values = st.one_of(
    st.sampled_from(["", "*", "sensor.*", "switch.charger,light.*", "[", "[!a-", "light", "x" * 2000]),
    st.text(max_size=50),
)


def _past_the_filter_limits(params: dict[str, str]) -> bool:
    """Over the default MAX_FILTER_LENGTH (2048) or MAX_FILTER_PATTERNS (100), as the README says."""
    filters = params.get("entity_id", ""), params.get("domain", "")
    patterns = [part for value in filters for part in value.split(",") if part.strip()]
    return sum(map(len, filters)) > 2048 or len(patterns) > 100


@fuzz
@given(
    params=st.dictionaries(
        st.sampled_from(["entity_id", "domain", "last_event_id", "key", "other"]), query_values, max_size=4
    ),
    headers=extra_headers,
    method=st.sampled_from(["GET", "GET", "HEAD"]),
)
def test_stream_query_parameters_never_break_the_stream(
    client: httpx.Client, params: dict[str, str], headers: dict[str, str], method: str
) -> None:
    with client.stream(method, "/events", params=params, headers=headers) as response:
        if _past_the_filter_limits(params):  # the one documented refusal
            assert response.status_code == 422, response.read()
            assert json.loads(response.read())["error"]["code"] == "filter_too_large"
            return
        assert response.status_code == 200, response.read()
        if method == "GET":
            first = b""
            for chunk in response.iter_bytes():
                first += chunk
                if b"event: snapshot" in first or b"event: state" in first or b"event: status" in first:
                    break
            assert first.startswith(b"retry: ")


def test_still_healthy_after_the_fuzzing(client: httpx.Client, server: LiveServer) -> None:
    # Runs after the two fuzz tests in this module (pytest keeps file order).
    health: dict[str, Any] = client.get("/healthz").json()
    assert health["upstream"]["status"] == "connected"
    assert health["entities"] == 5
    with client.stream("GET", "/events") as response:
        assert response.status_code == 200
    for _ in range(100):
        if client.get("/healthz").json()["clients"] == 0:
            break
        threading.Event().wait(0.05)
    assert client.get("/healthz").json()["clients"] == 0, "every fuzzed stream was let go"
