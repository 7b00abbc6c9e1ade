"""Settings: read once from the environment (and an optional TOML file), validated at start.

Each setting is declared once, as a field of :class:`Settings` made with :func:`setting`: its
type and default, its parser, its group and one line of help, and whether it has a command-line
flag. Its environment variable (and TOML key) is the field's name, upper-cased. Everything else
is read from that declaration (:data:`SETTINGS`): :func:`load_settings`, the flags in
``__main__``, and the table in docs/settings.md (:func:`settings_table`, checked by a test).

Every problem is reported as one line that names the setting (or the flag typed, or the add-on
option), e.g. ``PORT: expected an integer from 1 to 65535, got 'abc'``. Secret values are never
echoed back.

Inside a Home Assistant add-on the settings are the add-on's options (``/data/options.json``,
keys the lower-cased names, read with :func:`read_options`), and without ``HA_URL``/``HA_TOKEN``
the Supervisor's own ``SUPERVISOR_TOKEN`` opens Home Assistant at :data:`SUPERVISOR_URL`.

Past 300 lines because the declarations of all the settings are most of it, and they read best
as one list; the parsers (parsers.py) and the shape of a declaration (declaration.py) are apart.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from urllib.parse import urlsplit

from . import parsers as p
from .declaration import GROUPS, Setting, declarations_of, setting
from .parsers import ConfigError, Secret

__all__ = [
    "GROUPS",
    "SETTINGS",
    "SUPERVISOR_URL",
    "ConfigError",
    "Secret",
    "Setting",
    "Settings",
    "load_settings",
    "read_options",
    "settings_table",
]

DEMO_SERVICES = ("switch.turn_on", "switch.turn_off", "switch.toggle")
# Where an add-on reaches Home Assistant's WebSocket API through the Supervisor (homeassistant_api: true).
SUPERVISOR_URL = "ws://supervisor/core/websocket"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    # --- Home Assistant. No URL: the embedded demo upstream.
    ha_url: str | None = setting(
        p.ha_url,
        None,
        "`http(s)://host:8123` or `ws(s)://host:8123/api/websocket`",
        group="Home Assistant",
        shown="*(none: the demo)*",
    )
    ha_token: Secret | None = setting(
        p.secret, None, "long-lived access token; required with `HA_URL`", group="Home Assistant"
    )
    entities: tuple[str, ...] = setting(
        p.entity_globs,
        ("*",),
        "comma-separated globs of the entities exposed at all; nothing else leaves the process",
        group="Home Assistant",
    )
    ha_connect_timeout: float = setting(
        p.seconds(0.05, 600), 10.0, "seconds for a connect and its handshake", group="Home Assistant"
    )
    ha_ping_interval: float = setting(
        p.seconds(0.05, 3600), 30.0, "seconds between pings to Home Assistant", group="Home Assistant"
    )
    ha_pong_timeout: float = setting(
        p.seconds(0.05, 600), 10.0, "seconds to wait for a pong; a missed pong reconnects", group="Home Assistant"
    )
    ha_backoff_max: float = setting(
        p.seconds(0.01, 3600),
        30.0,
        "cap of every reconnect delay ([schedule](home-assistant.md#when-home-assistant-restarts))",
        group="Home Assistant",
    )
    # Home Assistant bans an address after a few failed logins; retrying at the usual pace would get us banned.
    ha_auth_retry: float = setting(
        p.seconds(0.05, 86400),
        300.0,
        "after `auth_invalid`, wait this long before trying again (HA bans addresses that retry fast)",
        group="Home Assistant",
    )
    demo_interval: float = setting(p.seconds(0.01, 3600), 1.0, "seconds between demo updates", group="Home Assistant")
    # --- Server
    host: str = setting(p.bind_host, "127.0.0.1", "where to listen; `0.0.0.0` for the LAN", group="Server", cli=True)
    port: int = setting(p.integer(1, 65535), 8000, "port to listen on", group="Server", cli=True)
    graceful_timeout: float = setting(
        p.seconds(0, 3600), 10.0, "seconds to drain streams on SIGTERM", group="Server", cli=True
    )
    log_level: str = setting(p.log_level, "info", ", ".join(f"`{level}`" for level in p.LOG_LEVELS), group="Server")
    log_format: str = setting(
        p.one_of("text", "json"),
        "text",
        "or `json`: one JSON object per line, for platform consoles",
        group="Server",
    )
    access_log: bool = setting(
        p.boolean, True, "`false` drops the access lines of requests other than streams and commands", group="Server"
    )
    # A half-open connection must not hold its slot forever.
    request_timeout: float = setting(
        p.seconds(0.1, 3600),
        10.0,
        "seconds a client has to send a request's line and headers (else its connection is closed)"
        " and a command's body (else 408)",
        group="Server",
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        p.networks,
        ("127.0.0.1", "::1"),
        "proxies whose `X-Forwarded-For`/`Forwarded` are believed (CIDRs allowed);"
        " `*` trusts whoever connects, i.e. a PaaS router",
        group="Server",
        cli=True,
    )
    # --- Stream
    heartbeat: float = setting(
        p.seconds(0.05, 300),
        15.0,
        "seconds of silence before an `event: ping` keeps proxies from cutting the stream"
        " (and tells pages it is alive)",
        group="Stream",
    )
    retry_ms: int = setting(
        p.integer(100, 600_000),
        3000,
        "the `retry:` sent to browsers: how long they wait before reconnecting",
        group="Stream",
    )
    replay_buffer: int = setting(
        p.integer(0, 1_000_000), 2048, "events kept for `Last-Event-ID` resume", group="Stream"
    )
    client_buffer_bytes: int = setting(
        p.integer(4096, 256 * 1024 * 1024),
        256 * 1024,
        "per-client send buffer; past it a slow client is reset with a fresh snapshot",
        group="Stream",
    )
    # Platforms cap a request's duration; ending a stream first lets it resume instead of being cut.
    max_stream_age: float = setting(
        p.seconds(0, 7 * 86400),
        0.0,
        "end each stream after 85–100 % of this many seconds, to resume at once",
        group="Stream",
        cli=True,
        shown="`0` (off)",
    )
    max_streams: int = setting(p.integer(1, 1_000_000), 10_000, "open streams in all", group="Stream")
    max_streams_per_ip: int = setting(p.integer(1, 1_000_000), 50, "open streams per client address", group="Stream")
    # Compiling a stream's filter costs time on the event loop in proportion to its length.
    max_filter_patterns: int = setting(
        p.integer(1, 10_000),
        100,
        "a request's `?entity_id=` and `?domain=` together: at most this many patterns (then 422)",
        group="Stream",
    )
    max_filter_length: int = setting(
        p.integer(16, 1_000_000),
        2048,
        "a request's `?entity_id=` and `?domain=` together: at most this many characters (then 422)",
        group="Stream",
    )
    history_window: float = setting(
        p.duration(0, 31 * 86400),
        24 * 3600.0,
        "how far back the snapshot's history reaches (`90`, `30m`, `24h`, `7d`; `0`: only what the bridge saw)",
        group="Stream",
        shown="`24h`",
    )
    history_points: int = setting(
        p.integer(0, 10_000), 120, "points per entity at most in the snapshot (`0`: no history)", group="Stream"
    )
    history_entities: int = setting(
        p.integer(0, 1000),
        50,
        "numeric entities whose past is asked of the recorder on each connect",
        group="Stream",
    )
    # --- Access and commands. No keys: anyone who can reach the port may read.
    read_key: Secret | None = setting(
        p.key, None, "[key](access.md#keys) for reading; 16 characters or more", group="Access and commands"
    )
    write_key: Secret | None = setting(
        p.key,
        None,
        "[key](access.md#keys) for reading and commands; 16 characters or more",
        group="Access and commands",
    )
    # None: the demo's switch services when running the demo, none at all against a real Home Assistant.
    allowed_services: tuple[str, ...] | None = setting(
        p.service_globs,
        None,
        "`domain.service` globs that may be called, or `none`",
        group="Access and commands",
        shown=f"demo: `{','.join(DEMO_SERVICES)}`; else none",
    )
    token_secret: Secret | None = setting(
        p.token_secret,
        None,
        "signs and verifies [tokens](access.md#tokens-one-bridge-several-views); 32 bytes or more;"
        " must differ from the keys",
        group="Access and commands",
        shown="*(none: no tokens)*",
    )
    token_revoked: tuple[str, ...] = setting(
        p.token_names,
        (),
        "`jti` or `sub` values of tokens that no longer work; re-read from the `CONFIG_FILE` on `SIGHUP` and when it"
        " changes; without one, read once at start ([revocation](access.md#tokens-one-bridge-several-views))",
        group="Access and commands",
    )
    cors_origins: tuple[str, ...] = setting(
        p.origins,
        (),
        "origins of pages on other sites that may read and command, e.g. `https://your.site`, or `*`",
        group="Access and commands",
    )
    cors_credentials: bool = setting(
        p.boolean,
        False,
        "`true` lets those pages send the `sse_key` cookie (not with `*`)",
        group="Access and commands",
    )
    command_rate: float = setting(
        p.seconds(0.01, 1_000_000),
        60.0,
        "commands per minute, per client address (per cluster with Redis)",
        group="Access and commands",
    )
    command_burst: int = setting(
        p.integer(1, 1_000_000),
        10,
        "commands a client may send at once before `COMMAND_RATE` paces them",
        group="Access and commands",
    )
    command_timeout: float = setting(
        p.seconds(0.05, 600),
        10.0,
        "seconds to wait for Home Assistant's answer (then 504)",
        group="Access and commands",
    )
    max_body_bytes: int = setting(
        p.integer(64, 16 * 1024 * 1024), 8192, "largest command body", group="Access and commands"
    )
    # --- Scale-out (cluster/): every instance with the same Redis shares one upstream.
    redis_url: Secret | None = setting(
        p.redis_url,
        None,
        "`redis://[:password@]host[:port][/db]`, `rediss://…` (TLS), `unix:///path/redis.sock`",
        group="Scale-out",
        shown="*(none: a single instance, Redis never imported)*",
    )
    redis_prefix: str = setting(
        p.key_prefix,
        "sse:",
        "prefix of every key; one prefix per cluster (two bridges may share a Redis)",
        group="Scale-out",
    )
    redis_lease_ttl: float = setting(
        p.seconds(0.3, 60),
        3.0,
        "seconds a leader's lease lasts without renewal: the failover time, roughly",
        group="Scale-out",
    )

    @property
    def demo(self) -> bool:
        return self.ha_url is None

    @property
    def services(self) -> tuple[str, ...]:
        if self.allowed_services is not None:
            return self.allowed_services
        return DEMO_SERVICES if self.demo else ()

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter: that of each setting of type Secret."""
        found = []
        for declared in SETTINGS:
            value = getattr(self, declared.field)
            if declared.secret and value is not None:
                text = value.reveal()
                if declared.field == "redis_url":  # its host and db are what an operator needs to see
                    text = urlsplit(text).password or ""
                found += [text] if text else []
        return found


