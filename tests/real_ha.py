"""A real Home Assistant Core for the tests: one ``hass`` process, its token, REST helpers, restarts.

The releases are installed by tests/install_real_ha.py (``tests/run`` calls it) into cached
venvs outside the repo. Fixtures (registered in tests/conftest.py):

* ``real_ha``: one HA per installed release for the whole session (params ``ha2024.3.3``,
  ``ha2025.4.4``, ``ha2026.11.0``), started with the configuration below, onboarded once, token
  kept with the config dir. Tests must leave it running and should not depend on values other
  tests set.
* ``fresh_real_ha``: a new HA of the same release for one test, for tests that stop or restart
  it (own config dir and port; stopped at the end of the test).

Started means RUNNING (``GET /api/config`` says so, every integration set up), not merely
answering: 2026.11 answers ``/api/`` about a second before, with only some of its entities.
2026.11 runs in a Debian chroot (see tests/install_real_ha.py), as root through
``unshare --mount`` (its /proc and the bound config dir vanish with it) and ``chroot``, exec'd
all the way down so that the PID kept here is hass itself.

A release that is not installed skips its tests with the reason, or fails them under
``CI=true`` (and ``REAL_HA=1``). ``REAL_HA=0`` skips them. Every process started here is ended
by its PID, at the end of its fixture or, as a last resort, when the Python process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from sse_service.config import Secret, Settings

from .helpers import free_port
from .install_real_ha import (
    CHROOT_CONFIG,
    CHROOT_VENV,
    CONFIG_DOMAINS,
    RELEASES,
    Release,
    find_python,
    in_chroot,
    is_installed,
    real_ha_enabled,
)

__all__ = [
    "CONFIGURATION",
    "RealHA",
    "RealHAError",
    "bridge_settings",
    "fresh_real_ha",
    "real_ha",
    "real_ha_release",
    "record_measurement",
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# ``initial:`` values come back on every HA start, so a restart's correction is visible.
CONFIGURATION = """\
homeassistant:
  name: sse_service tests
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
onboarding:
logger:
  default: info
# History for the charts (issue 15): sqlite in the config dir, rows visible within a second.
recorder:
  commit_interval: 1
history:
input_number:
  battery:
    name: Battery
    min: 0
    max: 100
    step: 0.5
    initial: 50
    unit_of_measurement: "%"
    mode: box
  setpoint:
    name: Setpoint
    min: 10
    max: 30
    step: 1
    initial: 20
input_boolean:
  charger:
    name: Charger
    initial: false
counter:
  cycles:
    name: Cycles
    initial: 3
    step: 1
template:
  - sensor:
      - name: Battery mirror
        state: "{{{{ states('input_number.battery') }}}}"
        unit_of_measurement: "%"
      - name: Cycles mirror
        state: "{{{{ states('counter.cycles') }}}}"
  - binary_sensor:
      - name: Charger mirror
        state: "{{{{ is_state('input_boolean.charger', 'on') }}}}"
