"""The current state of every exposed entity, and a short history of the numeric ones. Pure: no I/O.

Applying a snapshot or a batch of changes returns only what really changed, so an upstream
reconnect that brings back identical values sends nothing to clients, and a snapshot that
lacks an entity removes it for everyone.

History: for every entity whose state is a plain number, the last ``history_size`` values as
``(epoch seconds of last_updated, value)``, so a page can draw a full chart at once. A point
is added only when the number changes (an attribute-only update adds nothing); a state that
is not a number (``unavailable``) adds nothing and keeps the points; removal forgets them.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime

from .types import EntityState

__all__ = ["HISTORY_SIZE", "EntityStore", "numeric_value"]

HISTORY_SIZE = 120

# A plain decimal number, as HA writes sensor states. Not Python's float() syntax: that also
# takes "nan", "inf" and "1_000". The page uses the same pattern, so both keep the same points.
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def numeric_value(state: str) -> float | None:
    """The state as a finite number, or None (``"on"``, ``"unavailable"``, ``"nan"``...)."""
    if not _NUMBER.fullmatch(state):
        return None
    value = float(state)
    return value if math.isfinite(value) else None


def _epoch(iso: str) -> float:
    try:
        return round(datetime.fromisoformat(iso).timestamp(), 3)
    except ValueError:
        return round(time.time(), 3)


class EntityStore:
    def __init__(self, *, history_size: int = HISTORY_SIZE) -> None:
        self.states: dict[str, EntityState] = {}
        self.history: dict[str, deque[tuple[float, float]]] = {}
        self.history_size = history_size

    def __len__(self) -> int:
        return len(self.states)

    def apply_snapshot(self, states: Mapping[str, EntityState]) -> tuple[list[EntityState], list[str]]:
        """Replace everything. Returns (new or changed states, removed entity ids)."""
        removed = [entity_id for entity_id in self.states if entity_id not in states]
        return self.apply_changes(states, removed)

    def apply_changes(
        self, updated: Mapping[str, EntityState], removed: Iterable[str]
    ) -> tuple[list[EntityState], list[str]]:
        """Apply new states and removals. Returns (states that differ from before, ids actually removed)."""
        gone = [entity_id for entity_id in removed if self.states.pop(entity_id, None) is not None]
        for entity_id in gone:
            self.history.pop(entity_id, None)
        changed = []
        for entity_id, state in updated.items():
            if self.states.get(entity_id) != state:
                self.states[entity_id] = state
                changed.append(state)
                self._record(state)
        return changed, gone

    def _record(self, state: EntityState) -> None:
        value = numeric_value(state["state"])
        if value is None or self.history_size <= 0:
            return
        points = self.history.get(state["entity_id"])
        if points is None:
            points = self.history[state["entity_id"]] = deque(maxlen=self.history_size)
        elif points and points[-1][1] == value:
            return
        points.append((_epoch(state["last_updated"]), value))
