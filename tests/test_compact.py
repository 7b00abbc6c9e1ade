"""The compact stream (``?format=compact``): fewer bytes, the same view.

The property at the end drives a hub with random changes, removals, resets, resumes, slow-client
snapshots and filters, with a full and a compact subscriber side by side, and applies what each
received with the page's own code (web/stream.js, in Node): both views, and the hub's own
states, must be the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_service.changelog import Entry, MemoryLog, View
from sse_service.compact import change_data, state_json, timestamp, whole_data
from sse_service.filters import EntityPattern
from sse_service.ha.demo import DemoHomeAssistant
from sse_service.hub import Hub
from sse_service.times import iso_from_timestamp
from sse_service.types import EntityState, UpstreamStatus

from .helpers import live_server, open_stream, settings_for

VIEWS_JS = Path(__file__).parent / "js" / "views.js"


def ha_state(entity_id: str, value: str, seconds: float, **attributes: Any) -> EntityState:
    iso = iso_from_timestamp(seconds)
    return {
        "entity_id": entity_id,
        "state": value,
        "attributes": attributes,
        "last_changed": iso,
        "last_reported": iso,
        "last_updated": iso,
        "context": {"id": f"01JF{int(seconds * 1e6):022d}", "parent_id": None, "user_id": None},
    }


# --- the encoding, by example -------------------------------------------------------------


def test_an_input_number_change_is_its_state_time_and_context_only() -> None:
    before = ha_state("input_number.charge_limit", "16.0", 1796000000.5, min=6, max=32, step=1, mode="slider")
    after = ha_state("input_number.charge_limit", "20.0", 1796000009.123456, min=6, max=32, step=1, mode="slider")
    context_id = after["context"]["id"]
    assert json.loads(change_data(before, after) or "") == {
        "e": "input_number.charge_limit",
        "s": "20.0",
        "lc": 1796000009.123456,
        "c": context_id,
    }


def test_attributes_that_change_type_or_go_away_are_said() -> None:
    before = ha_state("light.desk", "on", 1796000000, brightness=1, effect="none", hs_color=[30, 1])
    after = ha_state("light.desk", "on", 1796000000, brightness=True, hs_color=[30, 1.0])
    after["context"] = before["context"]
    change = json.loads(change_data(before, after) or "")
    # 1 == True == 1.0 in Python; not on the wire.
    assert change == {"e": "light.desk", "a": {"brightness": True, "hs_color": [30, 1.0]}, "-": ["effect"]}


def test_a_context_with_a_user_is_sent_as_the_keys_that_changed() -> None:
    before = ha_state("switch.charger", "off", 1796000000)
    after = ha_state("switch.charger", "on", 1796000001)
    after["context"] = {"id": "01JFNEW", "parent_id": None, "user_id": "abc"}
    assert json.loads(change_data(before, after) or "")["c"] == {"id": "01JFNEW", "user_id": "abc"}
    again = dict(after, context={"id": "01JFNEWER", "parent_id": None, "user_id": "abc"})
    assert json.loads(change_data(after, again) or "")["c"] == "01JFNEWER"  # type: ignore[arg-type]


def test_a_whole_state_leaves_out_what_equals_its_neighbour() -> None:
    state = ha_state("sensor.power", "1210", 1796000000.25, unit_of_measurement="W")
    assert whole_data(state) == {
        "s": "1210",
        "a": {"unit_of_measurement": "W"},
        "c": state["context"]["id"],
        "lc": 1796000000.25,
    }
    old_ha = {k: v for k, v in state.items() if k != "last_reported"}
    assert whole_data(old_ha) == {**whole_data(state), "lr": None}  # type: ignore[arg-type]


def test_a_state_of_another_shape_goes_whole_in_the_full_form() -> None:
    odd: Any = {"entity_id": "sensor.odd", "state": "1", "attributes": {}, "last_changed": "x", "last_updated": "x"}
    assert json.loads(state_json(odd)) == odd
    assert change_data(ha_state("sensor.odd", "0", 1796000000), odd) is None


@pytest.mark.parametrize(
    "iso",
    [
        "2026-12-07T00:59:56.123456+00:00",
        "2026-12-07T00:59:56+00:00",
        "1970-01-01T00:00:00.000001+00:00",
        "2026-12-07T00:59:56.999999+00:00",
    ],
)
def test_a_timestamp_is_a_number_when_the_page_gets_the_same_text_back(iso: str, views: Views) -> None:
    number = timestamp(iso)
    assert isinstance(number, float)
    assert views.iso([number]) == [iso]


@pytest.mark.parametrize("iso", ["2026-12-07T00:59:56Z", "2026-12-07T01:59:56+01:00", "yesterday", ""])
def test_a_timestamp_in_another_form_stays_text(iso: str) -> None:
    assert timestamp(iso) == iso


@given(st.integers(0, 253402300799 * 1_000_000 - 1))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_microsecond_the_bridge_sends_as_a_number_comes_back_as_its_text(views: Views, micros: int) -> None:
    iso = iso_from_timestamp(micros / 1e6)
    number = timestamp(iso)
    if isinstance(number, float):
        assert views.iso([number]) == [iso]


# --- the stream, end to end with the page's code -------------------------------------------


class Views:
    """web/stream.js in Node: applies streams of events as the page does."""

    def __init__(self, node: str) -> None:
        self._process = subprocess.Popen(
            [node, str(VIEWS_JS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def ask(self, request: Mapping[str, Any]) -> dict[str, Any]:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps(request) + "\n")
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def iso(self, numbers: list[float]) -> list[str]:
        return list(self.ask({"iso": numbers})["iso"])

    def close(self) -> None:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.close()
        self._process.wait(timeout=10)
        self._process.stdout.close()


@pytest.fixture(scope="module")
def views() -> Iterator[Views]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is missing: the page's reducer cannot be run")
        pytest.skip("no node here: the page's reducer cannot be run")
    running = Views(node)
    yield running
    running.close()


class Client:
    """A subscriber that keeps its events as the page's EventSource would see them, and can fall
    behind (its writes dropped, then a snapshot: what a slow client gets) or leave and resume."""

    def __init__(self, hub: Hub, pattern: EntityPattern | None, compact: bool) -> None:
        self.hub = hub
        self.filter = pattern
        self.compact = compact
        self.last_tick = 0
        self.received = b""
        self.dropping = False
        self.connected = False

    def write(self, data: bytes) -> None:
        if self.connected and not self.dropping:
            self.received += data

    def close(self, final: bytes) -> None:
        pass

    def connect(self) -> None:
        self.connected = True
        self.hub.subscribe(self, self.last_id())

    def leave(self) -> None:
        self.hub.unsubscribe(self)
        self.connected = False

    def catch_up(self) -> None:
        """What a stream does when its overflowing outbox drains: a fresh snapshot."""
        self.hub.flush()
        self.dropping = False
        self.received += self.hub.snapshot_frame(self.filter, compact=self.compact)

    def events(self) -> list[tuple[str | None, str, str]]:
        """(id, name, data): an event with no name is a ``message``."""
        text = self.received.decode().replace("\r\n", "\n")
        out = []
        for block in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            if "data" in fields:
                out.append((fields.get("id"), fields.get("event", "message"), fields["data"]))
        return out

    def last_id(self) -> str | None:
        ids = [event_id for event_id, _, _ in self.events() if event_id]
        return ids[-1] if ids else None


ENTITIES = ["sensor.power", "sensor.energy", "light.desk", "switch.charger"]
values = st.one_of(
    st.integers(-5, 5),
    st.booleans(),
    st.none(),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e-7]),
    st.text(max_size=3),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 2), max_size=2),
)
attributes = st.dictionaries(st.sampled_from(["unit", "brightness", "hs_color", "effect", "friendly_name"]), values)
times = st.one_of(
    st.floats(1.6e9, 2.0e9).map(iso_from_timestamp),
    st.sampled_from(["2026-11-23T10:00:00Z", "not a time"]),
)
contexts = st.one_of(
    st.builds(lambda i: {"id": i, "parent_id": None, "user_id": None}, st.sampled_from(["c1", "c2", "c3"])),
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(["c1", "c4"]),
            "parent_id": st.sampled_from([None, "p"]),
            "user_id": st.sampled_from([None, "u"]),
        }
    ),
    st.just({"id": "c5"}),
)


@st.composite
def states(draw: st.DrawFn, entity_id: str) -> EntityState:
    changed, updated = draw(times), draw(times)
    if draw(st.booleans()):
        updated = changed
    state: dict[str, Any] = {
        "entity_id": entity_id,
        "state": draw(st.sampled_from(["1", "2", "on", "off", "unavailable"])),
        "attributes": draw(attributes),
        "last_changed": changed,
        "last_reported": draw(st.one_of(st.just(updated), times)),
        "last_updated": updated,
        "context": draw(contexts),
    }
    shape = draw(st.sampled_from(["ha", "ha", "ha", "ha", "before 2024.4", "no context"]))
    if shape == "before 2024.4":
        del state["last_reported"]
    elif shape == "no context":
        del state["context"]
    return state  # type: ignore[return-value]


entity_ids = st.sampled_from(ENTITIES)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("change"), entity_ids.flatmap(lambda e: st.lists(states(e), min_size=1, max_size=2))),
        st.tuples(st.just("remove"), entity_ids),
        st.tuples(st.just("reset"), st.lists(entity_ids.flatmap(states), max_size=4)),
        st.tuples(st.just("leave"), st.integers(0, 1)),
        st.tuples(st.just("resume"), st.integers(0, 1)),
        st.tuples(st.just("fall behind"), st.integers(0, 1)),
        st.tuples(st.just("catch up"), st.integers(0, 1)),
    ),
    max_size=30,
)


@given(first=st.lists(entity_ids.flatmap(states), max_size=4), steps=steps)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_client_of_the_compact_stream_holds_exactly_the_view_of_the_full_one(
    views: Views, first: list[EntityState], steps: list[tuple[str, Any]]
) -> None:
    hub = Hub(replay_size=6)
    log = MemoryLog(hub.epoch, hub.apply)
    log.upstream_snapshot({s["entity_id"]: s for s in first})
    sensors = EntityPattern(["sensor.*"])
    pairs = [(Client(hub, p, False), Client(hub, p, True)) for p in (None, sensors)]
    clients = [c for pair in pairs for c in pair]
    for client in clients:
        client.connect()

    for step, arg in steps:
        if step == "change":
            for state in arg:
                log.upstream_changes({state["entity_id"]: state}, [])
        elif step == "remove":
            log.upstream_changes({}, [arg])
        elif step == "reset":  # a cluster member starting over from the shared log's view
            hub.reset(View(UpstreamStatus.CONNECTED, "connected", states={s["entity_id"]: s for s in arg}, ready=True))
            log = MemoryLog(hub.epoch, hub.apply)  # the log numbering on from the view
            log.seq = hub.seq
            log._states.update(hub.store.states)
        else:
            for client in pairs[arg]:  # both formats alike: their ids must agree
                if step == "leave" and client.connected:
                    client.leave()
                elif step == "resume" and not client.connected:
                    client.connect()
                elif step == "fall behind" and client.connected:
                    client.dropping = True
                elif step == "catch up" and client.dropping:
                    client.catch_up()
    for client in clients:
        if not client.connected:
            client.connect()
        if client.dropping:
            client.catch_up()

    for (full, compact), pattern in zip(pairs, (None, sensors), strict=True):
        truth = {e: s for e, s in hub.store.states.items() if pattern is None or pattern(e)}
        answer = views.ask(
            {
                "streams": {
                    "full": [(name, data) for _, name, data in full.events()],
                    "compact": [(name, data) for _, name, data in compact.events()],
                },
                "truth": json.dumps(truth),
            }
        )
        assert answer["compact"]["outOfStep"] == 0
        assert answer["full"]["entities"] == answer["truth"]
        assert answer["compact"]["entities"] == answer["truth"]
        assert [i for i, _, _ in full.events()] == [i for i, _, _ in compact.events()]  # the same ids


def test_a_replay_ring_filled_from_a_shared_log_gives_whole_states(views: Views) -> None:
    """A client that moves from another instance resumes from that instance's ids, from frames
    this hub made from the log's entries: those hold no previous state, so they go whole."""
    a = ha_state("sensor.power", "1", 1796000000)
    b = ha_state("sensor.power", "2", 1796000001)
    past = [
        Entry("e1", 1, 1, "changes", {"sensor.power": a}),
        Entry("e1", 2, 1, "changes", {"sensor.power": b}),
    ]
    hub = Hub()
    hub.reset(View(UpstreamStatus.CONNECTED, "connected", states={"sensor.power": b}, position=("e1", 2), past=past))
    client = Client(hub, None, True)
    client.received = b"id:e1-1\ndata:{}\n\n"  # what it saw before it moved (not applied below)
    client.connect()
    events = client.events()[1:]
    assert [(i, name) for i, name, _ in events] == [("e1-2", "state")]
    answer = views.ask({"streams": {"moved": [("snapshot", snapshot_of(a)), *[(n, d) for _, n, d in events]]}})
    assert answer["moved"]["outOfStep"] == 0
    assert json.loads(answer["moved"]["entities"]) == {"sensor.power": b}


