"""SSE framing, in one place. Every frame is encoded once and the same bytes go to every client.

The full stream's field encoding is sse-starlette's :class:`ServerSentEvent` (data split into
``data:`` lines, CR/LF stripped from ``id`` and ``event``, CRLF line ends). The compact stream
(``compact_event``) writes the same fields in fewer bytes: LF line ends, no space after the
colon, and no ``event:`` line for the commonest event. JSON payloads never contain a raw
newline (JSON escapes CR and LF), and ids and names are the hub's own, so each event is one
``data:`` line either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from sse_starlette import ServerSentEvent

__all__ = ["Framing", "compact_event", "compact_retry", "dumps", "event", "framing", "retry"]


# One encoder for every call: json.dumps with options builds a new one each time (a third of
# the cost of encoding a small value).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 kept as is; NaN is refused rather than sent as invalid JSON."""
    return _ENCODER.encode(value)


def event(name: str, data: str, event_id: str | None = None) -> bytes:
    return ServerSentEvent(data=data, event=name, id=event_id).encode()


def retry(milliseconds: int) -> bytes:
    return ServerSentEvent(retry=milliseconds).encode()


def compact_retry(milliseconds: int) -> bytes:
    return f"retry:{milliseconds}\n\n".encode()


def compact_event(name: str | None, data: str, event_id: str | None = None) -> bytes:
    """A frame of the compact stream; ``name`` None: an EventSource's ``message`` event."""
    head = "" if event_id is None else f"id:{event_id}\n"
    if name is not None:
        head += f"event:{name}\n"
    return f"{head}data:{data}\n\n".encode()


class Framing(NamedTuple):
    """A stream's format: how it writes an event and a ``retry:``."""

    event: Callable[[str, str], bytes]  # (name, data): an event with no id
    retry: Callable[[int], bytes]


FULL = Framing(event, retry)
COMPACT = Framing(compact_event, compact_retry)


def framing(compact: bool) -> Framing:
    return COMPACT if compact else FULL
