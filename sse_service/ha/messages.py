"""Pure builders and parsers of Home Assistant WebSocket frames. No I/O.

References are to ``shared/docs/ha-websocket-protocol.md`` (HA core ``websocket_api``).
The ``subscribe_entities`` stream uses HA's compressed state format (§3.9):

=====  ===============================================================
``s``  state string
``a``  attributes (full in an add, only added/changed keys in a diff)
``c``  context: a bare id string, or a dict to merge
``lc`` last_changed, float Unix seconds
``lu`` last_updated, float; absent when equal to ``lc``
=====  ===============================================================

A change event holds any of ``a`` (adds), ``r`` (removes) and ``c`` (diffs with ``+``/``-``),
for any number of entities; they are applied in that order, as the official JS client does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..store import numeric_value  # the one definition of "a number"
from ..times import iso_from_timestamp, timestamp_from_iso
from ..types import EntityState

__all__ = [
    "EntityChanges",
    "ProtocolError",
    "apply_entities_event",
    "auth",
    "call_service",
    "compress_state",
    "diff_states",
    "expand_state",
    "history_during_period",
    "history_points",
    "make_state",
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


def expand_state(entity_id: str, compressed: Mapping[str, Any], *, reported: bool = False) -> EntityState:
    """A full state from a compressed add (``{"s", "a", "c", "lc", "lu"?}``).

    ``reported``: HA has ``last_reported`` (2024.4 on). The compressed format does not carry
    it; at a change it equals ``last_updated``, which is what HA's own state object holds then.
    """
    last_changed = iso_from_timestamp(_number(compressed.get("lc"), entity_id, "lc"))
    lu = compressed.get("lu")
    last_updated = last_changed if lu is None else iso_from_timestamp(_number(lu, entity_id, "lu"))
    attributes = compressed.get("a") or {}
    if not isinstance(attributes, dict):
        raise ProtocolError(f"attributes of {entity_id} are not an object")
    return make_state(
        entity_id,
        _state_string(compressed.get("s"), entity_id),
        dict(attributes),
        last_changed,
        last_updated,
        _context(compressed.get("c"), None, entity_id),
        last_updated if reported else None,
    )


def make_state(
    entity_id: str,
    state: str,
    attributes: dict[str, Any],
    last_changed: str,
    last_updated: str,
    context: dict[str, Any],
    last_reported: str | None,
) -> EntityState:
    # Keys in the order of HA's State.as_dict, so a state reads like /api/states in HA.
    if last_reported is None:
        return {
            "entity_id": entity_id,
            "state": state,
            "attributes": attributes,
            "last_changed": last_changed,
            "last_updated": last_updated,
            "context": context,
        }
    return {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes,
        "last_changed": last_changed,
        "last_reported": last_reported,
        "last_updated": last_updated,
        "context": context,
    }


def _context(value: Any, base: Mapping[str, Any] | None, entity_id: str) -> dict[str, Any]:
    """A context from its compressed form: a bare id string, or a dict merged into ``base`` (§3.9)."""
    context: dict[str, Any] = dict(base) if base else {"id": None, "parent_id": None, "user_id": None}
    if isinstance(value, str):
        context["id"] = value
    elif isinstance(value, dict):
        context.update(value)
    elif value is not None:
        raise ProtocolError(f"context of {entity_id} is neither a string nor an object")
    return context


@dataclasses.dataclass
class EntityChanges:
    """What one ``subscribe_entities`` event did: new full states, and ids that went away."""

    updated: dict[str, EntityState] = dataclasses.field(default_factory=dict)
    removed: list[str] = dataclasses.field(default_factory=list)
    unknown: list[str] = dataclasses.field(default_factory=list)  # diffs for entities we never saw


def apply_entities_event(
    current: Mapping[str, EntityState], event: Mapping[str, Any], *, reported: bool = False
) -> EntityChanges:
    """Apply one event to a read-only view of the current states; return what changed.

    ``current`` is not modified. Adds (``a``) replace, removes (``r``) delete, diffs (``c``)
    patch the state as it stands after the adds and removes of the same event. ``reported``:
    see :func:`expand_state`.
    """
    changes = EntityChanges()
    adds = event.get("a", {})
    removes = event.get("r", [])
    diffs = event.get("c", {})
    if not isinstance(adds, dict) or not isinstance(removes, list) or not isinstance(diffs, dict):
        raise ProtocolError("subscribe_entities event has a/r/c of the wrong type")

    for entity_id, compressed in adds.items():
        if not isinstance(compressed, dict):
            raise ProtocolError(f"add for {entity_id} is not an object")
        changes.updated[entity_id] = expand_state(entity_id, compressed, reported=reported)
    for entity_id in removes:
        if not isinstance(entity_id, str):
            raise ProtocolError("remove list holds a non-string")
        changes.updated.pop(entity_id, None)
        if entity_id in current:
            changes.removed.append(entity_id)
    for entity_id, diff in diffs.items():
        base = changes.updated.get(entity_id)
        if base is None and entity_id not in changes.removed:
            base = current.get(entity_id)
        if base is None:
            changes.unknown.append(entity_id)
            continue
        if not isinstance(diff, dict):
            raise ProtocolError(f"diff for {entity_id} is not an object")
        changes.updated[entity_id] = _patch(base, diff, reported)
    return changes


def _patch(base: EntityState, diff: Mapping[str, Any], reported: bool) -> EntityState:
    entity_id = base["entity_id"]
    plus = diff.get("+") or {}
    minus = diff.get("-") or {}
    if not isinstance(plus, dict) or not isinstance(minus, dict):
        raise ProtocolError(f"diff for {entity_id} has +/- of the wrong type")
    state = base["state"]
    last_changed, last_updated = base["last_changed"], base["last_updated"]
    if "s" in plus:
        state = _state_string(plus["s"], entity_id)
    if "lc" in plus:
        # HA sends lc without lu when both moved together (§3.9).
        last_changed = last_updated = iso_from_timestamp(_number(plus["lc"], entity_id, "lc"))
    elif "lu" in plus:
        last_updated = iso_from_timestamp(_number(plus["lu"], entity_id, "lu"))
    attributes = base["attributes"]
    added = plus.get("a")
    removed = minus.get("a")
    if added or removed:
        attributes = dict(attributes)
        if added:
            if not isinstance(added, dict):
                raise ProtocolError(f"changed attributes of {entity_id} are not an object")
            attributes.update(added)  # a None value is a value, not a deletion
        if removed:
            if not isinstance(removed, list):
                raise ProtocolError(f"removed attributes of {entity_id} are not a list")
            for key in removed:
                attributes.pop(key, None)
    context = _context(plus.get("c"), base.get("context"), entity_id)
    last_reported = base.get("last_reported")
    if reported and (last_reported is None or last_updated != base["last_updated"]):
        last_reported = last_updated
    return make_state(entity_id, state, attributes, last_changed, last_updated, context, last_reported)


def _number(value: Any, entity_id: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{key} of {entity_id} is not a number")
    return float(value)


def _state_string(value: Any, entity_id: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"state of {entity_id} is not a string")
    return value


# --- HA side (used by the demo upstream and the tests' fake HA) ------------------------


def compress_state(state: EntityState, context_id: str) -> Message:
    compressed: Message = {"s": state["state"], "a": state["attributes"], "c": _compress_context(state, context_id)}
    compressed["lc"] = timestamp_from_iso(state["last_changed"])
    if state["last_updated"] != state["last_changed"]:
        compressed["lu"] = timestamp_from_iso(state["last_updated"])
    return compressed


def _compress_context(state: EntityState, context_id: str) -> str | Message:
    context = state.get("context")
    if context is None:
        return context_id
    if context.get("parent_id") is None and context.get("user_id") is None:
        return str(context.get("id"))
    return dict(context)


def diff_states(old: EntityState, new: EntityState, context_id: str) -> Message:
    """The ``c`` diff HA would send for ``old`` -> ``new`` (``messages._state_diff``)."""
    plus: Message = {}
    if new["state"] != old["state"]:
        plus["s"] = new["state"]
    if new["last_changed"] != old["last_changed"]:
        plus["lc"] = timestamp_from_iso(new["last_changed"])
    elif new["last_updated"] != old["last_updated"]:
        plus["lu"] = timestamp_from_iso(new["last_updated"])
    plus["c"] = _diff_context(old.get("context"), new.get("context"), context_id)
    old_attributes, new_attributes = old["attributes"], new["attributes"]
    changed = {k: v for k, v in new_attributes.items() if k not in old_attributes or old_attributes[k] != v}
    if changed:
        plus["a"] = changed
    diff: Message = {"+": plus}
    removed = [k for k in old_attributes if k not in new_attributes]
    if removed:
        diff["-"] = {"a": removed}
    return diff


def _diff_context(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, context_id: str) -> str | Message:
    # As HA's _state_diff: a dict of what moved, or the bare id when only the id did.
    if new is None:
        return context_id
    old = old or {}
    delta: Message = {}
    if new.get("parent_id") != old.get("parent_id"):
        delta["parent_id"] = new.get("parent_id")
    if new.get("user_id") != old.get("user_id"):
        delta["user_id"] = new.get("user_id")
    if delta:
        delta["id"] = new.get("id")
        return delta
    return str(new.get("id"))


def _when(point: tuple[float, float]) -> float:
    return point[0]
