"""Signed tokens: a JWT (HS256, signed with ``TOKEN_SECRET``) says what one viewer may see and do.

One module for minting, verifying and revoking: the claims' rules are read in one place.

Design record
-------------
* **The ecosystem's format.** A token is a plain JWT, so any backend mints one with its
  usual library (PyJWT, jsonwebtoken, jose); verification is PyJWT's, never our own crypto.
  Claims: ``entities`` (globs, required), ``services`` (``domain.service`` globs; none
  without it), ``exp`` (optional), ``nbf``, ``sub`` (a name for logs and metrics), ``jti``.
* **One algorithm.** Only HS256 is accepted; the header's ``alg`` is read first, so
  ``none``, another HMAC or an RSA/EC algorithm is refused with a message that says so.
* **Narrowed, never widened.** A token's globs only narrow what the bridge exposes:
  ``ENTITIES`` still decides what leaves the process, ``ALLOWED_SERVICES`` what may be
  called. access.py intersects them.
* **Clocks.** ``nbf`` and ``iat`` get ``CLOCK_SKEW`` of leeway (a minting backend whose
  clock runs a little ahead must not lock its users out: a 401 stops an EventSource for
  good). ``exp`` gets none: a stream ends at ``exp`` exactly, so a token is refused from
  that second on, as the stream's end says.
* **Refusals name the problem** (``TokenRefused``, with a stable ``code``) and never
  echo the token, which is a credential.
* **Revocation** without a new secret: ``TOKEN_REVOKED`` lists ``jti`` or ``sub`` values.
  :class:`Revocations` re-reads it on SIGHUP and when the ``CONFIG_FILE`` changes, and the
  open streams of a newly revoked token end at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from .config import ConfigError, Secret
from .filters import EntityPattern
from .untrusted import loggable

__all__ = [
    "ALGORITHM",
    "Revocations",
    "TokenClaims",
    "TokenRefused",
    "TokenVerifier",
    "looks_like_token",
    "mint",
    "parse_expiry",
]

log = logging.getLogger("sse_service.tokens")

ALGORITHM = "HS256"
CLOCK_SKEW = 30.0  # seconds of leeway on nbf and iat (not on exp)
MAX_TOKEN_LENGTH = 8192  # far above any real token; past it nothing is decoded
MAX_GLOBS = 200
MAX_GLOB_LENGTH = 255
# An exp past the year 3000 counts as that (a float of a 400-digit int would overflow).
LATEST_EXP = 32_503_680_000

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class TokenRefused(Exception):
    """A token that may not be used. ``code`` is stable, ``str()`` says why (without the token)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    entities: EntityPattern
    services: EntityPattern  # matches nothing when the token names no services
    sub: str | None = None
    jti: str | None = None
    expires: float | None = None  # epoch seconds


