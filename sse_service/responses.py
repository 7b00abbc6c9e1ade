"""What a route answers when it says no: the one error shape, and the read check every read route makes.

Shared by the routes (states, history, commands, metrics, the stream), so it is a module of
its own: no route module imports helpers from another.
"""

from __future__ import annotations

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import Denied, Grant, Keys
from .untrusted import shown

__all__ = ["denial_response", "error_response", "read_access", "read_denied", "read_grant", "unknown_entity"]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error the service answers has this shape: a stable ``code`` and a readable ``message``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def denial_response(denied: Denied) -> JSONResponse:
    """The 401 for a request without a valid key or token (which an EventSource does not retry)."""
    challenge = "Bearer" if denied.code == "unauthorized" else 'Bearer error="invalid_token"'
    return error_response(401, denied.code, denied.message, {"www-authenticate": challenge})


def unknown_entity(entity_id: str) -> JSONResponse:
    return error_response(404, "unknown_entity", f"no exposed entity {shown(entity_id) or '(empty)'}")


def read_grant(keys: Keys, headers: Headers, query: QueryParams) -> Grant | Response:
    """What a reader may see, or the 401 to answer."""
    grant = keys.reader(headers, query)
    return denial_response(grant) if isinstance(grant, Denied) else grant


def read_access(keys: Keys, request: Request) -> Grant | Response:
    """:func:`read_grant` for a Starlette route; an ``{entity_id}`` in the path must be in its view.

    An entity outside a token's view is a 404 like one that does not exist: a token learns
    nothing about what it may not see.
    """
    grant = read_grant(keys, request.headers, request.query_params)
    entity_id = request.path_params.get("entity_id")
    if isinstance(grant, Grant) and isinstance(entity_id, str) and not grant.sees(entity_id):
        return unknown_entity(entity_id)
    return grant


def read_denied(keys: Keys, request: Request, *, whole_view: bool = False) -> Response | None:
    """:func:`read_access` for a route that only needs a yes: None when the request may read.

    ``whole_view``: only a key or a token that sees every entity (``/metrics`` counts them all
    and names every token).
    """
    grant = read_access(keys, request)
    if isinstance(grant, Response):
        return grant
    if whole_view and grant.entities is not None:
        message = "this needs a key, or a token whose entities claim is '*'"
        return error_response(403, "forbidden", message)
    return None
