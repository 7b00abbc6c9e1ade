"""Time series of one number: bounded in points and in time, downsampled keeping its shape. Pure.

A chart of a day of a battery needs its peaks and troughs, not every n-th point: a spike
between two kept samples would vanish. So a series that outgrows its bound is cut into
buckets of equal time, and each bucket keeps its lowest and its highest point, in time order
(min/max downsampling, as uPlot's and Grafana's decimation do). The newest point is always
kept: it is the value the page shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

__all__ = ["Point", "Series", "downsample"]

Point = tuple[float, float]  # (epoch seconds, value)


def downsample(points: Sequence[Point], limit: int) -> list[Point]:
    """At most ``limit`` points of time-sorted ``points``, keeping each bucket's min and max."""
    if len(points) <= limit:
        return list(points)
    if limit < 3:  # no room for a bucket's min and max beside the newest point
        return list(points[-limit:]) if limit > 0 else []
    last = points[-1]
    body = points[:-1]
    buckets = (limit - 1) // 2
    start, end = body[0][0], body[-1][0]
    span = (end - start) or 1.0
    kept: list[Point] = []
    lo: Point | None = None
    hi: Point | None = None
    current = -1
    for point in body:
        index = min(buckets - 1, int((point[0] - start) / span * buckets))
        if index != current:
            kept.extend(_in_order(lo, hi))
            lo = hi = point
            current = index
        else:
            assert lo is not None and hi is not None
            if point[1] < lo[1]:
                lo = point
            if point[1] > hi[1]:
                hi = point
    kept.extend(_in_order(lo, hi))
    kept.append(last)
    return kept


def _in_order(lo: Point | None, hi: Point | None) -> list[Point]:
    if lo is None or hi is None:
        return []
    if lo is hi:
        return [lo]
    return [lo, hi] if lo[0] <= hi[0] else [hi, lo]


class Series:
    """One entity's recent points: at most ``limit``, none older than ``window`` seconds before the newest."""

    __slots__ = ("limit", "points", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.points: list[Point] = []

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[Point]:
        return iter(self.points)

    def append(self, point: Point) -> bool:
        """Add a live point; False when it repeats the last value (nothing to draw)."""
        points = self.points
        if points and points[-1][1] == point[1]:
            return False
        if points and point[0] < points[-1][0]:
            point = (points[-1][0], point[1])  # a clock step back must not unsort the series
        points.append(point)
        if len(points) > self.limit:
            # Compact to three quarters so the next compaction is limit/4 appends away:
            # the cost per point stays constant however long the bridge runs.
            self._trim()
            self.points = downsample(self.points, max(2, self.limit * 3 // 4))
        return True

    def merge(self, recorded: Iterable[Point]) -> None:
        """Put the recorder's points under the live ones: the recorder wins up to its newest point."""
        past = sorted(recorded, key=lambda p: p[0])
        if not past:
            return
        newest = past[-1][0]
        live = [p for p in self.points if p[0] > newest]
        self.points = past + live
        self._trim()
        self.points = downsample(self.points, self.limit)

    def _trim(self) -> None:
        if self.points and self.window > 0:
            oldest = self.points[-1][0] - self.window
            if self.points[0][0] < oldest:
                self.points = [p for p in self.points if p[0] >= oldest]
