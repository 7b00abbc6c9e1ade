"""The hub on its own, with subscribers that record what they are sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from sse_service import sse
from sse_service.changelog import Entry, MemoryLog, View
from sse_service.filters import EntityPattern
from sse_service.hub import HEARTBEAT, Hub
from sse_service.types import EntityState, UpstreamStatus


class Recorder:
    def __init__(self, pattern: EntityPattern | None = None, *, compact: bool = False) -> None:
        self.filter = pattern
        self.compact = compact
        self.last_tick = 0
        self.writes: list[bytes] = []
        self.closed_with: bytes | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self, final: bytes) -> None:
        self.closed_with = final

    def events(self) -> list[tuple[str | None, str, dict[str, Any]]]:
        out = []
        for frame in b"".join(self.writes).decode().split("\r\n\r\n"):
            fields = dict(
                line.split(": ", 1) for line in frame.split("\r\n") if ": " in line and not line.startswith(":")
            )
            if "data" in fields:
                out.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
        return out


def state(entity_id: str, value: str) -> EntityState:
    t = "2026-11-23T10:00:00+00:00"
    return {"entity_id": entity_id, "state": value, "attributes": {}, "last_changed": t, "last_updated": t}


class LoggedHub(Hub):
    """A hub behind a log in memory, as a single instance runs it: the upstream writes to the log."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.log = MemoryLog(self.epoch, self.apply)

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None:
        self.log.upstream_snapshot(states)

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None:
        self.log.upstream_changes(updated, removed)

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None:
        self.log.upstream_status(status, reason)

    def upstream_history(self, recorded: Mapping[str, Sequence[tuple[float, float]]]) -> None:
        self.log.upstream_history(recorded)


def changes(seq: int, *states: EntityState, epoch: str = "log") -> Entry:
    """An entry of a shared log: these states changed, making frames ``seq - len + 1 .. seq``."""
    return Entry(epoch, seq, len(states), "changes", {s["entity_id"]: s for s in states})


def following(epoch: str, seq: int, *past: Entry, **states: EntityState) -> Hub:
    """A hub that (re)started from a shared log at ``<epoch>-<seq>``."""
    hub = Hub(epoch="mine")
    view = View(UpstreamStatus.CONNECTED, "connected", states=states or None, position=(epoch, seq), past=past)
    hub.reset(view)
    return hub


def seeded_hub(**kw: int) -> LoggedHub:
    hub = LoggedHub(epoch="test", **kw)
    hub.upstream_snapshot({e: state(e, "0") for e in ("sensor.a", "sensor.b", "switch.c")})
    hub.upstream_status(UpstreamStatus.CONNECTED, "connected")
    return hub


