"""The Home Assistant add-on (addon/, repository.yaml): its manifest, its settings, its ingress, its image.

The first tests need nothing but the files: the manifest against what the Supervisor accepts
(rules transcribed from home-assistant/supervisor, ``apps/validate.py`` and ``apps/options.py``),
its options against the settings the bridge declares, the versions, the ingress port's rules.

The rest build addon/Dockerfile with podman, offline: BUILD_FROM is the project's Debian base
(tests/podman.py, shared with tests/test_container.py) and SSE_SERVICE a wheel of this checkout,
where the Supervisor would use Home Assistant's Python image and the release from build.yaml.
The Supervisor is played by two things: a container from the same image running the demo Home
Assistant on port 80, named ``supervisor`` to the add-on (``--add-host``) and answering only at
``/core/websocket`` with only the token given as ``SUPERVISOR_TOKEN``; and nginx on the host,
proxying ``/api/hassio_ingress/<token>/`` to the add-on's ingress port with the prefix stripped
and ``X-Ingress-Path`` sent. The host's address on podman's network is the add-on's
``--ingress-peer`` (the Supervisor's 172.30.32.2 in Home Assistant). Everything created is
removed by name. The add-on's log and a screenshot of the page through nginx go to test-artifacts/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with uvicorn[standard]; no stubs
from playwright.async_api import expect
from starlette.datastructures import Headers

import sse_service
from sse_service.access import Keys
from sse_service.app import create_app
from sse_service.config import SETTINGS, SUPERVISOR_URL, ConfigError, Secret, load_settings, read_options
from sse_service.parsers import LOG_LEVELS
from sse_service.proxy import Ingress, IngressMiddleware, TrustedProxies
from sse_service.service import Service

from .helpers import free_port
from .podman import ARTIFACTS, ROOT, base_image, build_flags, need, podman, runtime_flags
from .test_nginx import nginx_binary
from .test_page import chromium

ADDON = ROOT / "addon"
MEASURED: dict[str, Any] = {}
_names = itertools.count()

# supervisor/apps/options.py: RE_SCHEMA_ELEMENT (a schema value, ? for optional)
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
# supervisor/apps/validate.py and supervisor/const.py
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
RE_WATCHDOG = re.compile(r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$")
RE_DOCKER_IMAGE_BUILD = re.compile(r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[\.\-\w{}]+)?$")
RE_PORT = re.compile(r"^\d+(?:/(?:tcp|udp))?$")
ARCHES = {"aarch64", "amd64", "armhf", "armv7", "i386"}
STARTUP = {"initialize", "system", "services", "application", "once"}
BOOT = {"auto", "manual", "manual_only"}
BOOLEANS = ("init", "homeassistant_api", "ingress", "ingress_stream", "panel_admin", "host_network", "hassio_api")

SUPERVISOR_TOKEN = "supervisor-token-for-the-test-7d1e0c9a4b"
READ_KEY = "addon-read-key-5c2f9e1a7b"
WRITE_KEY = "addon-write-key-8e3d6b0f4a"
INGRESS_TOKEN = "x7Yq2pL9sKd0Vw3mBn5cR8tZ1aE4fG6hJ"


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ADDON / name).read_text())
    return data


# --- the files ---------------------------------------------------------------------------


def test_the_repository_has_one_add_on_with_every_file_the_store_shows() -> None:
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert repository["name"] and repository["url"].startswith("https://")
    folders = [p.parent.name for p in ROOT.glob("*/config.yaml")] + [p.parent.name for p in ROOT.glob("*/config.json")]
    assert folders == ["addon"], "the Supervisor takes every folder with a config.yaml for an add-on"
    for name in ("config.yaml", "build.yaml", "Dockerfile", "run.sh", "DOCS.md", "CHANGELOG.md", "icon.png",
                 "logo.png", "translations/en.yaml", "requirements.txt"):  # fmt: skip
        assert (ADDON / name).is_file(), name
    for art in ("icon.png", "logo.png"):
        data = (ADDON / art).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 50_000, art
    assert os.access(ADDON / "run.sh", os.X_OK)
    assert (ADDON / "Dockerfile").read_text().count("FROM $BUILD_FROM") == 1


def test_config_yaml_has_what_the_supervisor_requires_in_the_types_it_requires() -> None:
    config = manifest("config.yaml")
    for key in ("name", "version", "slug", "description"):
        assert isinstance(config[key], str) and config[key], key
    assert RE_SLUG.match(config["slug"])
    assert isinstance(config["arch"], list) and set(config["arch"]) == {"amd64", "aarch64", "armv7"} <= ARCHES
    assert config["startup"] in STARTUP and config["boot"] in BOOT
    for key in BOOLEANS:
        assert key not in config or isinstance(config[key], bool), key
    assert config["homeassistant_api"] is True and config["ingress"] is True
    assert config["ingress_stream"] is True, "else the Supervisor buffers the endless /events response"
    assert isinstance(config["ingress_port"], int) and config["ingress_port"] != 8000
    assert all(RE_PORT.match(port) and isinstance(host, int) for port, host in config["ports"].items())
    assert set(config["ports_description"]) == set(config["ports"])
    assert RE_WATCHDOG.match(config["watchdog"]) and config["watchdog"].endswith("/healthz")
    assert "image" not in config, "built on the user's machine from the Dockerfile (no registry publishes it)"
    for key, element in config["schema"].items():
        elements = element if isinstance(element, list) else [element]
        assert len(elements) == 1 and isinstance(elements[0], str) and RE_SCHEMA_ELEMENT.match(elements[0]), key
    assert set(config["options"]) <= set(config["schema"])
    required = {k for k, v in config["schema"].items() if not isinstance(v, list) and not v.endswith("?")}
    lists = {k for k, v in config["schema"].items() if isinstance(v, list)}
    assert required | lists <= set(config["options"]), "the Supervisor refuses to start without them"

    build = manifest("build.yaml")
    assert set(build["build_from"]) == set(config["arch"])
    assert all(RE_DOCKER_IMAGE_BUILD.match(image) for image in build["build_from"].values())
    assert all("home-assistant" in image and "base-python" in image for image in build["build_from"].values())
    assert all(isinstance(v, str) for v in build["args"].values()) and all(
        isinstance(v, str) for v in build["labels"].values()
    )


def test_the_add_on_version_is_the_package_version_everywhere() -> None:
    version = manifest("config.yaml")["version"]
    assert version == sse_service.__version__
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"/v{version}.tar.gz" in manifest("build.yaml")["args"]["SSE_SERVICE"], "the release the image installs"
    assert f"## {version}" in (ADDON / "CHANGELOG.md").read_text()
    url = yaml.safe_load((ROOT / "repository.yaml").read_text())["url"]
    assert manifest("config.yaml")["url"] == url and manifest("build.yaml")["args"]["SSE_SERVICE"].split(" @ ")[
        1
    ].startswith(url)


def test_the_options_are_declared_settings_with_the_declared_kinds_secrets_as_passwords() -> None:
    config = manifest("config.yaml")
    declared = {s.field: s for s in SETTINGS}
    for key, element in config["schema"].items():
        assert key in declared, f"{key} is not a setting the bridge declares"
        setting = declared[key]
        kind = (element[0] if isinstance(element, list) else element).rstrip("?")
        assert (kind.startswith("password")) == setting.secret, f"{key}: secrets, and only they, are password fields"
        if isinstance(element, list):
            assert isinstance(setting.default, tuple) or key == "allowed_services", f"{key}: a list is a list setting"
        elif isinstance(setting.default, bool):
            assert kind == "bool", key
        elif isinstance(setting.default, int):
            bounds = re.fullmatch(r"int\((-?\d+),(-?\d+)\)", kind)
            assert bounds, f"{key}: an integer setting is int(lo,hi)"
            lo, hi = int(bounds[1]), int(bounds[2])
            setting.parse(key, str(lo)), setting.parse(key, str(hi))  # both ends are accepted
            for outside in (lo - 1, hi + 1):
                with pytest.raises(ConfigError):
                    setting.parse(key, str(outside))
    levels = re.fullmatch(r"list\((.*)\)\??", config["schema"]["log_level"])
    assert levels and set(levels[1].split("|")) == set(LOG_LEVELS)
    # Each secret of the bridge that a user sets in the add-on is a password field.
    assert {"read_key", "write_key", "token_secret"} <= {k for k, v in config["schema"].items() if v == "password?"}
    assert "ha_token" not in config["schema"] and "ha_url" not in config["schema"], "the Supervisor gives those"
    # The defaults are what the bridge's own defaults are (or, for a list, none given).
    settings = load_settings({}, options=config["options"])
    for key in config["options"]:
        assert getattr(settings, key) == declared[key].default or key == "allowed_services", key


def test_every_option_has_a_label_and_a_description() -> None:
    translations = manifest("translations/en.yaml")
    config = manifest("config.yaml")
    assert set(translations["configuration"]) == set(config["schema"])
    for key, text in translations["configuration"].items():
        assert text["name"] and text["description"], key
    assert set(translations["network"]) == set(config["ports"])


def test_the_add_on_installs_the_root_pins_less_the_compiled_extras() -> None:
    def pins(path: Path) -> dict[str, str]:
        found = {}
        for line in path.read_text().splitlines():
            if re.match(r"^[A-Za-z]", line):
                name, _, version = line.partition("==")
                found[name.lower().replace("_", "-")] = version
        return found

    root, addon = pins(ROOT / "requirements.txt"), pins(ADDON / "requirements.txt")
    assert addon.items() <= root.items(), "the same versions the other deploys run"
    assert set(root) - set(addon) - {"."} == {"httptools", "uvloop", "watchfiles", "hiredis", "pyyaml", "python-dotenv"}


# --- the settings --------------------------------------------------------------------------


def test_the_supervisor_token_opens_home_assistant_through_the_supervisor_when_nothing_else_is_set() -> None:
    settings = load_settings({"SUPERVISOR_TOKEN": SUPERVISOR_TOKEN})
    assert settings.ha_url == SUPERVISOR_URL == "ws://supervisor/core/websocket"
    assert settings.ha_token is not None and settings.ha_token.reveal() == SUPERVISOR_TOKEN
    assert SUPERVISOR_TOKEN in settings.secrets(), "kept out of the log like HA_TOKEN"
    assert SUPERVISOR_TOKEN not in repr(settings)
    assert not settings.demo and settings.services == (), "no commands unless allowed"
    assert load_settings({}).demo, "the demo stays the default elsewhere"
    mine = load_settings({"SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "HA_URL": "http://ha:8123", "HA_TOKEN": "t" * 20})
    assert mine.ha_url == "ws://ha:8123/api/websocket" and mine.ha_token is not None
    assert mine.ha_token.reveal() == "t" * 20
    with pytest.raises(ConfigError, match="^HA_TOKEN: required when HA_URL is set"):
        load_settings({"SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "HA_URL": "http://ha:8123"})


@pytest.mark.parametrize(
    ("option", "value", "variable", "raw"),
    [
        ("entities", ["no dot"], "ENTITIES", "no dot"),
        ("read_key", "short", "READ_KEY", "short"),
        ("history_window", "3 weeks", "HISTORY_WINDOW", "3 weeks"),
        ("log_level", "loud", "LOG_LEVEL", "loud"),
        ("cors_origins", ["not an origin"], "CORS_ORIGINS", "not an origin"),
    ],
)
def test_a_bad_option_fails_with_the_environments_one_line_message_under_the_options_name(
    option: str, value: object, variable: str, raw: str
) -> None:
    with pytest.raises(ConfigError) as from_options:
        load_settings({}, options={option: value})
    with pytest.raises(ConfigError) as from_environment:
        load_settings({variable: raw})
    assert str(from_options.value) == str(from_environment.value).replace(f"{variable}:", f"{option}:", 1)
    assert "\n" not in str(from_options.value)
    if option == "read_key":
        assert "short" not in str(from_options.value), "a secret is never echoed, even a bad one"


def test_options_become_the_settings_and_the_environment_still_wins(tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    options = {"entities": ["sensor.*", "switch.charger"], "access_log": False, "history_points": 10,
               "allowed_services": [], "read_key": READ_KEY, "token_secret": None}  # fmt: skip
    path.write_text(json.dumps(options))
    settings = load_settings({"HISTORY_POINTS": "20"}, options=read_options(str(path)))
    assert settings.entities == ("sensor.*", "switch.charger") and settings.access_log is False
    assert settings.history_points == 20 and settings.token_secret is None and settings.allowed_services is None
    assert settings.read_key is not None and settings.read_key.reveal() == READ_KEY
    with pytest.raises(ConfigError, match="^prot: is not an option of this add-on$"):
        load_settings({}, options={"prot": 1})
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="^options: .* is not valid JSON"):
        read_options(str(path))
    with pytest.raises(ConfigError, match="^options: cannot read"):
        read_options(str(tmp_path / "missing.json"))


# --- the ingress port, in process ------------------------------------------------------------

INGRESS_PORT = 8099
SUPERVISOR = "172.30.32.2"


@contextlib.asynccontextmanager
async def ingress_app(**settings: str) -> AsyncIterator[tuple[Service, Any]]:
    # A Home Assistant that is never connected to: only the routes' access checks are asked.
    environ = {"HA_URL": "http://ha.invalid:8123", "HA_TOKEN": "t" * 20, **settings}
    service = Service(load_settings(environ), ingress=Secret("ingress-credential-" + "x" * 32))
    assert service.keys.ingress is not None
    ingress = Ingress(INGRESS_PORT, TrustedProxies([SUPERVISOR]), service.keys.ingress)
    yield service, create_app(service, ingress=ingress)


def client(app: Any, peer: str, port: int) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url=f"http://addon:{port}")


@pytest.mark.anyio
async def test_the_ingress_port_lets_only_the_supervisor_in_and_takes_its_requests_as_logged_in() -> None:
    async with ingress_app(READ_KEY=READ_KEY, WRITE_KEY=WRITE_KEY, ALLOWED_SERVICES="switch.*") as (service, app):
        async with client(app, SUPERVISOR, INGRESS_PORT) as supervisor:
            assert (await supervisor.get("/api/states")).status_code == 200, "no key needed through Ingress"
            forged = await supervisor.get("/api/states", headers={"Authorization": "Bearer wrong"})
            assert forged.status_code == 200, "the browser's own Authorization is replaced, not added"
            # Past the key check (then 503: this Home Assistant is never connected).
            command = await supervisor.post("/api/services/switch/turn_on", json={"entity_id": "switch.nope"})
            assert command.status_code == 503, command.text
        for peer in ("172.30.32.1", "127.0.0.1", "10.88.0.5"):
            async with client(app, peer, INGRESS_PORT) as other:
                refused = await other.get("/api/states")
                assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
                assert (await other.get("/events")).status_code == 403, "/events is taken ahead of the stack"
                assert (await other.get("/")).status_code == 403
        # The main port: the keys, whoever connects, the Supervisor's address included.
        async with client(app, SUPERVISOR, 8000) as main:
            assert (await main.get("/api/states")).status_code == 401
            assert (
                await main.get("/api/states", headers={"X-Ingress-Path": "/api/hassio_ingress/x"})
            ).status_code == 401
            assert (await main.get("/api/states", params={"key": READ_KEY})).status_code == 200
            command = await main.post("/api/services/switch/turn_on", headers={"Authorization": f"Bearer {READ_KEY}"})
            assert command.status_code == 401


def test_a_viewer_through_ingress_may_call_services_and_its_page_says_so() -> None:
    """The snapshot's can_call: through Ingress the viewer logged in to Home Assistant itself, so the
    page's toggles are live (they were disabled as on a read-only screen)."""
    ingress = Secret("ingress-credential-0123456789abcdef")
    keys = Keys(Secret(READ_KEY), Secret(WRITE_KEY), None, ingress)
    assert keys.may_command(Headers({"authorization": f"Bearer {ingress.reveal()}"}), {})
    assert not keys.may_command(Headers({"authorization": f"Bearer {READ_KEY}"}), {})
    assert keys.may_command(Headers({"authorization": f"Bearer {WRITE_KEY}"}), {})


