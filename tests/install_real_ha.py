"""Install the pinned Home Assistant Core releases that tests/test_real_ha.py runs the bridge against.

``tests/run`` calls this before pytest; by hand: ``.venv/bin/python tests/install_real_ha.py``
(``--force`` reinstalls). Standard library only.

Each release goes into its own venv outside the repo, ``$XDG_CACHE_HOME/sse_service/real-ha/
<version>-py<major.minor>`` (``~/.cache`` by default, ``REAL_HA_CACHE`` overrides the folder),
pinned with HA's own ``package_constraints.txt`` read out of the downloaded wheel (without it pip
backtracks for minutes), plus what the integrations of the test configuration import, because
HA runs with ``--skip-pip`` (no pip, no network at run time). The releases install in parallel.
A venv is complete once its marker file is written, the last step; a complete venv with the
same recipe is reused at once. When an install fails, the reason goes to ``<venv>.failed``,
which the test fixtures read: the tests then fail under ``CI=true`` and skip elsewhere.
``REAL_HA=0`` skips the install (and the tests).

The facts behind the recipe (versions per Python, constraints, ``josepy<2``, which integrations
``--skip-pip`` needs) were measured here: ../shared/docs/real-ha-testing.md.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "CONFIG_DOMAINS",
    "RELEASES",
    "Release",
    "cache_root",
    "find_python",
    "install",
    "real_ha_enabled",
]


@dataclasses.dataclass(frozen=True)
class Release:
    """One pinned HA Core release and the Python it runs on here."""

    version: str
    python: str  # major.minor
    # Pins on top of HA's own constraints, each with the reason.
    extra_constraints: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"ha{self.version}"

    @property
    def name(self) -> str:
        return f"{self.version}-py{self.python}"

    def venv(self) -> Path:
        return cache_root() / self.name

    def marker(self) -> Path:
        return self.venv() / "sse-service-install.json"

    def failure_file(self) -> Path:
        return cache_root() / f"{self.name}.failed"

    def log_file(self) -> Path:
        return cache_root() / f"{self.name}.log"

    def hass(self) -> Path:
        return self.venv() / "bin" / "hass"


RELEASES = (
    # The newest release whose Requires-Python accepts 3.11 (2024.4 needs 3.12).
    # josepy 2 removed ComparableX509, which the acme behind hass-nabucasa uses at import time:
    # every HTTP request would answer 500.
    Release("2024.3.3", "3.11", ("josepy<2",)),
    # The newest release with wheels for Python 3.13.0 (later ones want a newer 3.13).
    Release("2025.4.4", "3.13"),
)

# The top-level domains of the test configuration (tests/real_ha.py writes it; it checks that
# it uses no other). Their requirements, and those of every integration HA sets up anyway,
# are installed here because --skip-pip installs nothing at run time.
CONFIG_DOMAINS = (
    "homeassistant",
    "http",
    "api",
    "websocket_api",
    "onboarding",
    "input_number",
    "input_boolean",
    "counter",
    "template",
    "logger",
    "recorder",
    "history",
)

# Bumped whenever what an install does changes, so an older cached venv is rebuilt.
RECIPE = 2


def cache_root() -> Path:
    if override := os.environ.get("REAL_HA_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sse_service" / "real-ha"


def real_ha_enabled() -> bool:
    return os.environ.get("REAL_HA", "").strip().lower() not in ("0", "false", "no", "off")


# --- finding a Python ---------------------------------------------------------------------


def _python_version(executable: str) -> str | None:
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out


def _pyenv_root() -> Path:
    if root := os.environ.get("PYENV_ROOT"):
        return Path(root)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=20, check=True).stdout
        if out.strip():
            return Path(out.strip())
    return Path.home() / ".pyenv"


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/versions/(\d+)\.(\d+)\.(\d+)/", path)
    return tuple(int(p) for p in match.groups()) if match else (0,)


def find_python(minor: str) -> str | None:
    """An interpreter for Python ``minor`` (e.g. "3.13"): pyenv's (lowest patch release first,
    since a release's wheels are built for the oldest), then ``pythonX.Y`` on PATH, then /usr/bin."""
    candidates = sorted(
        glob.glob(str(_pyenv_root() / "versions" / f"{minor}.*" / "bin" / f"python{minor}")), key=_version_key
    )
    if minor == f"{sys.version_info[0]}.{sys.version_info[1]}":
        candidates.append(getattr(sys, "_base_executable", sys.executable))
    for name in (f"python{minor}", f"/usr/bin/python{minor}", f"/usr/local/bin/python{minor}"):
        if found := shutil.which(name):
            candidates.append(found)
    for candidate in candidates:
        if _python_version(candidate) == minor:
            return candidate
    return None


# --- what --skip-pip needs ----------------------------------------------------------------


