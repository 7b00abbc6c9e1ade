"""The compact stream's encoding (``/events?format=compact``): whole states and per-entity changes.

A full ``event: state`` repeats every attribute, both timestamps and the whole context: about
460 bytes for one ``input_number`` moving, where Home Assistant's own compressed message is
about 140. The compact stream sends, after a whole snapshot, only what changed, in the shape of
HA's compressed format (``s``, ``a``, ``c``, ``lc``, ``lu``), so a page applies it to what it
holds (web/stream.js ``expand``, which gives back the full stream's state objects exactly).

* **Whole** (snapshot entries, ``event: state``): ``{"s", "a", "c", "lc", "lu"?, "lr"?}``. ``c``
  is the context's id when it has no parent and no user, else the context object. ``lu`` only
  when it differs from ``lc``, ``lr`` only when it differs from ``lu`` (``null``: the state has
  no ``last_reported``, HA before 2024.4).
* **Change** (an event with no name): ``{"e": entity_id, ...}`` with only what changed; ``-``
  names the attributes removed; a string ``c`` is a new context id, an object the context keys
  that changed. ``lc`` moves ``last_updated`` with it unless ``lu`` is given, and either moves
  ``last_reported`` unless ``lr`` is given.
* **Timestamps** are Unix seconds as JSON numbers, when the number gives back the exact ISO text
  the full stream has (the page rebuilds it); otherwise the text itself.
* A state of another shape (a key missing or extra, a context that is not an object) goes out
  whole in the full stream's form, which the page takes as is: exactness first, bytes second.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from .sse import dumps
from .types import EntityState

__all__ = ["change_data", "state_json", "timestamp", "whole_data", "whole_json"]

_KEYS = frozenset(("entity_id", "state", "attributes", "last_changed", "last_updated", "context"))
_REPORTED_KEYS = _KEYS | {"last_reported"}
_MISSING = object()
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?\+00:00")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def timestamp(iso: str) -> float | str:
    """``iso`` as Unix seconds, if the page's conversion of that number gives back ``iso`` exactly.

    The page (web/stream.js ``isoOf``) writes whole seconds and microseconds rounded half up, in
    the form Python's isoformat gives a UTC time (no fraction when it is zero): so the text must
    be in that form, and the number must round to its microseconds. Checked in numbers, not by
    writing the text again: this runs for every change.
    """
    if not _CANONICAL.fullmatch(iso) or iso.endswith(".000000+00:00"):
        return iso
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    exact = (moment - _EPOCH) // _MICROSECOND
    seconds = moment.timestamp()
    whole = math.floor(seconds)
    micro = (seconds - whole) * 1e6
    rounded = math.floor(micro)
    if micro - rounded >= 0.5:  # JavaScript's Math.round
        rounded += 1
    return seconds if whole * 1_000_000 + rounded == exact else iso


def _standard(state: EntityState) -> bool:
    context = state.get("context")
    return (
        (len(state) == 7 and state.keys() == _REPORTED_KEYS or len(state) == 6 and state.keys() == _KEYS)
        and isinstance(context, dict)
        and isinstance(state["state"], str)
        and isinstance(state["attributes"], dict)
        and isinstance(state["last_changed"], str)
        and isinstance(state["last_updated"], str)
        and isinstance(state.get("last_reported", ""), str)
    )


def _bare_context(context: dict[str, Any]) -> bool:
    return (
        len(context) == 3
        and isinstance(context.get("id"), str)
        and context.get("parent_id", _MISSING) is None
        and context.get("user_id", _MISSING) is None
    )


def whole_data(state: EntityState) -> dict[str, Any]:
    """The whole form of ``state`` (without its entity id), or the state itself if it is not of HA's shape."""
    if not _standard(state):
        return dict(state)
    context = state["context"]
    last_changed, last_updated = state["last_changed"], state["last_updated"]
    whole: dict[str, Any] = {
        "s": state["state"],
        "a": state["attributes"],
        "c": context["id"] if _bare_context(context) else context,
        "lc": timestamp(last_changed),
    }
    if last_updated != last_changed:
        whole["lu"] = timestamp(last_updated)
    last_reported = state.get("last_reported")
    if last_reported is None:
        whole["lr"] = None
    elif last_reported != last_updated:
        whole["lr"] = timestamp(last_reported)
    return whole


def whole_json(state: EntityState) -> str:
    """A snapshot's entry for ``state``."""
    return dumps(whole_data(state))


def state_json(state: EntityState) -> str:
    """The data of a compact ``event: state``: the whole form with ``"e"``, or the full state as is."""
    whole = whole_data(state)
    return dumps(whole if "entity_id" in whole else {"e": state["entity_id"], **whole})


def change_data(old: EntityState, new: EntityState) -> str | None:
    """``{"e": ..., what changed}`` as JSON, or None when a change cannot say it (send the whole state)."""
    if not _standard(old) or not _standard(new) or ("last_reported" in old) != ("last_reported" in new):
        return None
    change: dict[str, Any] = {"e": new["entity_id"]}
    if new["state"] != old["state"]:
        change["s"] = new["state"]

    old_attributes, attributes = old["attributes"], new["attributes"]
    if old_attributes is not attributes:
        changed = {k: v for k, v in attributes.items() if not _same(old_attributes.get(k, _MISSING), v)}
        if changed:
            change["a"] = changed
        removed = [k for k in old_attributes if k not in attributes]
        if removed:
            change["-"] = removed

    last_changed, last_updated = new["last_changed"], new["last_updated"]
    moved = True
    if last_changed != old["last_changed"]:
        change["lc"] = timestamp(last_changed)
        if last_updated != last_changed:
            change["lu"] = timestamp(last_updated)
    elif last_updated != old["last_updated"]:
        change["lu"] = timestamp(last_updated)
    else:
        moved = False
    if "last_reported" in new:
        implied = last_updated if moved else old["last_reported"]
        if new["last_reported"] != implied:
            change["lr"] = timestamp(new["last_reported"])

    old_context, context = old["context"], new["context"]
    if not _same(old_context, context):
        if any(key not in context for key in old_context):
            return None  # a change merges context keys; it cannot drop one
        delta = {k: v for k, v in context.items() if not _same(old_context.get(k, _MISSING), v)}
        if list(delta) == ["id"] and isinstance(delta["id"], str):
            change["c"] = delta["id"]
        elif delta:
            change["c"] = delta
    return dumps(change)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: Python's ``==`` takes ``1``, ``1.0`` and ``True`` (and ``0.0``, ``-0.0``) as one."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is str or kind is int or kind is bool:
        return bool(a == b)
    if kind is float:
        return a == b and repr(a) == repr(b)
    return bool(a == b) and dumps(a) == dumps(b)
