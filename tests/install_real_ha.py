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

A release that needs a newer Python than any here (2026.11 wants >= 3.14.2) gets a Debian chroot
instead of a venv: ``mmdebstrap`` makes one of a suite that has that Python (forky) in the same
cache folder, with pip's CA bundle and index settings copied from the host, and HA goes into a
venv inside it (``/opt/ha-venv``), pinned the same way. tests/real_ha.py runs it as root through
``unshare --mount`` + ``chroot``. Needs root and mmdebstrap; tests/run apt-installs the latter.

The facts behind the recipe (versions per Python, constraints, ``josepy<2``, which integrations
``--skip-pip`` needs, the chroot) were measured here: ../shared/docs/real-ha-testing.md.
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
    "CHROOT_CONFIG",
    "CHROOT_VENV",
    "CONFIG_DOMAINS",
    "RELEASES",
    "Release",
    "cache_root",
    "chroot_unavailable",
    "find_python",
    "in_chroot",
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
    # A Debian suite whose pythonX.Y runs the release, for a release no interpreter here is new
    # enough for: HA then lives in a venv inside an mmdebstrap chroot of that suite ("" = on the host).
    debian_suite: str = ""

    @property
    def id(self) -> str:
        return f"ha{self.version}"

    @property
    def name(self) -> str:
        return f"{self.version}-py{self.python}"

    @property
    def runs_on(self) -> str:
        """For messages: "Python 3.13", "Python 3.14 in a Debian forky chroot"."""
        return f"Python {self.python}" + (f" in a Debian {self.debian_suite} chroot" if self.debian_suite else "")

    def home(self) -> Path:
        """What the install makes and a reinstall deletes: the venv, or the chroot holding it."""
        return cache_root() / self.name

    def chroot(self) -> Path | None:
        return self.home() if self.debian_suite else None

    def venv(self) -> Path:
        """The venv as the host sees it."""
        return self.home() / CHROOT_VENV.lstrip("/") if self.debian_suite else self.home()

    def marker(self) -> Path:
        return self.home() / "sse-service-install.json"

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
    # The current release. It needs Python >= 3.14.2, which only Debian forky has here; its
    # hass-nabucasa needs josepy 2, so no josepy pin.
    Release("2026.11.0", "3.14", debian_suite="forky"),
)

# Inside a release's chroot: where its venv is, and where the config dir is bound when it runs.
CHROOT_VENV = "/opt/ha-venv"
CHROOT_CONFIG = "/ha-config"
# The chroot's packages: the interpreter, venv and headers plus g++ because pymicro-vad and
# pyspeex-noise have no 3.14 wheels and build from source; the CA store pip's bundle goes into;
# libturbojpeg0 because PyTurboJPEG (camera) otherwise logs an ERROR at every start.
CHROOT_PACKAGES = ("python{py}", "python{py}-venv", "python{py}-dev", "g++", "ca-certificates", "libturbojpeg0")
# The host's CA bundle as copied into the chroot (egress here may go through an intercepting CA).
CHROOT_CA = "/etc/ssl/certs/sse-service-host-ca.crt"
# Bumped whenever what a chroot install does changes (RECIPE covers the venv installs).
CHROOT_RECIPE = 1

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


def _set_literal(tree: ast.Module, name: str, imported: dict[str, set[str]] | None = None) -> set[str]:
    """The strings in a module-level ``NAME = {...}`` (or tuple), following ``*OTHER`` unpacking,
    ``A - B`` and the names in ``imported`` (sets defined in another module)."""
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
        if isinstance(expr, ast.Name) and imported and expr.id in imported:
            return imported[expr.id]
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Sub):
            return strings(expr.left) - strings(expr.right)
        if isinstance(expr, ast.Dict):
            return set().union(*(strings(k) for k in expr.keys if k is not None)) if expr.keys else set()
        raise ValueError(f"cannot read {name} from bootstrap.py: {ast.dump(expr)[:80]}")

    if name not in values:
        return set()
    return strings(values[name])


