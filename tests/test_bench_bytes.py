"""bench/bytes.py still runs and its counts add up: a few changes against bench/fake_home.py.

The real measurement (issue 27) runs against Home Assistant 2026.11; this checks only that the
harness starts the fake, the bridge and its readers, matches each change on every side, and that
every byte it read is counted once (the "wire check" lines).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_bytes_bench_counts_every_byte_of_both_streams() -> None:
    command = [
        sys.executable, str(ROOT / "bench" / "bytes.py"), "--no-real-ha", "--changes", "3",
        "--home-entities", "200", "--max-seconds", "120",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    rows = [line for line in out.splitlines() if re.match(r"\| (input_number|power sensor|light)", line)]
    assert len(rows) == 3, out
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == "3"  # every measured change was seen
        ha_frame, full, compact = float(cells[3]), float(cells[5]), float(cells[6])
        assert 100 < ha_frame < full and 0 < compact < full, row

    checks = [line for line in out.splitlines() if "wire check" in line]
    assert checks and all(" != " not in line for line in checks), out
    assert "/events?format=compact: compact" in out

    homes = [line for line in out.splitlines() if line.startswith("| a 200-entity home")]
    assert len(homes) == 1, out
    cells = [cell.strip() for cell in homes[0].strip("|").split("|")]
    assert cells[1] == "200" and 0 < float(cells[3]) < float(cells[2])  # compact snapshot smaller

    logdir = Path(out.strip().splitlines()[-1].split(": ", 1)[1].rsplit(" (", 1)[0])
    records = json.loads((logdir / "bytes.json").read_text())["changes"]["rows"]
    for row in records:
        for change in row["records"]:
            assert change["full"]["chunk_of_its_own"] and change["compact"]["chunk_of_its_own"]
            assert change["ha"]["entities"] == 1  # one change per HA message: its size is that change's