@pytest.mark.anyio
async def test_the_ingress_path_becomes_the_root_path_and_a_forged_one_is_ignored() -> None:
    prefix = f"/api/hassio_ingress/{INGRESS_TOKEN}"
    async with ingress_app() as (service, app):
        async with client(app, SUPERVISOR, INGRESS_PORT) as supervisor:
            page = await supervisor.get("/", headers={"X-Ingress-Path": prefix})
            assert page.status_code == 200 and "text/html" in page.headers["content-type"], "routes see past it"
            assert (await supervisor.get("/healthz", headers={"X-Ingress-Path": prefix + "/"})).status_code == 200

        seen: list[tuple[str, str]] = []

        async def record(scope: Any, receive: Any, send: Any) -> None:
            seen.append((scope.get("root_path", ""), scope["path"]))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        assert service.keys.ingress is not None
        wrapped = IngressMiddleware(record, Ingress(INGRESS_PORT, TrustedProxies([SUPERVISOR]), service.keys.ingress))
        async with client(wrapped, SUPERVISOR, INGRESS_PORT) as supervisor:
            for given in (prefix + "/", "/api/../etc", "javascript:alert(1)", "/a b"):
                assert (await supervisor.get("/healthz", headers={"X-Ingress-Path": given})).status_code == 200
    assert seen == [(prefix, prefix + "/healthz")] + [("", "/healthz")] * 3


