"""The current state of every exposed entity, and a short history of the numeric ones. Pure: no I/O.

Applying a snapshot or a batch of changes returns only what really changed, so an upstream
reconnect that brings back identical values sends nothing to clients, and a snapshot that
lacks an entity removes it for everyone.

History: for every entity whose state is a plain number, its recent values as
``(epoch seconds of last_updated, value)``, so a page can draw a full chart at once: at most
``history_size`` points over at most ``history_window`` seconds, downsampled keeping the
shape (series.py). The recorder's past (``merge_history``) goes under what the stream
brought. A point is added only when the number changes (an attribute-only update adds
nothing); a state that is not a number (``unavailable``) adds nothing and keeps the points;
removal forgets them.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from .series import Point, Series
from .types import EntityState

__all__ = ["HISTORY_SIZE", "HISTORY_WINDOW", "EntityStore", "numeric_value"]

HISTORY_SIZE = 120
HISTORY_WINDOW = 24 * 3600.0

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
    def __init__(self, *, history_size: int = HISTORY_SIZE, history_window: float = HISTORY_WINDOW) -> None:
        self.states: dict[str, EntityState] = {}
        self.history: dict[str, Series] = {}
        self.history_size = history_size
        self.history_window = history_window

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

    def merge_history(self, recorded: Mapping[str, Iterable[Point]]) -> list[str]:
        """Merge the recorder's past into the series of exposed entities. Returns those that changed."""
        merged = []
        for entity_id, points in recorded.items():
            if entity_id not in self.states or self.history_size <= 0:
                continue
            series = self.history.get(entity_id)
            if series is None:
                series = self.history[entity_id] = Series(self.history_size, self.history_window)
            before = list(series.points)
            series.merge(points)
            if series.points != before:
                merged.append(entity_id)
        return merged

    def _record(self, state: EntityState) -> None:
        value = numeric_value(state["state"])
        if value is None or self.history_size <= 0:
            return
        series = self.history.get(state["entity_id"])
        if series is None:
            series = self.history[state["entity_id"]] = Series(self.history_size, self.history_window)
        series.append((_epoch(state["last_updated"]), value))