"""

# HA's log lines: "2024-12-01 10:00:00.123 ERROR (MainThread) [homeassistant.x] message".
_ERROR_LINE = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ", re.M)
# The one ERROR known to be harmless: 2026.x loads the ffmpeg integration by default, and there is
# no ffmpeg binary (the tests use no camera or audio). Once per start.
_HARMLESS_ERROR = re.compile(
    r"^\S+ \S+ ERROR \(MainThread\) \[haffmpeg\.core\] FFmpeg fails \[Errno 2\] "
    r"No such file or directory: 'ffmpeg'$"
)

# Mounts /proc and binds the config dir inside the new mount namespace, then execs the rest
# ($4...: chroot env -i ... hass), so no shell stays between us and hass.
_CHROOT_LAUNCH = 'set -e; mount -t proc proc "$1/proc"; mount --bind "$2" "$1$3"; shift 3; exec "$@"'


class RealHAError(Exception):
    """HA did not start, answer or stop as expected; the message has the end of its log."""


# Every hass process started in this Python process, so none outlives it (by PID, ours only).
_STARTED: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_STARTED):
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)


class RealHA:
    """One ``hass -c <config dir> --skip-pip`` on 127.0.0.1; same config dir and port across restarts."""

    def __init__(self, release: Release, config_dir: Path, port: int | None = None) -> None:
        self.release = release
        self.config_dir = config_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # time.monotonic() of the latest start
        self.http_at: float | None = None  # ... of the first answer from /api/ after it
        self.ready_at: float | None = None  # ... of the first RUNNING from /api/config after it
        self.start_seconds: list[float] = []
        self.stop_seconds: list[float] = []
        self._token: str | None = None
        config_dir.mkdir(parents=True, exist_ok=True)
        text = CONFIGURATION.format(port=self.port)
        used = set(re.findall(r"^(\w+):", text, re.M))
        assert used <= set(CONFIG_DOMAINS), f"the installer does not know {used - set(CONFIG_DOMAINS)}"
        (config_dir / "configuration.yaml").write_text(text)

    # --- addresses and credentials ------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/websocket"

    @property
    def token(self) -> str:
        if self._token is None:
            raise RealHAError("no token yet: start() gets one")
        return self._token

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def output_path(self) -> Path:
        """HA's console output (its log at INFO and up), appended across restarts."""
        return self.config_dir / "hass-output.log"

    # --- its log ------------------------------------------------------------------------

    def log_mark(self) -> int:
        """A position in the log, for ``log_since``."""
        try:
            return self.output_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int = 0) -> str:
        with self.output_path.open("rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def error_lines(self, mark: int = 0) -> list[str]:
        """HA's ERROR and CRITICAL log lines since ``mark``, but for the known harmless one."""
        return [
            line
            for line in self.log_since(mark).splitlines()
            if _ERROR_LINE.match(line) and not _HARMLESS_ERROR.match(line)
        ]

    def _tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_since(0).splitlines()[-lines:])
        except FileNotFoundError:
            return "(no output)"

    # --- life cycle (blocking; the a* versions run them in a thread) ---------------------

    def start(self, timeout: float = 90.0) -> float:
        """Start hass, get a token if there is none yet, and wait until HA is RUNNING.
        Returns the seconds from start to RUNNING."""
        if self.running:
            raise RealHAError("already running")
        deadline = time.monotonic() + timeout
        self._spawn()
        try:
            self._wait_http(deadline)
            if self._token is None:
                self.ensure_token(deadline)
            self.wait_running(deadline)
        except BaseException:
            self.kill()
            raise
        assert self.started_at is not None and self.ready_at is not None
        seconds = self.ready_at - self.started_at
        self.start_seconds.append(seconds)
        return seconds

    def start_answering(self, timeout: float = 90.0) -> None:
        """Start hass and return once HTTP answers, before it is RUNNING (needs a token already)."""
        if self.running or self._token is None:
            raise RealHAError("already running, or no token yet")
        self._spawn()
        try:
            self._wait_http(time.monotonic() + timeout)
        except BaseException:
            self.kill()
            raise

    def _command(self) -> tuple[list[str], dict[str, str]]:
        root = self.release.chroot()
        if root is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HA_", "PYTHON"))}
            return [str(self.release.hass()), "-c", str(self.config_dir), "--skip-pip"], env
        hass = in_chroot(root, [], f"{CHROOT_VENV}/bin/hass", "-c", CHROOT_CONFIG, "--skip-pip")
        launch = ["sh", "-c", _CHROOT_LAUNCH, "sh", str(root), str(self.config_dir), CHROOT_CONFIG, *hass]
        return ["unshare", "--mount", "--propagation", "private", *launch], {"PATH": os.environ.get("PATH", "")}

    def _spawn(self) -> None:
        command, env = self._command()
        with self.output_path.open("ab") as out:
            out.write(f"--- sse_service tests: hass start at {time.time():.3f}\n".encode())
            out.flush()
            self.started_at = time.monotonic()
            self.http_at = self.ready_at = None
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        _STARTED.add(self.process)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RealHAError(f"hass exited with {self.process.returncode} during start:\n{self._tail()}")

    def _wait_http(self, deadline: float) -> None:
        """Poll ``GET /api/`` every 20 ms until it answers 401 (no token needed); sets ``http_at``."""
        with httpx.Client(timeout=2.0) as http:
            while True:
                self._check_alive()
                with contextlib.suppress(httpx.TransportError):
                    if http.get(self.http_url + "/api/").status_code == 401:
                        self.http_at = time.monotonic()
                        return
                if time.monotonic() > deadline:
                    raise RealHAError(f"/api/ did not answer in time:\n{self._tail()}")
                time.sleep(0.02)

    def wait_running(self, deadline: float) -> None:
        """Poll ``GET /api/config`` every 20 ms until HA says RUNNING (every integration set up,
        its entities all there); sets ``ready_at``."""
        with httpx.Client(timeout=5.0, headers=self._auth()) as http:
            while True:
                self._check_alive()
                with contextlib.suppress(httpx.TransportError, ValueError):
                    response = http.get(self.http_url + "/api/config")
                    if response.status_code == 200 and response.json().get("state") == "RUNNING":
                        self.ready_at = time.monotonic()
                        return
                if time.monotonic() > deadline:
                    raise RealHAError(f"HA was not RUNNING in time:\n{self._tail()}")
                time.sleep(0.02)

    def terminate(self) -> float:
        """Send SIGTERM (without waiting); returns the time.monotonic() it was sent at."""
        if self.process is None or self.process.poll() is not None:
            raise RealHAError("not running")
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return sent

    def wait_exit(self, sent: float, timeout: float = 45.0) -> float:
        """Wait for the process to end after ``terminate()``; returns SIGTERM -> gone in seconds."""
        assert self.process is not None
        try:
            self.process.wait(max(0.1, sent + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise RealHAError(f"hass did not exit within {timeout:.0f} s of SIGTERM; killed") from None
        seconds = time.monotonic() - sent
        self.stop_seconds.append(seconds)
        _STARTED.discard(self.process)
        return seconds

    def stop(self, timeout: float = 45.0) -> float:
        """SIGTERM, then wait for the process to end; returns how long that took."""
        return self.wait_exit(self.terminate(), timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process is not None:
            _STARTED.discard(self.process)

    def close(self) -> None:
        """End the process if it still runs (SIGTERM, SIGKILL if it does not go)."""
        if self.running:
            with contextlib.suppress(RealHAError):
                self.stop()
        self.kill()

    async def astart(self, timeout: float = 90.0) -> float:
        return await asyncio.to_thread(self.start, timeout)

    async def astop(self, timeout: float = 45.0) -> float:
        return await asyncio.to_thread(self.stop, timeout)

    async def await_exit(self, sent: float, timeout: float = 45.0) -> float:
        return await asyncio.to_thread(self.wait_exit, sent, timeout)

    # --- a token with no browser ------------------------------------------------------------

    def ensure_token(self, deadline: float) -> str:
        """A long-lived access token: the one saved with the config dir if HA still takes it, else
        one from onboarding (user -> auth code -> /auth/token -> WS auth/long_lived_access_token).
        If onboarding is done and no saved token works, the config dir is wiped and HA onboarded anew.
        Called by ``start()`` once HTTP answers: before RUNNING, as /api/config needs the token."""
        saved = self.config_dir / ".sse-service-token"
        if saved.exists():
            token = saved.read_text().strip()
            with httpx.Client(timeout=5.0) as http:
                if http.get(self.http_url + "/api/", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    self._token = token
                    return token
        if not self._onboarding_open(deadline):
            self.stop()
            for child in self.config_dir.iterdir():
                if child.name not in ("configuration.yaml", self.output_path.name):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            self._spawn()
            self._wait_http(deadline)
            self._onboarding_open(deadline)
        token = self._onboard()
        saved.touch(mode=0o600)
        saved.write_text(token + "\n")
        self._token = token
        return token

    def _onboarding_open(self, deadline: float) -> bool:
        """Whether the onboarding's user step is still to do; waits for onboarding to be set up
        (HTTP may answer before it is, 2026.11 answers before it is RUNNING)."""
        with httpx.Client(timeout=5.0) as http:
            while True:
                response = http.get(self.http_url + "/api/onboarding")
                if response.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    raise RealHAError(f"/api/onboarding answered {response.status_code}:\n{self._tail()}")
                time.sleep(0.05)
        steps = response.json()
        return any(step.get("step") == "user" and not step.get("done") for step in steps)

    def _onboard(self) -> str:
        client_id = self.http_url + "/"
        with httpx.Client(base_url=self.http_url, timeout=30.0) as http:
            response = http.post(
                "/api/onboarding/users",
                json={
                    "client_id": client_id,
                    "name": "sse_service tests",
                    "username": "tests",
                    "password": secrets.token_urlsafe(18),
                    "language": "en",
                },
            )
            response.raise_for_status()
            code = response.json()["auth_code"]
            response = http.post(
                "/auth/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id}
            )
            response.raise_for_status()
            access = {"Authorization": f"Bearer {response.json()['access_token']}"}
            # Not core_config: it starts config flows (met, radio_browser...) that fail under --skip-pip.
            http.post("/api/onboarding/analytics", headers=access).raise_for_status()
            http.post(
                "/api/onboarding/integration",
                headers=access,
                json={"client_id": client_id, "redirect_uri": client_id + "?auth_callback=1"},
            ).raise_for_status()
        with ws_connect(self.ws_url, open_timeout=10, proxy=None) as ws:
            assert json.loads(ws.recv(10))["type"] == "auth_required"
            ws.send(json.dumps({"type": "auth", "access_token": access["Authorization"].split()[1]}))
            reply = json.loads(ws.recv(10))
            if reply["type"] != "auth_ok":
                raise RealHAError(f"onboarding token refused over the WebSocket: {reply}")
            ws.send(
                json.dumps(
                    {
                        "id": 1,
                        "type": "auth/long_lived_access_token",
                        "client_name": "sse_service tests",
                        "lifespan": 3650,
                    }
                )
            )
            result = json.loads(ws.recv(10))
        if not result.get("success"):
            raise RealHAError(f"no long-lived token: {result}")
        return str(result["result"])

    # --- REST -------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def states(self) -> list[dict[str, Any]]:
        """``GET /api/states``."""
        async with httpx.AsyncClient(timeout=10.0, headers=self._auth()) as http:
            response = await http.get(self.http_url + "/api/states")
        response.raise_for_status()
        states: list[dict[str, Any]] = response.json()
        return states

    async def state(self, entity_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10.0, headers=self._auth()) as http:
            response = await http.get(f"{self.http_url}/api/states/{entity_id}")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    async def core_state(self) -> str:
        """HA's core state from ``GET /api/config``: NOT_RUNNING, STARTING, RUNNING, STOPPING..."""
        async with httpx.AsyncClient(timeout=10.0, headers=self._auth()) as http:
            response = await http.get(self.http_url + "/api/config")
        response.raise_for_status()
        return str(response.json().get("state"))

    async def call_service(self, domain: str, service: str, data: dict[str, Any]) -> httpx.Response:
        """``POST /api/services/<domain>/<service>`` on HA itself (not through the bridge)."""
        async with httpx.AsyncClient(timeout=10.0, headers=self._auth()) as http:
            return await http.post(f"{self.http_url}/api/services/{domain}/{service}", json=data)


# --- settings for a bridge in front of it -------------------------------------------------


def bridge_settings(ha: RealHA, **overrides: Any) -> Settings:
    """Settings for a bridge in front of ``ha``. Reconnect timings stay at their defaults:
    how fast the bridge comes back is what the restart tests measure."""
    base = Settings(
        ha_url=ha.ws_url,
        ha_token=Secret(ha.token),
        heartbeat=15.0,
        ha_connect_timeout=5.0,
        ha_auth_retry=30.0,
        graceful_timeout=3.0,
        allowed_services=("input_number.*", "input_boolean.*", "counter.*", "homeassistant.no_such_service"),
    )
    return dataclasses.replace(base, **overrides)


# --- measurements to quote ----------------------------------------------------------------

MEASUREMENTS: list[str] = []


def record_measurement(line: str) -> None:
    """A line for the terminal summary and test-artifacts/real-ha-reconnect.txt (one run per file)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "real-ha-reconnect.txt").open("a" if MEASUREMENTS else "w") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    MEASUREMENTS.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("real Home Assistant measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


# --- fixtures -----------------------------------------------------------------------------


@functools.cache
def candidate_releases() -> tuple[Release, ...]:
    """The releases the installer tries here: those a Python is found for (2025.4.4 needs a 3.13),
    and those in a Debian chroot, always (without root or mmdebstrap their install records why)."""
    return tuple(r for r in RELEASES if r.debian_suite or find_python(r.python) is not None)


def _must_run() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes") for name in ("CI", "REAL_HA"))


def _unavailable(reason: str) -> None:
    if _must_run():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", params=candidate_releases(), ids=lambda r: r.id)
def real_ha_release(request: pytest.FixtureRequest) -> Release:
    """An installed release, or a skip (a failure under CI=true) that says why not."""
    release: Release = request.param
    if not real_ha_enabled():
        pytest.skip("REAL_HA=0: the real Home Assistant tests are off")
    if not is_installed(release):
        try:
            why = release.failure_file().read_text().strip()
        except OSError:
            why = "not installed"
        _unavailable(
            f"Home Assistant {release.version} ({release.runs_on}): {why}. "
            "Install it with: .venv/bin/python tests/install_real_ha.py (tests/run does)"
        )
    return release


def _started(release: Release, config_dir: Path) -> RealHA:
    ha = RealHA(release, config_dir)
    try:
        ha.start()
    except BaseException:
        ha.close()
        raise
    return ha


@pytest.fixture(scope="module")
def real_ha(real_ha_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHA]:
    """One HA per release, started once: for the module, so that it does not idle beside the
    rest of the suite (only tests/test_real_ha.py uses it). Leave it running."""
    ha = _started(real_ha_release, tmp_path_factory.mktemp(f"real-{real_ha_release.id}"))
    try:
        yield ha
    finally:
        ha.close()


@pytest.fixture
def fresh_real_ha(real_ha_release: Release, tmp_path: Path) -> Iterator[RealHA]:
    """A new HA of the same release for one test that stops or restarts it."""
    ha = _started(real_ha_release, tmp_path / "ha-config")
    try:
        yield ha
    finally:
        ha.close()
