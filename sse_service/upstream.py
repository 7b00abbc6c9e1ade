"""What the routes need of the link to Home Assistant, whoever holds it.

One instance holds it itself (``ha.client.HAClient``); a member of a cluster that does not
lead asks the leader through Redis (``cluster.node.ClusterUpstream``). Both implement this
protocol, so the routes, health and metrics neither know nor care which they have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["HAError", "NotConnected", "Upstream"]


class NotConnected(Exception):
    """No authenticated connection to HA right now (or it dropped while a call was in flight)."""


class HAError(Exception):
    """HA answered a command with ``success: false``: its code and message, passed on as they are."""

    def __init__(self, code: str, message: str, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


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
        """HA's ``result``; raises NotConnected or HAError."""

    async def history(
        self, entity_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        """The recorder's numbers between two instants; raises NotConnected or HAError."""
