from __future__ import annotations

from datetime import UTC, datetime

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


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(BASE + seconds, UTC).isoformat()


BASE = 1795428000.0  # 2026-11-23T10:00:00Z


def test_numeric_states_keep_a_bounded_history_that_keeps_its_peaks_and_the_newest_value() -> None:
    store = EntityStore(history_size=8)
    values = [10.0] * 40
    values[13] = 99.0  # a spike an every-n-th-point decimation would lose
    values[27] = -5.0
    for second, value in enumerate(values):
        store.apply_changes({"sensor.t": at("sensor.t", f"{value + second / 1000:g}", iso(second))}, [])
    points = list(store.history["sensor.t"])
    assert len(points) <= 8
    assert points == sorted(points)
    assert points[-1] == (BASE + 39, 10.039)
    assert max(v for _, v in points) == 99.013 and min(v for _, v in points) == -4.973


def test_history_keeps_only_the_window_before_the_newest_point() -> None:
    store = EntityStore(history_size=4, history_window=60.0)
    for second in range(0, 200, 10):
        store.apply_changes({"sensor.t": at("sensor.t", str(second), iso(second))}, [])
    points = list(store.history["sensor.t"])
    assert points[-1] == (BASE + 190, 190.0)
    assert all(t >= BASE + 190 - 60 for t, _ in points)


def test_the_recorders_past_goes_under_the_live_points() -> None:
    store = EntityStore(history_size=100)
    store.apply_snapshot({"sensor.t": at("sensor.t", "7", iso(3600))})
    store.apply_changes({"sensor.t": at("sensor.t", "8", iso(3601))}, [])
    past = [(BASE + m * 60, float(m)) for m in range(60)]  # the hour before, from HA's recorder
    assert store.merge_history({"sensor.t": past, "sensor.not_exposed": past}) == ["sensor.t"]
    points = list(store.history["sensor.t"])
    assert points[:60] == past and points[-1] == (BASE + 3601, 8.0)
    assert "sensor.not_exposed" not in store.history


def test_history_skips_attribute_only_updates_and_non_numbers() -> None:
    store = EntityStore()
    store.apply_changes({"sensor.t": at("sensor.t", "20", "2026-11-23T10:00:00+00:00")}, [])
    store.apply_changes({"sensor.t": at("sensor.t", "20", "2026-11-23T10:00:01+00:00", unit="C")}, [])
    for value in ("unavailable", "nan", "inf", "1_000", "0x10", " 5", ""):
        store.apply_changes({"sensor.t": at("sensor.t", value, "2026-11-23T10:00:02+00:00")}, [])
    store.apply_changes({"sensor.t": at("sensor.t", "21", "2026-11-23T10:00:03.250000+00:00")}, [])
    assert [v for _, v in store.history["sensor.t"]] == [20.0, 21.0]
    assert store.history["sensor.t"].points[-1][0] == 1795428003.25
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
