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


def at(entity_id: str, value: str, when: str, **attributes: object) -> EntityState:
    attrs = dict(attributes)
    return {"entity_id": entity_id, "state": value, "attributes": attrs, "last_changed": when, "last_updated": when}


def test_numeric_states_keep_a_bounded_history_of_changes() -> None:
    store = EntityStore(history_size=3)
    for second, value in enumerate(["1", "2", "2", "3.5", "-4", "5e2"]):
        store.apply_changes({"sensor.t": at("sensor.t", value, f"2026-11-23T10:00:0{second}+00:00")}, [])
    base = 1795428000.0  # 2026-11-23T10:00:00Z
    assert list(store.history["sensor.t"]) == [(base + 3, 3.5), (base + 4, -4.0), (base + 5, 500.0)]


def test_history_skips_attribute_only_updates_and_non_numbers() -> None:
    store = EntityStore()
    store.apply_changes({"sensor.t": at("sensor.t", "20", "2026-11-23T10:00:00+00:00")}, [])
    store.apply_changes({"sensor.t": at("sensor.t", "20", "2026-11-23T10:00:01+00:00", unit="C")}, [])
    for value in ("unavailable", "nan", "inf", "1_000", "0x10", " 5", ""):
        store.apply_changes({"sensor.t": at("sensor.t", value, "2026-11-23T10:00:02+00:00")}, [])
    store.apply_changes({"sensor.t": at("sensor.t", "21", "2026-11-23T10:00:03.250000+00:00")}, [])
    assert [v for _, v in store.history["sensor.t"]] == [20.0, 21.0]
    assert store.history["sensor.t"][-1][0] == 1795428003.25
    store.apply_changes({"switch.s": at("switch.s", "on", "2026-11-23T10:00:00+00:00")}, [])
    assert "switch.s" not in store.history


def test_history_is_forgotten_with_the_entity() -> None:
    store = EntityStore()
    store.apply_snapshot({"sensor.t": at("sensor.t", "1", "2026-11-23T10:00:00+00:00")})
    store.apply_snapshot({})
    assert store.history == {}
    store.apply_snapshot({"sensor.t": at("sensor.t", "7", "2026-11-23T10:00:09+00:00")})
    assert [v for _, v in store.history["sensor.t"]] == [7.0]


def test_history_can_be_switched_off() -> None:
    store = EntityStore(history_size=0)
    store.apply_changes({"sensor.t": at("sensor.t", "1", "2026-11-23T10:00:00+00:00")}, [])
    assert store.history == {}
