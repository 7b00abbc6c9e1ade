"""The small JSON routes: current states for REST readers, and health."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import Keys
from .filters import EntityPattern
from .ha.client import HAClient
from .hub import Hub

__all__ = ["error_response", "health", "read_denied", "read_refusal", "single_state", "states"]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error the service answers has this shape: a stable ``code`` and a readable ``message``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def read_refusal(keys: Keys, headers: Headers, query: QueryParams) -> Response | None:
    """The 401 for a reader without a valid key, or None when it may read."""
    if keys.may_read(headers, query):
        return None
    message = "a valid read key is required: 'Authorization: Bearer <key>', ?key=<key> or an sse_key cookie"
    return error_response(401, "unauthorized", message, {"www-authenticate": "Bearer"})


def read_denied(request: Request) -> Response | None:
    """:func:`read_refusal` for a Starlette route."""
    return read_refusal(request.app.state.keys, request.headers, request.query_params)


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def states(request: Request) -> Response:
    """Visible states, filtered like the stream. ``event_id`` lets a client resume the stream from here."""
    if denied := read_denied(request):
        return denied
    hub = _hub(request)
    pattern = EntityPattern.parse(request.query_params.get("entity_id", ""), request.query_params.get("domain", ""))
    entities = {k: v for k, v in hub.store.states.items() if pattern is None or pattern(k)}
    return JSONResponse({"event_id": hub.event_id(), "status": hub.status.value, "entities": entities})


async def single_state(request: Request) -> Response:
    if denied := read_denied(request):
        return denied
    entity_id = request.path_params["entity_id"]
    state = _hub(request).store.states.get(entity_id)
    if state is None:
        return error_response(404, "unknown_entity", f"no exposed entity {entity_id!r}")
    return JSONResponse(state)


async def health(request: Request) -> Response:
    """Liveness: 200 whenever the process works, even while Home Assistant is down."""
    hub = _hub(request)
    client: HAClient = request.app.state.upstream
    body: dict[str, Any] = {
        "status": "ok",
        "upstream": {
            "status": hub.status.value,
            "reason": hub.status_reason,
            "since": hub.status_since,
            "ha_version": client.ha_version,
            "demo": request.app.state.settings.demo,
        },
        "clients": hub.client_count,
        "entities": len(hub.store),
        "event_id": hub.event_id(),
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})