# --- the image, run as the Supervisor would ---------------------------------------------------

# The Supervisor's side of homeassistant_api, in a container of its own: the demo Home Assistant on
# port 80, answering at /core/websocket only, with the token given. It prints each path asked for.
FAKE_SUPERVISOR = """
import asyncio, os
from sse_service.ha.demo import BatteryHome, DemoHomeAssistant

class Supervisor(DemoHomeAssistant):
    async def _handle(self, ws):
        print("path", ws.request.path, flush=True)
        if ws.request.path != "/core/websocket":
            await ws.close(1008, "not the Supervisor's path")
            return
        await super()._handle(ws)

async def main():
    ha = Supervisor(os.environ["TOKEN"], host="0.0.0.0", port=80)
    await ha.start()
    await BatteryHome(ha, interval=0.5).run()

asyncio.run(main())
"""


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if MEASURED:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "addon.json").write_text(json.dumps(MEASURED, indent=2) + "\n")
        print("\nadd-on measurements:", json.dumps(MEASURED, indent=2))


@pytest.fixture(scope="module")
def addon_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """addon/ built as the Supervisor builds it, with the Debian base as BUILD_FROM and this checkout as a wheel."""
    base = base_image(MEASURED)
    context = tmp_path_factory.mktemp("addon") / "context"
    shutil.copytree(ADDON, context)
    started = time.monotonic()
    wheel = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(context),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    (built,) = context.glob("sse_service-*.whl")
    tag = f"localhost/sse-addon-test:{os.getpid()}"
    build = [
        "build",
        *build_flags(),
        "--build-arg",
        f"BUILD_FROM={base}",
        "--build-arg",
        f"SSE_SERVICE=/addon/{built.name}",
    ]
    try:
        podman(*build, "-t", tag, str(context), timeout=600)
        MEASURED["wheel_and_build_s"] = round(time.monotonic() - started, 1)
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


