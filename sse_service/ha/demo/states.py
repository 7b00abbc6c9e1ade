"""HA's side of the compressed state format (§3.9): what the demo server streams.

The inverse of ``entities.py``, written after HA core's ``_state_diff``; only the embedded
demo and the tests' fake HA need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...times import timestamp_from_iso
from ...types import EntityState

__all__ = ["compress_state", "diff_states"]

Message = dict[str, Any]


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
