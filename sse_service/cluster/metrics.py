"""The cluster's part of ``/metrics``: role, Redis link, lag, leader changes, relayed commands.

Made from the very facts ``/healthz`` shows (``ClusterNode.describe``), so each is listed once
and this module needs nothing of the node but that function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ClusterCollector"]

# A number of describe() -> its metric.
_G, _C = GaugeMetricFamily, CounterMetricFamily
_NUMBERS: tuple[tuple[str, type[GaugeMetricFamily] | type[CounterMetricFamily], str, str], ...] = (
    ("members", _G, "sse_cluster_members", "Instances seen in the cluster recently"),
    ("leader_changes", _C, "sse_cluster_leader_changes", "Leaderships this instance saw begin (its own included)"),
    ("lag", _G, "sse_cluster_lag_frames", "Frames of the log not yet in this hub"),
    ("resyncs", _C, "sse_cluster_resyncs", "Times this instance started over from the states in Redis"),
    ("commands_forwarded", _C, "sse_cluster_commands_forwarded", "Requests this instance sent to the leader"),
    ("commands_served", _C, "sse_cluster_commands_served", "Requests this instance answered as the leader"),
)


class ClusterCollector(Collector):
    def __init__(self, describe: Callable[[], Mapping[str, Any]]) -> None:
        self._describe = describe

    def collect(self) -> Iterator[Metric]:
        facts = self._describe()
        yield GaugeMetricFamily(
            "sse_cluster_leader", "1 while this instance holds the upstream", facts["role"] == "leader"
        )
        yield GaugeMetricFamily(
            "sse_cluster_redis_up", "1 while this instance reads the log from Redis", facts["redis"] == "connected"
        )
        for field, family, name, documentation in _NUMBERS:
            yield family(name, documentation, facts[field])
