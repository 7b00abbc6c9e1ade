"""Parsers: one raw setting (a string from the environment, the TOML file or a flag) to one typed value.

Each takes ``(name, raw)`` and returns the value or raises :class:`ConfigError` with one line that
names ``name`` (the variable, or the flag the user typed) and says what was expected. A secret's
value is never echoed back, not even a bad one. They live apart from config.py, which declares
the settings, so that both stay short enough to read in one go.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "LOG_LEVELS",
    "ConfigError",
    "Secret",
    "bind_host",
    "boolean",
    "duration",
    "entity_globs",
    "ha_url",
    "integer",
    "key",
    "key_prefix",
    "log_level",
    "networks",
    "one_of",
    "origins",
    "redis_url",
    "seconds",
    "secret",
    "service_globs",
    "show",
    "token_names",
    "token_secret",
]


class ConfigError(ValueError):
    """A setting is missing or malformed. ``str()`` is the one line shown to the user."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class Secret:
    """A string that does not print. Call :meth:`reveal` where the real value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def integer(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(name, f"expected an integer from {lo} to {hi}, got {show(raw)}") from None
        if not lo <= value <= hi:
            raise ConfigError(name, f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def seconds(lo: float, hi: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(name, f"expected a number of seconds from {lo:g} to {hi:g}, got {show(raw)}") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(name, f"expected a number of seconds from {lo:g} to {hi:g}, got {show(raw)}")
        return value

    return parse


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(lo: float, hi: float) -> Callable[[str, str], float]:
    """Seconds, or a number with a unit: ``90``, ``30m``, ``24h``, ``7d``."""

    def parse(name: str, raw: str) -> float:
        text = raw.strip().lower()
        unit = _UNITS.get(text[-1:], 0)
        try:
            value = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(
                name, f"expected a duration from {lo:g} to {hi:g} s (e.g. 3600, 30m, 24h, 7d), got {show(raw)}"
            )
        return value

    return parse


def entity_globs(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ConfigError(name, "expected a comma-separated list of entity ids or globs, got an empty list")
    for item in items:
        if any(c.isspace() for c in item) or "." not in item and item != "*":
            expected = "expected entity ids or globs like 'sensor.*' or 'switch.charger'"
            raise ConfigError(name, f"{expected}, got {show(item)}")
    return items


def one_of(*options: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(name, f"expected one of {', '.join(options)}, got {show(raw)}")
        return value

    return parse


def bind_host(name: str, raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() or c in "/?#@" for c in value):
        raise ConfigError(name, f"expected a host name or IP address to bind, got {show(raw)}")
    return value


def ha_url(name: str, raw: str) -> str:
    """Accept ``http(s)://host[:port]`` or a full ``ws(s)://host[:port]/api/websocket``; return the ws(s) URL."""
    value = raw.strip()
    expected = "expected http(s)://host[:port] or ws(s)://host[:port]/api/websocket"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(name, f"{expected}, got {show(raw)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConfigError(name, f"{expected}, got {show(raw)}")
    if parts.username is not None or parts.password is not None:
        # Do not echo the URL: whatever sits before the '@' may be a password.
        raise ConfigError(name, "must not contain user:password@; put the token in HA_TOKEN")
    if parts.query or parts.fragment:
        raise ConfigError(name, f"{expected} (no query or fragment), got {show(raw)}")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    path = parts.path.rstrip("/")
    if scheme in ("http", "https") or not path:
        path += "/api/websocket"
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((ws_scheme, netloc, path, "", ""))


def secret(name: str, raw: str) -> Secret:
    """Any non-blank value (Home Assistant's tokens have no form of their own to check)."""
    return Secret(raw.strip())


def key(name: str, raw: str) -> Secret:
    value = raw.strip()
    # Never echo the value: it is a secret even when it is a bad one.
    if len(value) < 16 or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            name,
            "expected at least 16 printable characters without spaces "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
        )
    return Secret(value)


def token_secret(name: str, raw: str) -> Secret:
    value = raw.strip()
    # HS256 wants a key as long as its hash (RFC 7518, 3.2). Never echo the value.
    if len(value.encode()) < 32 or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            name,
            "expected at least 32 bytes of printable characters without spaces "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )
    return Secret(value)


def token_names(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if not item.isprintable() or len(item) > 200:
            raise ConfigError(name, f"expected a comma-separated list of token jti or sub values, got {show(item)}")
    return items


def service_globs(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if items == ("none",):
        return ()
    for item in items:
        domain, dot, service = item.partition(".")
        if not dot or not domain or not service or any(c.isspace() or c in "/?#" for c in item):
            raise ConfigError(name, f"expected domain.service entries like 'switch.turn_on', got {show(item)}")
    return items


def origins(name: str, raw: str) -> tuple[str, ...]:
    origins = []
    for item in (item.strip() for item in raw.split(",")):
        if not item:
            continue
        if item == "*":
            origins.append(item)
            continue
        try:
            parts = urlsplit(item)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(name, f"expected origins like 'https://example.com' or '*', got {show(item)}")
        if parts.query or parts.fragment or parts.username is not None:
            raise ConfigError(name, f"expected origins like 'https://example.com' or '*', got {show(item)}")
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(origins)


def boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {show(raw)}")


def networks(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            message = f"expected IP addresses or networks like '10.0.0.0/8', or '*', got {show(item)}"
            raise ConfigError(name, message) from None
    return items


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
log_level = one_of(*LOG_LEVELS)


def redis_url(name: str, raw: str) -> Secret:
    value = raw.strip()
    # Never echo the value: it may hold a password.
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise ConfigError(name, "is not a valid URL (expected redis://[:password@]host[:port][/db])") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(name, "expected a redis://, rediss:// or unix:// URL")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(name, "has no host (expected redis://[:password@]host[:port][/db])")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(name, "has no socket path (expected unix:///path/to/redis.sock)")
    return Secret(value)


def key_prefix(name: str, raw: str) -> str:
    value = raw.strip()
    if len(value) > 64 or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(name, f"expected up to 64 printable characters without spaces, got {show(value)}")
    return value
