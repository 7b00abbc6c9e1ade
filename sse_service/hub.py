"""The hub: follows a log of changes (changelog.py) and hands their frames to every interested client.

Two inputs only: ``apply(entry)``, the log's next entry, and ``reset(view)``, a view of the log
to start over from. ``frames_of`` is the one place an entry becomes SSE events.

Larger than most modules here, and on purpose: ids, the replay ring, the subscriber index and
the coalesced fan-out share the hub's state on the hot path (one delivery is a set lookup and
a write); split into objects, each delivery would pay for the indirection.

* **Ids** are ``<epoch>-<seq>``. The epoch is the start time in base 36, so ids never repeat
  across restarts; seq grows by one per frame. An id from another epoch, or older than the
  replay ring, gets a fresh snapshot instead of a replay.
* **Encode once per format**: each change becomes the bytes of a whole SSE frame here, for the
  full stream and for the compact one (compact.py: only what changed, measured against the
  entity's previous state, which every subscriber of that entity holds), each when first asked
  for, and every subscriber of a format gets the same bytes object. The two formats' subscribers are indexed
  apart (``_Audience``), so per client the work is still a set lookup and a write.
* **No gap**: a subscriber's snapshot (or replay) and its registration happen in one
  synchronous step, so it receives exactly the frames after the ones it was given.
* **Index**: filtered subscribers are indexed by entity id, so a change costs nothing for the
  clients that do not watch that entity.
* **Status is data**: upstream status changes are frames with ids like any other. They carry
  the reason /healthz shows (``"connection refused"``, ``"Redis is unreachable: ..."``): what
  a page needs to say *which* link is down. Reasons never hold a URL or a secret.
* **Heartbeats are visible**: a stream idle for ``heartbeat`` seconds gets ``event: ping``
  (data ``{}``, no id, so it never moves ``Last-Event-ID``). Not a ``: ping`` comment: an
  ``EventSource`` does not show comments to scripts, and a page can only tell a quiet stream
  from a dead one if it sees something. The snapshot says how often to expect it
  (``"heartbeat": seconds``); a page that hears nothing for longer knows its data may be old.
* **History rides the snapshot**: the recent points of each numeric entity (see store.py)
  go out only in ``snapshot`` frames, as ``"history": {entity_id: [[epoch_seconds, value], ...]}``.
  Each entity's list is encoded once per change; ``state`` frames are unchanged, and a page
  appends their values itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from . import sse
from .changelog import Entry, View
from .compact import change_data, state_json, whole_json
from .filters import EntityFilter
from .store import HISTORY_SIZE, HISTORY_WINDOW, EntityStore
from .times import iso_from_timestamp
from .types import EntityState, StatusCause, UpstreamStatus
from .untrusted import ascii_int

__all__ = ["Hub", "Subscriber", "frames_of", "new_epoch", "remove_data", "status_data"]

log = logging.getLogger("sse_service")

# A fan-out longer than this means the server is busy (see _fan_out).
BUSY_FLUSH = 0.005
# ... and the pause before the next one is capped: latency matters more than CPU past this.
MAX_WAIT = 0.025
# A stream whose Last-Event-ID this hub has not reached yet, in a shared log, waits this long
# for it (see catch_up).
CATCH_UP = 2.0
HEARTBEAT = sse.event("ping", "{}")  # no id: a ping is not part of the replayable sequence
HEARTBEAT_COMPACT = sse.compact_event("ping", "{}")


class Subscriber(Protocol):
    """One connected stream, as the hub sees it. ``write`` must never block or raise."""

    last_tick: int

    @property
    def filter(self) -> EntityFilter | None: ...  # read-only here: any filter type will do

    @property
    def compact(self) -> bool: ...  # it reads the compact format (compact.py)

    def write(self, data: bytes) -> None: ...

    def close(self, final: bytes) -> None: ...


class _Frame:
    """One event, made into each format's bytes when first asked: once per format, for every
    subscriber of it, and never for a format nobody reads (unless a resume asks for it later)."""

    __slots__ = ("_compact", "_data", "compact_payload", "entity_id", "event_id", "name", "old", "payload", "seq")

    def __init__(
        self,
        seq: int,
        event_id: str,
        entity_id: str | None,  # None: for every subscriber whatever its filter (status)
        name: str,
        payload: EntityState | str,  # a state (event ``state``), or the data's JSON
        old: EntityState | None = None,  # the state it replaces: a compact change says only what differs
        compact_payload: str | None = None,  # the compact data's JSON, when it is not made from the state
    ) -> None:
        self.seq = seq
        self.event_id = event_id
        self.entity_id = entity_id
        self.name = name
        self.payload = payload
        self.old = old
        self.compact_payload = compact_payload
        self._data: bytes | None = None
        self._compact: bytes | None = None

    @property
    def data(self) -> bytes:
        """The full stream's bytes."""
        data = self._data
        if data is None:
            payload = self.payload
            text = payload if isinstance(payload, str) else sse.dumps(payload)
            data = self._data = sse.event(self.name, text, self.event_id)
        return data

    @property
    def compact(self) -> bytes:
        """The compact stream's bytes (compact.py): for a state, only what changed, if it can say it."""
        data = self._compact
        if data is None:
            payload = self.payload
            name: str | None = self.name
            if self.compact_payload is not None:
                text = self.compact_payload
            elif isinstance(payload, str):
                text = payload
            else:
                change = None if self.old is None else change_data(self.old, payload)
                if change is None:
                    text = state_json(payload)
                else:
                    text, name = change, None
            data = self._compact = sse.compact_event(name, text, self.event_id)
            self.old = None  # what it was kept for is done
        return data

    def bytes_for(self, compact: bool) -> bytes:
        """This event in the format a subscriber reads."""
        return self.compact if compact else self.data


