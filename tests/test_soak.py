"""The soak tests (bench/soak.py --quick and bench/soak_cluster.py --quick, about a minute each) print only OK figures.

The first runs the bridge against a fake Home Assistant that is SIGKILLed and restarted,
clients that resume with Last-Event-ID, clients that never read, and a few hundred hostile
requests; the second runs three instances through Redis while the leader and Redis are
SIGKILLed; see bench/README.md ("The soak test", "Through Redis"). The failure message is
the table.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_soak_has_every_figure_ok(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "soak.py"), "--quick", "--json-out", str(tmp_path / "soak.json")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    table = result.stdout[result.stdout.find("| # |") :] if "| # |" in result.stdout else result.stdout
    message = f"bench/soak.py --quick exited {result.returncode}:\n{table}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, message
    assert "| 1 |" in result.stdout and "**FAIL**" not in result.stdout, table


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (Debian's redis-server package)")
def test_quick_cluster_soak_has_every_figure_ok(tmp_path: Path) -> None:
    script = ROOT / "bench" / "soak_cluster.py"
    command = [sys.executable, str(script), "--quick", "--json-out", str(tmp_path / "soak-cluster.json")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    table = result.stdout[result.stdout.find("| # |") :] if "| # |" in result.stdout else result.stdout
    message = f"bench/soak_cluster.py --quick exited {result.returncode}:\n{table}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, message
    assert "| 1 |" in result.stdout and "**FAIL**" not in result.stdout, table
