from __future__ import annotations

from typing import Any

import pytest

from sse_service.ha import messages
from sse_service.ha.messages import ProtocolError, apply_entities_event, diff_states, expand_state
from sse_service.types import EntityState

T0 = 1758273123.118204
ISO0 = "2025-09-19T09:12:03.118204+00:00"


def kitchen(**overrides: Any) -> EntityState:
    state: EntityState = {
        "entity_id": "light.kitchen",
        "state": "on",
        "attributes": {"brightness": 180, "friendly_name": "Kitchen"},
        "last_changed": ISO0,
        "last_updated": ISO0,
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


def test_subscribe_entities_narrows_with_entity_globs() -> None:
    assert messages.subscribe_entities(2) == {"id": 2, "type": "subscribe_entities"}
    assert messages.subscribe_entities(2, ["sensor.*"]) == {
        "id": 2,
        "type": "subscribe_entities",
        "include": {"entity_globs": ["sensor.*"]},
    }


def test_call_service_puts_targets_in_target() -> None:
    assert messages.call_service(5, "switch", "turn_on", None, {"entity_id": ["switch.charger"]}) == {
        "id": 5,
        "type": "call_service",
        "domain": "switch",
        "service": "turn_on",
        "target": {"entity_id": ["switch.charger"]},
    }


def test_expand_state_fills_last_updated_from_last_changed() -> None:
    state = expand_state("light.kitchen", {"s": "on", "a": {"brightness": 180, "friendly_name": "Kitchen"}, "lc": T0})
    assert state == kitchen()
    later = expand_state("light.kitchen", {"s": "on", "a": {}, "c": "01K", "lc": T0, "lu": T0 + 60})
    assert later["last_updated"] == "2025-09-19T09:13:03.118204+00:00"


def test_add_event_builds_full_states() -> None:
    changes = apply_entities_event({}, {"a": {"light.kitchen": {"s": "on", "a": kitchen()["attributes"], "lc": T0}}})
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
