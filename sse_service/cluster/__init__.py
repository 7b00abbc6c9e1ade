"""Scale-out: instances that share one Redis share one upstream and one event log.

Imported only when ``REDIS_URL`` is set, so a single instance never needs redis-py.

* ``lease.py``: leadership, a lease in Redis with a fencing token.
* ``log.py``: the event log (a stream, the current states, the meta hash), its fenced
  writer (the leader's upstream sink) and the reader that feeds every instance's hub.
* ``relay.py``: commands and history queries from any instance, carried to the leader.
* ``node.py``: one instance's membership: election, leadership, reading, health.
"""

from __future__ import annotations

from .node import ClusterNode

__all__ = ["ClusterNode"]
