"""The command line: one clear line for a bad setting, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
    assert bad.returncode == 2 and "PORT: expected an integer" in bad.stderr


def test_the_console_script_is_installed() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "sse-service")
    result = subprocess.run([script, "--check"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
