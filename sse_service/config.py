"""Settings: read once from the environment (and an optional TOML file), validated at start.

Every problem is reported as one line that names the setting, e.g. ``PORT: expected an
integer from 1 to 65535, got 'abc'``. Secret values are never echoed back.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from . import parsers as p
from .parsers import ConfigError, Secret

__all__ = ["ConfigError", "Secret", "Settings", "load_settings"]


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


# Setting name -> (Settings field, parser). The names are the environment variables.
_PARSERS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "HA_URL": ("ha_url", p.ha_url),
    "HA_TOKEN": ("ha_token", p.secret),
    "ENTITIES": ("entities", p.entity_globs),
    "HOST": ("host", p.bind_host),
    "PORT": ("port", p.integer(1, 65535)),
    "GRACEFUL_TIMEOUT": ("graceful_timeout", p.seconds(0, 3600)),
    "LOG_LEVEL": ("log_level", p.log_level),
    "HEARTBEAT": ("heartbeat", p.seconds(0.05, 300)),
    "RETRY_MS": ("retry_ms", p.integer(100, 600_000)),
    "REPLAY_BUFFER": ("replay_buffer", p.integer(0, 1_000_000)),
    "CLIENT_BUFFER_BYTES": ("client_buffer_bytes", p.integer(4096, 256 * 1024 * 1024)),
    "HA_PING_INTERVAL": ("ha_ping_interval", p.seconds(0.05, 3600)),
    "HA_PONG_TIMEOUT": ("ha_pong_timeout", p.seconds(0.05, 600)),
    "HA_CONNECT_TIMEOUT": ("ha_connect_timeout", p.seconds(0.05, 600)),
    "HA_BACKOFF_MAX": ("ha_backoff_max", p.seconds(0.01, 3600)),
    "HA_AUTH_RETRY": ("ha_auth_retry", p.seconds(0.05, 86400)),
    "DEMO_INTERVAL": ("demo_interval", p.seconds(0.01, 3600)),
    "HISTORY_WINDOW": ("history_window", p.duration(0, 31 * 86400)),
    "HISTORY_POINTS": ("history_points", p.integer(0, 10_000)),
    "HISTORY_ENTITIES": ("history_entities", p.integer(0, 1000)),
    "READ_KEY": ("read_key", p.key),
    "WRITE_KEY": ("write_key", p.key),
    "TOKEN_SECRET": ("token_secret", p.token_secret),
    "TOKEN_REVOKED": ("token_revoked", p.token_names),
    "ALLOWED_SERVICES": ("allowed_services", p.service_globs),
    "CORS_ORIGINS": ("cors_origins", p.origins),
    "CORS_CREDENTIALS": ("cors_credentials", p.boolean),
    "MAX_STREAMS": ("max_streams", p.integer(1, 1_000_000)),
    "MAX_STREAMS_PER_IP": ("max_streams_per_ip", p.integer(1, 1_000_000)),
    "COMMAND_TIMEOUT": ("command_timeout", p.seconds(0.05, 600)),
    "COMMAND_RATE": ("command_rate", p.seconds(0.01, 1_000_000)),
    "COMMAND_BURST": ("command_burst", p.integer(1, 1_000_000)),
    "MAX_BODY_BYTES": ("max_body_bytes", p.integer(64, 16 * 1024 * 1024)),
    "REQUEST_TIMEOUT": ("request_timeout", p.seconds(0.1, 3600)),
    "MAX_FILTER_PATTERNS": ("max_filter_patterns", p.integer(1, 10_000)),
    "MAX_FILTER_LENGTH": ("max_filter_length", p.integer(16, 1_000_000)),
    "LOG_FORMAT": ("log_format", p.one_of("text", "json")),
    "ACCESS_LOG": ("access_log", p.boolean),
    "FORWARDED_ALLOW_IPS": ("forwarded_allow_ips", p.networks),
    "MAX_STREAM_AGE": ("max_stream_age", p.seconds(0, 7 * 86400)),
    "REDIS_URL": ("redis_url", p.redis_url),
    "REDIS_PREFIX": ("redis_prefix", p.key_prefix),
    "REDIS_LEASE_TTL": ("redis_lease_ttl", p.seconds(0.3, 60)),
}


def _read_file(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("CONFIG_FILE", f"cannot read {p.show(path)}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("CONFIG_FILE", f"{p.show(path)} is not valid TOML: {e}") from None
    values: dict[str, str] = {}
    for key, value in data.items():
        name = key.upper()
        if name not in _PARSERS:
            raise ConfigError("CONFIG_FILE", f"unknown setting {p.show(key)} in {p.show(path)}")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str | int | float):
            raise ConfigError(name, f"expected a string or a number in {p.show(path)}")
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