def looks_like_token(text: str) -> bool:
    """True for three base64url parts joined by dots: a JWT, not a static key."""
    return _JWT_SHAPE.fullmatch(text) is not None


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenVerifier:
    """Verifies tokens signed with ``TOKEN_SECRET``; ``revoked`` holds ``jti`` or ``sub`` values."""

    def __init__(self, secret: Secret, *, revoked: Iterable[str] = ()) -> None:
        self._secret = secret
        self.revoked = frozenset(revoked)

    def verify(self, token: str, now: float | None = None) -> TokenClaims:
        """The claims of a valid token. Raises :class:`TokenRefused` for anything else."""
        now = time.time() if now is None else now
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRefused("invalid_token", f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            message = "the token is not a well-formed JWT (header.payload.signature)"
            raise TokenRefused("invalid_token", message) from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            shown = repr(loggable(alg, 20)) if isinstance(alg, str) else "no algorithm"
            message = f"the token is signed with {shown}; this bridge accepts {ALGORITHM} only"
            raise TokenRefused("invalid_token", message)
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._secret.reveal(),
                algorithms=[ALGORITHM],
                leeway=CLOCK_SKEW,
                # exp is checked below, exactly; the rest are ours to check too.
                options={"verify_exp": False, "verify_sub": False, "verify_jti": False},
            )
        except jwt.InvalidSignatureError:
            message = "the token's signature does not match: it was not signed with this bridge's TOKEN_SECRET"
            raise TokenRefused("invalid_token", message) from None
        except jwt.ImmatureSignatureError as e:
            raise TokenRefused("token_not_yet_valid", _immature(token, str(e))) from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("invalid_token", "the token names an audience (aud); this bridge expects none") from None
        except jwt.PyJWTError as e:
            raise TokenRefused("invalid_token", f"the token is not valid: {loggable(str(e), 120)}") from None
        if not isinstance(payload, dict):
            raise TokenRefused("invalid_token", "the token's payload is not a JSON object")
        claims = _claims(payload)
        if claims.expires is not None and claims.expires <= now:
            raise TokenRefused("token_expired", f"the token expired at {_when(claims.expires)}")
        for value in (claims.jti, claims.sub):
            if value is not None and value in self.revoked:
                raise TokenRefused("token_revoked", "the token has been revoked (TOKEN_REVOKED)")
        return claims


def _immature(token: str, reason: str) -> str:
    """'not valid before …' with the time, from the claims PyJWT already found signed."""
    payload = jwt.decode(token, options={"verify_signature": False})
    claim = "iat" if "(iat)" in reason else "nbf"
    value = payload.get(claim)
    at = f" {_when(float(value))}" if isinstance(value, int | float) and 0 <= value < LATEST_EXP else ""
    if claim == "iat":
        return f"the token was issued in the future (iat{at}): check the clock of the backend that minted it"
    return f"the token is not valid before{at} (nbf)"


def _globs(payload: Mapping[str, Any], claim: str, *, required: bool, service: bool) -> EntityPattern:
    value = payload.get(claim)
    if value is None:
        if required:
            raise TokenRefused("invalid_token", f"the token has no {claim} claim (a list of globs it may see)")
        return EntityPattern(())
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise TokenRefused("invalid_token", f"the token's {claim} claim must be a list of strings")
    globs = [g.strip() for g in value if g.strip()]
    if required and not globs:
        raise TokenRefused("invalid_token", f"the token's {claim} claim is empty: it would see nothing")
    if len(globs) > MAX_GLOBS:
        raise TokenRefused("invalid_token", f"the token's {claim} claim has more than {MAX_GLOBS} globs")
    example = "'switch.turn_*'" if service else "'sensor.solar_*'"
    for glob in globs:
        bad_shape = service and ("." not in glob) or not service and "." not in glob and glob != "*"
        if len(glob) > MAX_GLOB_LENGTH or bad_shape or any(c.isspace() or not c.isprintable() for c in glob):
            raise TokenRefused("invalid_token", f"the token's {claim} claim must hold globs like {example}")
    return EntityPattern(globs)


def _optional_text(payload: Mapping[str, Any], claim: str) -> str | None:
    value = payload.get(claim)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TokenRefused("invalid_token", f"the token's {claim} claim must be a non-empty string")
    return value


def _seconds(payload: Mapping[str, Any], claim: str) -> float | None:
    """A time claim as epoch seconds, from 0 to ``LATEST_EXP`` (later counts as that).

    Range-checked before any conversion: a 400-digit negative ``exp`` overflowed ``float()``
    and one of -10**14 overflowed ``datetime``, each a 500 for a signed token.
    """
    value = payload.get(claim)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or isinstance(value, float)
        and not math.isfinite(value)
        or value < 0
    ):
        raise TokenRefused("invalid_token", f"the token's {claim} claim must be a number of seconds since 1970")
    return float(min(value, LATEST_EXP))


