"""The benchmark (bench/run.py) still runs: a few seconds with tiny numbers, our service only.

The real benchmark takes minutes and wants two quiet cores; this only checks that the
harness starts the fake Home Assistant and the service, drives them, stops them, and
reports a row where every client got every event.
"""

from __future__ import annotations

import json
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


@pytest.mark.timeout(120)
def test_the_memory_table_attributes_the_bytes_of_idle_streams(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    command = [
        sys.executable, str(ROOT / "bench" / "memory.py"),
        "--clients", "100", "--warm", "10", "--settle", "0.5", "--timeout", "30", "--json-out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| **server VmRSS** |" in result.stdout and "| **traced in all** |" in result.stdout, result.stdout

    readings = json.loads(out.read_text())
    for name in ("plain", "traced"):
        assert readings[name]["n"] == 100 and readings[name]["warm"] == 10
    a, b = readings["traced"]["a"]["traced"], readings["traced"]["b"]["traced"]
    grown = {k: (b.get(k, 0) - a.get(k, 0)) / 100 for k in b}
    # Every stream is one uvicorn connection and one ClientStream: both show up, per connection.
    assert grown["uvicorn: HTTP protocol, parser, scope, headers, cycle, task"] > 1000, grown
    assert grown["sse_service: stream (ClientStream, endpoint frames)"] > 100, grown
    census_a, census_b = readings["plain"]["a"]["census"], readings["plain"]["b"]["census"]
    streams = census_b["sse_service.stream.ClientStream"][0] - census_a.get("sse_service.stream.ClientStream", [0])[0]
    assert streams == 100
