"""Reconnect delays and the retry-or-not question (sse_service/backoff.py)."""

from __future__ import annotations

import itertools

from sse_service.backoff import Fatal, doubling, is_transient, outage_delays


def test_doubling_starts_small_doubles_and_stays_at_the_cap() -> None:
    assert list(itertools.islice(doubling(0.1, 2.0), 8)) == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]


def test_the_network_and_the_callers_own_errors_are_transient_a_fatal_one_never() -> None:
    class Closed(Exception):
        pass

    class Refused(Fatal, OSError):
        pass

    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert is_transient(Closed(), (Closed,)) and not is_transient(Closed())
    assert not is_transient(Refused()) and not is_transient(Fatal(), (Fatal,))
    assert not is_transient(ValueError("a bug"))


def test_outage_delays_follow_the_clock_not_the_number_of_tries() -> None:
    now = [100.0]
    delays = outage_delays(100.0, lambda: now[0], cap=30.0, first=0.25, fast=1.0, fast_period=60.0)
    assert next(delays) == 0.25
    now[0] = 150.0
    assert 0.8 <= next(delays) <= 1.0
    now[0] = 400.0  # five minutes in: about a tenth of it
    assert 15.0 <= next(delays) <= 30.0