def name() -> str:
    return f"sse-addon-test-{os.getpid()}-{next(_names)}"


def address(container: str) -> str:
    found = podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", container).stdout.strip()
    assert found, f"{container} has no address on podman's network"
    return found


def gateway() -> str:
    """The host's address on podman's default network: where nginx's requests to a container come from."""
    found = podman("network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}").stdout.strip()
    assert found, "podman's default network has no gateway"
    return found


@contextlib.contextmanager
def running(*args: str) -> Iterator[str]:
    container = name()
    try:
        # --http-proxy=false: the host's proxy variables would send ws://supervisor through a proxy.
        podman("run", "--detach", "--name", container, *runtime_flags(), "--http-proxy=false", *args)
        yield container
    finally:
        podman("rm", "--force", "--time", "0", container, check=False)


@pytest.fixture(scope="module")
def supervisor(addon_image: str) -> Iterator[str]:
    """The fake Supervisor's container; yields its address."""
    with running("--env", f"TOKEN={SUPERVISOR_TOKEN}", addon_image, "python3", "-c", FAKE_SUPERVISOR) as container:
        yield address(container)


@dataclasses.dataclass
class Addon:
    container: str
    url: str  # the mapped port, on the host's loopback
    ingress: str  # the ingress port at the container's address


@pytest.fixture(scope="module")
def addon(addon_image: str, supervisor: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Addon]:
    data = tmp_path_factory.mktemp("data")
    options = {"entities": ["sensor.*", "switch.*"], "allowed_services": ["switch.turn_on", "switch.turn_off"],
               "token_revoked": [], "cors_origins": [], "history_window": "1h", "log_level": "info",
               "access_log": True, "read_key": READ_KEY, "write_key": WRITE_KEY}  # fmt: skip
    (data / "options.json").write_text(json.dumps(options))
    port = free_port()
    started = time.monotonic()
    with running(
        "--env", f"SUPERVISOR_TOKEN={SUPERVISOR_TOKEN}",
        "--add-host", f"supervisor:{supervisor}",
        "--volume", f"{data}:/data:ro",
        "--publish", f"127.0.0.1:{port}:8000",
        addon_image, "/addon/run.sh", "--ingress-peer", gateway(),
    ) as container:  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() - started < 30, podman("logs", container, check=False).stderr
            time.sleep(0.1)
        MEASURED["run_to_ready_s"] = round(time.monotonic() - started, 2)
        yield Addon(container, url, f"http://{address(container)}:8099")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "addon.log").write_text(podman("logs", container, check=False).stderr)