# Every setting, in the order of the Settings fields.
SETTINGS: tuple[Setting, ...] = declarations_of(Settings)
_BY_ENV = {s.env: s for s in SETTINGS}
_BY_FLAG = {s.flag: s for s in SETTINGS if s.flag}


def settings_table() -> str:
    """The table of settings in docs/settings.md (Markdown), one section per group."""
    lines = [
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        "| `CONFIG_FILE` | *(none)* | a TOML file with any of the settings below |",
    ]
    for group in GROUPS:
        lines.append(f"| **{group}** | | |")
        for s in SETTINGS:
            if s.group == group:
                flag = f" (`{s.flag}`)" if s.flag else ""
                lines.append(f"| `{s.env}` | {s.default_markdown} | {s.help}{flag} |")
    return "\n".join(lines) + "\n"


def _as_text(name: str, value: object, source: str) -> str | None:
    """A TOML or JSON value as the environment would hold it (a list comma-joined); None: not given."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            raise ConfigError(name, f"expected a list of strings in {source}")
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int | float):
        raise ConfigError(name, f"expected a string or a number in {source}")
    return str(value)


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
        if name not in _BY_ENV:
            raise ConfigError("CONFIG_FILE", f"unknown setting {p.show(key)} in {p.show(path)}")
        text = _as_text(name, value, p.show(path))
        if text is not None:
            values[name] = text
    return values


def read_options(path: str) -> dict[str, object]:
    """A Home Assistant add-on's options (``/data/options.json``), for ``load_settings(options=…)``."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError("options", f"cannot read {p.show(path)}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError("options", f"{p.show(path)} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError("options", f"{p.show(path)} is not a JSON object")
    return data