def _set_literal(tree: ast.Module, name: str) -> set[str]:
    """The strings in a module-level ``NAME = {...}`` (or tuple), following ``*OTHER`` unpacking."""
    values: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value

    def strings(expr: ast.expr) -> set[str]:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, (ast.Set, ast.Tuple, ast.List)):
            return set().union(*(strings(e) for e in expr.elts)) if expr.elts else set()
        if isinstance(expr, ast.Starred):
            return strings(expr.value)
        if isinstance(expr, ast.Name) and expr.id in values:
            return strings(values[expr.id])
        if isinstance(expr, ast.Dict):
            return set().union(*(strings(k) for k in expr.keys if k is not None)) if expr.keys else set()
        raise ValueError(f"cannot read {name} from bootstrap.py: {ast.dump(expr)[:80]}")

    if name not in values:
        return set()
    return strings(values[name])


def _discovery_keys(requirements_py: str) -> dict[str, set[str]]:
    """``homeassistant.requirements.DISCOVERY_INTEGRATIONS``: a manifest key -> the integration it pulls in."""
    tree = ast.parse(requirements_py)
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == "DISCOVERY_INTEGRATIONS" and isinstance(node.value, ast.Dict):
                result: dict[str, set[str]] = {}
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    assert isinstance(key, ast.Constant) and isinstance(value, ast.Tuple)
                    result[str(key.value)] = {str(e.value) for e in value.elts if isinstance(e, ast.Constant)}
                return result
    raise ValueError("DISCOVERY_INTEGRATIONS not found in homeassistant/requirements.py")


def integration_requirements(wheel: zipfile.ZipFile, config_domains: Iterable[str]) -> tuple[list[str], list[str]]:
    """The requirements of every integration HA loads with this configuration, and those integrations.

    Bootstrap's core, default and logging integrations plus the configured domains, each walked
    through its manifest's ``dependencies`` and ``after_dependencies`` and the discovery
    integrations a manifest names (what HA's requirement manager walks when pip is allowed).
    """
    bootstrap = ast.parse(wheel.read("homeassistant/bootstrap.py"))
    start = set(config_domains) - {"homeassistant"}
    for name in (
        "CORE_INTEGRATIONS",
        "DEFAULT_INTEGRATIONS",
        "LOGGING_INTEGRATIONS",
        "LOGGING_AND_HTTP_DEPS_INTEGRATIONS",
    ):
        start |= _set_literal(bootstrap, name)
    discovery = _discovery_keys(wheel.read("homeassistant/requirements.py").decode())
    seen: set[str] = set()
    todo = sorted(start)
    requirements: set[str] = set()
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        try:
            manifest = json.loads(wheel.read(f"homeassistant/components/{domain}/manifest.json"))
        except KeyError:
            continue  # "homeassistant" itself and the like have no requirements of their own
        requirements.update(manifest.get("requirements", []))
        for dep in [*manifest.get("dependencies", []), *manifest.get("after_dependencies", [])]:
            todo.append(dep)
        for integration, keys in discovery.items():
            if any(key in manifest for key in keys):
                todo.append(integration)
    return sorted(requirements), sorted(seen)


# --- one install --------------------------------------------------------------------------


class InstallError(Exception):
    pass


@dataclasses.dataclass
class Outcome:
    release: Release
    ok: bool
    seconds: float
    message: str


def _recipe(release: Release, python: str) -> dict[str, object]:
    return {
        "recipe": RECIPE,
        "version": release.version,
        "python": release.python,
        "extra_constraints": list(release.extra_constraints),
        "config_domains": list(CONFIG_DOMAINS),
        "interpreter": os.path.realpath(python),
    }


def is_installed(release: Release) -> bool:
    """A complete venv (its marker is written last) for this release and this recipe."""
    try:
        recorded = json.loads(release.marker().read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("recipe") == RECIPE
        and recorded.get("version") == release.version
        and recorded.get("extra_constraints") == list(release.extra_constraints)
        and recorded.get("config_domains") == list(CONFIG_DOMAINS)
        and release.hass().exists()
        and os.path.exists(str(recorded.get("interpreter", "")))
    )


