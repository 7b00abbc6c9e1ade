from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sse_service.__main__ import main
from sse_service.config import GROUPS, SETTINGS, ConfigError, Secret, Setting, Settings, load_settings, settings_table

TOKEN = "eyJhbGciOiJIUzI1NiJ9.very-secret-token"


def test_no_settings_means_the_demo_on_localhost_8000() -> None:
    settings = load_settings({})
    assert settings.demo
    assert (settings.host, settings.port, settings.heartbeat) == ("127.0.0.1", 8000, 15.0)
    assert settings.entities == ("*",)


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("http://homeassistant.local:8123", "ws://homeassistant.local:8123/api/websocket"),
        ("http://homeassistant.local:8123/", "ws://homeassistant.local:8123/api/websocket"),
        ("https://ha.example.com", "wss://ha.example.com/api/websocket"),
        ("ws://10.0.0.2:8123/api/websocket", "ws://10.0.0.2:8123/api/websocket"),
        ("wss://ha.example.com/api/websocket", "wss://ha.example.com/api/websocket"),
        ("ws://supervisor/core/websocket", "ws://supervisor/core/websocket"),
        ("ws://10.0.0.2:8123", "ws://10.0.0.2:8123/api/websocket"),
        ("http://[::1]:8123", "ws://[::1]:8123/api/websocket"),
        ("HTTP://HA.local:80", "ws://ha.local:80/api/websocket"),
    ],
)
def test_ha_url_accepts_http_or_full_websocket_urls(raw: str, url: str) -> None:
    assert load_settings({"HA_URL": raw, "HA_TOKEN": TOKEN}).ha_url == url


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HA_URL": "http://ha:8123"}, "HA_TOKEN: required when HA_URL is set"),
        ({"HA_TOKEN": TOKEN}, "HA_URL: required when HA_TOKEN is set"),
        ({"HA_URL": "ha.local:8123", "HA_TOKEN": TOKEN}, "HA_URL: expected http(s)://host[:port]"),
        ({"HA_URL": "ftp://ha.local", "HA_TOKEN": TOKEN}, "HA_URL: expected http(s)://host[:port]"),
        ({"HA_URL": "http://ha:99999", "HA_TOKEN": TOKEN}, "HA_URL: expected http(s)://host[:port]"),
        ({"HA_URL": "http://user:pw@ha:8123", "HA_TOKEN": TOKEN}, "HA_URL: must not contain user:password@"),
        ({"PORT": "abc"}, "PORT: expected an integer from 1 to 65535, got 'abc'"),
        ({"PORT": "70000"}, "PORT: expected an integer from 1 to 65535, got 70000"),
        ({"HEARTBEAT": "often"}, "HEARTBEAT: expected a number of seconds"),
        ({"HEARTBEAT": "nan"}, "HEARTBEAT: expected a number of seconds"),
        ({"HEARTBEAT": "-1"}, "HEARTBEAT: expected a number of seconds"),
        ({"ENTITIES": " , "}, "ENTITIES: expected a comma-separated list"),
        ({"ENTITIES": "sensor"}, "ENTITIES: expected entity ids or globs"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL: expected one of"),
        ({"HOST": "0.0.0.0/24"}, "HOST: expected a host name or IP address"),
        ({"CONFIG_FILE": "/nonexistent/sse.toml"}, "CONFIG_FILE: cannot read"),
        ({"READ_KEY": "short"}, "READ_KEY: expected at least 16 printable characters"),
        ({"WRITE_KEY": "has a space in it, sixteen+"}, "WRITE_KEY: expected at least 16 printable characters"),
        ({"ALLOWED_SERVICES": "switch"}, "ALLOWED_SERVICES: expected domain.service entries"),
        ({"CORS_ORIGINS": "dash.example.com"}, "CORS_ORIGINS: expected origins like 'https://example.com'"),
        ({"CORS_ORIGINS": "https://x.com/path"}, "CORS_ORIGINS: expected origins like"),
        ({"CORS_ORIGINS": "*", "CORS_CREDENTIALS": "true"}, "CORS_CREDENTIALS: cannot be true while"),
        ({"CORS_CREDENTIALS": "maybe"}, "CORS_CREDENTIALS: expected true or false"),
        ({"MAX_STREAMS_PER_IP": "0"}, "MAX_STREAMS_PER_IP: expected an integer from 1"),
        ({"MAX_BODY_BYTES": "1e9"}, "MAX_BODY_BYTES: expected an integer"),
        ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT: expected a number of seconds from 0.1 to 3600, got '0'"),
        ({"MAX_FILTER_PATTERNS": "none"}, "MAX_FILTER_PATTERNS: expected an integer from 1 to 10000"),
        ({"MAX_FILTER_LENGTH": "8"}, "MAX_FILTER_LENGTH: expected an integer from 16 to 1000000, got 8"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert TOKEN not in text


def test_settings_parse_lists_numbers_and_levels() -> None:
    settings = load_settings(
        {
            "HA_URL": "http://ha:8123",
            "HA_TOKEN": f"  {TOKEN} ",
            "ENTITIES": "sensor.battery_*, switch.charger",
            "HOST": "0.0.0.0",
            "PORT": "8080",
            "HEARTBEAT": "5",
            "LOG_LEVEL": "DEBUG",
        }
    )
    assert settings.entities == ("sensor.battery_*", "switch.charger")
    assert (settings.host, settings.port, settings.heartbeat, settings.log_level) == ("0.0.0.0", 8080, 5.0, "debug")
    assert settings.ha_token == Secret(TOKEN)
    assert not settings.demo


def test_the_token_never_shows_in_repr_or_str() -> None:
    settings = load_settings({"HA_URL": "http://ha:8123", "HA_TOKEN": TOKEN})
    for text in (repr(settings), str(settings), repr(settings.ha_token), str(settings.ha_token), f"{settings}"):
        assert TOKEN not in text
    assert settings.ha_token is not None and settings.ha_token.reveal() == TOKEN
    assert settings.secrets() == [TOKEN]


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_config_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "sse.toml"
    path.write_text(
        'ha_url = "http://ha:8123"\nha_token = "from-file"\nport = 9000\nentities = ["sensor.*", "switch.x"]\n'
    )
    settings = load_settings({"CONFIG_FILE": str(path), "PORT": "9001"})
    assert settings.port == 9001
    assert settings.entities == ("sensor.*", "switch.x")
    assert settings.ha_token == Secret("from-file")


def test_config_file_with_unknown_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "sse.toml"
    path.write_text("prot = 9000\n")
    with pytest.raises(ConfigError, match="CONFIG_FILE: unknown setting 'prot'"):
        load_settings({"CONFIG_FILE": str(path)})


def test_config_file_that_is_not_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "sse.toml"
    path.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="CONFIG_FILE: .* is not valid TOML"):
        load_settings({"CONFIG_FILE": str(path)})


def test_access_settings() -> None:
    settings = load_settings(
        {
            "READ_KEY": "r" * 20,
            "WRITE_KEY": "w" * 20,
            "ALLOWED_SERVICES": "switch.turn_on, input_number.set_value",
            "CORS_ORIGINS": "https://Dash.Example.com/, http://localhost:3000",
        }
    )
    assert settings.services == ("switch.turn_on", "input_number.set_value")
    assert settings.cors_origins == ("https://dash.example.com", "http://localhost:3000")
    assert "r" * 20 not in repr(settings) and "w" * 20 not in repr(settings)
    assert set(settings.secrets()) == {"r" * 20, "w" * 20}


def test_commands_default_to_the_demo_switches_and_to_none_against_real_ha() -> None:
    assert load_settings({}).services == ("switch.turn_on", "switch.turn_off", "switch.toggle")
    assert load_settings({"HA_URL": "http://ha:8123", "HA_TOKEN": TOKEN}).services == ()
    assert load_settings({"ALLOWED_SERVICES": "none"}).services == ()


def test_a_bad_key_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WRITE_KEY": "secret value!"})
    assert "secret value" not in str(caught.value)


def test_request_timeout_and_filter_caps_have_defaults_and_can_be_set() -> None:
    defaults = load_settings({})
    assert (defaults.request_timeout, defaults.max_filter_patterns, defaults.max_filter_length) == (10.0, 100, 2048)
    settings = load_settings({"REQUEST_TIMEOUT": "2.5", "MAX_FILTER_PATTERNS": "20", "MAX_FILTER_LENGTH": "500"})
    assert (settings.request_timeout, settings.max_filter_patterns, settings.max_filter_length) == (2.5, 20, 500)


# --- each setting declared once (issue 24, item 5) -------------------------------------------

SETTINGS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
TABLE = re.compile(r"<!-- settings-table:[^>]*-->\n(.*?)<!-- /settings-table -->\n", re.S)


def test_every_settings_field_is_declared_and_every_declaration_is_a_field() -> None:
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert fields == [s.field for s in SETTINGS], "a field made without setting() is never read"
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_the_docs_settings_table_is_the_one_made_from_the_declarations() -> None:
    found = TABLE.findall(SETTINGS_PAGE.read_text())
    assert len(found) == 1, "docs/settings.md has one <!-- settings-table: … --> … <!-- /settings-table --> block"
    assert found[0] == settings_table(), (
        "docs/settings.md's settings table differs from the declarations in sse_service/config.py; paste the output of "
        "python -c 'from sse_service.config import settings_table; print(settings_table(), end=\"\")'"
    )


def test_the_table_names_every_setting_once_in_its_group() -> None:
    rows = [line for line in settings_table().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [
        "CONFIG_FILE",
        *(s.env for g in GROUPS for s in SETTINGS if s.group == g),
    ]
    assert {s.group for s in SETTINGS} == set(GROUPS), "no section of the table is empty"


@pytest.mark.parametrize("declared", SETTINGS, ids=lambda s: s.env)
def test_the_default_the_table_shows_is_the_default_and_the_setting_accepts_it(declared: Setting) -> None:
    shown = declared.default_markdown
    if declared.default is None or shown.startswith(("*(none", "demo:")):
        assert declared.default in (None, ()), shown
        return
    text = shown.split("`")[1]  # the value as a user would write it, e.g. 24h for HISTORY_WINDOW
    assert declared.parse(declared.env, text) == declared.default, shown
    assert load_settings({declared.env: text}) == Settings(), "the default written out changes nothing"


def test_secrets_are_the_settings_of_type_secret_and_each_is_kept_out_of_the_log() -> None:
    secret = {s.env for s in SETTINGS if s.secret}
    assert secret == {"HA_TOKEN", "READ_KEY", "WRITE_KEY", "TOKEN_SECRET", "REDIS_URL"}
    environ = {name: f"{name.lower()}-0123456789abcdef0123456789" for name in secret}
    environ.update(HA_URL="http://ha:8123", REDIS_URL="redis://:redis-password-0123@localhost")
    redacted = load_settings(environ).secrets()
    # A new secret setting must reach the log filter too; of a Redis URL only the password is secret.
    assert sorted(redacted) == sorted([*(environ[name] for name in secret - {"REDIS_URL"}), "redis-password-0123"])


FLAGGED = [s for s in SETTINGS if s.flag]


def test_the_five_flags_are_the_ones_declared() -> None:
    assert [s.flag for s in FLAGGED] == [
        "--host",
        "--port",
        "--graceful-timeout",
        "--forwarded-allow-ips",
        "--max-stream-age",
    ]


@pytest.mark.parametrize("declared", FLAGGED, ids=lambda s: str(s.flag))
def test_a_flag_wins_over_its_variable_and_a_bad_one_is_named_as_typed(declared: Setting) -> None:
    default = declared.default_markdown.split("`")[1]
    assert load_settings({declared.env: "not valid!"}, {declared.flag or "": default}) == Settings()
    with pytest.raises(ConfigError) as caught:
        load_settings({declared.env: default}, {declared.flag or "": "not valid!"})
    assert str(caught.value).startswith(f"{declared.flag}: expected ")
    assert load_settings({declared.env: "not valid!"}, {declared.flag or "": ""}) == Settings(), "blank: unset"


def test_help_lists_each_flag_with_its_help_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for declared in FLAGGED:
        assert f"{declared.flag} {declared.env} " in text
        assert f"({declared.env}; default " in text
    assert "85–100 % of this many seconds" in text and "* trusts whoever connects" in text