def load_settings(
    environ: Mapping[str, str], flags: Mapping[str, str] | None = None, options: Mapping[str, object] | None = None
) -> Settings:
    """Build :class:`Settings` from environment variables (and ``CONFIG_FILE`` if set).

    ``flags`` are command-line values by flag (``{"--port": "9000"}``); they win over the
    environment, which wins over an add-on's ``options`` (:func:`read_options`), which win over
    the file. A bad flag or option is reported under the name the user typed. A blank value
    stands for its variable unset. Raises :class:`ConfigError` on the first problem.

    With neither ``HA_URL`` nor ``HA_TOKEN`` and a ``SUPERVISOR_TOKEN`` in the environment (a
    Home Assistant add-on with ``homeassistant_api: true``), Home Assistant is the Supervisor's
    proxy at :data:`SUPERVISOR_URL` with that token; it is then ``ha_token``, a secret like any.
    """
    given = dict(environ)
    typed: dict[str, str] = {}  # variable -> the flag the user typed for it
    for flag, value in (flags or {}).items():
        given[_BY_FLAG[flag].env] = value
        typed[_BY_FLAG[flag].env] = flag
    raw: dict[str, tuple[str, str]] = {}  # variable -> (the name a problem is reported under, value)
    if given.get("CONFIG_FILE", "").strip():
        raw.update({name: (name, value) for name, value in _read_file(given["CONFIG_FILE"].strip()).items()})
    for key, option in (options or {}).items():
        if key.upper() not in _BY_ENV:
            raise ConfigError(key, "is not an option of this add-on")
        text = _as_text(key, option, "the add-on's options")
        if text is not None and text.strip():
            raw[key.upper()] = (key, text)
    raw.update({name: (typed.get(name, name), given[name]) for name in _BY_ENV if given.get(name, "").strip()})

    fields: dict[str, object] = {
        _BY_ENV[name].field: _BY_ENV[name].parse(label, value) for name, (label, value) in raw.items()
    }

    supervisor_token = given.get("SUPERVISOR_TOKEN", "").strip()
    if supervisor_token and "ha_url" not in fields and "ha_token" not in fields:
        fields["ha_url"], fields["ha_token"] = SUPERVISOR_URL, Secret(supervisor_token)

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