def snapshot_of(state: EntityState) -> str:
    return json.dumps(
        {"status": "connected", "reason": "", "format": "compact", "entities": {state["entity_id"]: whole_data(state)}}
    )


async def test_a_live_compact_stream_is_smaller_resumes_and_refuses_an_unknown_format(views: Views) -> None:
    async with DemoHomeAssistant() as ha, live_server(settings_for(ha)) as live:
        ha.set_state("sensor.solar_power", "1210", {"unit_of_measurement": "W", "friendly_name": "Solar power"})
        async with httpx.AsyncClient() as client:
            refused = await client.get(live.url + "/events?format=xml")
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_query"
            assert "format" in refused.json()["error"]["message"]
        async with open_stream(live.url + "/events") as full, open_stream(live.url + "/events?format=compact") as lean:
            assert (await full.next()).event == "snapshot"
            assert (await lean.next()).event == "snapshot"
            ha.set_state("sensor.solar_power", "1234.5", {"unit_of_measurement": "W", "friendly_name": "Solar power"})
            state, change = await full.next(), await lean.next()
            assert (state.event, change.event) == ("state", "message") and state.id == change.id
            assert len(change.data) * 3 < len(state.data)
            last = change.id
        ha.set_state("sensor.solar_power", "1300", {"unit_of_measurement": "W", "friendly_name": "Solar power"})
        async with open_stream(f"{live.url}/events?format=compact&last_event_id={last}") as resumed:
            replayed = await resumed.next()
            assert replayed.event == "message" and replayed.json() == {
                "e": "sensor.solar_power",
                "s": "1300",
                **{k: v for k, v in replayed.json().items() if k in ("lc", "c")},
            }
            assert live.service.hub.compact_count == 1
