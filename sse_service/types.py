"""The few shapes shared along the data path: an entity's state and the upstream status."""

from __future__ import annotations

import enum
from typing import Any, TypedDict

__all__ = ["EntityState", "UpstreamStatus"]


class EntityState(TypedDict):
    """One entity as clients see it. Built once per change and never mutated afterwards."""

    entity_id: str
    state: str
    attributes: dict[str, Any]
    last_changed: str
    last_updated: str


class UpstreamStatus(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_INVALID = "auth_invalid"
