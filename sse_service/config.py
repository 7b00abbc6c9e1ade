"""Settings: read once from the environment (and an optional TOML file), validated at start.

Every problem is reported as one line that names the setting, e.g. ``PORT: expected an
integer from 1 to 65535, got 'abc'``. Secret values are never echoed back.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = ["ConfigError", "Secret", "Settings", "load_settings"]

T = TypeVar("T")


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    # Upstream Home Assistant. None means: run the embedded demo upstream.
    ha_url: str | None = None
    ha_token: Secret | None = None
    # Which entities leave the process at all (fnmatch globs, e.g. "sensor.battery_*").
    entities: tuple[str, ...] = ("*",)
    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    graceful_timeout: float = 10.0
    log_level: str = "info"
    # Stream
    heartbeat: float = 15.0
    retry_ms: int = 3000
    replay_buffer: int = 2048
    client_buffer_bytes: int = 256 * 1024
    # Upstream connection tuning
    ha_ping_interval: float = 30.0
    ha_pong_timeout: float = 10.0
    ha_connect_timeout: float = 10.0
    ha_backoff_max: float = 30.0
    ha_auth_retry: float = 300.0
    # Demo upstream
    demo_interval: float = 1.0
    # Who may watch and who may act. No keys: anyone who can reach the port may read.
    read_key: Secret | None = None
    write_key: Secret | None = None
    # Signed tokens (JWT, HS256) with their own view: see tokens.py. None: no tokens.
    token_secret: Secret | None = None
    # jti or sub values of tokens that may no longer be used.
    token_revoked: tuple[str, ...] = ()
    # Services that may be called ("domain.service" globs). None: the demo's switch services
    # when running the demo, none at all against a real Home Assistant.
    allowed_services: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False
    max_streams: int = 10_000
    max_streams_per_ip: int = 50
    command_timeout: float = 10.0
    command_rate: float = 60.0  # per client and minute
    command_burst: int = 10
    max_body_bytes: int = 8192
    # Seconds a client has to send a request's line and headers (else its connection is
    # closed) and a command's body (else 408): a half-open connection must not live forever.
    request_timeout: float = 10.0
    # A stream's ?entity_id= and ?domain= together: compiling them costs time on the event
    # loop in proportion to their length, so both the count and the length are capped.
    max_filter_patterns: int = 100
    max_filter_length: int = 2048
    # Production (issue 7)
    log_format: str = "text"
    access_log: bool = True
    # Peers whose X-Forwarded-For / Forwarded headers are believed: CIDRs, or "*" for
    # "whoever connects is the platform's router" (PaaS).
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    max_stream_age: float = 0.0  # seconds; 0: streams live until the client leaves
    # Charts: how far back the snapshot's history reaches (from HA's recorder; 0: only what
    # the bridge saw itself), how many points per entity it holds at most, and for how many
    # entities the recorder is asked.
    history_window: float = 24 * 3600.0
    history_points: int = 120
    history_entities: int = 50
    # Scale-out (cluster/): every instance with the same Redis shares one upstream. None: alone.
    redis_url: Secret | None = None
    redis_prefix: str = "sse:"
    redis_lease_ttl: float = 3.0

    @property
    def demo(self) -> bool:
        return self.ha_url is None

    @property
    def services(self) -> tuple[str, ...]:
        if self.allowed_services is not None:
            return self.allowed_services
        return DEMO_SERVICES if self.demo else ()

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        values = (self.ha_token, self.read_key, self.write_key, self.token_secret)
        found = [s.reveal() for s in values if s is not None and s.reveal()]
        if self.redis_url is not None:  # its password (wherever it shows, alone or in the URL); the rest is not secret
            password = urlsplit(self.redis_url.reveal()).password
            found += [password] if password else []
        return found


DEMO_SERVICES = ("switch.turn_on", "switch.turn_off", "switch.toggle")


# --- parsing helpers -------------------------------------------------------------------


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _int(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(name, f"expected an integer from {lo} to {hi}, got {_show(raw)}") from None
        if not lo <= value <= hi:
            raise ConfigError(name, f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def _float(lo: float, hi: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(name, f"expected a number of seconds from {lo:g} to {hi:g}, got {_show(raw)}") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(name, f"expected a number of seconds from {lo:g} to {hi:g}, got {_show(raw)}")
        return value

    return parse


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(lo: float, hi: float) -> Callable[[str, str], float]:
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
                name, f"expected a duration from {lo:g} to {hi:g} s (e.g. 3600, 30m, 24h, 7d), got {_show(raw)}"
            )
        return value

    return parse


def _globs(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ConfigError(name, "expected a comma-separated list of entity ids or globs, got an empty list")
    for item in items:
        if any(c.isspace() for c in item) or "." not in item and item != "*":
            expected = "expected entity ids or globs like 'sensor.*' or 'switch.charger'"
            raise ConfigError(name, f"{expected}, got {_show(item)}")
    return items


def _choice(*options: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(name, f"expected one of {', '.join(options)}, got {_show(raw)}")
        return value

    return parse


def _host(name: str, raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() or c in "/?#@" for c in value):
        raise ConfigError(name, f"expected a host name or IP address to bind, got {_show(raw)}")
    return value


def normalize_ha_url(name: str, raw: str) -> str:
    """Accept ``http(s)://host[:port]`` or a full ``ws(s)://host[:port]/api/websocket``; return the ws(s) URL."""
    value = raw.strip()
    expected = "expected http(s)://host[:port] or ws(s)://host[:port]/api/websocket"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(name, f"{expected}, got {_show(raw)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConfigError(name, f"{expected}, got {_show(raw)}")
    if parts.username is not None or parts.password is not None:
        # Do not echo the URL: whatever sits before the '@' may be a password.
        raise ConfigError(name, "must not contain user:password@; put the token in HA_TOKEN")
    if parts.query or parts.fragment:
        raise ConfigError(name, f"{expected} (no query or fragment), got {_show(raw)}")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    path = parts.path.rstrip("/")
    if scheme in ("http", "https") or not path:
        path += "/api/websocket"
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((ws_scheme, netloc, path, "", ""))


def _key(name: str, raw: str) -> Secret:
    value = raw.strip()
    # Never echo the value: it is a secret even when it is a bad one.
    if len(value) < 16 or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            name,
            "expected at least 16 printable characters without spaces "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
        )
    return Secret(value)