def _base_platforms(wheel: zipfile.ZipFile) -> set[str]:
    """``homeassistant.const.BASE_PLATFORMS``: every entity platform (2026.x's DEFAULT_INTEGRATIONS
    includes most of them). The enum lives in generated/entity_platforms.py, earlier in const.py."""
    for path, enum in (
        ("homeassistant/generated/entity_platforms.py", "EntityPlatforms"),
        ("homeassistant/const.py", "Platform"),
    ):
        try:
            tree = ast.parse(wheel.read(path))
        except KeyError:
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == enum:
                return {
                    item.value.value
                    for item in node.body
                    if isinstance(item, ast.Assign)
                    and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)
                }
    return set()


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
    imported = {"BASE_PLATFORMS": _base_platforms(wheel)}
    start = set(config_domains) - {"homeassistant"}
    for name in (
        "CORE_INTEGRATIONS",
        "DEFAULT_INTEGRATIONS",
        "LOGGING_INTEGRATIONS",
        "LOGGING_AND_HTTP_DEPS_INTEGRATIONS",
    ):
        start |= _set_literal(bootstrap, name, imported)
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


def _recipe(release: Release) -> dict[str, object]:
    recipe: dict[str, object] = {
        "recipe": RECIPE,
        "version": release.version,
        "python": release.python,
        "extra_constraints": list(release.extra_constraints),
        "config_domains": list(CONFIG_DOMAINS),
    }
    if release.debian_suite:
        recipe["chroot_recipe"] = CHROOT_RECIPE
        recipe["debian_suite"] = release.debian_suite
        recipe["debian_packages"] = _chroot_packages(release)
    return recipe


