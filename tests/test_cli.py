"""The command line: one clear line for a bad setting, never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sse_service import __version__

from .helpers import free_port

TOKEN = "cli-test-token-0123456789"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HA_URL", "HA_TOKEN", "PORT", "HOST", "CONFIG_FILE")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sse_service", *args], env=clean, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"HA_URL": "http://ha:8123"}, "HA_TOKEN"),
        ({"HA_URL": "nonsense", "HA_TOKEN": TOKEN}, "HA_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"HEARTBEAT": "0"}, "HEARTBEAT"),
    ],
)
def test_a_bad_setting_exits_non_zero_with_one_line_naming_it(env: dict[str, str], setting: str) -> None:
    result = run_cli(**env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sse-service: configuration error: {setting}: ")
    assert TOKEN not in result.stderr + result.stdout


def test_flags_override_the_environment_and_check_validates() -> None:
    assert run_cli("--check", "--port", "9000").returncode == 0
    bad = run_cli("--check", "--port", "nine")
    assert bad.returncode == 2 and "configuration error: --port: expected an integer" in bad.stderr


def test_check_connects_to_ha_and_exits_non_zero_with_the_reason() -> None:
    demo = run_cli("check")
    assert demo.returncode == 0 and "embedded demo" in demo.stdout
    env = {"HA_URL": "ws://127.0.0.1:1/api/websocket", "HA_TOKEN": TOKEN, "NO_PROXY": "127.0.0.1"}
    down = run_cli("check", **env)
    assert down.returncode == 1, down.stdout + down.stderr
    assert "problem: cannot connect to Home Assistant at ws://127.0.0.1:1/api/websocket" in down.stdout
    assert TOKEN not in down.stdout + down.stderr


def test_the_console_script_is_installed() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "sse-service")
    result = subprocess.run([script, "--check"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_procfile_command_serves_on_port_and_stops_on_sigterm() -> None:
    """Runs the Procfile's web line the way a platform does: a shell, $PORT, SIGTERM to that pid."""
    line = (Path(__file__).resolve().parent.parent / "Procfile").read_text().strip()
    assert line.startswith("web: ")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HA_URL", "HA_TOKEN", "HOST", "CONFIG_FILE")}
    env.update(PORT=str(port), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    proc = subprocess.Popen(["sh", "-c", line.removeprefix("web: ")], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the Procfile command did not come up"
            time.sleep(0.1)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'sse_upstream_status{status="connected"} 1.0' in metrics
        proc.send_signal(signal.SIGTERM)  # to the pid the platform knows: the shell exec'd the service
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode in (0, -signal.SIGTERM)
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- the first hour (issue 28) ---------------------------------------------------------------


def test_a_port_in_use_is_one_line_naming_port_and_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"sse-service: port {port} on 127.0.0.1 is in use; choose another with PORT=… or --port …"
    )
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr


def test_version_prints_the_package_version() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"sse-service {__version__}\n")


def test_check_is_one_spelling_that_takes_the_flags_either_side() -> None:
    assert run_cli("check", "--port", "9000").returncode == 0
    assert run_cli("--port", "9000", "check").returncode == 0
    bad = run_cli("check", "--port", "nine")
    assert bad.returncode == 2 and "configuration error: --port: expected an integer" in bad.stderr
    old = run_cli("--check")
    assert old.returncode == 0 and "sse-service check" in old.stderr and "check: OK" in old.stdout
    assert "--check" not in run_cli("--help").stdout


@pytest.mark.parametrize("command", [(), ("check",), ("token", "--entities", "*")])
def test_every_command_exits_2_for_a_bad_setting(command: tuple[str, ...]) -> None:
    result = run_cli(*command, HEARTBEAT="0", TOKEN_SECRET="s" * 40)
    assert result.returncode == 2 and "configuration error: HEARTBEAT" in result.stderr, result.stderr
