"""The Dockerfile, built and run for real with podman.

The offline base and the podman flags this sandbox needs are in tests/podman.py (shared with
tests/test_addon.py). What this test creates (the image tag, the containers) it removes by name.

Measurements (build time, image size, run to first byte, drain time) are printed and written
to test-artifacts/container.json.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .helpers import free_port
from .podman import ARTIFACTS, BASE_IMAGE, ROOT, build_flags, need, podman, runtime_flags
from .podman import base_image as podman_base_image
from .samples import sample
from .test_deploy import read_events

pytestmark = pytest.mark.timeout(900)  # the first run builds the base image

GRACE = 10  # seconds podman stop waits before SIGKILL (its default)
MEASURED: dict[str, Any] = {}
_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if MEASURED:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "container.json").write_text(json.dumps(MEASURED, indent=2) + "\n")
        print("\ncontainer measurements:", json.dumps(MEASURED, indent=2))


@pytest.fixture(scope="module")
def base_image() -> str:
    return podman_base_image(MEASURED)


def test_the_docs_offline_recipe_is_the_one_this_test_builds_with() -> None:
    """docs/deploying.md: the script, the import as BASE_IMAGE, the build on it, as base_image() does."""
    script, imported, build = sample("base-image").strip().splitlines()
    assert script.startswith("deploy/base-image.sh ") and (ROOT / "deploy" / "base-image.sh").stat().st_mode & 0o111
    assert imported.startswith("podman import ") and imported.endswith(f" {BASE_IMAGE}")
    assert f"--build-arg BASE={BASE_IMAGE}" in build
    syntax = subprocess.run(["bash", "-n", str(ROOT / "deploy" / "base-image.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.fixture(scope="module")
def image(base_image: str) -> Iterator[str]:
    tag = f"localhost/sse-service-test:{os.getpid()}"
    build = ["build", *build_flags(), "--build-arg", f"BASE={base_image}"]
    started = time.monotonic()
    try:
        podman(*build, "-t", tag, str(ROOT), timeout=600)
        MEASURED["build_s"] = round(time.monotonic() - started, 1)
        size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)
        base_size = int(podman("image", "inspect", "--format", "{{.Size}}", base_image).stdout)
        MEASURED["image_mb"] = round(size / 1e6, 1)
        MEASURED["image_over_base_mb"] = round((size - base_size) / 1e6, 1)
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


@contextlib.contextmanager
def container(image: str, host_port: int, container_port: int, *env: str) -> Iterator[str]:
    """``podman run -d`` publishing on loopback only; removed by name afterwards."""
    name = f"sse-service-test-{os.getpid()}-{next(_names)}"
    try:
        podman(
            "run",
            "--detach",
            "--name",
            name,
            *runtime_flags(),
            "--health-interval=disable",  # no systemd timers here; the check is run by hand
            "--publish",
            f"127.0.0.1:{host_port}:{container_port}",
            *(arg for item in env for arg in ("--env", item)),
            image,
        )
        yield name
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_the_image_serves_the_demo_stream_as_a_user_without_privileges(image: str) -> None:
    port = free_port()
    started = time.monotonic()
    with container(image, port, port, f"PORT={port}") as name:
        url = f"http://127.0.0.1:{port}"
        while True:  # run to the first byte of the stream
            try:
                with httpx.stream("GET", url + "/events", timeout=10) as response:
                    if response.status_code == 200:
                        first = next(response.iter_bytes())
                        MEASURED["run_to_first_stream_byte_s"] = round(time.monotonic() - started, 2)
                        assert first
                        break
            except httpx.TransportError:
                pass
            assert time.monotonic() - started < 30, podman("logs", name, check=False).stderr
            time.sleep(0.05)
        assert read_events(url + "/events") == ["snapshot"]
        assert httpx.get(url + "/readyz").json() == {"ready": True, "upstream": "connected"}
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], "the page is in the image"

        assert podman("exec", name, "id", "-u").stdout.strip() not in ("", "0"), "not root"
        assert podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "10001:10001"
        assert podman("healthcheck", "run", name, check=False).returncode == 0, "the HEALTHCHECK passes"
        assert podman("exec", name, "ls", "-A", "/app").stdout.split() == ["sse_service", "web"], ".dockerignore"
        env = json.loads(podman("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout)
        names = {item.split("=", 1)[0] for item in env}
        assert not names & {"HA_URL", "HA_TOKEN", "READ_KEY", "WRITE_KEY"}, "nothing of a user's baked in"
        assert {"HOST=0.0.0.0", "PORT=8000"} <= set(env)
        logs = podman("logs", name).stderr
        assert "Traceback" not in logs


def test_sigterm_ends_open_streams_and_the_container_exits_well_within_the_grace_time(image: str) -> None:
    port = free_port()
    with container(image, port, 8000) as name:  # no PORT: the image's default, 8000
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr
            time.sleep(0.05)

        after_stop: list[str] = []
        with httpx.stream("GET", url + "/events", timeout=httpx.Timeout(GRACE + 5)) as response:
            lines = response.iter_lines()
            for line in lines:
                if line == "event: snapshot":
                    break
            started = time.monotonic()
            stop = subprocess.Popen(
                [need("podman"), "stop", "--time", str(GRACE), name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            after_stop.extend(lines)  # to the end of the body
            ended = time.monotonic() - started
        _, stop_errors = stop.communicate(timeout=GRACE + 20)
        stopped = time.monotonic() - started
        assert stop.returncode == 0, stop_errors

        assert any(line.startswith("retry:") for line in after_stop), "the stream was told to come back"
        assert stopped < GRACE / 2, f"podman stop took {stopped:.1f} s of its {GRACE} s"
        state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["ExitCode"] in (0, 143), state
        logs = podman("logs", name).stderr
        assert "Finished server process" in logs and "Traceback" not in logs
        assert "did not drain in time" not in logs
        MEASURED["sigterm_stream_end_s"] = round(ended, 2)
        MEASURED["sigterm_container_stopped_s"] = round(stopped, 2)
        MEASURED["grace_s"] = GRACE
