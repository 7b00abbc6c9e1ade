"""The current state of every exposed entity. Pure: no I/O, easy to test.

Applying a snapshot or a batch of changes returns only what really changed, so an upstream
reconnect that brings back identical values sends nothing to clients, and a snapshot that
lacks an entity removes it for everyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .types import EntityState

__all__ = ["EntityStore"]


class EntityStore:
    def __init__(self) -> None:
        self.states: dict[str, EntityState] = {}

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
        changed = []
        for entity_id, state in updated.items():
            if self.states.get(entity_id) != state:
                self.states[entity_id] = state
                changed.append(state)
        return changed, gone
