"""The benchmark (bench/run.py) still runs: a few seconds with tiny numbers, our service only.

The real benchmark takes minutes and wants two quiet cores; this only checks that the
harness starts the fake Home Assistant and the service, drives them, stops them, and
reports a row where every client got every event.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
def test_bench_runs_and_reports_a_row_with_nothing_missing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--scenarios", "fanout",
        "--no-baseline",
        "--clients", "20",
        "--duration", "2",
        "--warmup", "0.5",
        "--drain-timeout", "3",
        "--out", str(tmp_path),
        "--json-out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stdout + result.stderr

    lines = [line for line in result.stdout.splitlines() if line.startswith("| fanout | ours | 20 × 10 |")]
    assert len(lines) == 1, result.stdout
    cells = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert cells[3] == "20"  # connected
    assert cells[11] == "0 / 0"  # missing / duplicate
    assert cells[13] == "0"  # stale at the end

    records = json.loads(out.read_text())["records"]
    assert len(records) == 1
    res = records[0]["result"]
    assert res["connected"] == 20
    assert res["missing_total"] == 0 and res["dup_total"] == 0 and res["resets_total"] == 0
    assert res["stale_clients"] == 0
    assert res["clients_zero_events"] == 0  # every client got events inside the window
    assert res["other_frames"] == 0  # every data frame was a snapshot or a stamped change
    assert res["latency_ms"]["count"] == res["deliveries"] > 0
    assert res["server"]["us_per_delivery"] > 0


SSEBENCH = ROOT.parent / "shared" / "ssebench"  # the shared harness: not part of this repository
SSEBENCH_VENV = Path(os.environ.get("SSEBENCH_VENV", Path.home() / ".cache" / "ssebench-venv"))


@pytest.mark.timeout(240)
def test_nchan_rounds_runs_each_target_once_with_nothing_missing(tmp_path: Path) -> None:
    """bench/nchan_rounds.py, one round with tiny numbers: nchan, ours and ours-compact each report a row.

    It drives ../shared/ssebench, which is outside the repository, so it skips (under CI too) when
    that harness, its venv, nginx or the Nchan module is not on this machine.
    """
    lacks = [f"{SSEBENCH} is missing"] if not (SSEBENCH / "run.sh").is_file() else []
    if not (SSEBENCH_VENV / "bin" / "python").exists():
        lacks.append(f"ssebench's venv {SSEBENCH_VENV} is missing (run.sh would install it)")
    if shutil.which("nginx") is None or not Path("/usr/lib/nginx/modules/ngx_nchan_module.so").exists():
        lacks.append("nginx with libnginx-mod-nchan is not installed")
    if lacks:
        pytest.skip("; ".join(lacks))
    command = [
        sys.executable, str(ROOT / "bench" / "nchan_rounds.py"),
        "--ssebench", str(SSEBENCH), "--python", sys.executable,
        "--rounds", "1", "--clients", "20", "--duration", "1", "--idle-clients", "50",
        "--results", str(tmp_path),
        "--", "--warmup", "0.5", "--idle-settle", "0.5", "--idle-duration", "0.5", "--startup-pause", "0.2",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stdout + result.stderr

    for target in ("nchan", "ours", "ours-compact"):
        rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {target} |")]
        assert len(rows) == (1 if target == "nchan" else 2), result.stdout  # the medians' row, the ratios' row
        cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[4]) > 0, rows[0]  # µs/deliv, KiB per idle connection
        assert cells[5] == "0 / 0", rows[0]  # missing / dup

    (record_file,) = tmp_path.glob("nchan-rounds-*.json")
    runs = json.loads(record_file.read_text())["runs"]
    assert [run["target"] for run in runs] == ["nchan", "ours", "ours-compact"]
    compact = next(run for run in runs if run["target"] == "ours-compact")
    load = next(r["result"] for r in compact["records"] if r["kind"] == "load")
    assert load["url"].endswith("/events?format=compact")
    assert load["frames_without_t"] == 0 and load["latency_ms"]["count"] == load["deliveries"] > 0