def _claims(payload: Mapping[str, Any]) -> TokenClaims:
    expires = _seconds(payload, "exp")
    # PyJWT has checked nbf and iat against the clock; here they are only held to a range.
    _seconds(payload, "nbf")
    _seconds(payload, "iat")
    return TokenClaims(
        entities=_globs(payload, "entities", required=True, service=False),
        services=_globs(payload, "services", required=False, service=True),
        sub=_optional_text(payload, "sub"),
        jti=_optional_text(payload, "jti"),
        expires=expires,
    )


# --- minting (the CLI, the tests; a site's backend uses its own JWT library) -------------

_EXPIRY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw]?)")


def parse_expiry(text: str, now: float | None = None) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` from now, or an ISO 8601 time; returns epoch seconds.

    Raises ValueError with a message for the user.
    """
    now = time.time() if now is None else now
    value = text.strip().lower()
    match = _DURATION.fullmatch(value)
    if match:
        seconds = float(match.group(1)) * _EXPIRY_UNITS[match.group(2) or "s"]
        if not 0 < seconds <= 10 * 365 * 86400:
            raise ValueError(f"expected a duration from 1s to 10 years, got {text.strip()!r}")
        return now + seconds
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected a duration like 30m, 12h, 7d, 2w or a time like 2026-12-06T18:00, got {loggable(text, 40)!r}"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a local time, as a person typing it means it
    if when.timestamp() <= now:
        raise ValueError(f"{text.strip()!r} is in the past")
    return when.timestamp()


def mint(
    secret: Secret | str,
    *,
    entities: Sequence[str],
    services: Sequence[str] = (),
    expires: float | None = None,
    sub: str | None = None,
    jti: str | None = None,
    not_before: float | None = None,
    now: float | None = None,
) -> str:
    """A token signed with ``secret`` (what ``sse-service token`` prints)."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"entities": list(entities), "iat": int(now)}
    if services:
        claims["services"] = list(services)
    if expires is not None:
        claims["exp"] = int(math.ceil(expires))
    if not_before is not None:
        claims["nbf"] = int(not_before)
    if sub:
        claims["sub"] = sub
    if jti:
        claims["jti"] = jti
    key = secret.reveal() if isinstance(secret, Secret) else secret
    return jwt.encode(claims, key, algorithm=ALGORITHM)


# --- revocation while running ----------------------------------------------------------


class Revocations:
    """``TOKEN_REVOKED``, re-read while the service runs: on SIGHUP, and when ``watch`` changes.

    ``load`` reads the settings again (a bad file is logged and changes nothing);
    ``on_change`` ends the open streams of the revoked tokens and says how many it ended.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        load: Callable[[], Iterable[str]],
        *,
        on_change: Callable[[frozenset[str]], int],
        watch: Path | None = None,
        interval: float = 0.5,
    ) -> None:
        self._verifier = verifier
        self._load = load
        self._on_change = on_change
        self._watch = watch
        self._interval = interval

    def reload(self) -> None:
        try:
            revoked = frozenset(self._load())
        except ConfigError as e:
            log.error("Reload refused, TOKEN_REVOKED unchanged: %s", loggable(str(e), 300))
            return
        added = revoked - self._verifier.revoked
        self._verifier.revoked = revoked
        ended = self._on_change(revoked)
        log.info(
            "TOKEN_REVOKED reloaded: %d value(s), %d new; %d open stream(s) ended", len(revoked), len(added), ended
        )

    async def run(self) -> None:
        """Until cancelled: SIGHUP reloads (where signals can be had), and so does a change of ``watch``."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            handler = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread, or Windows
            handler = False
        try:
            if self._watch is None:
                await asyncio.Event().wait()
            seen = self._stamp()
            while True:
                await asyncio.sleep(self._interval)
                stamp = self._stamp()
                if stamp != seen:
                    seen = stamp
                    self.reload()
        finally:
            if handler:
                loop.remove_signal_handler(signal.SIGHUP)

    def _stamp(self) -> tuple[int, int] | None:
        assert self._watch is not None
        try:
            info = os.stat(self._watch)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size
