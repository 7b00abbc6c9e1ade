"""What the routes need of the link to Home Assistant, whoever holds it.

One instance holds it itself (``ha.client.HAClient``); a member of a cluster that does not
lead asks the leader through Redis (``cluster.node.ClusterUpstream``). Both implement this
protocol, so the routes, health and metrics neither know nor care which they have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Upstream"]


class Upstream(Protocol):
    @property
    def ha_version(self) -> str | None: ...

    @property
    def connects(self) -> int: ...

    @property
    def pong_rtt(self) -> float | None: ...

    @property
    def connected(self) -> bool: ...

    @property
    def display_url(self) -> str: ...

    def retry_in(self) -> float | None:
        """Seconds until the next try to reach Home Assistant, or None while connected."""

    async def call_service(
        self,
        domain: str,
        service: str,
        service_data: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> Any:
        """HA's ``result``; raises NotConnected or HAError (ha.client)."""

    async def history(
        self, entity_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        """The recorder's numbers between two instants; raises NotConnected or HAError."""
