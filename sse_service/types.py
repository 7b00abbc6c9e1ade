"""The few shapes shared along the data path: an entity's state and the upstream status."""

from __future__ import annotations

import enum
from typing import Any, NotRequired, TypedDict

__all__ = ["EntityState", "StatusCause", "UpstreamStatus"]


class EntityState(TypedDict):
    """One entity as clients see it, in the shape of HA's REST API (``/api/states``).

    Built once per change and never mutated afterwards. ``context`` (``id``, ``parent_id``,
    ``user_id``: who or what made the change) always comes from HA; ``last_reported`` only
    from HA 2024.4 on, which has the field.
    """

    entity_id: str
    state: str
    attributes: dict[str, Any]
    last_changed: str
    last_reported: NotRequired[str]
    last_updated: str
    context: NotRequired[dict[str, Any]]


class UpstreamStatus(enum.StrEnum):
    CONNECTING = "connecting"
    # Connected to a Home Assistant that is not RUNNING yet: its entities are still loading,
    # so what it says is not the whole truth and nothing is removed on its word alone.
    STARTING = "starting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_INVALID = "auth_invalid"


class StatusCause(enum.StrEnum):
    """Which link a status is about, for machines; the ``reason`` beside it is for people."""

    HOME_ASSISTANT = "home_assistant"  # the bridge's connection to Home Assistant
    REDIS = "redis"  # a cluster member's connection to its Redis (or the shared log in it)
