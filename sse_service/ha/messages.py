"""Pure builders and parsers of Home Assistant WebSocket frames. No I/O.

References are to ``shared/docs/ha-websocket-protocol.md`` (HA core ``websocket_api``).
Builders take the message id and return a plain dict; optional fields are added only when
set, as in home-assistant-js-websocket's ``messages.ts``. The compressed states that
``subscribe_entities`` streams are read by ``entities.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..store import numeric_value  # the one definition of "a number"
from ..times import iso_from_timestamp

__all__ = [
    "Message",
    "ProtocolError",
    "auth",
    "call_service",
    "history_during_period",
    "history_points",
    "parse_frame",
    "ping",
    "simple",
    "subscribe_entities",
    "subscribe_events",
    "supported_features",
    "version_at_least",
]

Message = dict[str, Any]


class ProtocolError(Exception):
    """Home Assistant sent something that does not follow the protocol."""


# --- client -> HA ---------------------------------------------------------------------


def auth(token: str) -> Message:
    # Exactly these keys: HA rejects extra keys (even "id") in the auth message (§1.1).
    return {"type": "auth", "access_token": token}


def supported_features(msg_id: int) -> Message:
    return {"id": msg_id, "type": "supported_features", "features": {"coalesce_messages": 1}}


def subscribe_entities(
    msg_id: int, entity_globs: Sequence[str] | None = None, entity_ids: Sequence[str] | None = None
) -> Message:
    """Subscribe to the compressed state stream, narrowed server-side where HA can.

    ``entity_globs`` goes out as an ``include`` filter (HA >= 2024.9 only: older versions
    reject the key and log an error), ``entity_ids`` as the exact list every version takes.
    """
    message: Message = {"id": msg_id, "type": "subscribe_entities"}
    if entity_globs:
        message["include"] = {"entity_globs": list(entity_globs)}
    if entity_ids:
        message["entity_ids"] = list(entity_ids)
    return message


def subscribe_events(msg_id: int, event_type: str) -> Message:
    return {"id": msg_id, "type": "subscribe_events", "event_type": event_type}


def simple(msg_id: int, kind: str) -> Message:
    """A command with no arguments (``get_states``, ``auth/current_user``)."""
    return {"id": msg_id, "type": kind}


def history_during_period(msg_id: int, start: float, end: float, entity_ids: Sequence[str]) -> Message:
    """The recorder's states of ``entity_ids`` between two instants: only ``s`` and ``lu`` per row."""
    return {
        "id": msg_id,
        "type": "history/history_during_period",
        "start_time": iso_from_timestamp(start),
        "end_time": iso_from_timestamp(end),
        "entity_ids": list(entity_ids),
        "minimal_response": True,
        "no_attributes": True,
    }


def history_points(result: Any) -> dict[str, list[tuple[float, float]]]:
    """Numbers out of a ``history_during_period`` result, as sorted ``(epoch seconds, value)``.

    Rows whose state is not a number (``unavailable``) are left out, as the live history does.
    """
    points: dict[str, list[tuple[float, float]]] = {}
    if not isinstance(result, dict):
        raise ProtocolError("history result is not an object")
    for entity_id, rows in result.items():
        if not isinstance(entity_id, str) or not isinstance(rows, list):
            continue
        series = []
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("s"), str):
                continue
            when = row.get("lu", row.get("lc"))
            value = numeric_value(row["s"])
            if value is not None and isinstance(when, int | float) and not isinstance(when, bool):
                series.append((round(float(when), 3), value))
        if series:
            points[entity_id] = sorted(series, key=_when)  # stable: rows of one instant keep their order
    return points


def version_at_least(version: str | None, wanted: tuple[int, int]) -> bool:
    """Whether an ``ha_version`` such as ``2024.3.3`` or ``2025.4.0.dev1`` is at least ``(year, month)``.

    An unknown or unparsable version is not: callers then pick what every version accepts.
    """
    parts = (version or "").split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return False
    return found >= wanted


def call_service(
    msg_id: int,
    domain: str,
    service: str,
    service_data: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
) -> Message:
    message: Message = {"id": msg_id, "type": "call_service", "domain": domain, "service": service}
    if service_data:
        message["service_data"] = dict(service_data)
    if target:
        message["target"] = dict(target)
    return message


def ping(msg_id: int) -> Message:
    return {"id": msg_id, "type": "ping"}


# --- HA -> client ---------------------------------------------------------------------


def parse_frame(data: str | bytes) -> list[Message]:
    """One text frame: a JSON object, or (with coalescing) an array of them (§2)."""
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"frame is not valid JSON: {e}") from None
    messages = decoded if isinstance(decoded, list) else [decoded]
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError("frame holds something other than a message object with a 'type'")
    return messages


def _when(point: tuple[float, float]) -> float:
    return point[0]
