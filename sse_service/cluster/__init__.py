"""Scale-out: instances that share one Redis share one upstream and one event log.

Imported only when ``REDIS_URL`` is set, so a single instance never needs redis-py.

* ``keys.py``: the Redis keys of a cluster (one prefix) and its epochs.
* ``lease.py``: leadership, a lease in Redis with a fencing token.
* ``log.py``: the event log (a stream, the current states, the meta hash), its fenced
  writer (the leader's upstream sink) and the reader that feeds every instance's hub.
* ``relay.py``: commands and history queries from any instance, carried to the leader.
* ``node.py``: one instance's membership: election, leadership, reading, health;
  ``ClusterUpstream`` stands in for the HAClient in the routes.
* ``rate.py``: ``COMMAND_RATE`` for the cluster, one token bucket per address in Redis.
* ``wire.py``: a connection kept by the log's reader and writer, which call Redis per event.
* ``metrics.py``: its part of ``/metrics``.

The hub needs one thing of its own for this: ``Hub.restart_log(epoch, seq)``, so that its ids
are the log's.
"""

from __future__ import annotations

from .node import ClusterNode

__all__ = ["ClusterNode"]