def snapshot(url: str) -> dict[str, Any]:
    """The first event of a stream, which is the snapshot: its data."""
    with httpx.stream("GET", url, timeout=10) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                data: dict[str, Any] = json.loads(line[5:])
                return data
    raise AssertionError("the stream ended before its snapshot")


def test_the_add_on_streams_the_supervisors_home_assistant_with_its_token_and_never_shows_it(
    addon: Addon, supervisor: str
) -> None:
    first = snapshot(f"{addon.url}/events?key={READ_KEY}")
    assert {"sensor.battery_level", "sensor.solar_power", "switch.charger"} <= set(first["entities"])
    health = httpx.get(addon.url + "/healthz")
    assert health.status_code == 200 and health.json()["upstream"]["status"] == "connected"
    assert health.json()["upstream"]["demo"] is False
    seen = [
        health.text,
        httpx.get(addon.url + "/").text,
        httpx.get(addon.url + "/app.js").text,
        httpx.get(addon.url + "/api/states", params={"key": READ_KEY}).text,
        httpx.get(addon.url + "/metrics", params={"key": READ_KEY}).text,
        json.dumps(first),
    ]
    log = podman("logs", addon.container).stderr
    assert all(SUPERVISOR_TOKEN not in text for text in seen), "the token is in a response"
    assert SUPERVISOR_TOKEN not in log and "Traceback" not in log
    assert "ws://supervisor/core/websocket" in log, "the log says where Home Assistant is"
    assert all(len(line) < 400 for line in log.splitlines()), "one plain line per record"
    env = podman("exec", addon.container, "env").stdout
    assert f"SUPERVISOR_TOKEN={SUPERVISOR_TOKEN}" in env  # as the Supervisor sets it: the test is honest


