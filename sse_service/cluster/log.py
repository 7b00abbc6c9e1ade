"""The shared event log: the leader's fenced writer, and the reader that feeds every hub.

Past 300 lines because its Lua scripts are here, beside the Python that calls them: a
script and its caller change together (argument order, the meaning of each key).

In Redis (keys.py): a stream with one entry per upstream call, the current states and the
numeric history (what snapshots carry) in two hashes, and a meta hash (``epoch``, ``seq``,
``last_id``, status). One Lua script appends an entry *and* updates the hashes, after
checking that the caller still holds the lease and that the epoch is the one it started
with: a stale leader cannot write, and the hashes always hold exactly the state at
``meta.last_id`` (Centrifugo's Redis engine does the same: its publish is one script,
``broker_history_add_stream.lua``).

**Ids are the log's.** ``seq`` counts frames: an entry says how many frames it makes (``n``)
and the seq after it. The writer decides ``n`` with the very comparison the hub's store makes
(``EntityStore.apply_changes`` on the same JSON-decoded values), so the store of every reader
makes exactly those frames and numbers them alike: the same event has the same SSE id on every
instance. A reader that finds an entry out of step (a gap: the stream was trimmed past it, a
new epoch: the log was lost) starts over from the states hash, as a snapshot.

**Starting over** reads the meta and both hashes in one script (a consistent pair), sends
the streams already open what differs under a throwaway epoch (ids nobody can resume from),
then numbers on from the log's ``<epoch>-<seq>``, and reads the stream from ``last_id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from .. import sse
from ..backoff import doubling
from ..changelog import Entry, View
from ..hub import Hub
from ..store import EntityStore
from ..types import EntityState, StatusCause, UpstreamStatus
from .keys import Keys, cluster_epoch
from .wire import KeptConnection

__all__ = ["FencedOut", "LogReader", "LogWriter", "describe_redis_error"]

log = logging.getLogger("sse_service.cluster")

REDIS_DOWN = "Redis is unreachable: the data may be stale"  # the status reason streams get
READ_COUNT = 512  # entries per XREAD: a reader that fell behind catches up in steps this big

# KEYS: lease, meta, states, log, history. ARGV: holder, new epoch.
# Returns {epoch, states as a flat list, history as a flat list}.
_OPEN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return redis.error_reply('FENCED the lease is not held')
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'seq', 0, 'last_id', '0-0', 'status', 'connecting',
        'reason', 'starting', 'ready', 0)
    epoch = ARGV[2]
end
return {epoch, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[5])}
"""

# KEYS: lease, meta, states, log, history.
# ARGV: holder, epoch, maxlen, n, kind, data, status ('' = unchanged), reason, ready ('1' or ''),
#       then three sections, each a count and its items: (entity id, state JSON) pairs to set,
#       entity ids to delete (state and history), (entity id, points JSON) pairs to set.
_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return redis.error_reply('FENCED the lease is held by another instance')
end
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[2] then
    return redis.error_reply('FENCED the log was reset (new epoch)')
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', tonumber(ARGV[4]))
local i = 11
for _ = 1, tonumber(ARGV[10]) do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    i = i + 2
end
local ndel = tonumber(ARGV[i])
i = i + 1
for _ = 1, ndel do
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[5], ARGV[i])
    i = i + 1
end
local nhist = tonumber(ARGV[i])
i = i + 1
for _ = 1, nhist do
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    i = i + 2
end
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*',
    'epoch', ARGV[2], 'seq', seq, 'n', ARGV[4], 'kind', ARGV[5], 'data', ARGV[6])
redis.call('HSET', KEYS[2], 'last_id', id)
if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[2], 'status', ARGV[7], 'reason', ARGV[8])
end
if ARGV[9] == '1' then
    redis.call('HSET', KEYS[2], 'ready', 1)
end
return {seq, id}
"""

# KEYS: meta. ARGV: the epoch a reader follows, the seq it has, a new epoch. A log whose seq went
# back under the same epoch (a failover to a replica without the last writes) gets a new epoch,
# so ids already sent are never reused for other events; the leader's next append is refused
# (FENCED: new epoch), and it starts over from the hashes. Returns 1 when it changed the epoch.
_NEW_EPOCH = """
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] and seq < tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'epoch', ARGV[3])
    return 1
