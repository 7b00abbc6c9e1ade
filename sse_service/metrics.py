"""``GET /metrics``: Prometheus text format, one registry per app.

The hot path only bumps plain integer counters on the hub (a Prometheus counter takes a lock
on every ``inc``); this collector turns them into metric families when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from .access import Keys
from .responses import read_denied
from .types import UpstreamStatus

if TYPE_CHECKING:
    from .hub import Hub
    from .upstream import Upstream

__all__ = ["Metrics"]

# Fan-out of one upstream batch to every subscriber: from microseconds to a second.
FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _HubCollector(Collector):
    def __init__(self, hub: Hub, upstream: Upstream, token_streams: Mapping[str, int] | None = None) -> None:
        self._hub = hub
        self._upstream = upstream
        self._token_streams = token_streams

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        clients = GaugeMetricFamily("sse_clients", "Open event streams, by filter kind", labels=["filter"])
        clients.add_metric(["all"], hub.unfiltered_count)
        clients.add_metric(["filtered"], hub.client_count - hub.unfiltered_count)
        yield clients
        formats = GaugeMetricFamily(
            "sse_clients_by_format", "Open event streams, by format (?format=)", labels=["format"]
        )
        formats.add_metric(["compact"], hub.compact_count)
        formats.add_metric(["full"], hub.client_count - hub.compact_count)
        yield formats
        if self._token_streams is not None:
            # By the token's sub (cleaned when the token was read), never the token itself.
            by_token = GaugeMetricFamily("sse_token_streams", "Open event streams, by token name (sub)", labels=["sub"])
            for name, count in sorted(self._token_streams.items()):
                by_token.add_metric([name], count)
            yield by_token
        yield CounterMetricFamily("sse_upstream_changes", "Entity changes received from Home Assistant", hub.events_in)
        yield CounterMetricFamily("sse_events", "Events published to the streams (state, remove, status)", hub.seq)
        yield CounterMetricFamily("sse_deliveries", "Events written to client streams", hub.deliveries)
        yield CounterMetricFamily("sse_bytes", "Bytes of events and snapshots written to client streams", hub.bytes_out)
        resumes = CounterMetricFamily("sse_resumes", "Stream starts, by what the client got first", labels=["kind"])
        resumes.add_metric(["replay"], hub.replays)
        resumes.add_metric(["snapshot"], hub.snapshots)
        yield resumes
        yield CounterMetricFamily(
            "sse_slow_client_resets", "Slow clients whose buffer overflowed, reset with a fresh snapshot", hub.resets
        )
        yield GaugeMetricFamily("sse_entities", "Entities exposed and known", len(hub.store))
        status = GaugeMetricFamily("sse_upstream_status", "Upstream connection state (1 = current)", labels=["status"])
        for value in UpstreamStatus:
            status.add_metric([value.value], 1.0 if hub.status is value else 0.0)
        yield status
        client = self._upstream
        yield CounterMetricFamily("sse_upstream_connects", "Authenticated connections to HA", client.connects)
        if client.pong_rtt is not None:
            yield GaugeMetricFamily("sse_upstream_ping_seconds", "Round trip of the last HA ping", client.pong_rtt)


class Metrics:
    def __init__(
        self, hub: Hub, upstream: Upstream, *, keys: Keys, token_streams: Mapping[str, int] | None = None
    ) -> None:
        self._keys = keys
        self.registry = CollectorRegistry()
        self.registry.register(_HubCollector(hub, upstream, token_streams))
        self.commands = Counter(
            "sse_commands", "Service calls on the command route, by outcome", ["outcome"], registry=self.registry
        )
        self.token_commands = Counter(
            "sse_token_commands",
            "Service calls made with a token, by token name (sub) and outcome",
            ["sub", "outcome"],
            registry=self.registry,
        )
        self.fanout = Histogram(
            "sse_fanout_seconds",
            "Time from an upstream batch reaching the hub to its bytes handed to the last subscriber",
            buckets=FANOUT_BUCKETS,
            registry=self.registry,
        )

    def command(self, outcome: str, token_name: str | None = None) -> None:
        self.commands.labels(outcome).inc()
        if token_name is not None:
            self.token_commands.labels(token_name, outcome).inc()

    async def endpoint(self, request: Request) -> Response:
        if denied := read_denied(self._keys, request, whole_view=True):
            return denied
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
