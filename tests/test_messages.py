from __future__ import annotations

from typing import Any

import pytest

from sse_service.ha import messages
from sse_service.ha.demo.states import diff_states
from sse_service.ha.entities import apply_entities_event, expand_state
from sse_service.ha.messages import ProtocolError
from sse_service.types import EntityState

T0 = 1758273123.118204
ISO0 = "2025-09-19T09:12:03.118204+00:00"
CTX0 = "01K5Q7XG0B9Q2H6M1J3R5T7V9W"
USER = "31ddb597e03147118cf8d2f8fbea5553"


def kitchen(**overrides: Any) -> EntityState:
    state: EntityState = {
        "entity_id": "light.kitchen",
        "state": "on",
        "attributes": {"brightness": 180, "friendly_name": "Kitchen"},
        "last_changed": ISO0,
        "last_updated": ISO0,
        "context": {"id": CTX0, "parent_id": None, "user_id": None},
    }
    state.update(overrides)  # type: ignore[typeddict-item]
    return state


def test_a_frame_is_one_object_or_a_coalesced_array() -> None:
    assert messages.parse_frame('{"type":"pong","id":3}') == [{"type": "pong", "id": 3}]
    frame = '[{"id":3,"type":"event","event":{}},{"type":"result","id":4,"success":true}]'
    assert [m["id"] for m in messages.parse_frame(frame)] == [3, 4]


