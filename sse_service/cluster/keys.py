"""The Redis keys of one cluster, all under one prefix (``REDIS_PREFIX``), and its epochs."""

from __future__ import annotations

import dataclasses
import secrets

from ..hub import new_epoch

__all__ = ["Keys", "cluster_epoch"]


@dataclasses.dataclass(frozen=True)
class Keys:
    prefix: str = "sse:"

    @property
    def lease(self) -> str:
        """Who holds the upstream: ``<instance id>:<fencing token>``, with an expiry."""
        return self.prefix + "lease"

    @property
    def fence(self) -> str:
        """The fencing token counter: one INCR per attempt to lead."""
        return self.prefix + "fence"

    @property
    def meta(self) -> str:
        """Hash: ``epoch``, ``seq`` (frames so far), ``last_id`` (stream id), ``status``, ``reason``, ``ready``."""
        return self.prefix + "meta"

    @property
    def states(self) -> str:
        """Hash: entity id -> state JSON, valid at ``meta.last_id``."""
        return self.prefix + "states"

    @property
    def history(self) -> str:
        """Hash: entity id -> its points as JSON (the history snapshots carry), valid at ``meta.last_id``."""
        return self.prefix + "history"

    @property
    def log(self) -> str:
        """Stream: one entry per upstream call (``epoch``, ``seq``, ``n``, ``kind``, ``data``)."""
        return self.prefix + "log"

    @property
    def members(self) -> str:
        """Sorted set: instance id -> the time of its last heartbeat."""
        return self.prefix + "members"

    @property
    def requests(self) -> str:
        """List: commands and history queries for the leader."""
        return self.prefix + "requests"

    def rate(self, ip: str) -> str:
        """Hash: the command token bucket of one client address (``tokens``, ``at``), expiring."""
        return f"{self.prefix}rate:{ip}"

    def reply(self, request_id: str) -> str:
        return f"{self.prefix}reply:{request_id}"


def cluster_epoch() -> str:
    """A new epoch for the log: the time in base 36 and some randomness, so two never match."""
    return new_epoch() + secrets.token_hex(2)