def _run(command: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONWARNINGS": "ignore"}
        started = time.monotonic()
        proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
        out.write(f"(exit {proc.returncode} after {time.monotonic() - started:.1f} s)\n")
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise InstallError(f"{Path(command[0]).name} {command[1:4]} exited with {proc.returncode}:\n{tail}")


@contextlib.contextmanager
def _locked(release: Release) -> Iterator[None]:
    """One install of a release at a time on this machine (two tests/run at once share the cache)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / f"{release.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(release: Release, *, force: bool = False) -> Outcome:
    started = time.monotonic()
    python = find_python(release.python)
    if python is None:
        message = f"no Python {release.python} found (pyenv, python{release.python} on PATH, /usr/bin)"
        return Outcome(release, False, 0.0, message)
    with _locked(release):
        if is_installed(release) and not force:
            release.failure_file().unlink(missing_ok=True)
            return Outcome(release, True, time.monotonic() - started, f"reused {release.venv()}")
        try:
            _install(release, python)
        except (InstallError, OSError, ValueError, zipfile.BadZipFile) as e:
            message = f"install failed: {e}".rstrip() + f"\n(full log: {release.log_file()})"
            release.failure_file().write_text(message + "\n")
            return Outcome(release, False, time.monotonic() - started, message)
        release.failure_file().unlink(missing_ok=True)
    return Outcome(release, True, time.monotonic() - started, f"installed into {release.venv()}")


# uv resolves and downloads in parallel: a cold install of both releases took 33-70 s here instead
# of ~90 s with pip (the same packages). pip is the fallback if uv cannot be had, or with
# REAL_HA_INSTALLER=pip.
UV = "uv==0.13.9"
_tools_lock = threading.Lock()


def _tools(log: Path) -> tuple[Path, str | None]:
    """A small venv of our own in the cache with pip (to download HA's wheel) and, if it installs, uv."""
    tools = cache_root() / "tools"
    python = tools / "bin" / "python"
    uv = tools / "bin" / "uv"
    with _tools_lock, (cache_root() / "tools.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = tools / "sse-service-tools.txt"
        if not (ready.exists() and ready.read_text().strip() == UV and python.exists() and uv.exists()):
            shutil.rmtree(tools, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(tools)], log)
            with contextlib.suppress(InstallError):
                _run([str(python), "-m", "pip", "install", "-q", UV], log)
                ready.write_text(UV + "\n")
    return python, (str(uv) if uv.exists() else None)


def _install(release: Release, python: str) -> None:
    venv, log = release.venv(), release.log_file()
    log.write_text(f"installing Home Assistant {release.version} with {python}\n")
    release.failure_file().unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    tools_python, uv = _tools(log)
    if os.environ.get("REAL_HA_INSTALLER") == "pip":
        uv = None
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel_path = wheels / f"homeassistant-{release.version}-py3-none-any.whl"
    if not wheel_path.exists():
        download = [str(tools_python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels)]
        _run([*download, "--python-version", release.python, f"homeassistant=={release.version}"], log)
    if not wheel_path.exists():
        raise InstallError(f"pip download did not leave {wheel_path.name} in {wheels}")
    with zipfile.ZipFile(wheel_path) as wheel:
        constraints = wheel.read("homeassistant/package_constraints.txt").decode()
        requirements, integrations = integration_requirements(wheel, CONFIG_DOMAINS)
    with log.open("a") as out:
        out.write(f"integrations: {' '.join(integrations)}\nrequirements: {' '.join(requirements)}\n")
    constraints_path = cache_root() / f"{release.name}-constraints.txt"
    extra = "".join(f"{line}\n" for line in release.extra_constraints)
    constraints_path.write_text(f"{constraints}\n# sse_service's own pins\n{extra}")
    packages = ["-c", str(constraints_path), str(wheel_path), *requirements]
    venv_python = str(venv / "bin" / "python")
    if uv is not None:
        _run([uv, "venv", "-q", "--python", python, str(venv)], log)
        _run([uv, "pip", "install", "-q", "--python", venv_python, *packages], log)
    else:
        _run([python, "-m", "venv", str(venv)], log)
        _run([venv_python, "-m", "pip", "install", "-q", *packages], log)
    # Imports that fail only at run time otherwise (HA would go into recovery mode).
    _run([venv_python, "-c", "import homeassistant.bootstrap, hass_frontend, sqlalchemy, PIL"], log)
    recipe = {**_recipe(release, python), "installer": "uv" if uv else "pip"}
    release.marker().write_text(json.dumps(recipe, indent=1) + "\n")


# --- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="reinstall even if a complete venv is cached")
    parser.add_argument("--version", action="append", help="only this HA version (repeatable)")
    args = parser.parse_args(argv)
    if not real_ha_enabled():
        print("real Home Assistant: REAL_HA=0, not installing (tests/test_real_ha.py skips)")
        return 0
    releases = [r for r in RELEASES if not args.version or r.version in args.version]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(releases) or 1) as pool:
        outcomes = list(pool.map(lambda r: install(r, force=args.force), releases))
    for o in outcomes:
        state = "ok" if o.ok else "NOT INSTALLED"
        release = f"{o.release.version} (Python {o.release.python})"
        print(f"real Home Assistant {release}: {state} in {o.seconds:.1f} s: {o.message}")
    print(f"real Home Assistant: {time.monotonic() - started:.1f} s in all (cache: {cache_root()})")
    # A failure does not stop tests/run: the real-HA tests report it (fail under CI=true, skip elsewhere).
    return 0


if __name__ == "__main__":
    sys.exit(main())