@pytest.mark.parametrize("frame", ["not json", "[1, 2]", '{"id": 1}', '"text"', b"\xff\xfe"])
def test_a_malformed_frame_is_a_protocol_error(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        messages.parse_frame(frame)


def test_auth_message_has_no_id() -> None:
    # HA refuses extra keys in the auth message, an id included.
    assert messages.auth("tok") == {"type": "auth", "access_token": "tok"}


def test_subscribe_entities_narrows_with_entity_globs_or_exact_ids() -> None:
    assert messages.subscribe_entities(2) == {"id": 2, "type": "subscribe_entities"}
    assert messages.subscribe_entities(2, ["sensor.*"]) == {
        "id": 2,
        "type": "subscribe_entities",
        "include": {"entity_globs": ["sensor.*"]},
    }
    assert messages.subscribe_entities(2, None, ["switch.charger"]) == {
        "id": 2,
        "type": "subscribe_entities",
        "entity_ids": ["switch.charger"],
    }


@pytest.mark.parametrize(
    ("version", "at_least_2024_9"),
    [("2024.9.0", True), ("2025.4.4", True), ("2024.3.3", False), ("2024.10.0.dev20240901", True), ("2023.12", False)],
)
def test_versions_compare_by_year_then_month(version: str, at_least_2024_9: bool) -> None:
    assert messages.version_at_least(version, (2024, 9)) is at_least_2024_9


@pytest.mark.parametrize("version", [None, "", "dev", "2024"])
def test_an_unknown_version_is_taken_as_old(version: str | None) -> None:
    assert not messages.version_at_least(version, (2024, 9))


def test_a_context_diff_merges_into_the_stored_context_and_a_bare_id_replaces_only_the_id() -> None:
    current = {"light.kitchen": kitchen()}
    by_user = {"c": {"light.kitchen": {"+": {"s": "off", "lc": T0 + 1, "c": {"id": "01KB", "user_id": USER}}}}}
    after = apply_entities_event(current, by_user).updated["light.kitchen"]
    assert after["context"] == {"id": "01KB", "parent_id": None, "user_id": USER}
    by_id = {"c": {"light.kitchen": {"+": {"lu": T0 + 2, "c": "01KC"}}}}
    again = apply_entities_event({"light.kitchen": after}, by_id).updated["light.kitchen"]
    assert again["context"] == {"id": "01KC", "parent_id": None, "user_id": USER}


def test_last_reported_is_last_updated_at_each_change_where_ha_has_the_field() -> None:
    add = {"s": "on", "a": {}, "c": CTX0, "lc": T0}
    state = apply_entities_event({}, {"a": {"light.kitchen": add}}, reported=True).updated["light.kitchen"]
    assert list(state) == [
        "entity_id", "state", "attributes", "last_changed", "last_reported", "last_updated", "context",
    ]  # fmt: skip
    assert state["last_reported"] == state["last_updated"] == ISO0
    diff = {"c": {"light.kitchen": {"+": {"lu": T0 + 60, "c": "01KD", "a": {"brightness": 3}}}}}
    later = apply_entities_event({"light.kitchen": state}, diff, reported=True).updated["light.kitchen"]
    assert later["last_reported"] == later["last_updated"] == "2025-09-19T09:13:03.118204+00:00"
    assert "last_reported" not in apply_entities_event({}, {"a": {"light.kitchen": add}}).updated["light.kitchen"]


def test_call_service_puts_targets_in_target() -> None:
    assert messages.call_service(5, "switch", "turn_on", None, {"entity_id": ["switch.charger"]}) == {
        "id": 5,
        "type": "call_service",
        "domain": "switch",
        "service": "turn_on",
        "target": {"entity_id": ["switch.charger"]},
    }


def test_expand_state_fills_last_updated_from_last_changed() -> None:
    compressed = {"s": "on", "a": {"brightness": 180, "friendly_name": "Kitchen"}, "c": CTX0, "lc": T0}
    assert expand_state("light.kitchen", compressed) == kitchen()
    later = expand_state("light.kitchen", {"s": "on", "a": {}, "c": "01K", "lc": T0, "lu": T0 + 60})
    assert later["last_updated"] == "2025-09-19T09:13:03.118204+00:00"


def test_add_event_builds_full_states() -> None:
    add = {"s": "on", "a": kitchen()["attributes"], "c": CTX0, "lc": T0}
    changes = apply_entities_event({}, {"a": {"light.kitchen": add}})
    assert changes.updated == {"light.kitchen": kitchen()}
    assert changes.removed == []


def test_change_event_patches_state_attributes_and_times() -> None:
    current = {"light.kitchen": kitchen()}
    event = {
        "c": {
            "light.kitchen": {
                "+": {"s": "off", "lc": T0 + 1, "c": "01KNEW", "a": {"brightness": None, "color_mode": None}},
                "-": {"a": ["friendly_name"]},
            }
        }
    }
    changes = apply_entities_event(current, event)
    new = changes.updated["light.kitchen"]
    assert new["state"] == "off"
    assert new["last_changed"] == new["last_updated"] == "2025-09-19T09:12:04.118204+00:00"
    # null is a value, not a deletion; deletions come only through "-"
    assert new["attributes"] == {"brightness": None, "color_mode": None}
    assert current["light.kitchen"] == kitchen(), "the input must not be modified"


def test_change_with_only_last_updated_keeps_last_changed() -> None:
    changes = apply_entities_event({"light.kitchen": kitchen()}, {"c": {"light.kitchen": {"+": {"lu": T0 + 5}}}})
    new = changes.updated["light.kitchen"]
    assert new["last_changed"] == ISO0
    assert new["last_updated"] == "2025-09-19T09:12:08.118204+00:00"


def test_remove_event_reports_only_known_entities() -> None:
    changes = apply_entities_event({"light.kitchen": kitchen()}, {"r": ["light.kitchen", "light.never_seen"]})
    assert changes.removed == ["light.kitchen"]
    assert changes.updated == {}


def test_diff_for_an_unknown_entity_is_skipped_not_fatal() -> None:
    changes = apply_entities_event({}, {"c": {"sensor.ghost": {"+": {"s": "1"}}}})
    assert changes.unknown == ["sensor.ghost"]
    assert changes.updated == {}


def test_one_event_may_carry_adds_removes_and_diffs_for_many_entities() -> None:
    current = {"light.kitchen": kitchen(), "sensor.old": kitchen(entity_id="sensor.old")}
    event = {
        "a": {"sensor.new": {"s": "1", "a": {}, "lc": T0}},
        "r": ["sensor.old"],
        "c": {"light.kitchen": {"+": {"s": "off", "lc": T0 + 2}}, "sensor.new": {"+": {"s": "2", "lu": T0 + 3}}},
    }
    changes = apply_entities_event(current, event)
    assert changes.removed == ["sensor.old"]
    assert changes.updated["light.kitchen"]["state"] == "off"
    # the diff applies on top of the add from the same event
    assert changes.updated["sensor.new"]["state"] == "2"


@pytest.mark.parametrize(
    "event",
    [
        {"a": []},
        {"a": {"x.y": "not an object"}},
        {"a": {"x.y": {"s": 1, "lc": T0}}},
        {"a": {"x.y": {"s": "1", "lc": "yesterday"}}},
        {"r": "x.y"},
        {"c": {"light.kitchen": {"+": {"a": ["x"]}}}},
    ],
)
def test_malformed_entity_events_are_protocol_errors(event: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        apply_entities_event({"light.kitchen": kitchen()}, event)


@pytest.mark.parametrize(
    "new",
    [
        kitchen(
            state="off",
            last_changed="2025-09-19T09:20:00.000001+00:00",
            last_updated="2025-09-19T09:20:00.000001+00:00",
        ),
        kitchen(attributes={"brightness": 90, "friendly_name": "Kitchen"}, last_updated="2025-09-19T09:20:00+00:00"),
        kitchen(attributes={"brightness": 90}, last_updated="2025-09-19T09:20:00.500000+00:00"),
    ],
)
def test_diff_then_apply_gives_back_the_new_state(new: EntityState) -> None:
    old = kitchen()
    changes = apply_entities_event({"light.kitchen": old}, {"c": {"light.kitchen": diff_states(old, new, "01K")}})
    assert changes.updated["light.kitchen"] == new
