"""``GET /api/states`` and ``GET /api/states/<entity_id>``: the current states, for REST readers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import Keys
from .filters import FilterLimits, FilterTooLarge, combine
from .hub import Hub
from .responses import error_response, read_access, read_denied, unknown_entity

__all__ = ["StateRoutes"]


class StateRoutes:
    def __init__(self, hub: Hub, *, keys: Keys, filter_limits: FilterLimits) -> None:
        self._hub = hub
        self._keys = keys
        self._filter_limits = filter_limits

    async def states(self, request: Request) -> Response:
        """Visible states, filtered like the stream. ``event_id`` lets a client resume the stream from here."""
        grant = read_access(self._keys, request)
        if isinstance(grant, Response):
            return grant
        try:
            pattern = combine(grant.entities, self._filter_limits.parse(request.query_params))
        except FilterTooLarge as e:
            return error_response(422, "filter_too_large", str(e))
        hub = self._hub
        entities = {k: v for k, v in hub.store.states.items() if pattern is None or pattern(k)}
        return JSONResponse({"event_id": hub.event_id(), "status": hub.status.value, "entities": entities})

    async def single_state(self, request: Request) -> Response:
        if denied := read_denied(self._keys, request):
            return denied
        entity_id = request.path_params["entity_id"]
        state = self._hub.store.states.get(entity_id)
        if state is None:
            return unknown_entity(entity_id)
        return JSONResponse(state)
