"""Logging: one handler, human-readable or JSON lines, secrets scrubbed from every line.

Also the access log. uvicorn's own would print each request's query string (where a stream
key may sit) and nothing at a stream's end; ours prints the path without the query, and
streams get their own open/close lines with duration and filter (see stream.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .access import client_ip
from .untrusted import loggable

__all__ = ["AccessLogMiddleware", "JsonFormatter", "RedactingFormatter", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then replaces any secret value (message, args or traceback) with ``***``.

    The code never logs a secret on purpose; this is the net under that rule.
    """

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The net under loggable() at the call sites: one record, one line (a traceback,
        # added after this, keeps its lines).
        record.message = loggable(record.message, limit=20_000)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for platform log consoles. Each field is scrubbed before encoding."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        if record.exc_info:
            entry["error"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, secrets: Iterable[str], fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    secrets = list(secrets)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else RedactingFormatter(TEXT_FORMAT, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    # websockets logs every frame at DEBUG, the auth message and its token included: our
    # client's under "websockets", the demo upstream's under its own logger (whose token,
    # made at start, is not among the secrets scrubbed above).
    for name in ("websockets", "sse_service.demo"):
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class AccessLogMiddleware:
    """One line per finished request: address, method, path (no query), status, time taken."""

    def __init__(self, app: ASGIApp, *, skip: tuple[str, ...] = ("/events",)) -> None:
        self.app = app
        self.skip = skip
        self.log = logging.getLogger("sse_service.access")

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: a stream passes straight through, without a frame of ours
        # held for its whole life (each costs memory per idle connection).
        if scope["type"] != "http" or scope["path"] in self.skip:
            return self.app(scope, receive, send)
        return self._logged(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.log.info(
                "%s %s %s %d %.1f ms",
                loggable(client_ip(scope)),
                loggable(scope["method"], 20),
                loggable(scope["path"]),
                status,
                elapsed,
            )
