#!/usr/bin/env python3
"""What one upstream change costs in-process, by the formats its streams read (issue 27).

The path a single instance runs (``MemoryLog`` → ``Hub.apply`` → frames → writes), with one
subscriber per format listed and a sink that only counts bytes: so it is the cost of comparing,
numbering and encoding a change once per format, without sockets. Ten power sensors in HA's
shape, each change a new value, time and context. Minimum of six rounds of 20,000 changes;
the rows run interleaved, twice, as the machine is noisy.

    .venv/bin/python bench/change_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from token_cost import Sink  # bench/ is on sys.path: this file runs as a script

from sse_service.changelog import MemoryLog
from sse_service.hub import Hub
from sse_service.times import iso_from_timestamp
from sse_service.types import EntityState

ATTRIBUTES = {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement", "friendly_name": "P"}
CHANGES = 20_000
ROUNDS = 6


def state(i: int, n: int) -> EntityState:
    at = iso_from_timestamp(1796000000 + n * 0.123457)
    return {
        "entity_id": f"sensor.power_{i}",
        "state": str(n),
        "attributes": ATTRIBUTES,
        "last_changed": at,
        "last_reported": at,
        "last_updated": at,
        "context": {"id": f"01JF{n:022d}", "parent_id": None, "user_id": None},
    }


def microseconds_per_change(formats: tuple[str, ...]) -> float:
    hub = Hub()
    log = MemoryLog(hub.epoch, hub.apply)
    log.upstream_snapshot({f"sensor.power_{i}": state(i, 0) for i in range(10)})
    for name in formats:
        hub.subscribe(Sink(None, compact=name == "compact"))
    best = float("inf")
    for round_ in range(ROUNDS):
        changes = [state(n % 10, round_ * CHANGES + n + 1) for n in range(CHANGES)]
        started = time.perf_counter()
        for change in changes:
            log.upstream_changes({change["entity_id"]: change}, [])
        best = min(best, (time.perf_counter() - started) / CHANGES * 1e6)
    return best


def main() -> None:
    rows: list[tuple[str, ...]] = [(), ("full",), ("compact",), ("full", "compact")]
    figures: dict[tuple[str, ...], list[float]] = {row: [] for row in rows}
    for _ in range(2):
        for row in rows:
            figures[row].append(microseconds_per_change(row))
    print("| streams read | µs per change, run 1 / run 2 |")
    print("|---|---|")
    for row in rows:
        print(f"| {' + '.join(row) or 'none'} | {' / '.join(f'{f:.1f}' for f in figures[row])} |")


if __name__ == "__main__":
    main()
