"""The README and the docs site (issue 28): the site builds strictly, and every sample in them is run or marked.

A sample marked ``needs=home-assistant`` or ``needs=platform`` is one no test can run (a real Home
Assistant, a platform account, root on a machine); everything else is run here or by the test that
names it with ``sample("NAME")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from sse_service import __version__
from sse_service.config import SETTINGS

from .helpers import free_port, service_process
from .samples import DOCS, MARKED, ROOT, documents, sample, samples

KINDS = {"", "needs=home-assistant", "needs=platform", "output", "ci"}
BIN = Path(sys.executable).parent
SECRET = "a-token-secret-of-at-least-32-bytes-for-the-docs"


def mkdocs_build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly_and_works_offline(tmp_path: Path) -> None:
    result = mkdocs_build(tmp_path / "site")
    assert result.returncode == 0, result.stderr
    site = tmp_path / "site"
    # use_directory_urls: false and the offline plugin: pages are files, search runs from file://.
    assert (site / "settings.html").is_file() and (site / "search" / "search_index.js").is_file()
    index = (site / "index.html").read_text()
    assert 'href="getting-started.html"' in index
    assert "fonts.googleapis.com" not in index, "nothing fetched from the network"


def test_a_broken_anchor_or_a_page_out_of_the_nav_fails_the_build(tmp_path: Path) -> None:
    """--strict must catch what the issue asks of it, or the build test above proves nothing."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    (docs / "index.md").write_text((docs / "index.md").read_text() + "\n[gone](access.md#no-such-anchor)\n")
    (docs / "orphan.md").write_text("# Not in the nav\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}"))
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "-f", str(config), "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode != 0
    assert "#no-such-anchor" in result.stderr and "orphan.md" in result.stderr


def test_the_readme_is_short() -> None:
    words = len((ROOT / "README.md").read_text().split())
    assert words <= 1200, f"README.md has {words} words; the rest belongs in docs/"


def test_the_docs_screenshot_is_the_pages() -> None:
    assert (DOCS / "img" / "screenshot.png").read_bytes() == (ROOT / "web" / "img" / "screenshot.png").read_bytes()


def test_every_code_block_is_marked() -> None:
    unmarked = []
    for file in documents():
        text = file.read_text()
        fences = len(re.findall(r"^```", text, re.M))
        assert fences % 2 == 0, f"{file.name}: an unclosed ``` fence"
        marked = len(MARKED.findall(text))
        if marked != fences // 2:
            starts = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"^```\w*\n", text, re.M)][::2]
            unmarked.append(f"{file.relative_to(ROOT)}: {fences // 2 - marked} of the blocks at lines {starts}")
    assert not unmarked, "blocks without <!-- sample: NAME … --> right above them: " + "; ".join(unmarked)


def test_every_sample_has_a_known_kind_a_unique_name_and_the_tests_run_those_they_can() -> None:
    found = samples()
    names = [s.name for s in found]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for s in found:
        assert s.kind in KINDS, f"{s.name}: unknown kind {s.kind!r}"
        if s.kind == "":
            # sample("NAME"), or the name in a parametrize list that feeds sample(name)
            assert f'"{s.name}"' in tests, f"no test runs the sample {s.name!r} ({s.file.name})"
        if s.kind == "ci":
            assert s.body.startswith("tests/run"), s.name
    assert "exec tests/run" in (ROOT / ".ci" / "run").read_text(), "the ci samples are what CI runs"


def test_every_declared_setting_is_in_the_settings_page_and_no_other_is() -> None:
    page = (DOCS / "settings.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", page, re.M))
    # CONFIG_FILE names where the settings are, so it is read before them and is no Setting.
    assert documented == {s.env for s in SETTINGS} | {"CONFIG_FILE"}


# --- the shell samples, run ----------------------------------------------------------------


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any setting (the samples start from the demo), plus ``extra``."""
    names = {s.env for s in SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `sse-service` as the docs write it
    return {**env, **extra}


def run_shell(body: str, url: str, env: dict[str, str], tmp_path: Path) -> str:
    """``body`` in bash, at the repository's root, against ``url``; ``curl -N`` ends after 3 s."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is missing: the docs' curl samples cannot run")
    wrapper = tmp_path / "bin" / "curl"
    wrapper.parent.mkdir(exist_ok=True)
    # A stream never ends by itself; the docs' commands do not say --max-time, so it is added here.
    wrapper.write_text(f'#!/bin/sh\nexec {curl} --silent --show-error --max-time 3 "$@"\n')
    wrapper.chmod(0o755)
    script = body.replace("http://127.0.0.1:8000", url)
    env = {**env, "PATH": f"{wrapper.parent}{os.pathsep}{env['PATH']}"}
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@contextlib.asynccontextmanager
async def bridge(**env: str) -> AsyncIterator[str]:
    log: list[str] = []
    async with service_process(log, **env) as url:
        yield url


@pytest.mark.parametrize("name", ["quick-start-curl", "readme-curl"])
async def test_the_curl_of_the_quick_start_shows_the_demos_snapshot(name: str, tmp_path: Path) -> None:
    async with bridge() as url:
        out = await asyncio.to_thread(run_shell, sample(name), url, environment(), tmp_path)
    assert "event: snapshot" in out and "sensor.battery_level" in out


