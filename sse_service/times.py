"""Instants as the service writes them: ISO 8601 text in UTC, as Home Assistant does."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_from_timestamp", "timestamp_from_iso"]


def iso_from_timestamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def timestamp_from_iso(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