end
return 0
"""

# KEYS: meta, states, history, log. ARGV: how many of the last entries to return.
# What a reader starts from: the states and history at meta.last_id, and the entries that
# led there (newest first), for its replay ring.
_READ = """
local recent = {}
if tonumber(ARGV[1]) > 0 then
    recent = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', ARGV[1])
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), recent}
"""


class FencedOut(Exception):
    """The lease is not ours any more, or the log was reset: this instance must stop leading."""


def describe_redis_error(e: BaseException) -> str:
    """One line for logs and status reasons (redis-py's messages hold host and port, never a password)."""
    text = str(e).strip().rstrip(".") or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _items(reply: Any) -> Any:
    return list(reply.items()) if isinstance(reply, dict) else reply


def _history(flat: Sequence[Any]) -> dict[str, list[tuple[float, float]]]:
    return {key: [(p[0], p[1]) for p in json.loads(data)] for key, data in _pairs(flat).items()}


def _entry_time(entry_id: str) -> float:
    """When Redis appended the entry: its id is ``<milliseconds>-<n>``."""
    return int(entry_id.partition("-")[0]) / 1000


def _entry(entry_id: str, fields: Mapping[str, str]) -> Entry:
    """A stream entry of the script's as the hub applies it. Raises ValueError (or KeyError,
    TypeError, AttributeError) on one that is not the script's."""
    epoch, seq, n, kind = fields["epoch"], int(fields["seq"]), int(fields["n"]), fields["kind"]
    data = json.loads(fields["data"])
    at = _entry_time(entry_id)  # the append's time, not the read's: the same bytes on every instance
    if kind in ("changes", "snapshot"):
        updated: dict[str, EntityState] = dict(data["updated"])
        removed = [str(entity_id) for entity_id in data["removed"]]
        if not all(isinstance(state, dict) and state.get("entity_id") == key for key, state in updated.items()):
            raise ValueError("a state that is not one")
        if len(updated) + len(removed) != n:
            raise ValueError(f"{len(updated) + len(removed)} changes for {n} frames")
        return Entry(epoch, seq, n, "snapshot" if kind == "snapshot" else "changes", updated, removed, at=at)
    if kind == "status":
        status, reason = UpstreamStatus(data["status"]), str(data["reason"])
        return Entry(epoch, seq, n, "status", status=status, reason=reason, at=at)
    if kind == "history":
        history = {str(entity_id): [(p[0], p[1]) for p in points] for entity_id, points in data.items()}
        return Entry(epoch, seq, n, "history", history=history, at=at)
    raise ValueError(f"unknown kind {kind!r}")


def _past(epoch: str, seq: int, recent: Sequence[Any], limit: int) -> list[Entry]:
    """The log's last entries (``recent``, newest first) that end at ``seq``, oldest first, with
    at least ``limit`` frames if the log has them.

    It stops at the first entry that does not fit (another epoch, a gap, not the script's).
    """
    past: list[Entry] = []
    expected, frames = seq, 0
    for entry_id, flat in recent:
        try:
            entry = _entry(str(entry_id), _pairs(flat))
        except (KeyError, ValueError, TypeError, AttributeError, IndexError):
            break
        if entry.epoch != epoch or entry.seq != expected:
            break
        past.append(entry)
        expected -= entry.n
        frames += entry.n
        if frames >= limit:
            break
    past.reverse()
    return past


class LogWriter:
    """The upstream sink of the leader's HAClient: every call becomes one fenced append.

    The sink methods are synchronous (the HA read loop must not wait): they compute the
    change against the log's states at once, in order, and queue the append; ``run`` sends
    the queue in that order. Any failure ends the leadership (the caller cancels the HA
    connection); the next leader starts from the states hash, which is never half-written.
    """

    def __init__(self, redis: Redis, keys: Keys, holder: str, epoch: str, store: EntityStore, *, maxlen: int) -> None:
        self.epoch = epoch
        self.appended = 0
        self._keys = keys
        self._holder = holder
        self._maxlen = maxlen
        self._store = store  # what the hashes hold once the queue is sent
        self._queue: asyncio.Queue[list[str | int]] = asyncio.Queue()
        self._redis = redis

    @classmethod
    async def open(
        cls, redis: Redis, keys: Keys, holder: str, *, maxlen: int, store: EntityStore | None = None
    ) -> LogWriter:
        """Start (or continue) the log under the lease ``holder``. Raises FencedOut or redis errors.

        ``store``: an empty store with the hub's history settings, where the writer keeps its
        copy of the log's state.
        """
        script = redis.register_script(_OPEN)
        try:
            all_keys = [keys.lease, keys.meta, keys.states, keys.log, keys.history]
            epoch, states_flat, history_flat = await script(keys=all_keys, args=[holder, cluster_epoch()])
        except ResponseError as e:
            if "FENCED" in str(e):
                raise FencedOut(str(e).removeprefix("FENCED ")) from None
            raise
        store = EntityStore() if store is None else store
        store.states.update((key, json.loads(data)) for key, data in _pairs(states_flat).items())
        store.merge_history(_history(history_flat))
        return cls(redis, keys, holder, str(epoch), store, maxlen=maxlen)

    # --- the upstream sink -------------------------------------------------------------

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None:
        removed = [entity_id for entity_id in self._store.states if entity_id not in states]
        self._changes("snapshot", states, removed)

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None:
        self._changes("changes", updated, removed)

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None:
        data = sse.dumps({"status": status.value, "reason": reason})
        self._queue.put_nowait([1, "status", data, status.value, reason, "", 0, 0, 0])

    def upstream_history(self, recorded: Mapping[str, Sequence[tuple[float, float]]]) -> None:
        decoded = _history([item for entity_id, points in recorded.items() for item in (entity_id, sse.dumps(points))])
        merged = self._store.merge_history(decoded)
        data = sse.dumps(decoded)
        self._queue.put_nowait([0, "history", data, "", "", "", 0, 0, *self._series(merged)])

    def _changes(self, kind: str, updated: Mapping[str, EntityState], removed: Iterable[str]) -> None:
        # The very store code every reader runs, on the values every reader will decode. Each
        # state is encoded once: JSON decoded and encoded again is the same text.
        encoded = {entity_id: sse.dumps(s) for entity_id, s in updated.items()}
        decoded: dict[str, EntityState] = {entity_id: json.loads(text) for entity_id, text in encoded.items()}
        changed, gone = self._store.apply_changes(decoded, removed)
        if not (changed or gone) and kind != "snapshot":
            return
        texts = [(state["entity_id"], encoded.get(state["entity_id"]) or sse.dumps(state)) for state in changed]
        updated_json = ",".join(f"{sse.dumps(entity_id)}:{text}" for entity_id, text in texts)
        data = f'{{"updated":{{{updated_json}}},"removed":{sse.dumps(gone)}}}'
        args: list[str | int] = [len(changed) + len(gone), kind, data, "", "", "1" if kind == "snapshot" else ""]
        args.append(len(changed))
        for entity_id, text in texts:
            args += [entity_id, text]
        deleted = [entity_id for entity_id in gone if entity_id not in self._store.states]
        args += [len(deleted), *deleted]
        args += self._series(state["entity_id"] for state in changed)
        self._queue.put_nowait(args)

    def _series(self, entity_ids: Iterable[str]) -> list[str | int]:
        """The history section of an append: the points of these entities, as the store has them."""
        items: list[str | int] = []
        for entity_id in dict.fromkeys(entity_ids):
            series = self._store.history.get(entity_id)
            if series is not None:
                items += [entity_id, sse.dumps(series.points)]
        return [len(items) // 2, *items]

    # --- sending -------------------------------------------------------------------------

    async def run(self) -> None:
        """Send the queued appends in order, for ever. Raises FencedOut or redis errors.

        One append per upstream call, so on a kept connection (wire.py); the appends queued
        meanwhile (a burst, a snapshot) go in one round trip, each still checked by the script.
        """
        keys = [self._keys.lease, self._keys.meta, self._keys.states, self._keys.log, self._keys.history]
        sha = str(await self._redis.script_load(_APPEND))
        kept = KeptConnection(self._redis)
        head: list[str | int | float] = ["EVALSHA", sha, len(keys), *keys, self._holder, self.epoch, self._maxlen]
        try:
            while True:
                batch = [await self._queue.get()]
                while not self._queue.empty() and len(batch) < 64:
                    batch.append(self._queue.get_nowait())
                try:
                    await kept.call_many([[*head, *args] for args in batch])
                except ResponseError as e:
                    if "FENCED" in str(e):
                        raise FencedOut(str(e).removeprefix("FENCED ")) from None
                    raise  # NOSCRIPT too (Redis lost its scripts): the next leadership loads it again
                self.appended += len(batch)
        finally:
            await kept.close()


class LogReader:
    """Follows the log and feeds the local hub through its upstream sink methods."""

    def __init__(self, redis: Redis, blocking: Redis, keys: Keys, hub: Hub, *, block: float = 1.0) -> None:
        self.epoch: str | None = None
        self.last_id = "0-0"
        self.connected = False  # the last Redis call of this reader worked
        self.error: str | None = None
        self.lag = 0  # frames of the log not yet in the hub, as of the last check
        self.resyncs = 0
        self.ha_version: str | None = None  # as the leader last wrote it into the meta hash
        self._redis = redis
        self._blocking = blocking
        self._keys = keys
        self._hub = hub
        self._block_ms = max(1, round(block * 1000))
        self._read = redis.register_script(_READ)
        self._new_epoch = redis.register_script(_NEW_EPOCH)
        self._went_back = False  # the log's seq is behind what this hub has: see _NEW_EPOCH
        self._stale = False  # this instance told its clients that Redis is gone
        self._waiting_said = False
        # Entries that are not the script's (something else wrote to our stream): skipped
        # after the start-over they cause, or they would cause one on every read.
        self._foreign: deque[str] = deque(maxlen=64)
        self._kept = KeptConnection(blocking)

    async def run(self) -> None:
        """Follow the log for ever, reconnecting with backoff; returns only when cancelled."""
        try:
            await self._run()
        finally:
            await self._kept.close()

    async def _run(self) -> None:
        delays = doubling(0.1, 2.0)
        loop = asyncio.get_running_loop()
        while True:
            try:
                started = loop.time()
                if await self._follow():
                    delays = doubling(0.1, 2.0)
                    if loop.time() - started < 1.0:
                        await asyncio.sleep(0.2)  # out of step again at once: do not spin on snapshots
                    continue
                await asyncio.sleep(0.1)  # no log yet: no leader has opened one
            except (RedisError, OSError) as e:
                self._lost(e)
                await asyncio.sleep(next(delays))
            except Exception:  # a bug, or data in Redis that is not ours: start over, never stop reading
                log.exception("Reading the shared log failed; starting over in 2 s")
                await asyncio.sleep(2.0)

    async def _follow(self) -> bool:
        """Start over from the states hash, then apply entries until one is out of step."""
        if not await self._resync():
            return False
        keys = self._keys
        while True:
            reply = await self._xread()
            if not reply:
                # Quiet: check the log is still the one we follow (a flushed Redis that no
                # leader has written to yet adds no entry to tell us), and measure the lag.
                epoch, seq, version = await self._redis.hmget(keys.meta, ["epoch", "seq", "ha_version"])
                self.ha_version = str(version) if version is not None else None
                if epoch != self.epoch:
                    return True
                if int(seq or 0) < self._hub.seq:
                    await self._log_went_back()
                    return True
                self.lag = max(0, int(seq or 0) - self._hub.seq)
                continue
            # As it comes, decoded: {stream: [[id, [field, value, ...]], ...]} (RESP3, redis-py's
            # default from 8.0), or [[stream, [...]]] (RESP2).
            streams = cast(list[tuple[str, list[tuple[str, list[str]]]]], _items(reply))
            for _stream, entries in streams:
                for entry_id, flat in entries:
                    if not self._apply(str(entry_id), _pairs(flat)):
                        if self._went_back:
                            await self._log_went_back()
                        return True
                if len(entries) < READ_COUNT:
                    self.lag = 0  # read up to the end
                else:
                    self.lag = max(0, int(await self._redis.hget(keys.meta, "seq") or 0) - self._hub.seq)

    async def _xread(self) -> Any:
        """``XREAD BLOCK`` from ``last_id``: once per event, so on a kept connection (wire.py)."""
        return await self._kept.call(
            "XREAD", "COUNT", READ_COUNT, "BLOCK", self._block_ms, "STREAMS", self._keys.log, self.last_id
        )

    async def _resync(self) -> bool:
        keys = self._keys
        hub = self._hub
        meta_flat, states_flat, history_flat, recent = await self._read(
            keys=[keys.meta, keys.states, keys.history, keys.log], args=[hub.replay_size]
        )
        self._ok()
        meta = _pairs(meta_flat)
        epoch = meta.get("epoch")
        if epoch is None or meta.get("ready") != "1":
            # No log, or a log whose leader has no snapshot from Home Assistant yet: keep
            # the last view (a flushed Redis is back in a moment) and say so once.
            if self.epoch is not None and epoch != self.epoch and not self._waiting_said:
                self._waiting_said = True
                log.warning("The shared log in Redis was reset; waiting for the leader's first snapshot")
                self._local_status(UpstreamStatus.CONNECTING, "the shared log was reset; waiting for Home Assistant")
            return False
        states: dict[str, EntityState] = {
            entity_id: json.loads(data) for entity_id, data in _pairs(states_flat).items()
        }
        seq = int(meta.get("seq", "0"))
        # What differs goes to the open streams under ids nobody can resume from; from here on
        # the ids are the log's, with the log's recent past in the ring: a client that comes
        # from another instance resumes here too, even if this one just started.
        view = View(
            status=UpstreamStatus(meta.get("status", "connecting")),
            reason=meta.get("reason", ""),
            states=states,
            history=_history(history_flat),
            ready=True,
            position=(epoch, seq),
            past=_past(epoch, seq, recent, hub.replay_size),
        )
        hub.reset(view)
        if self.epoch is not None and epoch != self.epoch:
            log.warning("New epoch %s in the shared log (it was lost or reset): clients get a snapshot", epoch)
        self.epoch = epoch
        self.last_id = meta.get("last_id", "0-0")
        self.lag = 0
        self.resyncs += 1
        self._stale = self._waiting_said = False
        return True

    def _apply(self, entry_id: str, fields: Mapping[str, str]) -> bool:
        hub = self._hub
        if entry_id in self._foreign:
            self.last_id = entry_id
            return True
        try:
            entry = _entry(entry_id, fields)
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
            kind = fields.get("kind", "")
            log.warning("Malformed %s entry %s in the shared log (%s): skipped, starting over", kind, entry_id, e)
            self._foreign.append(entry_id)
            return False
        if not hub.apply(entry):
            # A read from last_id never returns an entry applied already: a seq this hub has
            # passed means the log went back (and that seq now names another event).
            self._went_back = entry.epoch == self.epoch and entry.seq <= hub.seq
            log.info(
                "Shared log out of step at %s (have %s-%d, entry %s-%d): starting over",
                entry_id,
                self.epoch,
                hub.seq,
                entry.epoch,
                entry.seq,
            )
            return False
        self.last_id = entry_id
        return True

    async def _log_went_back(self) -> None:
        self._went_back = False
        if await self._new_epoch(keys=[self._keys.meta], args=[self.epoch or "", self._hub.seq, cluster_epoch()]):
            log.warning(
                "The shared log went back (seq below %d in epoch %s: Redis lost its last writes); new epoch",
                self._hub.seq,
                self.epoch,
            )

    def _ok(self) -> None:
        if not self.connected and self.error is not None:
            log.info("Redis is reachable again: catching up from the shared log")
        self.connected = True
        self.error = None

    def _lost(self, e: BaseException) -> None:
        self.connected = False
        self.error = describe_redis_error(e)
        if self._stale:
            return
        self._stale = True
        log.warning("Redis unreachable (%s): streams stay open with the last data; retrying", self.error)
        # The stream says which link is down, not where it goes: the error (host and port) is
        # in the log line above and in /healthz's ``cluster.redis_error``.
        self._local_status(UpstreamStatus.DISCONNECTED, REDIS_DOWN)

    def _local_status(self, status: UpstreamStatus, reason: str) -> None:
        # A status of this instance alone: not a place in the log (the hub numbers it apart).
        self._hub.reset(View(status, reason, StatusCause.REDIS))
