"""The entity reducer: HA's compressed ``subscribe_entities`` events applied to full states. Pure.

The ``subscribe_entities`` stream uses HA's compressed state format (protocol notes §3.9):

=====  ===============================================================
``s``  state string
``a``  attributes (full in an add, only added/changed keys in a diff)
``c``  context: a bare id string, or a dict to merge
``lc`` last_changed, float Unix seconds
``lu`` last_updated, float; absent when equal to ``lc``
=====  ===============================================================

A change event holds any of ``a`` (adds), ``r`` (removes) and ``c`` (diffs with ``+``/``-``),
for any number of entities; they are applied in that order, as the official JS client does
(``entities.ts`` ``processEvent``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..times import iso_from_timestamp
from ..types import EntityState
from .messages import ProtocolError

__all__ = ["EntityChanges", "apply_entities_event", "expand_state", "make_state"]


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
