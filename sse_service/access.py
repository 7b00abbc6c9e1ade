"""Who may watch and who may act: keys, tokens, per-client rate limits and stream caps.

Everything here is synchronous bookkeeping: no I/O, so the routes can check before they
read a body or start a stream.

A request's credential becomes a :class:`Grant`: what it may see and call. Static keys see
everything the bridge exposes; a token (tokens.py) sees its own globs, within that. The
routes apply a grant's view; nothing else decides who sees what.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.datastructures import Headers, QueryParams
from starlette.types import Scope

from .config import Secret, Settings
from .filters import EntityPattern
from .tokens import TokenClaims, TokenRefused, TokenVerifier, looks_like_token
from .untrusted import loggable

__all__ = [
    "KEY_COOKIE",
    "KEY_PARAM",
    "TOKEN_PARAM",
    "CommandRate",
    "Denied",
    "Grant",
    "Keys",
    "RateLimiter",
    "Refusal",
    "StreamLimits",
    "client_ip",
]

KEY_PARAM = "key"  # ?key= on the stream: EventSource cannot send an Authorization header
TOKEN_PARAM = "token"  # ?token=, the same place for a token (either takes either)
KEY_COOKIE = "sse_key"
# Of all Cookie headers together, this much is read: far above a real one (browsers cap a
# cookie at 4 KB, nginx a header line at 8 KB by default); an sse_key past it is not seen.
MAX_COOKIE_CHARS = 16 * 1024
_COOKIE_ESCAPE = re.compile(r"\\(?:([0-3][0-7]{2})|(.))", re.S)


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
    """The value of the cookie ``name`` (the first one, as a browser lists the most specific first).

    Not ``http.cookies.SimpleCookie``: it parses every cookie, and before Python 3.11.10 and
    3.12.6 it takes quadratic time on backslashes in a quoted value (CVE-2024-7592), so one
    request of 80 KB froze the event loop for seconds before any key was checked. This is one
    linear pass over at most ``MAX_COOKIE_CHARS`` of the header, looking at names only.
    """
    budget = MAX_COOKIE_CHARS
    for raw in headers.getlist("cookie"):
        text = raw[:budget]
        budget -= len(text)
        pairs = text.split(";")
        if len(text) < len(raw):
            pairs.pop()  # cut short: its last pair may be a part of a value
        for pair in pairs:
            key, equals, value = pair.partition("=")
            if equals and key.strip() == name:
                return _unquote(value.strip())
        if budget <= 0:
            break
    return None


def _unquote(value: str) -> str:
    """A cookie value without its double quotes, escapes resolved as SimpleCookie wrote them."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    return _COOKIE_ESCAPE.sub(lambda m: chr(int(m[1], 8)) if m[1] else m[2], value[1:-1])


@dataclass(frozen=True, slots=True)
class Grant:
    """What one request may see and call.

    ``entities`` None: every exposed entity. ``services`` None: every allowed service. A
    token's grant narrows both (always within ``ENTITIES`` and ``ALLOWED_SERVICES``, which
    the routes apply as well). ``name`` is the token's ``sub``, cleaned for logs and metrics.
    """

    entities: EntityPattern | None = None
    services: EntityPattern | None = None
    token: TokenClaims | None = None
    name: str | None = None

    @classmethod
    def of_token(cls, claims: TokenClaims) -> Grant:
        name = loggable(claims.sub, 64) if claims.sub else "unnamed"
        entities = None if claims.entities.matches_all else claims.entities
        return cls(entities, claims.services, claims, name)

    @property
    def expires(self) -> float | None:
        return self.token.expires if self.token is not None else None

    @property
    def label(self) -> str:
        """Who this is, for a log line: ``token public-site``, or ``key``."""
        return f"token {self.name}" if self.token is not None else "key"

    def sees(self, entity_id: str) -> bool:
        return self.entities is None or self.entities(entity_id)

    def may_call(self, service: str) -> bool:
        return self.services is None or self.services(service)


EVERYTHING = Grant()


@dataclass(frozen=True, slots=True)
class Denied:
    """No grant: the 401 to answer (``code``, ``message``)."""

    code: str
    message: str


