"""The cluster's part of ``/metrics``: role, Redis link, lag, leader changes, relayed commands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .node import ClusterNode

__all__ = ["ClusterCollector"]


class ClusterCollector(Collector):
    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node, reader, relay = self._node, self._node.reader, self._node.relay
        yield GaugeMetricFamily("sse_cluster_leader", "1 while this instance holds the upstream", node.role == "leader")
        yield GaugeMetricFamily("sse_cluster_redis_up", "1 while this instance reads the log from Redis", node.redis_ok)
        yield GaugeMetricFamily("sse_cluster_members", "Instances seen in the cluster recently", node.members)
        yield CounterMetricFamily(
            "sse_cluster_leader_changes", "Leaderships this instance saw begin (its own included)", node.leader_changes
        )
        yield GaugeMetricFamily("sse_cluster_lag_frames", "Frames of the log not yet in this hub", reader.lag)
        yield CounterMetricFamily(
            "sse_cluster_resyncs", "Times this instance started over from the states in Redis", reader.resyncs
        )
        yield CounterMetricFamily(
            "sse_cluster_commands_forwarded", "Requests this instance sent to the leader", relay.forwarded
        )
        yield CounterMetricFamily(
            "sse_cluster_commands_served", "Requests this instance answered as the leader", relay.served
        )
