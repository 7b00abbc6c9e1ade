"""The small JSON routes: current states for REST readers, and health."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import Denied, Grant, Keys
from .filters import FilterLimits, FilterTooLarge, combine
from .ha.client import HAClient
from .hub import Hub
from .untrusted import shown

__all__ = [
    "denial_response",
    "error_response",
    "health",
    "read_access",
    "read_denied",
    "read_grant",
    "single_state",
    "states",
]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error the service answers has this shape: a stable ``code`` and a readable ``message``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def denial_response(denied: Denied) -> JSONResponse:
    """The 401 for a request without a valid key or token (which an EventSource does not retry)."""
    challenge = "Bearer" if denied.code == "unauthorized" else 'Bearer error="invalid_token"'
    return error_response(401, denied.code, denied.message, {"www-authenticate": challenge})


def read_grant(keys: Keys, headers: Headers, query: QueryParams) -> Grant | Response:
    """What a reader may see, or the 401 to answer."""
    grant = keys.reader(headers, query)
    return denial_response(grant) if isinstance(grant, Denied) else grant


def read_access(request: Request) -> Grant | Response:
    """:func:`read_grant` for a Starlette route; an ``{entity_id}`` in the path must be in its view.

    An entity outside a token's view is a 404 like one that does not exist: a token learns
    nothing about what it may not see.
    """
    grant = read_grant(request.app.state.keys, request.headers, request.query_params)
    entity_id = request.path_params.get("entity_id")
    if isinstance(grant, Grant) and isinstance(entity_id, str) and not grant.sees(entity_id):
        return error_response(404, "unknown_entity", f"no exposed entity {shown(entity_id) or '(empty)'}")
    return grant


def read_denied(request: Request, *, whole_view: bool = False) -> Response | None:
    """:func:`read_access` for a route that only needs a yes: None when the request may read.

    ``whole_view``: only a key or a token that sees every entity (``/metrics`` counts them all
    and names every token).
    """
    grant = read_access(request)
    if isinstance(grant, Response):
        return grant
    if whole_view and grant.entities is not None:
        message = "this needs a key, or a token whose entities claim is '*'"
        return error_response(403, "forbidden", message)
    return None


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def states(request: Request) -> Response:
    """Visible states, filtered like the stream. ``event_id`` lets a client resume the stream from here."""
    grant = read_access(request)
    if isinstance(grant, Response):
        return grant
    hub = _hub(request)
    limits: FilterLimits = request.app.state.filter_limits
    try:
        pattern = combine(grant.entities, limits.parse(request.query_params))
    except FilterTooLarge as e:
        return error_response(422, "filter_too_large", str(e))
    entities = {k: v for k, v in hub.store.states.items() if pattern is None or pattern(k)}
    return JSONResponse({"event_id": hub.event_id(), "status": hub.status.value, "entities": entities})


async def single_state(request: Request) -> Response:
    if denied := read_denied(request):
        return denied
    entity_id = request.path_params["entity_id"]
    state = _hub(request).store.states.get(entity_id)
    if state is None:
        return error_response(404, "unknown_entity", f"no exposed entity {shown(entity_id) or '(empty)'}")
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
            "cause": hub.status_cause.value,
            "since": hub.status_since,
            "ha_version": client.ha_version,
            "demo": request.app.state.settings.demo,
        },
        "clients": hub.client_count,
        "entities": len(hub.store),
        "event_id": hub.event_id(),
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})