class _Audience:
    """The subscribers of one format: those who see everything, the filtered ones, and the
    filtered ones by the entity they watch (the index that makes a change free for the others)."""

    __slots__ = ("compact", "everything", "filtered", "watchers")

    def __init__(self, compact: bool) -> None:
        self.compact = compact
        self.everything: set[Subscriber] = set()
        self.filtered: set[Subscriber] = set()
        self.watchers: dict[str, set[Subscriber]] = {}

    def watch(self, entity_id: str) -> None:
        if entity_id not in self.watchers:
            self.watchers[entity_id] = {s for s in self.filtered if s.filter and s.filter(entity_id)}


def new_epoch() -> str:
    """Milliseconds since the Unix epoch in base 36: short, and later starts sort higher."""
    n = time.time_ns() // 1_000_000
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits


class Hub:
    def __init__(
        self,
        *,
        replay_size: int = 2048,
        history_size: int = HISTORY_SIZE,
        history_window: float = HISTORY_WINDOW,
        heartbeat: float | None = None,
        epoch: str | None = None,
    ) -> None:
        self.epoch = epoch or new_epoch()
        self.heartbeat_interval = heartbeat  # announced in snapshots; run_heartbeat() keeps it
        self.seq = 0
        self.store = EntityStore(history_size=history_size, history_window=history_window)
        self.status = UpstreamStatus.CONNECTING
        self.status_reason = "starting"
        self.status_cause = StatusCause.HOME_ASSISTANT
        self.status_since = iso_from_timestamp(time.time())
        self.tick = 0  # heartbeat ticks; subscribers note the tick of their last write
        self.replays = 0
        self.snapshots = 0
        # Plain counters for /metrics: cheap enough to bump on the hot path.
        self.events_in = 0
        self.deliveries = 0
        self.bytes_out = 0
        self.resets = 0
        self.ready = False  # the first snapshot from Home Assistant has arrived
        self.on_fanout: Callable[[float], None] | None = None
        self._ring: deque[_Frame] = deque(maxlen=replay_size)
        self._full = _Audience(compact=False)
        self._compact = _Audience(compact=True)
        self._audiences = (self._full, self._compact)
        self._encoded: dict[str, str] = {}  # entity id -> its state as JSON, reused by snapshots
        self._encoded_whole: dict[str, str] = {}  # entity id -> its compact whole form, made when asked
        self._encoded_history: dict[str, str] = {}  # entity id -> its history points as JSON
        self._snapshot_cache: dict[bool, tuple[int, bytes]] = {}  # by format (compact or not)
        self._emptied = asyncio.Event()
        # Frames made since the last flush. They go out once per event-loop turn: a burst of
        # upstream messages becomes one write per subscriber, and the loop gets to accept
        # new clients between bursts.
        self._pending: list[_Frame] = []
        self._pending_removed: list[str] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flush_cost = 0.0  # seconds the last fan-out took
        self._flush_end = 0.0  # perf_counter when it ended
        self._pending_since = 0.0  # perf_counter when the oldest pending frame was made
        # Subscribed while frames were pending, with the seq their snapshot or replay covers.
        self._joining: list[tuple[Subscriber, int]] = []
        self.follows_log = False  # reset to a position of a shared log: other hubs may be ahead
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # catch_up: (seq, woken when made)

    # --- ids ----------------------------------------------------------------------------

    def event_id(self, seq: int | None = None) -> str:
        return f"{self.epoch}-{self.seq if seq is None else seq}"

    def _renumber(self, epoch: str, seq: int) -> None:
        """Number the next frames ``<epoch>-<seq + 1>``, ... and forget the replay ring.

        A stream that resumes from before this point gets a snapshot.
        """
        self.flush()
        self.epoch = epoch
        self.seq = seq
        self._ring.clear()
        self._snapshot_cache.clear()
        self._wake(everyone=True)  # their ids are of the old numbering: snapshots

    async def catch_up(self, last_event_id: str | None, within: float = CATCH_UP) -> None:
        """Wait, at most ``within`` seconds, until this hub has made the frame ``last_event_id`` names.

        Only for a hub fed from a shared log, where another instance can be ahead of this one:
        a client that moved from it would get this hub's older snapshot, then events it has
        seen already. Alone, an id ahead of the hub is not one it made: no wait.
        """
        if not self.follows_log:
            return
        seq = self._seq_of(last_event_id)
        if seq is None or seq <= self.seq:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (seq, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(within):
                await waiter
        except TimeoutError:
            pass  # not made in time (or never: a forged id): the client gets a snapshot
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _wake(self, *, everyone: bool = False) -> None:
        waiting, self._waiters = self._waiters, []
        for seq, waiter in waiting:
            if everyone or seq <= self.seq:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._waiters.append((seq, waiter))

    @property
    def replay_size(self) -> int:
        return self._ring.maxlen or 0

    def _remember(self, past: Sequence[Entry]) -> bool:
        """Fill the replay ring with the frames of the log's entries before this hub followed it.

        ``past`` ends at the current seq with no gap, right after a renumbering. Nothing is
        sent: they are there for streams that resume from among them (a client that moves from
        another instance). False, and the ring is left alone, if they do not fit.
        """
        made = [
            _Frame(seq, self.event_id(seq), entity_id, name, data, compact_payload=compact_data)
            for entry in past
            for seq, (name, data, entity_id, compact_data) in enumerate(frames_of(entry), entry.seq - entry.n + 1)
        ]
        if self._ring or not made or made[-1].seq != self.seq:
            return False
        if any(later.seq != earlier.seq + 1 for earlier, later in itertools.pairwise(made)):
            return False
        self._ring.extend(made)
        return True

    def _seq_of(self, event_id: str | None) -> int | None:
        if not event_id:
            return None
        epoch, _, seq = event_id.strip().rpartition("-")
        if epoch != self.epoch:
            return None
        return ascii_int(seq)  # anything else is not one of ours: the client gets a snapshot

    # --- subscribers --------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        return sum(len(a.everything) + len(a.filtered) for a in self._audiences) + len(self._joining)

    @property
    def unfiltered_count(self) -> int:
        return sum(len(a.everything) for a in self._audiences)

    @property
    def compact_count(self) -> int:
        joining = sum(1 for subscriber, _ in self._joining if subscriber.compact)
        return len(self._compact.everything) + len(self._compact.filtered) + joining

    def subscribers(self) -> Iterable[Subscriber]:
        full, compact = self._full, self._compact
        joining = (s for s, _ in self._joining)
        return itertools.chain(full.everything, full.filtered, compact.everything, compact.filtered, joining)

    def subscribe(self, subscriber: Subscriber, last_event_id: str | None = None, prefix: bytes = b"") -> str:
        """Register a stream and write what it needs first: the missed frames, or a snapshot.

        Returns ``"replay"`` or ``"snapshot"``. Nothing awaits in here: that is what keeps
        the first write and the live frames free of gaps and duplicates.
        """
        pattern = subscriber.filter
        seq = self._seq_of(last_event_id)
        if seq is not None and self._can_replay(seq):
            kind = "replay"
            self.replays += 1
            compact = subscriber.compact
            first = b"".join(f.bytes_for(compact) for f in self._frames_after(seq) if _visible(f, pattern))
        else:
            kind = "snapshot"
            self.snapshots += 1
            first = self.snapshot_frame(pattern, compact=subscriber.compact)
        if self._pending:
            # The snapshot or replay already covers the frames not yet delivered: join the
            # others after the next flush. (Flushing here instead would cost a fan-out to
            # everyone per new client, just when many connect at once.)
            self._joining.append((subscriber, self.seq))
        else:
            self._register(subscriber)
        if prefix or first:
            subscriber.write(prefix + first)
            self.bytes_out += len(prefix) + len(first)
        return kind

    def _audience_of(self, subscriber: Subscriber) -> _Audience:
        return self._compact if subscriber.compact else self._full

    def _register(self, subscriber: Subscriber) -> None:
        pattern = subscriber.filter
        audience = self._audience_of(subscriber)
        if pattern is None:
            audience.everything.add(subscriber)
        else:
            audience.filtered.add(subscriber)
            for entity_id, watchers in audience.watchers.items():
                if pattern(entity_id):
                    watchers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        audience = self._audience_of(subscriber)
        joining = [entry for entry in self._joining if entry[0] is not subscriber]
        if len(joining) < len(self._joining):
            self._joining = joining
        elif subscriber.filter is None:
            audience.everything.discard(subscriber)
        elif subscriber in audience.filtered:
            audience.filtered.discard(subscriber)
            for watchers in audience.watchers.values():
                watchers.discard(subscriber)
        if not self.client_count:
            self._emptied.set()

    async def wait_until_empty(self) -> None:
        while self.client_count:
            self._emptied.clear()
            await self._emptied.wait()

    def _can_replay(self, seq: int) -> bool:
        if seq == self.seq:
            return True
        return seq < self.seq and bool(self._ring) and self._ring[0].seq <= seq + 1

    def _frames_after(self, seq: int) -> Iterable[_Frame]:
        start = seq + 1 - self._ring[0].seq if self._ring else 0
        return itertools.islice(self._ring, max(start, 0), None)

    def snapshot_frame(self, pattern: EntityFilter | None = None, *, compact: bool = False) -> bytes:
        """``event: snapshot``: every visible entity, their history and the upstream status; id = the latest frame."""
        cached = self._snapshot_cache.get(compact) if pattern is None else None
        if cached is not None and cached[0] == self.seq:
            return cached[1]
        visible = [e for e in self.store.states if pattern is None or pattern(e)]
        encoded = self._encoded_whole if compact else self._encoded
        encode = whole_json if compact else sse.dumps
        states = self.store.states
        for entity_id in visible:
            if entity_id not in encoded:
                encoded[entity_id] = encode(states[entity_id])
        entities = ",".join(f"{sse.dumps(entity_id)}:{encoded[entity_id]}" for entity_id in visible)
        history = ",".join(
            f"{sse.dumps(entity_id)}:{self._history_json(entity_id)}"
            for entity_id in visible
            if self.store.history.get(entity_id)
        )
        heartbeat = "" if self.heartbeat_interval is None else f'"heartbeat":{sse.dumps(self.heartbeat_interval)},'
        status = (
            f'"status":{sse.dumps(self.status.value)},"reason":{sse.dumps(self.status_reason)},'
            f'"cause":{sse.dumps(self.status_cause.value)}'
        )
        if compact:
            data = f'{{{status},{heartbeat}"format":"compact","entities":{{{entities}}},"history":{{{history}}}}}'
            frame = sse.compact_event("snapshot", data, self.event_id())
        else:
            data = f'{{{status},{heartbeat}"entities":{{{entities}}},"history":{{{history}}}}}'
            frame = sse.event("snapshot", data, self.event_id())
        if pattern is None:
            self._snapshot_cache[compact] = (self.seq, frame)
        return frame

    def _history_json(self, entity_id: str) -> str:
        data = self._encoded_history.get(entity_id)
        if data is None:
            data = self._encoded_history[entity_id] = sse.dumps(self.store.history[entity_id].points)
        return data

    # --- the two inputs: the log's next entry, or a view to start over from -----------------

    def apply(self, entry: Entry) -> bool:
        """Apply the log's next entry. False, and nothing done, if it is not the next one."""
        if entry.epoch != self.epoch or entry.seq - entry.n != self.seq:
            return False
        kind = entry.kind
        if kind == "changes" or kind == "snapshot":
            self.events_in += entry.received or entry.n
            before = self.store.states.get
            previous = [before(entity_id) for entity_id in entry.updated]
            changed, gone = self.store.apply_changes(entry.updated, entry.removed)
            if len(changed) + len(gone) != entry.n:  # cannot happen while every writer runs the store's comparison
                log.warning(
                    "Entry %s-%d changed %d entities here, not %d", entry.epoch, entry.seq, len(changed), entry.n
                )
            self._publish(zip(previous, entry.updated.values(), strict=True), entry.removed)
            if kind == "snapshot":
                self.ready = True
        elif kind == "status":
            self._set_status(entry.status, entry.reason, entry.cause, entry.at)
        else:
            self._merge_history(entry.history)
        if self.seq != entry.seq:
            self._renumber(entry.epoch, entry.seq)
        return True

    def reset(self, view: View) -> None:
        """Start over from a view: what differs goes to the open streams, numbered in an epoch of
        its own (ids nobody can resume from), then the numbering continues at ``view.position``
        with the log's recent past in the replay ring."""
        self._renumber(new_epoch() + secrets.token_hex(2), 0)
        if view.states is not None:
            before = dict(self.store.states)
            changed, gone = self.store.apply_snapshot(view.states)
            self.events_in += len(view.states)
            self._publish(((before.get(s["entity_id"]), s) for s in changed), gone)
            self._merge_history(view.history)
            self.ready = view.ready
        if (view.status, view.reason, view.cause) != (self.status, self.status_reason, self.status_cause):
            self._set_status(view.status, view.reason, view.cause, view.since)
        if view.position is not None:
            self._renumber(*view.position)
            self.follows_log = True
            self._remember(view.past)

    def _merge_history(self, recorded: Mapping[str, Iterable[tuple[float, float]]]) -> None:
        """The recorder's past arrived: merge it, and send it to the streams already open.

        ``event: history`` has no id: it is not part of the replayable sequence (a stream that
        resumes already has it, a new one gets it inside its snapshot). It carries the whole
        series of each entity it names, in the snapshot's format; a page replaces its points.
        """
        merged = self.store.merge_history(recorded)
        if not merged:
            return
        for entity_id in merged:
            self._encoded_history.pop(entity_id, None)
        self._snapshot_cache.clear()
        self.flush()  # frames made before the history go out before it
        encoded: dict[tuple[EntityFilter | None, bool], bytes] = {}
        for subscriber in list(self.subscribers()):
            pattern = subscriber.filter
            frame = encoded.get((pattern, subscriber.compact))
            if frame is None:
                visible = [e for e in merged if pattern is None or pattern(e)]
                body = f'{{"history":{{{",".join(f"{sse.dumps(e)}:{self._history_json(e)}" for e in visible)}}}}}'
                history = sse.framing(subscriber.compact).event("history", body)
                frame = encoded[pattern, subscriber.compact] = history if visible else b""
            if frame:
                subscriber.write(frame)
                self.bytes_out += len(frame)

    def _set_status(self, status: UpstreamStatus, reason: str, cause: StatusCause, since: float | None) -> None:
        """``cause``: which link it is about, so a page need not read the human ``reason``."""
        self.status = status
        self.status_reason = reason
        self.status_cause = cause
        self.status_since = iso_from_timestamp(time.time() if since is None else since)
        self._fan_out([self._frame("status", status_data(status, reason, self.status_since, cause), None)])

    # --- fan-out ------------------------------------------------------------------------

    def _frame(
        self, name: str, payload: EntityState | str, entity_id: str | None, old: EntityState | None = None
    ) -> _Frame:
        self.seq += 1
        frame = _Frame(self.seq, self.event_id(), entity_id, name, payload, old)
        self._ring.append(frame)
        return frame

    def _publish(self, updated: Iterable[tuple[EntityState | None, EntityState]], removed: Sequence[str]) -> None:
        """The frames of changed states (with the state each replaces) and removals, as
        ``frames_of`` makes them (inlined here: this is the hot path; tests hold that the full
        stream's bytes are the same). In the compact format a change to a known entity is only
        what changed (an event with no name); a new entity goes whole, as ``event: state``."""
        frames = []
        full, compact = self._full, self._compact
        for old, state in updated:
            entity_id = state["entity_id"]
            full.watch(entity_id)
            compact.watch(entity_id)
            self._encoded.pop(entity_id, None)
            self._encoded_whole.pop(entity_id, None)
            self._encoded_history.pop(entity_id, None)
            frames.append(self._frame("state", state, entity_id, old))
        for entity_id in removed:
            self._encoded.pop(entity_id, None)
            self._encoded_whole.pop(entity_id, None)
            self._encoded_history.pop(entity_id, None)
            frames.append(self._frame("remove", remove_data(entity_id), entity_id))
        self._pending_removed.extend(removed)
        self._fan_out(frames)

    def _fan_out(self, frames: list[_Frame]) -> None:
        if not frames:
            return
        if self._waiters:
            self._wake()
        if not self._pending:
            self._pending_since = time.perf_counter()
        self._pending.extend(frames)
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (unit tests of the hub): deliver now
            self.flush()
            return
        # Under load, the next fan-out starts no sooner than half the last one's length (at
        # most MAX_WAIT) after it ended: the loop keeps time to accept clients and read
        # upstream, and the frames made meanwhile share one write per client.
        wait = min(self._flush_cost / 2, MAX_WAIT) - (time.perf_counter() - self._flush_end)
        if self._flush_cost > BUSY_FLUSH and wait > 0:
            self._flush_handle = loop.call_later(wait, self.flush)
        else:
            self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Deliver every frame made since the last flush: one write per subscriber."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        frames, self._pending = self._pending, []
        removed, self._pending_removed = self._pending_removed, []
        if frames:
            started = time.perf_counter()
            self._write_all(frames)
            self._flush_end = time.perf_counter()
            self._flush_cost = self._flush_end - started
            if self.on_fanout is not None:  # what the oldest frame waited, pacing included
                self.on_fanout(self._flush_end - self._pending_since)
        for entity_id in removed:
            if entity_id not in self.store.states:  # not back in the meantime
                self._full.watchers.pop(entity_id, None)
                self._compact.watchers.pop(entity_id, None)
        joining, self._joining = self._joining, []
        for subscriber, covered in joining:
            # Frames made after its snapshot or replay, before this flush.
            compact = subscriber.compact
            missed = b"".join(
                f.bytes_for(compact) for f in frames if f.seq > covered and _visible(f, subscriber.filter)
            )
            if missed:
                subscriber.write(missed)
                self.bytes_out += len(missed)
            self._register(subscriber)

    def _write_all(self, frames: list[_Frame]) -> None:
        for audience in self._audiences:
            if audience.everything or audience.filtered:
                self._write_to(audience, frames)

    def _write_to(self, audience: _Audience, frames: list[_Frame]) -> None:
        compact = audience.compact
        everything = audience.everything
        if len(frames) == 1:
            frame = frames[0]
            data = frame.bytes_for(compact)
            for subscriber in everything:
                subscriber.write(data)
            targets = audience.filtered if frame.entity_id is None else audience.watchers.get(frame.entity_id, ())
            for subscriber in targets:
                subscriber.write(data)
            count = len(everything) + len(targets)
            self.deliveries += count
            self.bytes_out += count * len(data)
            return
        # Several frames at once (a snapshot diff, a coalesced upstream batch): one write
        # per subscriber, holding every frame it should see.
        blob = b"".join(frame.bytes_for(compact) for frame in frames)
        for subscriber in everything:
            subscriber.write(blob)
        self.deliveries += len(everything) * len(frames)
        self.bytes_out += len(everything) * len(blob)
        if audience.filtered:
            parts: dict[Subscriber, list[bytes]] = {}
            watchers = audience.watchers
            for frame in frames:
                targets = audience.filtered if frame.entity_id is None else watchers.get(frame.entity_id, ())
                data = frame.bytes_for(compact)
                for subscriber in targets:
                    parts.setdefault(subscriber, []).append(data)
            for subscriber, datas in parts.items():
                data = b"".join(datas)
                subscriber.write(data)
                self.deliveries += len(datas)
                self.bytes_out += len(data)

    # --- heartbeats and shutdown ---------------------------------------------------------

    def heartbeat(self) -> None:
        """Called every ``interval / 3``: a ping to every stream idle for three ticks."""
        self.tick += 1
        stale = self.tick - 3
        for subscriber in list(self.subscribers()):
            if subscriber.last_tick <= stale:
                subscriber.write(HEARTBEAT_COMPACT if subscriber.compact else HEARTBEAT)

    async def run_heartbeat(self, interval: float) -> None:
        # Ticking at a third of the interval keeps every stream's silence at most `interval`
        # while a stream that just got data is not sent a ping it does not need.
        self.heartbeat_interval = interval
        while True:
            await asyncio.sleep(interval / 3)
            self.heartbeat()

    def close_all(self, retry_ms: int) -> None:
        """End every stream with a ``retry:`` (short: the browsers come back at once, elsewhere)."""
        self.flush()
        final = {compact: sse.framing(compact).retry(retry_ms) for compact in (False, True)}
        for subscriber in list(self.subscribers()):
            subscriber.close(final[subscriber.compact])


def frames_of(entry: Entry) -> list[tuple[str, str, str | None, str]]:
    """The frames an entry makes, in order, as (event name, data, entity id, compact data): the
    one place entries become SSE events, for the live fan-out and for a replay ring filled from
    a log. An entry does not hold the states it replaces, so its compact states are whole."""
    if entry.kind == "status":
        since = iso_from_timestamp(entry.at)
        data = status_data(entry.status, entry.reason, since, entry.cause)
        return [("status", data, None, data)]
    if entry.kind == "history":
        return []
    made: list[tuple[str, str, str | None, str]] = []
    for state in entry.updated.values():
        made.append(("state", sse.dumps(state), state["entity_id"], state_json(state)))
    for entity_id in entry.removed:
        data = remove_data(entity_id)
        made.append(("remove", data, entity_id, data))
    return made


def remove_data(entity_id: str) -> str:
    """The data of ``event: remove``."""
    return sse.dumps({"entity_id": entity_id})


def status_data(
    status: UpstreamStatus, reason: str, since: str, cause: StatusCause = StatusCause.HOME_ASSISTANT
) -> str:
    """The data of ``event: status``."""
    return sse.dumps({"status": status.value, "reason": reason, "cause": cause.value, "since": since})


def _visible(frame: _Frame, pattern: EntityFilter | None) -> bool:
    return pattern is None or frame.entity_id is None or pattern(frame.entity_id)