def test_the_keys_hold_on_the_mapped_port(addon: Addon) -> None:
    assert httpx.get(addon.url + "/api/states").status_code == 401
    with httpx.stream("GET", addon.url + "/events") as refused:
        assert refused.status_code == 401
    assert snapshot(f"{addon.url}/events?key={WRITE_KEY}")["entities"], "the write key reads too"
    call = {"entity_id": "switch.charger"}
    read_only = httpx.post(
        addon.url + "/api/services/switch/turn_on", json=call, headers={"Authorization": f"Bearer {READ_KEY}"}
    )
    assert read_only.status_code == 401
    done = httpx.post(
        addon.url + "/api/services/switch/turn_on", json=call, headers={"Authorization": f"Bearer {WRITE_KEY}"}
    )
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 10
    while httpx.get(addon.url + "/api/states/switch.charger", params={"key": READ_KEY}).json()["state"] != "on":
        assert time.monotonic() < deadline, "the command did not reach Home Assistant"
        time.sleep(0.1)
    off = httpx.post(
        addon.url + "/api/services/switch/turn_off", json=call, headers={"Authorization": f"Bearer {WRITE_KEY}"}
    )
    assert off.status_code == 200


def test_the_ingress_port_refuses_every_address_but_the_supervisors(
    addon: Addon, supervisor: str, addon_image: str
) -> None:
    probe = (
        "import sys, urllib.request as r, urllib.error as e\n"
        "try: r.urlopen(sys.argv[1], timeout=5)\n"
        "except e.HTTPError as x: print(x.code)\n"
        "else: print(200)"
    )
    fake = podman("ps", "--filter", f"name=sse-addon-test-{os.getpid()}", "--format", "{{.Names}}").stdout.split()
    others = [c for c in fake if c != addon.container]
    assert others, "the fake Supervisor's container"
    # Another container on the same network, and the add-on itself over loopback: both refused.
    assert podman("exec", others[0], "python3", "-c", probe, addon.ingress + "/healthz").stdout.strip() == "403"
    assert (
        podman("exec", addon.container, "python3", "-c", probe, "http://127.0.0.1:8099/healthz").stdout.strip() == "403"
    )
    # The host, standing in for the Supervisor's address: let in without a key.
    assert httpx.get(addon.ingress + "/api/states").status_code == 200
    # The main port trusts nobody for being where they are, the Supervisor's address included.
    main = addon.ingress.replace(":8099", ":8000")
    assert httpx.get(main + "/api/states", headers={"X-Ingress-Path": "/api/hassio_ingress/x"}).status_code == 401


