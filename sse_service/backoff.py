"""When to try again: reconnect delays as generators, and which failures are worth retrying.

Every loop that keeps a connection (to Home Assistant, to Redis) takes its delays from one of
these generators and starts a fresh one once the connection worked again. As in
python-websockets (``process_exception``), the question "retry or give up?" is a small
function of the exception: a transient failure (the network, a peer going away) is retried
on the schedule; a :class:`Fatal` one (a refused credential) would fail again at once, so
retrying it soon only adds load or gets the caller banned; anything else is a bug and must
not be swallowed by a retry loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["Fatal", "doubling", "is_transient", "outage_delays"]


class Fatal(Exception):
    """A failure that an immediate retry cannot mend: wait long before the next try, or stop."""


def is_transient(error: BaseException, also: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether ``error`` is worth retrying on the schedule.

    ``OSError`` (refused, reset, unreachable; ``TimeoutError`` is one) always is, and so are the
    caller's own ``also`` (a protocol's "connection closed"); a :class:`Fatal` never is.
    """
    return not isinstance(error, Fatal) and isinstance(error, (OSError, *also))


def doubling(first: float = 0.1, cap: float = 2.0) -> Iterator[float]:
    """``first``, then twice the previous delay, up to ``cap`` (0.1, 0.2, 0.4 … 2.0, 2.0 …)."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


def outage_delays(
    since: float,
    clock: Callable[[], float],
    *,
    cap: float,
    first: float,
    fast: float,
    fast_period: float,
) -> Iterator[float]:
    """Delays that follow how long an outage has lasted rather than how many tries failed.

    ``first`` at once; then about ``fast`` (jittered down by up to 20 %) while the outage that
    began at ``since`` (on ``clock``) is younger than ``fast_period``; past that a tenth of its
    length (jittered down by up to half), never below ``fast``. Every delay is at most ``cap``.
    A try can take long (a connect timeout), so the outage is measured, not summed up.
    """
    yield min(first, cap)
    while True:
        outage = clock() - since
        if outage < fast_period:
            delay = fast * random.uniform(0.8, 1.0)
        else:
            delay = max(fast, outage / 10) * random.uniform(0.5, 1.0)
        yield min(delay, cap)
