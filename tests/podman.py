"""Building and running images with podman, offline: shared by tests/test_container.py and tests/test_addon.py.

No registry is reachable from CI, so the base is built from Debian packages with mmdebstrap
once and kept (the tarball in ~/.cache/sse_service/, the image as localhost/debian-python:bookworm);
``CONTAINER_TEST_BASE=python:3.12-slim`` uses another base instead. A missing podman skips,
except under ``CI=true`` where it fails (tests/run installs podman, runc and mmdebstrap as root).
See /work/shared/docs/containers.md for why each flag is here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sse_service"
BASE_IMAGE = "localhost/debian-python:bookworm"
BASE_TARBALL = CACHE / "debian-python-bookworm.tar"
DEBIAN = "http://deb.debian.org/debian"
# The sandbox re-signs HTTPS with a CA only the host trusts: lend its bundle to the build's RUN steps.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        reason = f"{tool} is not installed (tests/run installs podman, runc and mmdebstrap as root with apt-get)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def runtime_flags() -> list[str]:
    """What podman needs in this sandbox: runc (crun cannot do hybrid cgroups here) and limits it may set."""
    flags = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
    if shutil.which("runc"):
        flags[:0] = ["--runtime", "runc"]
    return flags


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([need("podman"), *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def build_flags() -> list[str]:
    """``podman build``'s flags here: the runtime's, and the host's CA bundle for the RUN steps only."""
    flags = [*runtime_flags(), "--format", "docker", "--layers=false"]
    if HOST_CA_BUNDLE.is_file():
        flags += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    return flags


def base_image(measured: dict[str, Any]) -> str:
    """The offline Debian base with python3 and its venv, built once and kept (the first run takes minutes)."""
    if override := os.environ.get("CONTAINER_TEST_BASE"):
        return override
    need("podman")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "base.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build it once
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            measured["base"] = "cached image"
            return BASE_IMAGE
        started = time.monotonic()
        if not BASE_TARBALL.exists():
            partial = BASE_TARBALL.with_suffix(".partial.tar")
            need("mmdebstrap")
            # The recipe users run too (docs/deploying.md): one script, so the two cannot drift.
            built = subprocess.run(
                ["bash", str(ROOT / "deploy" / "base-image.sh"), str(partial)],
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "DEBIAN_MIRROR": DEBIAN},
            )
            assert built.returncode == 0, built.stderr[-4000:]
            partial.replace(BASE_TARBALL)
            measured["base_mmdebstrap_s"] = round(time.monotonic() - started, 1)
        podman("import", str(BASE_TARBALL), BASE_IMAGE, timeout=300)
        measured["base"] = "built" if "base_mmdebstrap_s" in measured else "imported from the cached tarball"
        measured["base_ready_s"] = round(time.monotonic() - started, 1)
        return BASE_IMAGE
