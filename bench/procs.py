"""Processes and ports for bench/: start the service, the fake Home Assistant and redis-server, stop them.

Shared by the benchmark (``run.py``) and the soaks (``soak.py``, ``soak_cluster.py``). Every
process is started through :class:`Procs`, which logs its output to a file, can pin it to CPUs,
ties it to this process (``PR_SET_PDEATHSIG``: it ends when the runner dies) and stops exactly
the processes it started, by PID, within a bound. Nothing here waits without a limit.

Also here: free loopback ports, waiting until a port answers, one bounded HTTP GET, and what
several scripts read or set for their processes (the open-files limit, RSS).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------------------- ports --
def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float) -> bool:
    """Whether a TCP connection to the loopback port succeeds within ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def http_get(url: str) -> tuple[int, bytes]:
    """Status and body of one GET within 1 s; (0, b"") when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


# --------------------------------------------------------------------------- processes --
def child_env() -> dict[str, str]:
    """This environment without proxies (every request here is to loopback), unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def service_argv(port: int) -> list[str]:
    """The service on a loopback port, with a short graceful shutdown (its settings come from the environment)."""
    return [PY, "-m", "sse_service", "--host", LOOPBACK, "--port", str(port), "--graceful-timeout", "2"]


def fake_ha_argv(port: int, token: str, rate: float, entities: int, max_seconds: float, *more: str) -> list[str]:
    """``fake_ha.py`` on a loopback port; ``more``: its other flags (see its --help)."""
    return [
        PY, str(HERE / "fake_ha.py"), "--port", str(port), "--token", token, "--rate", str(rate),
        "--entities", str(entities), "--max-seconds", str(max_seconds), *more,
    ]  # fmt: skip


def redis_argv(port: int, data: Path, conf: Path | None = None) -> list[str]:
    """Debian's redis-server on a loopback port, no persistence; ``conf``: a file with more (a password)."""
    data.mkdir(parents=True, exist_ok=True)
    first = [str(conf)] if conf is not None else []
    argv = ["redis-server", *first, "--port", str(port), "--bind", LOOPBACK]
    return argv + ["--dir", str(data), "--save", "", "--appendonly", "no"]


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def stop(proc: subprocess.Popen[bytes], grace: float = 8.0) -> None:
    """SIGTERM by PID, SIGKILL if it is still running after ``grace`` s; reaped within ``grace`` + 5 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        kill(proc, 5)


def kill(proc: subprocess.Popen[bytes], within: float = 10.0) -> None:
    """SIGKILL by PID and reap it (at most ``within`` s)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(within)


class Procs:
    """Starts processes (pinned to CPUs, logged to ``logdir/<name>.log``), and stops exactly those, by PID."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        logdir.mkdir(parents=True, exist_ok=True)
        libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = libc.prctl

    def spawn(
        self, name: str, argv: list[str], cpus: set[int], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        prctl = self._prctl

        def pin_and_tie() -> None:
            os.sched_setaffinity(0, cpus)  # what `taskset -c` does
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # if this script dies, so does the child

        with open(self.logdir / f"{name}.log", "ab") as log:
            log.write(f"$ {shlex.join(argv)}  (cpus {sorted(cpus)})\n".encode())
            log.flush()
            p = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or child_env(),
                cwd=ROOT,
                preexec_fn=pin_and_tie,
            )
        self.procs.append(p)
        return p

    def stop_all(self, grace: float = 8.0) -> None:
        """Every process started here, last first: SIGTERM, SIGKILL after ``grace`` s; and their children."""
        for p in reversed(self.procs):
            if p.poll() is not None:
                continue
            kids = children(p.pid)
            stop(p, grace)
            for k in kids:  # none expected; only ones this process started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)
        self.procs.clear()


# -------------------------------------------------------------------------------- /proc --
def raise_nofile(need: int) -> int:
    """Raise the soft open-files limit towards ``need`` (children inherit it); returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pids: list[int]) -> int | None:
    """The summed VmRSS of these processes (KiB); None if none is running."""
    total = None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        total = (total or 0) + int(ln.split()[1])
        except OSError:
            continue
    return total
