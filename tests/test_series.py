from __future__ import annotations

import random

import pytest

from sse_service.series import Series, downsample


def test_a_short_series_is_left_as_it_is() -> None:
    points = [(float(t), float(t % 7)) for t in range(10)]
    assert downsample(points, 10) == points


@pytest.mark.parametrize("limit", [2, 3, 10, 101, 500])
def test_downsampling_keeps_the_bound_the_order_the_extremes_and_the_newest(limit: int) -> None:
    rng = random.Random(limit)
    points = [(float(t), rng.gauss(0, 1)) for t in range(5000)]
    points[1234] = (1234.0, 50.0)
    points[4321] = (4321.0, -50.0)
    kept = downsample(points, limit)
    assert len(kept) <= limit
    assert kept == sorted(kept) and kept[-1] == points[-1]
    if limit >= 3:
        assert (1234.0, 50.0) in kept and (4321.0, -50.0) in kept


def test_a_live_series_stays_bounded_however_long_it_runs() -> None:
    series = Series(limit=50, window=3600.0)
    for t in range(20_000):
        series.append((float(t), float(t % 13)))
        assert len(series) <= 50
    assert series.points[-1] == (19_999.0, float(19_999 % 13))
    assert series.points[0][0] >= 19_999 - 3600


def test_a_repeated_value_adds_no_point_and_time_never_goes_back() -> None:
    series = Series(limit=10, window=0)
    assert series.append((10.0, 1.0))
    assert not series.append((11.0, 1.0))
    assert series.append((5.0, 2.0))  # the clock stepped back
    assert series.points == [(10.0, 1.0), (10.0, 2.0)]