@contextlib.contextmanager
def ingress_proxy(tmp_path: Path, upstream: str) -> Iterator[str]:
    """nginx as the Supervisor's ingress: /api/hassio_ingress/<token>/ to ``upstream`` with the prefix stripped."""
    prefix = f"/api/hassio_ingress/{INGRESS_TOKEN}"
    port = free_port()
    temp = tmp_path / "nginx"
    temp.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (temp / "nginx.conf").write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location {prefix}/ {{
            proxy_pass {upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Ingress-Path {prefix};
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""
    )
    with (temp / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen([nginx_binary(), "-p", str(temp), "-c", str(temp / "nginx.conf")], stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (temp / "stderr.log").read_text()
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}{prefix}/"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_through_an_ingress_proxy_the_page_is_live_and_a_toggle_works(addon: Addon, tmp_path: Path) -> None:
    with ingress_proxy(tmp_path, addon.ingress) as page_url:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1100, "height": 800})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            await page.goto(page_url)
            charger = page.locator('.card[data-entity="switch.charger"]')
            battery = page.locator('.card[data-entity="sensor.battery_level"]')
            await expect(battery).to_be_visible(timeout=15_000)
            before = await battery.locator("[part=number]").text_content()
            toggle = charger.locator("[part=switch]")
            await expect(toggle).to_be_enabled()
            was = await toggle.get_attribute("aria-checked")
            await toggle.click()
            await expect(toggle).to_have_attribute("aria-checked", "false" if was == "true" else "true", timeout=10_000)
            await expect(battery.locator("[part=number]")).not_to_have_text(before or "", timeout=15_000)  # live
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "addon-ingress.png")
            await toggle.click()  # back as it was
            await expect(toggle).to_have_attribute("aria-checked", was or "false", timeout=10_000)
            await page.close()
    origin = page_url.split("/api/")[0]
    assert requests and all(url.startswith(page_url) for url in requests if url.startswith(origin)), (
        "every request stays under the ingress path"
    )


