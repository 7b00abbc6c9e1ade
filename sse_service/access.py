"""Who may watch and who may act: keys, per-client rate limits and stream caps.

Everything here is synchronous bookkeeping: no I/O, so the routes can check before they
read a body or start a stream.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import Headers, QueryParams
from starlette.types import Scope

from .config import Secret

__all__ = ["KEY_COOKIE", "KEY_PARAM", "Keys", "RateLimiter", "Refusal", "StreamLimits", "client_ip"]

KEY_PARAM = "key"  # ?key= on the stream: EventSource cannot send an Authorization header
KEY_COOKIE = "sse_key"


def client_ip(scope: Scope) -> str:
    """The client's address as the server saw it (after trusted proxy headers, see server.py)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _same(given: str | None, key: Secret | None) -> bool:
    if given is None or key is None:
        return False
    # Constant time, so the answer's timing tells nothing about how much of a guess was right.
    return hmac.compare_digest(given.encode(), key.reveal().encode())


def _bearer(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _cookie(headers: Headers, name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        cookie = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = cookie.get(name)
    return morsel.value if morsel is not None else None


@dataclass(frozen=True)
class Keys:
    """The optional read and write keys.

    The write key also grants reading. Without a write key, commands need the read key
    (if there is one): a deployment with a read key never has open commands by accident.
    """

    read: Secret | None = None
    write: Secret | None = None

    def may_read(self, headers: Headers, query: QueryParams | Mapping[str, str]) -> bool:
        if self.read is None and self.write is None:
            return True
        for given in (_bearer(headers), query.get(KEY_PARAM), _cookie(headers, KEY_COOKIE)):
            if _same(given, self.read) or _same(given, self.write):
                return True
        return False

    def may_write(self, headers: Headers) -> bool:
        # Only the header for commands: a cookie would be sent by any page that posts to us.
        if self.write is not None:
            return _same(_bearer(headers), self.write)
        if self.read is not None:
            return _same(_bearer(headers), self.read)
        return True


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after: int


class StreamLimits:
    """A cap on open streams in total and per client address."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.open = 0
        self._by_ip: dict[str, int] = {}

    def acquire(self, ip: str) -> Refusal | None:
        if self.open >= self.total:
            return Refusal(503, "server_full", f"this server has its maximum of {self.total} open streams", 30)
        held = self._by_ip.get(ip, 0)
        if held >= self.per_ip:
            message = f"too many open streams from your address (the limit is {self.per_ip})"
            return Refusal(429, "too_many_streams", message, 30)
        self._by_ip[ip] = held + 1
        self.open += 1
        return None

    def release(self, ip: str) -> None:
        held = self._by_ip.get(ip, 0) - 1
        if held > 0:
            self._by_ip[ip] = held
        else:
            self._by_ip.pop(ip, None)
        self.open -= 1


class RateLimiter:
    """A token bucket per client address: ``burst`` at once, then ``per_minute``.

    The table is bounded: when it is full, buckets that have refilled (idle clients) are
    dropped, and if none has, the oldest entries go.
    """

    def __init__(self, per_minute: float, burst: int, *, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, at)

    def take(self, ip: str, now: float | None = None) -> float:
        """Spend one token. Returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[ip] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if ip not in self._buckets and len(self._buckets) >= self.max_clients:
            self._evict(now)
        self._buckets[ip] = (tokens - 1.0, now)
        return 0.0

    def _evict(self, now: float) -> None:
        full = [ip for ip, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for ip in full:
            del self._buckets[ip]
        while len(self._buckets) >= self.max_clients:
            del self._buckets[next(iter(self._buckets))]

    @staticmethod
    def retry_after(seconds: float) -> int:
        return max(1, math.ceil(seconds))