def test_a_new_subscriber_gets_the_snapshot_then_changes_with_increasing_ids() -> None:
    hub = seeded_hub()
    sub = Recorder()
    assert hub.subscribe(sub) == "snapshot"
    hub.upstream_changes({"sensor.a": state("sensor.a", "1")}, [])
    hub.upstream_changes({"sensor.b": state("sensor.b", "2")}, ["switch.c"])
    events = sub.events()
    assert [name for _, name, _ in events] == ["snapshot", "state", "state", "remove"]
    snapshot = events[0][2]
    assert snapshot["status"] == "connected"
    assert set(snapshot["entities"]) == {"sensor.a", "sensor.b", "switch.c"}
    seqs = [int(str(i).split("-")[1]) for i, _, _ in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert events[3][2] == {"entity_id": "switch.c"}


def test_several_changes_at_once_reach_each_subscriber_in_one_write() -> None:
    hub = seeded_hub()
    everything, only_a = Recorder(), Recorder(EntityPattern(["sensor.a"]))
    hub.subscribe(everything)
    hub.subscribe(only_a)
    everything.writes.clear()
    only_a.writes.clear()
    hub.upstream_changes({"sensor.a": state("sensor.a", "1"), "sensor.b": state("sensor.b", "1")}, [])
    assert len(everything.writes) == 1 and len(everything.events()) == 2
    assert len(only_a.writes) == 1 and [d["entity_id"] for _, _, d in only_a.events()] == ["sensor.a"]


def test_resume_inside_the_ring_replays_exactly_what_was_missed() -> None:
    hub = seeded_hub()
    first = Recorder()
    hub.subscribe(first)
    last_seen = first.events()[-1][0]
    hub.upstream_changes({"sensor.a": state("sensor.a", "1")}, [])
    hub.upstream_changes({"sensor.b": state("sensor.b", "1")}, [])
    again = Recorder()
    assert hub.subscribe(again, last_seen) == "replay"
    assert [(n, d["entity_id"]) for _, n, d in again.events()] == [("state", "sensor.a"), ("state", "sensor.b")]


def test_resume_when_nothing_was_missed_sends_nothing() -> None:
    hub = seeded_hub()
    sub = Recorder()
    assert hub.subscribe(sub, hub.event_id()) == "replay"
    assert sub.writes == []


def test_resume_outside_the_ring_or_from_another_epoch_gets_a_snapshot() -> None:
    hub = seeded_hub(replay_size=2)
    old_id = hub.event_id()
    for value in "123":
        hub.upstream_changes({"sensor.a": state("sensor.a", value)}, [])
    for last_id in (old_id, "otherepoch-5", "garbage", "test-99999", "test--1"):
        sub = Recorder()
        assert hub.subscribe(sub, last_id) == "snapshot", last_id
        assert sub.events()[0][1] == "snapshot"


def test_replay_respects_the_filter_but_always_includes_status() -> None:
    hub = seeded_hub()
    last = hub.event_id()
    hub.upstream_changes({"sensor.a": state("sensor.a", "1")}, [])
    hub.upstream_status(UpstreamStatus.DISCONNECTED, "gone")
    hub.upstream_changes({"switch.c": state("switch.c", "on")}, [])
    sub = Recorder(EntityPattern(["switch.*"]))
    hub.subscribe(sub, last)
    assert [(n, d.get("entity_id", d.get("status"))) for _, n, d in sub.events()] == [
        ("status", "disconnected"),
        ("state", "switch.c"),
    ]


def test_status_events_and_snapshots_say_why() -> None:
    hub = seeded_hub()
    sub = Recorder()
    hub.subscribe(sub)
    hub.upstream_status(UpstreamStatus.DISCONNECTED, "connection refused")
    (_, name, data) = sub.events()[-1]
    assert name == "status" and data["status"] == "disconnected" and data["reason"] == "connection refused"
    late = Recorder()
    hub.subscribe(late)
    snapshot = late.events()[0][2]
    assert (snapshot["status"], snapshot["reason"]) == ("disconnected", "connection refused")


def test_a_ring_filled_from_a_shared_log_replays_its_frames() -> None:
    past = [changes(11, state("sensor.a", "4")), changes(12, state("sensor.a", "5"))]
    hub = following("log", 12, *past, **{"sensor.a": state("sensor.a", "5")})
    sub = Recorder()
    assert hub.subscribe(sub, "log-10") == "replay"
    assert [(i, d["state"]) for i, _, d in sub.events()] == [("log-11", "4"), ("log-12", "5")]
    assert hub.subscribe(Recorder(), "log-9") == "snapshot", "older than what the ring holds"


@pytest.mark.parametrize(
    "past",
    [
        [changes(10, state("sensor.a", "1")), changes(11, state("sensor.a", "1"))],  # does not end at 12
        [changes(10, state("sensor.a", "1")), changes(12, state("sensor.a", "1"))],  # a gap
        [],
    ],
)
def test_frames_from_a_shared_log_that_do_not_end_here_or_have_a_gap_are_refused(past: list[Entry]) -> None:
    hub = following("log", 12, *past)
    assert hub.subscribe(Recorder(), "log-11") == "snapshot"


async def test_a_hub_behind_its_shared_log_waits_for_an_id_it_has_not_made_yet() -> None:
    hub = following("log", 10, **{"sensor.a": state("sensor.a", "0")})  # another instance may be ahead
    waiting = asyncio.create_task(hub.catch_up("log-12"))
    await asyncio.sleep(0.05)
    assert hub.apply(changes(11, state("sensor.a", "1")))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "log-12 is not made yet"
    assert hub.apply(changes(12, state("sensor.a", "2")))
    await asyncio.wait_for(waiting, 1)
    sub = Recorder()
    assert hub.subscribe(sub, "log-12") == "replay" and sub.writes == []


async def test_an_id_ahead_of_a_hub_of_its_own_or_never_made_gets_no_wait_or_a_bounded_one() -> None:
    alone = seeded_hub()
    started = time.monotonic()
    await alone.catch_up(f"test-{alone.seq + 5}")  # not fed from a log: not one of ours
    await alone.catch_up("garbage")
    assert time.monotonic() - started < 0.05
    follower = following("log", 3)
    await follower.catch_up("log-999", within=0.1)  # forged: a snapshot after the wait
    assert follower.subscribe(Recorder(), "log-999") == "snapshot"


def test_filtered_subscribers_see_only_their_entities_and_new_matching_ones() -> None:
    hub = seeded_hub()
    sensors = Recorder(EntityPattern.parse(domains="sensor"))
    charger = Recorder(EntityPattern.parse(entity_ids="switch.c"))
    hub.subscribe(sensors)
    hub.subscribe(charger)
    assert set(sensors.events()[0][2]["entities"]) == {"sensor.a", "sensor.b"}
    hub.upstream_changes({"switch.c": state("switch.c", "on"), "sensor.new": state("sensor.new", "1")}, [])
    hub.upstream_status(UpstreamStatus.DISCONNECTED, "gone")
    assert [d.get("entity_id", d.get("status")) for _, _, d in sensors.events()[1:]] == ["sensor.new", "disconnected"]
    assert [d.get("entity_id", d.get("status")) for _, _, d in charger.events()[1:]] == ["switch.c", "disconnected"]


def test_unsubscribe_forgets_the_subscriber_everywhere() -> None:
    hub = seeded_hub()
    subs = [Recorder(), Recorder(EntityPattern(["sensor.*"]))]
    for sub in subs:
        hub.subscribe(sub)
        hub.unsubscribe(sub)
        sub.writes.clear()
    hub.upstream_changes({"sensor.a": state("sensor.a", "9")}, [])
    assert all(sub.writes == [] for sub in subs)
    assert hub.client_count == 0


def test_heartbeat_goes_only_to_streams_idle_for_three_ticks() -> None:
    hub = seeded_hub()
    idle, busy = Recorder(), Recorder()
    for sub in (idle, busy):
        hub.subscribe(sub)
        sub.writes.clear()
    for _ in range(3):
        busy.last_tick = hub.tick  # as a real stream does on every write
        hub.heartbeat()
    assert idle.writes == [HEARTBEAT]
    assert busy.writes == []


def test_the_unfiltered_snapshot_is_encoded_once_per_change() -> None:
    hub = seeded_hub()
    assert hub.snapshot_frame() is hub.snapshot_frame()
    hub.upstream_changes({"sensor.a": state("sensor.a", "5")}, [])
    assert b'"state":"5"' in hub.snapshot_frame()


def test_close_all_ends_every_stream_with_a_retry_in_its_format() -> None:
    hub = seeded_hub()
    subs = [Recorder(), Recorder(EntityPattern(["x.*"])), Recorder(compact=True)]
    for sub in subs:
        hub.subscribe(sub)
    hub.close_all(500)
    assert [s.closed_with for s in subs] == [b"retry: 500\r\n\r\n"] * 2 + [b"retry:500\n\n"]


def test_the_snapshot_carries_the_history_of_visible_numeric_entities() -> None:
    hub = seeded_hub()
    for value in ("1", "2.5"):
        hub.upstream_changes({"sensor.a": state("sensor.a", value)}, [])
    hub.upstream_changes({"switch.c": state("switch.c", "on")}, [])  # was "0": a number, then not
    everything, only_b = Recorder(), Recorder(EntityPattern(["sensor.b"]))
    hub.subscribe(everything)
    hub.subscribe(only_b)
    t = 1795428000.0  # the helper's last_updated
    history = everything.events()[0][2]["history"]
    assert history == {"sensor.a": [[t, 0.0], [t, 1.0], [t, 2.5]], "sensor.b": [[t, 0.0]], "switch.c": [[t, 0.0]]}
    assert only_b.events()[0][2]["history"] == {"sensor.b": [[t, 0.0]]}
    hub.upstream_changes({}, ["sensor.a"])
    assert b"sensor.a" not in hub.snapshot_frame()


def test_history_is_encoded_once_per_change_of_its_entity(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = seeded_hub()
    encoded: list[object] = []
    real_dumps = sse.dumps

    def counting_dumps(value: object) -> str:
        encoded.append(value)
        return real_dumps(value)

    monkeypatch.setattr(sse, "dumps", counting_dumps)
    hub.snapshot_frame()
    assert sum(isinstance(v, list) for v in encoded) == 3  # one list per entity
    encoded.clear()
    hub.upstream_changes({"sensor.a": state("sensor.a", "3")}, [])
    hub.snapshot_frame()
    hub.snapshot_frame(EntityPattern(["sensor.*"]))
    assert [v for v in encoded if isinstance(v, list)] == [[(1795428000.0, 0.0), (1795428000.0, 3.0)]]


async def test_with_a_loop_frames_coalesce_and_a_client_joining_meanwhile_gets_no_gap_and_no_duplicate() -> None:
    hub = seeded_hub()
    early = Recorder()
    hub.subscribe(early)
    early.writes.clear()
    hub.upstream_changes({"sensor.a": state("sensor.a", "1")}, [])
    hub.upstream_changes({"sensor.b": state("sensor.b", "1")}, [])
    assert early.writes == [], "nothing is written until the loop turns"
    first_pending_id = hub.event_id(hub.seq - 1)

    joining, resuming = Recorder(EntityPattern(["sensor.*"])), Recorder()
    assert hub.subscribe(joining) == "snapshot"  # covers both pending changes
    assert hub.subscribe(resuming, hub.event_id(hub.seq - 2)) == "replay"  # both pending changes, replayed
    hub.flush()
    hub.upstream_changes({"sensor.a": state("sensor.a", "2")}, ["sensor.b"])
    hub.flush()

    assert len(early.writes) == 2, "one write per flush, however many frames"
    assert [(e[1], e[2].get("state")) for e in early.events()] == [
        ("state", "1"),
        ("state", "1"),
        ("state", "2"),
        ("remove", None),
    ]
    snapshot, *rest = joining.events()
    assert snapshot[2]["entities"]["sensor.a"]["state"] == "1"
    assert [(e[1], e[2].get("state")) for e in rest] == [("state", "2"), ("remove", None)]
    replayed = resuming.events()
    assert replayed[0][0] == first_pending_id
    assert [e[0] for e in replayed] == [e[0] for e in early.events()], "same frames, same ids, once each"


async def test_after_a_long_fan_out_the_next_waits_and_batches() -> None:
    hub = seeded_hub()
    sub = Recorder()
    hub.subscribe(sub)
    await asyncio.sleep(0)
    sub.writes.clear()
    hub._flush_cost, hub._flush_end = 0.04, time.perf_counter()  # as if 1000s of clients took 40 ms
    hub.upstream_changes({"sensor.a": state("sensor.a", "1")}, [])
    await asyncio.sleep(0.005)
    hub.upstream_changes({"sensor.a": state("sensor.a", "2")}, [])
    assert sub.writes == [], "the loop is left to other work for a while"
    await asyncio.sleep(0.05)
    assert len(sub.writes) == 1, "both changes went out in one write"
    assert [e[2]["state"] for e in sub.events()] == ["1", "2"]


async def test_the_fan_out_histogram_sees_how_long_the_oldest_frame_waited() -> None:
    hub = seeded_hub()
    hub.subscribe(Recorder())
    await asyncio.sleep(0)
    observed: list[float] = []
    hub.on_fanout = observed.append
    hub._flush_cost, hub._flush_end = 0.04, time.perf_counter()  # paced: the flush waits ~20 ms
    hub.upstream_changes({"sensor.a": state("sensor.a", "1")}, [])
    await asyncio.sleep(0.05)
    assert len(observed) == 1
    assert observed[0] >= 0.015, "the pacing wait counts, not only the writes"


def test_the_live_path_and_a_ring_filled_from_the_log_make_the_same_bytes() -> None:
    """frames_of is what a member that joins later replays from the log; the live fan-out is its
    inlined twin. A client must not tell which one it resumed from."""
    entries: list[Entry] = []
    live = Hub(epoch="log")

    def follow(entry: Entry) -> None:
        entries.append(entry)
        live.apply(entry)

    log = MemoryLog("log", follow)
    log.upstream_snapshot({e: state(e, "0") for e in ("sensor.a", "sensor.b", "switch.c")})
    log.upstream_changes({"sensor.a": state("sensor.a", "1"), "switch.c": state("switch.c", "on")}, ["sensor.b"])
    log.upstream_status(UpstreamStatus.DISCONNECTED, "gone")
    log.upstream_history({"sensor.a": [(1.0, 0.0)]})
    log.upstream_changes({}, ["switch.c"])
    joined = Hub(epoch="mine")
    view = View(UpstreamStatus.DISCONNECTED, "gone", states=live.store.states, position=("log", log.seq), past=entries)
    joined.reset(view)
    from_live, from_log = Recorder(), Recorder()
    assert live.subscribe(from_live, "log-0") == joined.subscribe(from_log, "log-0") == "replay"
    assert from_live.writes == from_log.writes
    assert [kind for _, kind, _ in from_live.events()] == ["state"] * 5 + ["remove", "status", "remove"]


def test_an_entry_that_is_not_the_next_one_is_refused_and_changes_nothing() -> None:
    hub = following("log", 10, **{"sensor.a": state("sensor.a", "0")})
    sub = Recorder()
    hub.subscribe(sub)
    assert not hub.apply(changes(12, state("sensor.a", "1")))  # a gap: 11 is missing
    assert not hub.apply(changes(11, state("sensor.a", "1"), epoch="other"))
    assert hub.seq == 10 and hub.store.states["sensor.a"]["state"] == "0"
    assert hub.apply(changes(11, state("sensor.a", "1")))
    assert [(i, d["state"]) for i, _, d in sub.events()[1:]] == [("log-11", "1")]