def test_a_bad_option_stops_the_add_on_with_the_one_line_message(addon_image: str, tmp_path: Path) -> None:
    (tmp_path / "options.json").write_text(json.dumps({"entities": ["no dot"], "read_key": READ_KEY}))
    with running(
        "--env", f"SUPERVISOR_TOKEN={SUPERVISOR_TOKEN}", "--volume", f"{tmp_path}:/data:ro", addon_image
    ) as container:
        state = json.loads(podman("wait", container, timeout=30).stdout.strip() or "null")
        logs = podman("logs", container)
    assert state == 2
    problem = "expected entity ids or globs like 'sensor.*' or 'switch.charger', got 'no dot'"
    assert logs.stderr.strip().splitlines() == [f"sse-service: configuration error: entities: {problem}"]
    assert READ_KEY not in logs.stdout + logs.stderr


def test_the_image_holds_only_pure_python_wheels_so_every_architecture_has_them(addon_image: str) -> None:
    listing = (
        "import importlib.metadata as m, json\n"
        "def tags(d):\n"
        "    lines = (d.read_text('WHEEL') or '').splitlines()\n"
        "    return [l.split(':', 1)[1].strip() for l in lines if l.startswith('Tag:')]\n"
        "print(json.dumps({d.metadata['Name']: tags(d) for d in m.distributions()}))"
    )
    tags = json.loads(podman("run", "--rm", *runtime_flags(), addon_image, "python3", "-c", listing).stdout)
    assert {"sse_service", "starlette", "uvicorn", "websockets"} <= set(tags)
    assert {name: t for name, t in tags.items() if t != ["py3-none-any"]} == {}


def test_sigterm_drains_and_the_add_on_stops_well_within_the_grace_time(addon: Addon) -> None:
    # Last in the module: it stops the add-on the other tests share.
    with httpx.stream("GET", f"{addon.url}/events?key={READ_KEY}", timeout=15) as response:
        lines = response.iter_lines()
        next(line for line in lines if line == "event: snapshot")
        started = time.monotonic()
        stop = subprocess.Popen(
            [need("podman"), "stop", "--time", "10", addon.container], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        rest = list(lines)
    stop.communicate(timeout=30)
    stopped = time.monotonic() - started
    assert any(line.startswith("retry:") for line in rest)
    assert stopped < 5, f"podman stop took {stopped:.1f} s"
    MEASURED["sigterm_stopped_s"] = round(stopped, 2)
    logs = podman("logs", addon.container).stderr
    assert "Finished server process" in logs and "did not drain in time" not in logs
