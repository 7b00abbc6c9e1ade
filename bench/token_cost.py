"""What a token costs the hub per event: two token streams against two filtered streams.

A token's view and a stream's own ``?entity_id=`` become one filter (filters.AllOf), which the
hub's entity index consults when a stream registers or an entity first appears, never per
event. This measures that claim in-process, without sockets: the same upstream changes go
through the log in memory and ``Hub.apply`` (encode once, index lookup, one write per subscriber) with

* ``filtered``: two streams with plain ``?entity_id=`` filters,
* ``tokens``: two streams whose token and filter intersect to the same two views
  (overlapping scopes: both see the battery),

and prints the hub's CPU time per upstream change for each, in alternating rounds.

    .venv/bin/python bench/token_cost.py [--entities 200] [--changes 50000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from sse_service.changelog import MemoryLog
from sse_service.filters import EntityFilter, EntityPattern, combine
from sse_service.hub import Hub
from sse_service.types import EntityState

VIEWS = (["sensor.solar_*", "sensor.battery_*"], ["sensor.battery_*", "switch.*"])
TOKENS = (["sensor.*"], ["sensor.battery_*", "switch.*", "light.*"])


class Sink:
    """A subscriber that keeps only a byte count."""

    def __init__(self, pattern: EntityFilter | None, *, compact: bool = False) -> None:
        self.filter = pattern
        self.compact = compact
        self.last_tick = 0
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)

    def close(self, final: bytes) -> None:
        pass


def state(entity_id: str, value: int) -> EntityState:
    return {
        "entity_id": entity_id,
        "state": str(value),
        "attributes": {"unit_of_measurement": "W"},
        "last_changed": "2026-12-01T10:00:00+00:00",
        "last_updated": "2026-12-01T10:00:00+00:00",
    }


def entity_ids(count: int) -> list[str]:
    domains = ("sensor.solar_", "sensor.battery_", "sensor.house_", "switch.", "light.", "climate.")
    return [f"{domains[i % len(domains)]}{i}" for i in range(count)]


def run(filters: Sequence[EntityFilter | None], ids: list[str], changes: int) -> tuple[float, int]:
    hub = Hub(replay_size=1024)
    log = MemoryLog(hub.epoch, hub.apply)  # as a single instance runs: the upstream writes, the hub follows
    log.upstream_snapshot({e: state(e, 0) for e in ids})
    sinks = [Sink(f) for f in filters]
    for sink in sinks:
        hub.subscribe(sink)
    started = time.process_time()
    for n in range(changes):
        entity_id = ids[n % len(ids)]
        log.upstream_changes({entity_id: state(entity_id, n + 1)}, ())
    elapsed = time.process_time() - started
    return elapsed / changes * 1e6, sum(s.received for s in sinks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    ids = entity_ids(args.entities)
    filtered = [EntityPattern(v) for v in VIEWS]
    tokens = [combine(EntityPattern(t), EntityPattern(v)) for t, v in zip(TOKENS, VIEWS, strict=True)]
    results: dict[str, list[float]] = {"filtered": [], "tokens": []}
    delivered: dict[str, int] = {}
    for r in range(args.rounds):
        order = ("filtered", "tokens") if r % 2 == 0 else ("tokens", "filtered")  # A-B-B-A
        for name in order:
            cost, received = run(filtered if name == "filtered" else tokens, ids, args.changes)
            results[name].append(cost)
            delivered[name] = received
    assert delivered["filtered"] == delivered["tokens"], "both see exactly the same events"
    for name, costs in results.items():
        print(
            f"{name:9} {statistics.median(costs):6.2f} µs per upstream change (median of {len(costs)}: "
            f"{', '.join(f'{c:.2f}' for c in costs)})"
        )
    ratio = statistics.median(results["tokens"]) / statistics.median(results["filtered"])
    print(f"tokens / filtered: {ratio:.2f}  ({args.entities} entities, {args.changes} changes per round)")


if __name__ == "__main__":
    main()
