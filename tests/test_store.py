from __future__ import annotations

from sse_service.store import EntityStore
from sse_service.types import EntityState


def state(entity_id: str, value: str) -> EntityState:
    t = "2026-11-23T10:00:00+00:00"
    return {"entity_id": entity_id, "state": value, "attributes": {}, "last_changed": t, "last_updated": t}


def test_a_snapshot_is_authoritative() -> None:
    store = EntityStore()
    store.apply_snapshot({"a.one": state("a.one", "1"), "a.two": state("a.two", "2"), "a.three": state("a.three", "3")})
    changed, removed = store.apply_snapshot({"a.one": state("a.one", "1"), "a.two": state("a.two", "22")})
    assert [s["entity_id"] for s in changed] == ["a.two"], "unchanged entities are not reported again"
    assert removed == ["a.three"]
    assert set(store.states) == {"a.one", "a.two"}


def test_changes_report_only_what_differs() -> None:
    store = EntityStore()
    store.apply_changes({"a.one": state("a.one", "1")}, [])
    changed, removed = store.apply_changes({"a.one": state("a.one", "1")}, ["a.unknown"])
    assert (changed, removed) == ([], [])
    changed, removed = store.apply_changes({}, ["a.one"])
    assert (changed, removed) == ([], ["a.one"])
    assert len(store) == 0
