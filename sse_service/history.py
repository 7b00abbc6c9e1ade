"""``GET /api/history/<entity_id>``: more of a number's past than the snapshot holds.

Answered from Home Assistant's recorder through the one upstream connection
(``history/history_during_period``), never from a second connection. Bounded: a span of at
most ``MAX_SPAN`` and at most ``points`` points (downsampled keeping the shape, series.py),
so one request can neither make HA read a year nor send a client megabytes.
Points have the snapshot's format: ``[[epoch_seconds, value], ...]``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import Keys
from .filters import EntityPattern
from .hub import Hub
from .responses import error_response, read_denied, unknown_entity
from .series import downsample
from .times import iso_from_timestamp
from .untrusted import ascii_int, shown
from .upstream import HAError, NotConnected, Upstream

__all__ = ["HistoryEndpoint"]

MAX_SPAN = 7 * 86400.0
DEFAULT_POINTS = 500
MAX_POINTS = 5000
TIMEOUT = 20.0
# What a datetime (Python's, and Home Assistant's) can hold, in epoch seconds.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


class _BadQuery(Exception):
    pass


class HistoryEndpoint:
    def __init__(self, upstream: Upstream, hub: Hub, *, keys: Keys, exposed: EntityPattern, window: float) -> None:
        self._upstream = upstream
        self._hub = hub
        self._keys = keys
        self._exposed = exposed
        self._window = window or 86400.0

    async def handle(self, request: Request) -> Response:
        if denied := read_denied(self._keys, request):
            return denied
        entity_id = request.path_params["entity_id"]
        if not self._exposed(entity_id) or entity_id not in self._hub.store.states:
            return unknown_entity(entity_id)
        now = time.time()
        try:
            until = _instant(request.query_params.get("until"), "until", now)
            since = _instant(request.query_params.get("since"), "since", until - self._window)
            # Checked here, before anything is sent: the message to HA is built once the
            # request is registered with the upstream, and a time it cannot write was a 500
            # that left that request pending for good.
            for name, value in (("until", until), ("since", since)):
                if not EARLIEST <= value <= LATEST:
                    raise _BadQuery(f"{name}: expected a time from the year 1 to the year 9999")
            points = ascii_int(request.query_params.get("points", str(DEFAULT_POINTS)), max_digits=6)
            if points is None or not 2 <= points <= MAX_POINTS:
                raise _BadQuery(f"points: expected a whole number from 2 to {MAX_POINTS}")
            if since >= until:
                raise _BadQuery("since: must be before until")
            if until - since > MAX_SPAN:
                raise _BadQuery(f"since: the span is limited to {MAX_SPAN / 86400:g} days")
        except _BadQuery as e:
            return error_response(422, "invalid_query", str(e))
        client = self._upstream
        try:
            async with asyncio.timeout(TIMEOUT):
                recorded = await client.history([entity_id], since, until)
        except NotConnected:
            message = "Home Assistant is not connected; the history comes from its recorder"
            return error_response(503, "upstream_unavailable", message, {"retry-after": "5"})
        except TimeoutError:
            message = f"Home Assistant's recorder did not answer within {TIMEOUT:g} s"
            return error_response(504, "upstream_timeout", message)
        except HAError as e:
            if e.code == "unknown_command":
                message = "Home Assistant has no history: it needs the recorder and history integrations"
                return error_response(501, "history_unavailable", message)
            return error_response(502, f"ha_{e.code}", f"Home Assistant refused: {e.message or e.code}")
        series = downsample(recorded.get(entity_id, []), points)
        body = {
            "entity_id": entity_id,
            "since": iso_from_timestamp(since),
            "until": iso_from_timestamp(until),
            "points": series,
        }
        return JSONResponse(body, headers={"cache-control": "no-store"})


def _instant(raw: str | None, name: str, default: float) -> float:
    """An ISO 8601 time (with a zone, or UTC) or epoch seconds in ASCII digits."""
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    seconds = ascii_int(text, max_digits=12)
    if seconds is not None:
        return float(seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _BadQuery(f"{name}: expected an ISO 8601 time or epoch seconds, got {shown(text)}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
