"""One unauthenticated request must never freeze the server (issue 23).

Each test here failed before its fix: a cookie that froze the event loop, an out-of-range
history time that leaked an upstream request, half-open connections that never closed,
unbounded stream filters, forwarded addresses that were not addresses, token claims out of
range, and no word at start that revoking a token needs a restart without CONFIG_FILE. (The
demo upstream's token at DEBUG is in test_secrets.py, the claims' refusals in test_tokens.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.datastructures import Headers

from sse_service.access import MAX_COOKIE_CHARS, Denied, Grant, Keys
from sse_service.config import Secret, Settings
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.proxy import TrustedProxies, _forwarded_chain

from .helpers import live_server, live_server_in_thread, open_stream, service_process, settings_for

READ_KEY = "read-key-3e9a1b7c5d2f4a60"


def _keyed(ha: DemoHomeAssistant) -> Settings:
    return settings_for(ha, read_key=Secret(READ_KEY))


# --- 1. the Cookie header -----------------------------------------------------------------


def test_an_80_kb_cookie_does_not_stall_healthz() -> None:
    # CVE-2024-7592: backslashes in a quoted value made SimpleCookie quadratic on this
    # Python (3.11.7): the loop stood still for 10-25 s, /healthz and every stream with it.
    # The server runs on a loop of its own thread, so the probes here see its stalls.
    cookie = 'sse_key="' + "\\" * 80_000 + '"'
    answers: list[int] = []
    with live_server_in_thread(_keyed) as live:

        def read_with_the_cookie() -> None:
            answers.append(httpx.get(live.url + "/api/states", headers={"cookie": cookie}, timeout=60).status_code)

        bomb = threading.Thread(target=read_with_the_cookie)
        bomb.start()
        time.sleep(0.1)  # the request is in the server
        worst = 0.0
        while bomb.is_alive() or worst == 0.0:
            started = time.monotonic()
            assert httpx.get(live.url + "/healthz", timeout=60).status_code == 200
            worst = max(worst, time.monotonic() - started)
        bomb.join()
    assert answers == [401]
    assert worst < 0.5, f"/healthz took {worst:.2f} s while an 80 KB cookie was being read"


def test_the_key_cookie_is_found_among_others_quoted_or_not() -> None:
    keys = Keys(read=Secret(READ_KEY))
    found = [
        f"theme=dark; sse_key={READ_KEY}",
        f'a=1; sse_key="{READ_KEY}"; b="unterminated',
        f"sse_key={READ_KEY}; sse_key=older-path-value",  # a browser lists the most specific path first
        f";;=; x ; sse_key = {READ_KEY} ",
    ]
    for cookie in found:
        assert isinstance(keys.reader(Headers({"cookie": cookie}), {}), Grant), cookie
    # Only the first MAX_COOKIE_CHARS are read: a key behind more than that is not seen.
    late = "x=" + "a" * MAX_COOKIE_CHARS + f"; sse_key={READ_KEY}"
    assert isinstance(keys.reader(Headers({"cookie": late}), {}), Denied)


# --- 2. /api/history with a time no datetime can hold --------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("until=999999999999", "until"),  # the year 33658
        ("since=999999999999", "since"),
        ("since=0001-01-01T00:00:00%2B14:00", "since"),  # the year 0 in UTC
        ("until=0001-01-01T12:00:00Z", "since"),  # its default since (a day earlier) is the year 0
    ],
)
async def test_history_times_outside_years_1_to_9999_are_422_and_nothing_is_sent(
    ha: DemoHomeAssistant, query: str, named: str
) -> None:
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        assert live.service.client is not None
        session = live.service.client._session
        assert session is not None
        async with asyncio.timeout(5):
            while session.pending:  # the recorder's past, asked for on connect
                await asyncio.sleep(0.01)
        response = await client.get(f"/api/history/sensor.solar_power?{query}")
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_query"
        assert error["message"].startswith(f"{named}: expected a time from the year 1 to the year 9999")
        # Nothing was registered with the upstream (a 500 used to leave the request pending).
        assert session.pending == {}


# --- 3. half-open connections ----------------------------------------------------------------


def _raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server ends the connection within ``within`` s (whatever it sent first)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_thousands_of_half_open_connections_are_closed_and_streams_still_start(
    ha: DemoHomeAssistant, protocol: str
) -> None:
    # Each costs two descriptors here, the client's and the server's.
    count = min(2000, (_raise_nofile(4096 + 256) - 256) // 2)
    if count < 500:
        pytest.skip(f"RLIMIT_NOFILE's hard limit leaves room for only {count} connections")
    timeout = 2.0
    heads = [
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nX-Slow: a",
        b"GET /healthz HTTP/1.1\r\nHo",
        b"",  # connects and sends nothing
    ]
    async with live_server(settings_for(ha, request_timeout=timeout)) as live:
        connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for i in range(count):
                reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
                writer.write(heads[i % len(heads)])
                connections.append((reader, writer))
            opened = time.monotonic()
            # With all of them open, a new stream starts and /healthz answers.
            async with open_stream(live.url + "/events") as stream:
                assert (await stream.next(timeout=10)).event == "snapshot"
                async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
                    assert (await client.get("/healthz")).status_code == 200
                # Then the server closes every one of them, and only them.
                remaining = timeout + 10 - (time.monotonic() - opened)
                closed = await asyncio.gather(*(_closed_by_server(r, remaining) for r, _ in connections))
                assert sum(closed) == count, f"{count - sum(closed)} of {count} half-open connections still open"
                # The stream outlived the deadline: its request was complete.
                ha.set_state("sensor.solar_power", "1500", {"unit_of_measurement": "W"})
                await stream.until_state("sensor.solar_power", "1500")
        finally:
            for _, writer in connections:
                writer.close()


async def test_a_command_body_that_stops_half_way_is_408_and_the_connection_closes(
    ha: DemoHomeAssistant, protocol: str
) -> None:
    settings = settings_for(ha, request_timeout=1.0, allowed_services=("switch.turn_on",))
    async with live_server(settings) as live:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        head = (
            "POST /api/services/switch/turn_on HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b'{"entity_id": "switch.')
        try:
            async with asyncio.timeout(10):
                answer = await reader.read(65536)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b'"code":"request_timeout"' in answer and b"REQUEST_TIMEOUT" in answer
            assert await _closed_by_server(reader, 5), "the rest of the body is not read as a new request"
        finally:
            writer.close()
        assert ha.service_calls == []


async def test_between_requests_a_partial_request_or_an_unread_body_is_closed_in_time(
    ha: DemoHomeAssistant, protocol: str
) -> None:
    async with live_server(settings_for(ha, request_timeout=1.0)) as live:
        # A keep-alive connection whose second request never completes.
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127")
        assert await _closed_by_server(reader, 5)
        writer.close()
        # A body the route does not read, trickling in after the answer: a byte every 0.3 s
        # kept the connection open for good (each byte reset uvicorn's keep-alive timer).
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(b"a")
                    await writer.drain()
                    await asyncio.sleep(0.3)

        dripping = asyncio.create_task(trickle())
        try:
            assert await _closed_by_server(reader, 8), "a body trickling in after the answer kept the connection open"
        finally:
            dripping.cancel()
            writer.close()


# --- 4. stream filters ----------------------------------------------------------------------


async def test_stream_filters_past_their_count_or_length_are_422_naming_the_limit(ha: DemoHomeAssistant) -> None:
    # A 60 KB ?entity_id= list held the event loop about 0.4 s per request, compiling it.
    many = ",".join(f"sensor.x{i}" for i in range(101))
    huge = ",".join(f"sensor.{i:06d}_power" for i in range(3000))  # the 60 KB of the issue
    cases = [
        (f"entity_id={many}", "at most 100 patterns together (MAX_FILTER_PATTERNS)"),
        (f"entity_id={huge}", "at most 2048 characters together (MAX_FILTER_LENGTH)"),
        (f"entity_id=sensor.a&domain={'x' * 2048}", "(MAX_FILTER_LENGTH)"),
        ("domain=" + ",".join(["light"] * 101), "(MAX_FILTER_PATTERNS)"),
    ]
    async with live_server(settings_for(ha)) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        for query, limit in cases:
            for path in ("/events", "/api/states"):
                response = await client.get(f"{path}?{query}")
                assert response.status_code == 422, (path, query[:40])
                error = response.json()["error"]
                assert error["code"] == "filter_too_large"
                assert error["message"].startswith("entity_id and domain: ") and error["message"].endswith(limit)
        # At the limits, a filter works as ever.
        exact = ",".join(["sensor.solar_power"] + [f"sensor.x{i}" for i in range(99)])
        assert len(exact) <= 2048
        states = await client.get(f"/api/states?entity_id={exact}")
        assert states.status_code == 200 and list(states.json()["entities"]) == ["sensor.solar_power"]
        async with open_stream(f"{live.url}/events?entity_id={exact}") as stream:
            assert list((await stream.next()).json()["entities"]) == ["sensor.solar_power"]


# --- 5. forwarded addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        ({"x-forwarded-for": "not-an-address"}, None),
        ({"x-forwarded-for": "203.0.113.7, unknown"}, None),  # the entry that names the client decides
        ({"forwarded": "for=_hidden"}, None),
        ({"forwarded": "for=unknown, for=203.0.113.7"}, "203.0.113.7"),
        ({"x-forwarded-for": "999.1.1.1"}, None),
        # One address, one spelling: the per-address caps cannot be dodged by writing it anew.
        ({"x-forwarded-for": "2001:DB8:0:0::1"}, "2001:db8::1"),
        ({"x-forwarded-for": "::ffff:203.0.113.7"}, "203.0.113.7"),
        # Only the right-most entries are read: the left end of a 200 KB chain is never walked.
        ({"x-forwarded-for": ", ".join(["garbage"] + ["127.0.0.1"] * 20_000)}, "127.0.0.1"),
    ],
)
def test_only_an_ip_address_is_taken_from_forwarded_headers(headers: dict[str, str], client: str | None) -> None:
    assert TrustedProxies(["127.0.0.1"]).client(_forwarded_chain(Headers(headers))) == client


async def test_a_forwarded_address_that_is_not_one_falls_back_to_the_peer_and_is_logged_once(
    ha: DemoHomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    # From a trusted hop (loopback, the default), any string became a client id: each stream
    # "from" a new name sidestepped MAX_STREAMS_PER_IP.
    settings = settings_for(ha, max_streams_per_ip=1)
    async with (
        live_server(settings) as live,
        open_stream(live.url + "/events", {"x-forwarded-for": "client-one"}) as first,
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
    ):
        await first.next()
        for name in ("client-two", "client-three"):
            refused = await client.get("/events", headers={"x-forwarded-for": name})
            assert refused.status_code == 429, "every one of them is the peer, 127.0.0.1"
    warnings = [r for r in caplog.records if r.name == "sse_service.proxy"]
    assert len(warnings) == 1 and "not an IP address" in warnings[0].getMessage()
    assert "127.0.0.1" in warnings[0].getMessage()


# --- 6. token claims, the demo's token, revocation without CONFIG_FILE ------------------------

TOKEN_SECRET = "token-secret-0123456789abcdef0123456789"


async def test_a_signed_token_with_an_absurd_exp_is_a_401_not_a_500(ha: DemoHomeAssistant) -> None:
    settings = settings_for(ha, token_secret=Secret(TOKEN_SECRET))
    async with live_server(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        for exp in (-(10**400), -(10**14)):
            credential = jwt.encode({"entities": ["*"], "exp": exp}, TOKEN_SECRET, algorithm="HS256")
            for path in ("/api/states", "/events"):
                response = await client.get(path, headers={"authorization": f"Bearer {credential}"})
                assert response.status_code == 401, (path, exp, response.text)
                assert response.json()["error"]["code"] == "invalid_token"


async def test_tokens_without_a_config_file_warn_at_start_that_revoking_needs_a_restart(tmp_path: Path) -> None:
    warning = "TOKEN_SECRET is set without CONFIG_FILE: TOKEN_REVOKED is read once, at start"
    log: list[str] = []
    async with service_process(log, TOKEN_SECRET=TOKEN_SECRET):
        pass
    assert warning in log[0]
    config = tmp_path / "sse.toml"
    config.write_text('token_revoked = ["tablet-1"]\n')
    async with service_process(log, TOKEN_SECRET=TOKEN_SECRET, CONFIG_FILE=str(config)):
        pass
    assert warning not in log[1], "with a CONFIG_FILE, SIGHUP and its changes revoke while running"
