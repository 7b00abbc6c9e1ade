"""The seam between where ordered changes come from and the hub that serves them.

A log numbers what the upstream reports, in order: each ``Entry`` is a batch of changed states
and removals, a status, or the recorder's history, and says how many frames it makes and the
position after them. Its follower, the hub, applies the entries one by one and numbers their
frames alike, so an event has the same id wherever it is served. ``View`` is where a follower
(re)starts: the states, history and status at a position of the log, and the entries that led
there (for resumes).

One instance keeps its log in memory (``MemoryLog`` here); a cluster keeps it in Redis
(cluster/log.py), where every member follows it. Either way the upstream client writes to the
log (both are its sink) and the hub reads from it: a single instance runs the same path as a
member of a cluster.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Literal, NamedTuple

from .types import EntityState, StatusCause, UpstreamStatus

__all__ = ["Entry", "MemoryLog", "Point", "View"]

Point = tuple[float, float]
Kind = Literal["changes", "snapshot", "status", "history"]
# Shared, read-only: an entry without states or history allocates nothing for them.
_NO_STATES: Mapping[str, EntityState] = MappingProxyType({})
_NO_HISTORY: Mapping[str, Sequence[Point]] = MappingProxyType({})


class Entry(NamedTuple):
    # A tuple, not a dataclass: one is made per upstream change, and a frozen dataclass's
    # __init__ cost a microsecond of the ~13 the whole path takes.
    epoch: str
    seq: int  # the position after this entry: its frames are numbered seq - n + 1 ... seq
    n: int  # the frames it makes: one per changed or removed entity, one for a status, none for history
    kind: Kind  # "snapshot": changes that make the view whole (the hub is ready from then on)
    updated: Mapping[str, EntityState] = _NO_STATES
    removed: Sequence[str] = ()
    status: UpstreamStatus = UpstreamStatus.CONNECTING
    reason: str = ""
    cause: StatusCause = StatusCause.HOME_ASSISTANT
    at: float = 0.0  # when the log took it (epoch seconds): a status's "since"
    history: Mapping[str, Sequence[Point]] = _NO_HISTORY
    received: int = 0  # the upstream's items behind it, changed or not (for /metrics)


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """What a follower starts from. ``position`` None: a view of this instance alone (its Redis is
    gone), not a place in the log; the hub then keeps its states when ``states`` is None."""

    status: UpstreamStatus
    reason: str
    cause: StatusCause = StatusCause.HOME_ASSISTANT
    since: float | None = None
    states: Mapping[str, EntityState] | None = None
    history: Mapping[str, Sequence[Point]] = dataclasses.field(default_factory=lambda: _NO_HISTORY)
    ready: bool = False
    position: tuple[str, int] | None = None  # (epoch, seq) the numbering continues from
    past: Sequence[Entry] = ()  # the entries that end at ``position``, oldest first


class MemoryLog:
    """The log of a single instance: the upstream's sink, numbering entries for its one follower.

    It decides what changed with the comparison the hub's store makes (values, removals first),
    so the follower makes exactly ``n`` frames per entry. It keeps references to the states it
    has seen, not copies, and no history: that is the follower's.
    """

    def __init__(self, epoch: str, follower: Callable[[Entry], object]) -> None:
        self.epoch = epoch
        self.seq = 0
        self._follower = follower
        self._states: dict[str, EntityState] = {}

    def upstream_snapshot(self, states: dict[str, EntityState]) -> None:
        removed = [entity_id for entity_id in self._states if entity_id not in states]
        self._changes("snapshot", states, removed, len(states))

    def upstream_changes(self, updated: Mapping[str, EntityState], removed: Sequence[str]) -> None:
        self._changes("changes", updated, removed, len(updated) + len(removed))

    def upstream_status(self, status: UpstreamStatus, reason: str) -> None:
        self._append(Entry(self.epoch, self.seq + 1, 1, "status", status=status, reason=reason, at=time.time()))

    def upstream_history(self, recorded: Mapping[str, Sequence[Point]]) -> None:
        self._append(Entry(self.epoch, self.seq, 0, "history", history=recorded, at=time.time()))

    def _changes(self, kind: Kind, updated: Mapping[str, EntityState], removed: Sequence[str], received: int) -> None:
        states = self._states
        gone = [entity_id for entity_id in removed if states.pop(entity_id, None) is not None] if removed else []
        changed = {}
        for entity_id, state in updated.items():
            old = states.get(entity_id)
            if old is not state and old != state:
                states[entity_id] = changed[entity_id] = state
        n = len(changed) + len(gone)
        # An entry even when nothing changed: the follower counts what came in.
        self._append(Entry(self.epoch, self.seq + n, n, kind, changed, gone, received=received))

    def _append(self, entry: Entry) -> None:
        self.seq = entry.seq
        self._follower(entry)
