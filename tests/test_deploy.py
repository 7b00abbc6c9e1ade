"""The files the platforms read, checked as far as they can be here.

Heroku's buildpack (and Scalingo's and Dokku's) does ``pip install -r requirements.txt`` in a
checkout of what was pushed, then runs the Procfile's ``web:`` line in a shell with ``PORT`` set.
This does the same in a fresh venv, then reads ``/readyz``, the page and the demo stream.
render.yaml, fly.toml, app.json, compose.yaml and the systemd unit are checked against the
same commands and settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with uvicorn[standard]; no stubs
from packaging.requirements import Requirement

from sse_service.config import SETTINGS

from .helpers import free_port
from .samples import sample

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("HA_TOKEN", "WRITE_KEY", "READ_KEY")


def procfile_command() -> str:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("web: "), lines
    return lines[0].removeprefix("web: ")


def pinned() -> dict[str, str]:
    """requirements.txt's ``name==version`` lines, by normalized name."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue  # e.g. async-timeout, needed below Python 3.11.3 only
            (spec,) = requirement.specifier
            pins[normalize(requirement.name)] = spec.version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_without_settings(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HA_URL", "HA_TOKEN", "HOST", "CONFIG_FILE", "PYTHONPATH")}
    env.update(extra)
    return env


def read_events(url: str, count: int = 1, timeout: float = 10.0) -> list[str]:
    """The names of the first ``count`` events of an SSE stream."""
    names: list[str] = []
    event = "message"
    with httpx.stream("GET", url, timeout=httpx.Timeout(timeout)) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line == "":
                if event != "message" or names:
                    names.append(event)
                event = "message"
                if len(names) >= count:
                    break
    return names


def wait_ready(url: str, proc: subprocess.Popen[str] | None = None, timeout: float = 20.0) -> float:
    """Seconds until ``url`` answers 200."""
    start = time.monotonic()
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        assert time.monotonic() - start < timeout, f"{url} did not answer 200 within {timeout} s"
        assert proc is None or proc.poll() is None, "the service exited"
        time.sleep(0.05)


def pushed_tree(dest: Path) -> None:
    """Copy what a ``git push`` of the working tree would send (tracked and new, not ignored, files)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:  # not a git checkout: the tree minus what a push would not carry
        shutil.copytree(
            ROOT,
            dest,
            ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache", "test-artifacts"),
        )
        return
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def deploy_python() -> str:
    """The interpreter .python-version asks for, as a platform would install it; else this one."""
    wanted = (ROOT / ".python-version").read_text().strip()
    return shutil.which(f"python{wanted}") or sys.executable


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A checkout with a fresh ``.venv`` made from requirements.txt (pip's own cache keeps it quick)."""
    app = tmp_path_factory.mktemp("deploy") / "app"
    pushed_tree(app)
    subprocess.run([deploy_python(), "-m", "venv", str(app / ".venv")], check=True, timeout=120)
    started = time.monotonic()
    install = subprocess.run(
        [str(app / ".venv/bin/pip"), "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=app,  # the buildpack's working directory: "." is the pushed project
        env=env_without_settings(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-4000:]
    print(f"pip install -r requirements.txt into a fresh venv: {time.monotonic() - started:.1f} s")
    yield app


def test_the_deploy_venv_holds_exactly_the_pins_and_the_project(deployed: Path) -> None:
    listed = subprocess.run(
        [str(deployed / ".venv/bin/python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {normalize(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    assert installed.pop("sse-service") == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for tool in ("pip", "setuptools", "wheel"):
        installed.pop(tool, None)
    assert installed == pinned(), "requirements.txt pins every package a deploy installs, at the version installed"
    assert (ROOT / "requirements.txt").read_text().splitlines()[-1] == ".", "the project itself, last"


def test_an_install_that_is_not_a_checkout_serves_the_page_it_ships(deployed: Path, tmp_path: Path) -> None:
    # requirements.txt installs the project itself as a wheel: run it from elsewhere (pipx, a
    # plain pip install) and the page must come from the venv, not from a checkout beside it.
    shipped = deployed / ".venv" / "share" / "sse_service" / "web"
    page_files = sorted(p.name for p in (ROOT / "web").iterdir() if p.is_file())
    assert sorted(p.name for p in shipped.iterdir()) == page_files, "pyproject's data-files list every page file"
    port = free_port()
    env = env_without_settings(PORT=str(port))
    command = [str(deployed / ".venv/bin/sse-service")]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", proc)
        page = httpx.get(url + "/")
        assert page.status_code == 200 and page.text == (ROOT / "web" / "index.html").read_text()
        assert httpx.get(url + "/stream.js").text == (ROOT / "web" / "stream.js").read_text()
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_the_page_is_found_beside_the_package_or_where_a_wheel_put_it(tmp_path: Path) -> None:
    from sse_service.app import find_web_dir

    checkout, prefix = tmp_path / "checkout", tmp_path / "venv"
    (checkout / "sse_service").mkdir(parents=True)
    installed = prefix / "share" / "sse_service" / "web"
    installed.mkdir(parents=True)
    (installed / "index.html").write_text("<p>installed</p>")
    assert find_web_dir(checkout / "sse_service", prefix) == installed
    (checkout / "web").mkdir()
    (checkout / "web" / "index.html").write_text("<p>checkout</p>")
    assert find_web_dir(checkout / "sse_service", prefix) == checkout / "web", "a checkout's own page wins"


def test_every_runtime_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {normalize(re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}
    assert names <= set(pinned()), names - set(pinned())


def test_the_docs_show_the_procfile_line_and_does_not_send_render_to_it() -> None:
    assert sample("procfile-line") == f"web: {procfile_command()}\n"
    assert "Render does not read the Procfile" in (ROOT / "docs" / "deploying.md").read_text()


def test_python_version_is_what_heroku_and_render_accept() -> None:
    text = (ROOT / ".python-version").read_text()
    assert re.fullmatch(r"3\.\d+\n?", text), "major.minor (e.g. 3.11): the buildpack takes the latest patch release"
    minimum = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert minimum == ">=3.11" and int(text.strip().split(".")[1]) >= 11


def test_the_procfile_command_serves_readyz_the_page_and_the_demo_from_the_deploy_venv(deployed: Path) -> None:
    port = free_port()
    env = env_without_settings(PORT=str(port), PATH=f"{deployed / '.venv/bin'}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", procfile_command()], cwd=deployed, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", proc)
        ready = time.monotonic() - started
        assert httpx.get(url + "/readyz").json() == {"ready": True, "upstream": "connected"}
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], "the page ships too"
        assert read_events(url + "/events") == ["snapshot"]
        print(f"Procfile command started to /readyz 200: {ready:.2f} s")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
        # uvicorn re-raises the signal it caught once it has shut down cleanly.
        assert proc.returncode in (0, -signal.SIGTERM), stderr
        assert "Finished server process" in stderr and "Traceback" not in stderr
        assert (
            str(deployed / ".venv")
            in subprocess.run(
                ["bash", "-c", "command -v python"], env=env, capture_output=True, text=True, check=True
            ).stdout
        ), "the Procfile's python is the deploy venv's"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- the other platforms' files -------------------------------------------------------------


def load_yaml(name: str) -> Any:
    with (ROOT / name).open() as f:
        return yaml.safe_load(f)


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in line.removeprefix("ENV ").split())  # type: ignore[misc]
    return env


def test_render_blueprint_runs_the_procfile_command_from_the_pins() -> None:
    blueprint = load_yaml("render.yaml")
    (service,) = blueprint["services"]
    assert service["type"] == "web" and service["runtime"] == "python"
    assert service["buildCommand"] == "pip install -r requirements.txt"
    assert service["startCommand"] == procfile_command(), "render.yaml starts the service as the Procfile does"
    assert service["healthCheckPath"] == "/readyz"
    assert service["numInstances"] == 1
    assert service["maxShutdownDelaySeconds"] > 25, "more than the command's --graceful-timeout"
    variables = {v["key"]: v for v in service["envVars"]}
    for name in ("HA_URL", *SECRETS):
        assert variables[name] == {"key": name, "sync": False}, f"{name} is asked for, not committed"


def test_fly_toml_builds_the_dockerfile_and_checks_readiness() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["build"]["dockerfile"] == "Dockerfile"
    assert fly["http_service"]["internal_port"] == int(fly["env"]["PORT"])
    assert fly["kill_signal"] == "SIGTERM"
    assert fly["kill_timeout"] > float(fly["env"]["GRACEFUL_TIMEOUT"])
    assert [check["path"] for check in fly["http_service"]["checks"]] == ["/readyz"]
    assert fly["http_service"]["concurrency"]["type"] == "connections", "streams are long-lived connections"
    assert not set(fly["env"]) & set(SECRETS)


def test_app_json_runs_one_web_dyno_with_a_readiness_check() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert app["formation"] == {"web": {"quantity": 1}}
    assert [check["path"] for check in app["healthchecks"]["web"]] == ["/readyz"]
    assert all("value" not in app["env"].get(name, {}) for name in SECRETS)


def test_compose_points_the_service_at_home_assistant_and_keeps_secrets_in_the_env_file() -> None:
    compose = load_yaml("compose.yaml")
    services = compose["services"]
    bridge = services["sse-service"]
    ha_url = urlsplit(bridge["environment"]["HA_URL"])
    assert ha_url.hostname in services, "HA_URL names the Home Assistant service"
    assert services[ha_url.hostname]["image"] == "ghcr.io/home-assistant/home-assistant:stable"
    assert ha_url.port == 8123
    assert bridge["build"] == "." and bridge["env_file"] == ["sse-service.env"]
    assert not set(bridge["environment"]) & set(SECRETS), "secrets come from the env file"
    assert {"ENTITIES", "ALLOWED_SERVICES"} <= set(bridge["environment"])
    container_port = int(bridge["environment"].get("PORT", dockerfile_env()["PORT"]))
    assert [int(p.rsplit(":", 1)[1]) for p in bridge["ports"]] == [container_port]
    assert bridge["restart"] == "unless-stopped"
    assert int(bridge["stop_grace_period"].removesuffix("s")) > float(bridge["environment"]["GRACEFUL_TIMEOUT"])
    assert bridge["healthcheck"]["test"][0] == "CMD" and "/healthz" in bridge["healthcheck"]["test"][-1]
    example = (ROOT / "deploy/sse-service.env.example").read_text()
    for name in ("HA_TOKEN", "WRITE_KEY"):
        assert re.search(rf"^{name}=$", example, re.M), f"the example leaves {name} for the user"


# What the files set for Python or the shell, not for the service.
NOT_SETTINGS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def test_the_deploy_files_set_only_declared_settings_and_every_value_parses() -> None:
    """A renamed or mistyped setting in a platform's file would be ignored there without a word."""
    (render,) = load_yaml("render.yaml")["services"]
    unit = unit_settings((ROOT / "deploy/sse-service.service").read_text())
    example = (ROOT / "deploy/sse-service.env.example").read_text()
    files: dict[str, Mapping[str, object]] = {
        "app.json": {
            name: spec.get("value", "") for name, spec in json.loads((ROOT / "app.json").read_text())["env"].items()
        },
        "render.yaml": {variable["key"]: variable.get("value", "") for variable in render["envVars"]},
        "fly.toml": tomllib.loads((ROOT / "fly.toml").read_text())["env"],
        "compose.yaml": load_yaml("compose.yaml")["services"]["sse-service"]["environment"],
        # Its commented-out lines too (# READ_KEY=): they are there to be filled in.
        "deploy/sse-service.env.example": dict(re.findall(r"^(?:# ?)?([A-Z_]+)=(.*)$", example, re.M)),
        "deploy/sse-service.service": dict(item.split("=", 1) for item in unit["Environment"][0].split()),
        "Dockerfile": dockerfile_env(),
    }
    declared = {setting.env: setting for setting in SETTINGS}
    for file, values in files.items():
        assert values, f"{file} is read"
        for name, value in values.items():
            if name in NOT_SETTINGS:
                continue
            assert name in declared, f"{file} sets {name}, which is not a setting"
            if str(value).strip():
                declared[name].parse(f"{file}: {name}", str(value))


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit_verifies_and_its_command_runs(deployed: Path, tmp_path: Path) -> None:
    text = (ROOT / "deploy/sse-service.service").read_text()
    unit = unit_settings(text)
    defaults = dict(item.split("=", 1) for item in unit["Environment"][0].split())
    assert float(unit["TimeoutStopSec"][0]) > float(defaults["GRACEFUL_TIMEOUT"])
    assert unit["EnvironmentFile"] == ["/etc/sse-service.env"] and unit["DynamicUser"] == ["yes"]
    assert unit["Restart"] == ["on-failure"] and unit["KillSignal"] == ["SIGTERM"]
    assert {"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"} <= set(unit)

    # Its command, from its directory, with its environment and the example's file (demo: no HA_URL).
    env = env_without_settings(**defaults)
    command = unit["ExecStart"][0].replace("/opt/sse-service", str(deployed)).split()
    check = subprocess.run([*command, "--check"], cwd=deployed, env=env, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    env_file = tmp_path / "sse-service.env"
    env_file.write_text((ROOT / "deploy/sse-service.env.example").read_text())
    local = tmp_path / "sse-service.service"
    local.write_text(text.replace("/opt/sse-service", str(deployed)).replace("/etc/sse-service.env", str(env_file)))
    verified = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "sse-service.service" not in verified.stderr, verified.stderr