def is_installed(release: Release) -> bool:
    """A complete install (its marker is written last) for this release and this recipe.

    Reads one small file and stats two: tests/run calls this for every release on each run."""
    try:
        recorded = json.loads(release.marker().read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and all(recorded.get(key) == value for key, value in _recipe(release).items())
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


def chroot_unavailable() -> str | None:
    """Why this machine cannot make or run a release's chroot, or None if it can."""
    if os.geteuid() != 0:
        return "the Debian chroot needs root (mmdebstrap, unshare --mount, chroot)"
    missing = [tool for tool in ("mmdebstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (tests/run apt-installs mmdebstrap as root)"
    return None


def install(release: Release, *, force: bool = False) -> Outcome:
    started = time.monotonic()
    python: str | None = None
    if release.debian_suite:
        if why := chroot_unavailable():
            cache_root().mkdir(parents=True, exist_ok=True)
            release.failure_file().write_text(f"not installed: {why}\n")
            return Outcome(release, False, 0.0, why)
    elif (python := find_python(release.python)) is None:
        message = f"no Python {release.python} found (pyenv, python{release.python} on PATH, /usr/bin)"
        return Outcome(release, False, 0.0, message)
    with _locked(release):
        if is_installed(release) and not force:
            release.failure_file().unlink(missing_ok=True)
            return Outcome(release, True, time.monotonic() - started, f"reused {release.home()}")
        try:
            if python is None:
                _install_chroot(release)
            else:
                _install(release, python)
        except (InstallError, OSError, ValueError, zipfile.BadZipFile) as e:
            message = f"install failed: {e}".rstrip() + f"\n(full log: {release.log_file()})"
            release.failure_file().write_text(message + "\n")
            return Outcome(release, False, time.monotonic() - started, message)
        release.failure_file().unlink(missing_ok=True)
    return Outcome(release, True, time.monotonic() - started, f"installed into {release.home()}")


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


@dataclasses.dataclass
class _Wheel:
    path: Path
    constraints: Path  # HA's package_constraints.txt plus our own pins
    requirements: list[str]  # of the integrations the test configuration loads


def _wheel(release: Release, tools_python: Path, python_version: str, log: Path) -> _Wheel:
    """HA's wheel (downloaded once into the cache), its constraints and the integrations' requirements.

    ``python_version``: the interpreter's full version, as Requires-Python may name a patch release."""
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel_path = wheels / f"homeassistant-{release.version}-py3-none-any.whl"
    if not wheel_path.exists():
        download = [str(tools_python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels)]
        _run([*download, "--python-version", python_version, f"homeassistant=={release.version}"], log)
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
    return _Wheel(wheel_path, constraints_path, requirements)


def _install(release: Release, python: str) -> None:
    venv, log = release.venv(), release.log_file()
    log.write_text(f"installing Home Assistant {release.version} with {python}\n")
    release.failure_file().unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    tools_python, uv = _tools(log)
    if os.environ.get("REAL_HA_INSTALLER") == "pip":
        uv = None
    wheel = _wheel(release, tools_python, release.python, log)
    packages = ["-c", str(wheel.constraints), str(wheel.path), *wheel.requirements]
    venv_python = str(venv / "bin" / "python")
    if uv is not None:
        _run([uv, "venv", "-q", "--python", python, str(venv)], log)
        _run([uv, "pip", "install", "-q", "--python", venv_python, *packages], log)
    else:
        _run([python, "-m", "venv", str(venv)], log)
        _run([venv_python, "-m", "pip", "install", "-q", *packages], log)
    # Imports that fail only at run time otherwise (HA would go into recovery mode).
    _run([venv_python, "-c", IMPORT_CHECK], log)
    recipe = {**_recipe(release), "interpreter": os.path.realpath(python), "installer": "uv" if uv else "pip"}
    release.marker().write_text(json.dumps(recipe, indent=1) + "\n")


IMPORT_CHECK = "import homeassistant.bootstrap, hass_frontend, sqlalchemy, PIL"


# --- a release in a Debian chroot -----------------------------------------------------------


def _chroot_packages(release: Release) -> list[str]:
    return [p.format(py=release.python) for p in CHROOT_PACKAGES]


def _host_pip_settings(tools_python: Path) -> dict[str, str]:
    """How the host's pip reaches its index: ``pip config list`` (files and PIP_* variables, the
    variables winning), e.g. {"cert": ..., "index-url": ..., "extra-index-url": ...}."""
    out = subprocess.run(
        [str(tools_python), "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"^([^.]*)\.([\w-]+)='(.*)'$", line)
        if match and match.group(1) in (":env:", "global", "install", "download"):
            (env if match.group(1) == ":env:" else files)[match.group(2)] = match.group(3)
    return {**files, **env}


def _chroot_pip_setup(root: Path, tools_python: Path, log: Path) -> list[str]:
    """Make pip and uv inside the chroot reach the index the way the host's pip does; returns the
    environment (``NAME=value``) for commands run in the chroot.

    The host's CA bundle is copied in (egress may go through an intercepting CA that Debian's own
    store does not know). Only http(s) indexes are carried over: file:// indexes and find-links
    name directories of the host that the chroot does not see."""
    settings = _host_pip_settings(tools_python)
    env: list[str] = []
    cert = settings.get("cert") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if not cert and os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        cert = "/etc/ssl/certs/ca-certificates.crt"
    conf = ["[global]"]
    if cert:
        shutil.copyfile(cert, root / CHROOT_CA.lstrip("/"))
        conf.append(f"cert = {CHROOT_CA}")
        env += [f"PIP_CERT={CHROOT_CA}", f"SSL_CERT_FILE={CHROOT_CA}", f"REQUESTS_CA_BUNDLE={CHROOT_CA}"]
    web = re.compile(r"^https?://")
    if web.match(index := settings.get("index-url", "")):
        conf.append(f"index-url = {index}")
        env.append(f"UV_DEFAULT_INDEX={index}")
    if extras := [u for u in settings.get("extra-index-url", "").split() if web.match(u)]:
        conf.append(f"extra-index-url = {' '.join(extras)}")
        env.append(f"UV_INDEX={' '.join(extras)}")
    if trusted := settings.get("trusted-host", "").split():
        conf.append(f"trusted-host = {' '.join(trusted)}")
        env.append(f"UV_INSECURE_HOST={' '.join(trusted)}")
    (root / "etc" / "pip.conf").write_text("\n".join(conf) + "\n")
    with log.open("a") as out:
        out.write(f"host pip settings: {settings}\nchroot /etc/pip.conf:\n" + "\n".join(conf) + "\n")
    proxies = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    env += [f"{name}={os.environ[name]}" for name in proxies if os.environ.get(name)]
    return env


def in_chroot(root: Path, env: list[str], *command: str) -> list[str]:
    """A command run inside the chroot with nothing of the host's environment but ``env``."""
    base = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8"]
    return ["chroot", str(root), "env", "-i", *base, *env, *command]


def _install_chroot(release: Release) -> None:
    """mmdebstrap a Debian chroot with the release's Python, then HA in a venv inside it, as above."""
    root, log = release.home(), release.log_file()
    log.write_text(f"installing Home Assistant {release.version} in a Debian {release.debian_suite} chroot\n")
    release.failure_file().unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    tools_python, uv = _tools(log)
    if os.environ.get("REAL_HA_INSTALLER") == "pip":
        uv = None
    # The mirror's Release file for a testing suite can be past its Valid-Until date.
    _run(
        [
            "mmdebstrap",
            "--variant=apt",
            f"--include={','.join(_chroot_packages(release))}",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            release.debian_suite,
            str(root),
        ],
        log,
    )
    interpreter = f"/usr/bin/python{release.python}"
    try:
        python_version = subprocess.run(
            ["chroot", str(root), interpreter, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise InstallError(f"{interpreter} does not run in the {release.debian_suite} chroot: {e}") from None
    wheel = _wheel(release, tools_python, python_version, log)
    env = _chroot_pip_setup(root, tools_python, log)
    staging = root / "tmp" / "sse-install"
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel.path, staging / wheel.path.name)
    shutil.copyfile(wheel.constraints, staging / "constraints.txt")
    packages = ["-c", "/tmp/sse-install/constraints.txt", f"/tmp/sse-install/{wheel.path.name}", *wheel.requirements]
    venv_python = f"{CHROOT_VENV}/bin/python"
    if uv is not None:
        # uv's cache goes with the staging folder: nothing of it stays in the cached chroot.
        env.append("UV_CACHE_DIR=/tmp/sse-install/uv-cache")
        shutil.copyfile(uv, root / "usr" / "local" / "bin" / "uv")
        (root / "usr" / "local" / "bin" / "uv").chmod(0o755)
        _run(in_chroot(root, env, "uv", "venv", "-q", "--python", interpreter, CHROOT_VENV), log)
        _run(in_chroot(root, env, "uv", "pip", "install", "-q", "--python", venv_python, *packages), log)
    else:
        _run(in_chroot(root, env, interpreter, "-m", "venv", CHROOT_VENV), log)
        _run(in_chroot(root, env, venv_python, "-m", "pip", "install", "-q", "--no-cache-dir", *packages), log)
    _run(in_chroot(root, env, venv_python, "-c", IMPORT_CHECK), log)
    shutil.rmtree(staging)
    (root / CHROOT_CONFIG.lstrip("/")).mkdir(exist_ok=True)
    recipe = {
        **_recipe(release),
        "interpreter": str(root / interpreter.lstrip("/")),
        "python_version": python_version,
        "installer": "uv" if uv else "pip",
    }
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
        release = f"{o.release.version} ({o.release.runs_on})"
        print(f"real Home Assistant {release}: {state} in {o.seconds:.1f} s: {o.message}")
    print(f"real Home Assistant: {time.monotonic() - started:.1f} s in all (cache: {cache_root()})")
    # A failure does not stop tests/run: the real-HA tests report it (fail under CI=true, skip elsewhere).
    return 0


if __name__ == "__main__":
    sys.exit(main())
