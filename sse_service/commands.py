"""``POST /api/services/<domain>/<service>``: a Home Assistant service call, checked first.

The body has the shape of HA's own REST call: a JSON object with ``entity_id`` (a string or
a list) and the service data. Who may act is decided before what they sent is read: method,
rate, key, allowlist, then the body, then the entities; each failure has its own status and
stable ``code`` (the table is in the README). The result reaches every client through the
stream, as the ``state`` event HA sends when the entity changes.

Nothing a client sends may make HA drop the connection (every stream would go down with
it): HA closes the WebSocket on JSON it cannot parse, which for its parser includes
integers outside the signed 64-bit range and non-finite floats. Those are refused here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from .access import CommandRate, Denied, Keys, RateLimiter, client_ip
from .config import Settings
from .filters import EntityPattern
from .hub import Hub
from .responses import denial_response, error_response
from .types import UpstreamStatus
from .untrusted import ascii_int, loggable, shown
from .upstream import HAError, NotConnected, Upstream

__all__ = ["CommandEndpoint"]

log = logging.getLogger("sse_service.commands")

# Targets other than entity ids would reach entities this bridge does not expose.
FORBIDDEN_TARGETS = ("target", "area_id", "device_id", "floor_id", "label_id")
MAX_DEPTH = 32
INT64 = range(-(2**63), 2**63)
# HA's own error codes and the status we answer them with.
HA_ERROR_STATUS = {
    "not_found": 404,
    "invalid_format": 422,
    "unauthorized": 403,
    "service_validation_error": 400,
}


class BadBody(Exception):
    """The body is not something we would forward. ``str()`` names the field."""


class CommandEndpoint:
    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        upstream: Upstream,
        *,
        keys: Keys,
        rate: CommandRate,
        exposed: EntityPattern,
        on_outcome: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self._hub = hub
        self._upstream = upstream
        self._keys = keys
        self._rate = rate
        self._exposed = exposed
        self._allowed = EntityPattern(settings.services)
        self._timeout = settings.command_timeout
        self._max_body = settings.max_body_bytes
        self._body_timeout = settings.request_timeout
        self._on_outcome = on_outcome

    async def handle(self, request: Request) -> Response:
        domain, service = request.path_params["domain"], request.path_params["service"]
        name = f"{domain}.{service}"
        if request.method != "POST":
            # What someone gets who pastes the URL into a browser.
            message = f"{loggable(request.method, 20)} is not allowed here; call a service with POST"
            return error_response(405, "method_not_allowed", message, {"allow": "POST"})
        request.state.token_name = None  # the token's sub, once the credential is known
        response, entity_ids = await self._handle(request, domain, service, name)
        outcome = "ok" if response.status_code == 200 else _code_of(response)
        token_name: str | None = request.state.token_name
        if self._on_outcome is not None:
            self._on_outcome(outcome, token_name)
        level = logging.INFO if response.status_code < 500 else logging.WARNING
        targets = loggable(",".join(entity_ids)) or "-"
        who = loggable(client_ip(request.scope)) + (f", token {token_name}" if token_name is not None else "")
        log.log(level, "Command %s on %s from %s: %s", loggable(name), targets, who, outcome)
        return response

    async def _handle(self, request: Request, domain: str, service: str, name: str) -> tuple[Response, list[str]]:
        wait = await self._rate.wait(client_ip(request.scope))
        if wait:
            seconds = RateLimiter.retry_after(wait)
            message = f"too many commands from your address; try again in {seconds} s"
            return error_response(429, "rate_limited", message, {"retry-after": str(seconds)}), []
        grant = self._keys.writer(request.headers)
        if isinstance(grant, Denied):
            return denial_response(grant), []
        request.state.token_name = grant.name
        if not self._allowed(name):
            # Before the body: a caller learns nothing about a route it may not use.
            return error_response(403, "service_not_allowed", f"the service {loggable(name)} is not allowed here"), []
        if not grant.may_call(name):
            message = f"the service {loggable(name)} is not allowed for this token (its services claim)"
            return error_response(403, "service_not_allowed", message), []
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            message = (
                f"the body must be JSON sent as 'Content-Type: application/json', not {shown(content_type) or 'none'}"
            )
            return error_response(415, "unsupported_media_type", message), []
        try:
            async with asyncio.timeout(self._body_timeout):
                raw = await self._read_body(request)
        except _TooLarge:
            message = f"the body is larger than the limit of {self._max_body} bytes"
            return error_response(413, "body_too_large", message), []
        except TimeoutError:
            # A body that stops half way would hold the connection open for good. Closed
            # after the answer: what is left of the body must not be read as a new request.
            message = f"the body did not arrive within {self._body_timeout:g} s (REQUEST_TIMEOUT)"
            return error_response(408, "request_timeout", message, {"connection": "close"}), []
        except ClientDisconnect:
            return error_response(400, "client_disconnected", "the body was not received completely"), []
        try:
            entity_ids, service_data = _parse_body(raw)
        except BadBody as e:
            return error_response(422, "invalid_body", str(e)), []

        for entity_id in entity_ids:
            if not self._exposed(entity_id):
                message = f"the entity {entity_id} is not exposed by this bridge"
                return error_response(403, "entity_not_allowed", message), entity_ids
            if not grant.sees(entity_id):
                message = f"the entity {entity_id} is not allowed for this token (its entities claim)"
                return error_response(403, "entity_not_allowed", message), entity_ids
            if entity_id not in self._hub.store.states and self._hub.status is UpstreamStatus.CONNECTED:
                return error_response(404, "unknown_entity", f"no entity {entity_id} in Home Assistant"), entity_ids

        # A starting Home Assistant takes commands; it answers for services it has not loaded yet.
        if self._hub.status not in (UpstreamStatus.CONNECTED, UpstreamStatus.STARTING):
            return self._unavailable(), entity_ids
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._upstream.call_service(
                    domain, service, service_data, target={"entity_id": entity_ids}
                )
        except NotConnected:
            return self._unavailable("the connection to Home Assistant dropped before it answered"), entity_ids
        except TimeoutError:
            message = f"Home Assistant did not answer within {self._timeout:g} s; the command may still take effect"
            return error_response(504, "upstream_timeout", message), entity_ids
        except HAError as e:
            status = HA_ERROR_STATUS.get(e.code, 502)
            message = f"Home Assistant refused the call: {e.message or e.code}"
            return error_response(status, f"ha_{e.code}", message), entity_ids
        context = result.get("context") if isinstance(result, dict) else None
        body: dict[str, Any] = {"ok": True, "service": name, "entity_id": entity_ids}
        if isinstance(context, dict) and isinstance(context.get("id"), str):
            body["context_id"] = context["id"]
        if isinstance(result, dict) and result.get("response") is not None:
            body["response"] = result["response"]
        return JSONResponse(body), entity_ids

    def _unavailable(self, why: str | None = None) -> Response:
        """503, saying what is wrong and when the bridge tries again (``Retry-After``)."""
        client = self._upstream
        retry_in = client.retry_in()
        seconds = max(1, math.ceil(retry_in)) if retry_in is not None else 1
        status = self._hub.status
        if why is None and status is UpstreamStatus.AUTH_INVALID:
            message = (
                f"Home Assistant refused the bridge's token ({self._hub.status_reason}); "
                f"the bridge tries again in {seconds} s, and needs a valid HA_TOKEN for that to work"
            )
            return error_response(503, "upstream_auth_invalid", message, {"retry-after": str(seconds)})
        if why is None:
            why = f"Home Assistant is not connected ({status.value}: {self._hub.status_reason})"
        message = f"{why}; the bridge tries to reconnect in {seconds} s"
        return error_response(503, "upstream_unavailable", message, {"retry-after": str(seconds)})

    async def _read_body(self, request: Request) -> bytes:
        declared = ascii_int(request.headers.get("content-length", "").strip(), max_digits=30)
        if declared is not None and declared > self._max_body:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)


class _TooLarge(Exception):
    pass


def _code_of(response: Response) -> str:
    try:
        return str(json.loads(bytes(response.body))["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)


def _reject_constant(name: str) -> Any:
    raise BadBody(f"body: {name} is not valid JSON")


class _BadNumber(NamedTuple):
    """A number HA could not parse, kept in place so the walk can name its field."""

    text: str


def _int64(text: str) -> int | _BadNumber:
    # The length check comes first: int() refuses more than 4300 digits with a ValueError.
    if len(text) > 20:
        return _BadNumber(text)
    value = int(text)
    return value if value in INT64 else _BadNumber(text)


def _finite_float(text: str) -> float | _BadNumber:
    value = float(text)
    return value if math.isfinite(value) else _BadNumber(text)


def _parse_body(raw: bytes) -> tuple[list[str], dict[str, Any]]:
    """Returns the entity ids and the rest of the service data, or raises BadBody naming the field."""
    if not raw.strip():
        raise BadBody("body: expected a JSON object with entity_id, got an empty body")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64)
    except UnicodeDecodeError:
        raise BadBody("body: not valid UTF-8") from None
    except RecursionError:
        raise BadBody(f"body: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise BadBody(f"body: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise BadBody(f"body: expected a JSON object, got {_json_type(data)}")
    _check_value(data, "body", 0)
    for key in FORBIDDEN_TARGETS:
        if key in data:
            raise BadBody(f"{key}: not accepted; name the entities with entity_id")
    if "entity_id" not in data:
        raise BadBody("entity_id: required (a string or a list of strings)")
    entity_ids = data.pop("entity_id")
    if isinstance(entity_ids, str):
        entity_ids = [entity_ids]
    if not isinstance(entity_ids, list) or not all(isinstance(e, str) for e in entity_ids):
        raise BadBody(f"entity_id: expected a string or a list of strings, got {_json_type(entity_ids)}")
    entity_ids = [e.strip() for e in entity_ids]
    if not entity_ids or not all(entity_ids):
        raise BadBody("entity_id: must name at least one entity, with no empty names")
    return list(dict.fromkeys(entity_ids)), data


def _check_value(value: Any, where: str, depth: int) -> None:
    """Refuse what HA's JSON parser would choke on (it drops the whole connection on bad JSON)."""
    if depth > MAX_DEPTH:
        raise BadBody(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, _BadNumber):
        number = value.text if len(value.text) <= 24 else f"{value.text[:12]}… ({len(value.text)} characters)"
        raise BadBody(
            f"{where}: the number {number} is out of range (integers must fit in 64 bits, numbers must be finite)"
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_value(item, key if depth == 0 else where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, where, depth + 1)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody(f"{where}: contains an unpaired surrogate escape") from None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
