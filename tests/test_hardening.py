"""One unauthenticated request must never freeze the server (issue 23).

Each test here failed before its fix: a cookie that froze the event loop, an out-of-range
history time that leaked an upstream request, half-open connections that never closed,
unbounded stream filters, forwarded addresses that were not addresses, and token claims
out of range.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from starlette.datastructures import Headers

from sse_service.access import MAX_COOKIE_CHARS, Denied, Grant, Keys
from sse_service.config import Secret, Settings
from sse_service.ha.demo import DemoHomeAssistant

from .helpers import live_server, live_server_in_thread, settings_for

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
        session = live.app.state.upstream._session
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