@dataclass(frozen=True)
class Keys:
    """The optional read and write keys, and the verifier of signed tokens.

    The write key also grants reading. Without a write key, commands need the read key
    (if there is one): a deployment with a read key never has open commands by accident.
    With ``TOKEN_SECRET`` set nothing is open: reading needs a key or a token (else a token
    for a public page would narrow nothing), and commands a write key or a token whose
    ``services`` allow them.

    ``ingress`` is the credential of requests that came through Home Assistant's Ingress
    (proxy.IngressMiddleware puts it in their ``Authorization``): random, made at start, never
    shown. It grants what the write key grants; it is not a key anyone is given.
    """

    read: Secret | None = None
    write: Secret | None = None
    tokens: TokenVerifier | None = None
    ingress: Secret | None = None

    @classmethod
    def from_settings(cls, settings: Settings, ingress: Secret | None = None) -> Keys:
        verifier = None
        if settings.token_secret is not None:
            verifier = TokenVerifier(settings.token_secret, revoked=settings.token_revoked)
        return cls(settings.read_key, settings.write_key, verifier, ingress)

    @property
    def open(self) -> bool:
        return self.read is None and self.write is None and self.tokens is None

    def reader(self, headers: Headers, query: QueryParams | Mapping[str, str]) -> Grant | Denied:
        """The grant of the first valid credential: the header, ``?token=``, ``?key=``, the cookie.

        When none is valid, the refusal of the first token given (it says exactly what is
        wrong with it), else a plain "a key is required".
        """
        if self.open or _same(_bearer(headers), self.ingress):
            return EVERYTHING
        given = (_bearer(headers), query.get(TOKEN_PARAM), query.get(KEY_PARAM), _cookie(headers, KEY_COOKIE))
        refused: Denied | None = None
        for credential in given:
            if credential is None:
                continue
            if _same(credential, self.read) or _same(credential, self.write):
                return EVERYTHING
            grant = self._token(credential)
            if isinstance(grant, Grant):
                return grant
            refused = refused or grant
        return refused or self._missing("read key or token" if self.tokens else "read key", header_only=False)

    def writer(self, headers: Headers) -> Grant | Denied:
        """The grant for a command. Only the header: a cookie would be sent by any page that posts to us."""
        if self.open:
            return EVERYTHING
        given = _bearer(headers)
        if _same(given, self.ingress) or _same(given, self.write) or self.write is None and _same(given, self.read):
            return EVERYTHING
        if given is not None and (grant := self._token(given)) is not None:
            return grant
        if self.write is None and self.read is None:
            return self._missing("token", header_only=True)
        return self._missing("write key or token" if self.tokens else "write key", header_only=True)

    def may_command(self, headers: Headers, query: QueryParams | Mapping[str, str]) -> bool:
        """Whether the credential this reader came with would also be taken for a command.

        The page sends the one it was opened with as ``Authorization: Bearer`` on its commands, so
        it can tell a read-only viewer before a toggle is tapped (the snapshot's ``can_call``).
        """
        if self.open:
            return True
        given = (_bearer(headers), query.get(TOKEN_PARAM), query.get(KEY_PARAM), _cookie(headers, KEY_COOKIE))
        for credential in given:
            if credential is None:
                continue
            if _same(credential, self.ingress):
                return True  # Home Assistant's Ingress: its user logged in to Home Assistant itself
            if _same(credential, self.write) or _same(credential, self.read):
                return self.writer(Headers({"authorization": f"Bearer {credential}"})) is EVERYTHING
            grant = self._token(credential)
            if isinstance(grant, Grant):
                return grant.services is None or bool(grant.services.globs)
        return False

    def _token(self, credential: str) -> Grant | Denied | None:
        """The grant of a token, its refusal, or None for something that is not a token at all."""
        if not looks_like_token(credential):
            return None
        if self.tokens is None:
            return Denied("unauthorized", "this bridge accepts no tokens (TOKEN_SECRET is not set); use its key")
        try:
            return Grant.of_token(self.tokens.verify(credential))
        except TokenRefused as e:
            return Denied(e.code, e.message)

    @staticmethod
    def _missing(what: str, *, header_only: bool) -> Denied:
        if header_only:
            return Denied("unauthorized", f"a valid {what} is required: send it as 'Authorization: Bearer <{what}>'")
        where = "'Authorization: Bearer <value>', ?token=<value>, ?key=<value> or an sse_key cookie"
        return Denied("unauthorized", f"a valid {what} is required: {where}")


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


class CommandRate(Protocol):
    async def wait(self, ip: str) -> float:
        """Spend one of this address's tokens: 0 when allowed, else the seconds until one is."""
        ...


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

    async def wait(self, ip: str) -> float:
        """``take``, as CommandEndpoint asks it (a cluster's limiter must ask Redis)."""
        return self.take(ip)

    def _evict(self, now: float) -> None:
        full = [ip for ip, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for ip in full:
            del self._buckets[ip]
        while len(self._buckets) >= self.max_clients:
            del self._buckets[next(iter(self._buckets))]

    @staticmethod
    def retry_after(seconds: float) -> int:
        return max(1, math.ceil(seconds))
