"""The benchmark scripts run end to end in quick mode and print finite numbers.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"
FIT_SCRIPT = SCRIPT.with_name("bench_fit.py")


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


@pytest.mark.slow
def test_benchmark_quick_mode_prints_the_tables(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    for heading in ("## Training speed", "## Evaluation", "## Grid quadrature", "## Quality"):
        assert heading in text
    rows = [line for line in text.splitlines() if re.match(r"\|\s+\d+ \|\s+\d+ \| \(", line)]
    assert len(rows) == 3 * 2  # three methods × two batch sizes × one thread count
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for cell in cells[3:7]:  # ms/step, steps/s, examples/s, ratio
            value = float(cell.split()[0])
            assert math.isfinite(value) and value > 0, line
    results = json.loads(out.read_text())
    assert {r["method"] for r in results["speed"]} == {"torch", "pyro", "pyrovae"}
    for key in ("ms_per_step", "steps_per_s", "examples_per_s", "ratio"):
        assert all(math.isfinite(r[key]) and r[key] > 0 for r in results["speed"])
    assert all(math.isfinite(v) for v in _numbers(results["eval"]) if v is not None)
    assert all(math.isfinite(r["pyrovae"]) and math.isfinite(r["hand"])
               for r in results["quality"])


@pytest.mark.slow
def test_fit_benchmark_quick_mode_prints_its_table(tmp_path):
    out = tmp_path / "fit.json"
    res = subprocess.run(
        [sys.executable, str(FIT_SCRIPT), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| threads | scenario | fit (s) |" in res.stdout and "load average" in res.stdout
    results = json.loads(out.read_text())["results"]
    assert len(results) == 2
    for r in results:
        for key in ("fit_s", "hand_s", "ratio", "cpu_ratio"):
            assert math.isfinite(r[key]) and r[key] > 0


@pytest.mark.slow
def test_fit_benchmark_tracking_table_quick(tmp_path):
    out = tmp_path / "tracking.json"
    res = subprocess.run(
        [sys.executable, str(FIT_SCRIPT), "--quick", "--tracking-only", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "## Tracking overhead" in res.stdout and "load average" in res.stdout
    rows = json.loads(out.read_text())["tracking"]
    assert {r["tracking"] for r in rows} == {"csv (default)", "csv + tensorboard"}
    for r in rows:
        for key in ("ratio", "cpu_ratio", "record_extras_ms", "csv_row_ms"):
            assert math.isfinite(r[key]) and r[key] > 0


@pytest.mark.slow
def test_threads_benchmark_quick_mode_prints_its_table(tmp_path):
    out = tmp_path / "threads.json"
    res = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("bench_threads.py")), "--quick", "--json",
         str(out)], capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| threads | fit s/epoch | hand s/epoch | fit / hand |" in res.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["threads"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in rows)