async def test_the_key_samples_read_with_each_key_and_command_with_the_write_key(tmp_path: Path) -> None:
    keys = {"READ_KEY": "r" * 24, "WRITE_KEY": "w" * 24}
    async with bridge(**keys) as url:
        out = await asyncio.to_thread(run_shell, sample("keys-curl"), url, environment(**keys), tmp_path)
    assert out.count("event: snapshot") == 3, out
    assert '"ok":true' in out and '"service":"switch.toggle"' in out


async def test_the_command_sample_answers_as_the_docs_show(tmp_path: Path) -> None:
    keys = {"WRITE_KEY": "w" * 24}
    async with bridge(**keys) as url:
        out = await asyncio.to_thread(run_shell, sample("command-curl"), url, environment(**keys), tmp_path)
    shown = sample("command-answer").strip()
    assert re.fullmatch(re.escape(shown).replace("01J…", '[^"]+'), out.strip()), out


async def test_the_busy_sample_gets_a_429_past_the_cap(tmp_path: Path) -> None:
    async with bridge(MAX_STREAMS_PER_IP="1") as url, httpx.AsyncClient() as client:
        async with client.stream("GET", url + "/events") as held:
            assert held.status_code == 200
            out = await asyncio.to_thread(run_shell, sample("busy-curl"), url, environment(), tmp_path)
    assert out.startswith("HTTP/1.1 429") and re.search(r"(?im)^retry-after: \d+", out), out


async def test_the_cors_preflight_sample_is_answered_for_the_allowed_origin(tmp_path: Path) -> None:
    async with bridge(CORS_ORIGINS="https://dash.example.com") as url:
        out = await asyncio.to_thread(run_shell, sample("cors-preflight"), url, environment(), tmp_path)
    assert re.search(r"(?im)^access-control-allow-origin: https://dash.example.com", out), out


def test_the_worked_example_mints_the_three_tokens(tmp_path: Path) -> None:
    body = sample("token-examples").replace("TOKEN_SECRET=…", f"TOKEN_SECRET={SECRET}")
    result = subprocess.run(
        ["bash", "-c", body], cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    tokens = [jwt.decode(t, SECRET, algorithms=["HS256"]) for t in result.stdout.split()]
    assert [t["sub"] for t in tokens] == ["public-site", "wall-tablet", "guest-anna"]
    assert "services" not in tokens[2] and tokens[2]["exp"] > time.time() + 2 * 86400


def test_the_guest_link_sample_prints_the_url_to_share(tmp_path: Path) -> None:
    env = environment(TOKEN_SECRET=SECRET)
    result = subprocess.run(["bash", "-c", sample("guest-link")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    assert link.startswith("https://bridge.example/?key="), link
    claims = jwt.decode(link.split("?key=", 1)[1], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "guest-anna" and "services" not in claims
    assert "reach https://bridge.example" in result.stderr, result.stderr


@contextlib.contextmanager
def started(line: str, port: int) -> Iterator[None]:
    """``line`` in bash, in its own process group (so the server it starts ends with it), serving on ``port``."""
    proc = subprocess.Popen(
        ["bash", "-c", line], cwd=ROOT, env=environment(), start_new_session=True, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"nothing on port {port} after 60 s: {line}"
            time.sleep(0.1)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def test_both_ways_of_choosing_the_port_serve_on_it() -> None:
    lines = sample("another-port").strip().splitlines()
    assert len(lines) == 2 and "PORT=8080" in lines[0] and "--port 8081" in lines[1]
    for line, shown in zip(lines, ("8080", "8081"), strict=True):
        port = free_port()  # 8080 may be taken on a shared machine: same command, a free port
        with started(line.replace(shown, str(port)), port):
            pass


def test_the_docs_preview_command_serves_the_site() -> None:
    line = sample("docs-serve").strip()
    port = free_port()
    with started(line.replace("127.0.0.1:8001", f"127.0.0.1:{port}"), port):
        assert "Getting started" in httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text


def test_version_and_check_on_the_demo() -> None:
    result = subprocess.run(
        ["bash", "-c", sample("version-and-check")], cwd=ROOT, env=environment(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    first, *rest = result.stdout.splitlines()
    assert first == f"sse-service {__version__}"
    assert rest[-1] == "check: OK", result.stdout


def test_the_quick_start_runs_from_a_fresh_clone(tmp_path: Path) -> None:
    """The README's first command, as written, in a copy of the tracked files: a venv, the install, the demo."""
    command = sample("readme-quick-start").strip()
    assert command == sample("quick-start").strip(), "README and docs/getting-started.md show the same command"
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    port = free_port()
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=clone,
        env={**environment(PORT=str(port)), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600  # pip installs every dependency (from its cache, when warm)
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the quick start did not serve within 10 minutes"
            time.sleep(0.5)
        assert "battery" in httpx.get(f"http://127.0.0.1:{port}/api/states", timeout=5).text
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
