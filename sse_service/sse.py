"""SSE framing, in one place. Every frame is encoded once and the same bytes go to every client.

Field encoding is sse-starlette's :class:`ServerSentEvent` (data split into ``data:`` lines,
CR/LF stripped from ``id`` and ``event``, CRLF line ends). JSON payloads never contain a raw
newline, so each event is one ``data:`` line.
"""

from __future__ import annotations

import json
from typing import Any

from sse_starlette import ServerSentEvent

__all__ = ["dumps", "event", "retry"]


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 kept as is; NaN is refused rather than sent as invalid JSON."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def event(name: str, data: str, event_id: str | None = None) -> bytes:
    return ServerSentEvent(data=data, event=name, id=event_id).encode()


def retry(milliseconds: int) -> bytes:
    return ServerSentEvent(retry=milliseconds).encode()