def _token_secret(name: str, raw: str) -> Secret:
    value = raw.strip()
    # HS256 wants a key as long as its hash (RFC 7518, 3.2). Never echo the value.
    if len(value.encode()) < 32 or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            name,
            "expected at least 32 bytes of printable characters without spaces "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )
    return Secret(value)


def _names(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if not item.isprintable() or len(item) > 200:
            raise ConfigError(name, f"expected a comma-separated list of token jti or sub values, got {_show(item)}")
    return items


def _services(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if items == ("none",):
        return ()
    for item in items:
        domain, dot, service = item.partition(".")
        if not dot or not domain or not service or any(c.isspace() or c in "/?#" for c in item):
            raise ConfigError(name, f"expected domain.service entries like 'switch.turn_on', got {_show(item)}")
    return items


def _origins(name: str, raw: str) -> tuple[str, ...]:
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
            raise ConfigError(name, f"expected origins like 'https://example.com' or '*', got {_show(item)}")
        if parts.query or parts.fragment or parts.username is not None:
            raise ConfigError(name, f"expected origins like 'https://example.com' or '*', got {_show(item)}")
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(origins)


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {_show(raw)}")


def _networks(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            message = f"expected IP addresses or networks like '10.0.0.0/8', or '*', got {_show(item)}"
            raise ConfigError(name, message) from None
    return items


def _level(name: str, raw: str) -> str:
    return _choice("critical", "error", "warning", "info", "debug")(name, raw)


def _redis_url(name: str, raw: str) -> Secret:
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


def _prefix(name: str, raw: str) -> str:
    value = raw.strip()
    if len(value) > 64 or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(name, f"expected up to 64 printable characters without spaces, got {_show(value)}")
    return value


# Setting name -> (Settings field, parser). The names are the environment variables.
_PARSERS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "HA_URL": ("ha_url", normalize_ha_url),
    "HA_TOKEN": ("ha_token", lambda name, raw: Secret(raw.strip())),
    "ENTITIES": ("entities", _globs),
    "HOST": ("host", _host),
    "PORT": ("port", _int(1, 65535)),
    "GRACEFUL_TIMEOUT": ("graceful_timeout", _float(0, 3600)),
    "LOG_LEVEL": ("log_level", _level),
    "HEARTBEAT": ("heartbeat", _float(0.05, 300)),
    "RETRY_MS": ("retry_ms", _int(100, 600_000)),
    "REPLAY_BUFFER": ("replay_buffer", _int(0, 1_000_000)),
    "CLIENT_BUFFER_BYTES": ("client_buffer_bytes", _int(4096, 256 * 1024 * 1024)),
    "HA_PING_INTERVAL": ("ha_ping_interval", _float(0.05, 3600)),
    "HA_PONG_TIMEOUT": ("ha_pong_timeout", _float(0.05, 600)),
    "HA_CONNECT_TIMEOUT": ("ha_connect_timeout", _float(0.05, 600)),
    "HA_BACKOFF_MAX": ("ha_backoff_max", _float(0.01, 3600)),
    "HA_AUTH_RETRY": ("ha_auth_retry", _float(0.05, 86400)),
    "DEMO_INTERVAL": ("demo_interval", _float(0.01, 3600)),
    "HISTORY_WINDOW": ("history_window", _duration(0, 31 * 86400)),
    "HISTORY_POINTS": ("history_points", _int(0, 10_000)),
    "HISTORY_ENTITIES": ("history_entities", _int(0, 1000)),
    "READ_KEY": ("read_key", _key),
    "WRITE_KEY": ("write_key", _key),
    "TOKEN_SECRET": ("token_secret", _token_secret),
    "TOKEN_REVOKED": ("token_revoked", _names),
    "ALLOWED_SERVICES": ("allowed_services", _services),
    "CORS_ORIGINS": ("cors_origins", _origins),
    "CORS_CREDENTIALS": ("cors_credentials", _bool),
    "MAX_STREAMS": ("max_streams", _int(1, 1_000_000)),
    "MAX_STREAMS_PER_IP": ("max_streams_per_ip", _int(1, 1_000_000)),
    "COMMAND_TIMEOUT": ("command_timeout", _float(0.05, 600)),
    "COMMAND_RATE": ("command_rate", _float(0.01, 1_000_000)),
    "COMMAND_BURST": ("command_burst", _int(1, 1_000_000)),
    "MAX_BODY_BYTES": ("max_body_bytes", _int(64, 16 * 1024 * 1024)),
    "REQUEST_TIMEOUT": ("request_timeout", _float(0.1, 3600)),
    "MAX_FILTER_PATTERNS": ("max_filter_patterns", _int(1, 10_000)),
    "MAX_FILTER_LENGTH": ("max_filter_length", _int(16, 1_000_000)),
    "LOG_FORMAT": ("log_format", _choice("text", "json")),
    "ACCESS_LOG": ("access_log", _bool),
    "FORWARDED_ALLOW_IPS": ("forwarded_allow_ips", _networks),
    "MAX_STREAM_AGE": ("max_stream_age", _float(0, 7 * 86400)),
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_PREFIX": ("redis_prefix", _prefix),
    "REDIS_LEASE_TTL": ("redis_lease_ttl", _float(0.3, 60)),
}


def _read_file(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("CONFIG_FILE", f"cannot read {_show(path)}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("CONFIG_FILE", f"{_show(path)} is not valid TOML: {e}") from None
    values: dict[str, str] = {}
    for key, value in data.items():
        name = key.upper()
        if name not in _PARSERS:
            raise ConfigError("CONFIG_FILE", f"unknown setting {_show(key)} in {_show(path)}")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str | int | float):
            raise ConfigError(name, f"expected a string or a number in {_show(path)}")
        values[name] = str(value)
    return values


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from environment variables (and ``CONFIG_FILE`` if set).

    Environment variables win over the file. Raises :class:`ConfigError` on the first problem.
    """
    raw: dict[str, str] = {}
    if environ.get("CONFIG_FILE", "").strip():
        raw.update(_read_file(environ["CONFIG_FILE"].strip()))
    raw.update({name: environ[name] for name in _PARSERS if environ.get(name, "").strip()})

    fields: dict[str, object] = {}
    for name, value in raw.items():
        field, parse = _PARSERS[name]
        fields[field] = parse(name, value)

    if "ha_url" in fields and "ha_token" not in fields:
        raise ConfigError("HA_TOKEN", "required when HA_URL is set (a long-lived access token from your HA profile)")
    if "ha_token" in fields and "ha_url" not in fields:
        raise ConfigError("HA_URL", "required when HA_TOKEN is set (e.g. http://homeassistant.local:8123)")
    if fields.get("cors_credentials") and "*" in fields.get("cors_origins", ()):  # type: ignore[operator]
        # Any site could then read the stream with the visitor's key cookie.
        raise ConfigError("CORS_CREDENTIALS", "cannot be true while CORS_ORIGINS allows '*'; list the origins")
    if "token_secret" in fields and fields["token_secret"] in (fields.get("read_key"), fields.get("write_key")):
        # Whoever holds that key could then mint tokens for any view.
        raise ConfigError("TOKEN_SECRET", "must differ from READ_KEY and WRITE_KEY")
    return Settings(**fields)  # type: ignore[arg-type]
