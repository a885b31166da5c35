"""Smoke runs of the real-model examples and the conv benchmark (issue 10); slow on
a shared CPU (conv layers), so marked slow.  No timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          check=True, timeout=600).stdout


@pytest.mark.slow
def test_conv_vs_mlp_prints_the_table():
    out = _run(str(ROOT / "examples" / "conv_vs_mlp.py"), "--epochs", "1",
               "--train-points", "256", "--test-points", "8", "--k", "4", "--threads", "1")
    assert re.search(r"\| conv \| family: conv.* \| -\d+\.\d\d \| -\d+\.\d\d ± ", out)
    assert re.search(r"\| mlp \| family: mlp.* \| -\d+\.\d\d \| -\d+\.\d\d ± ", out)


@pytest.mark.slow
def test_conditional_digits_writes_the_figure(tmp_path):
    fig = tmp_path / "samples.png"
    out = _run(str(ROOT / "examples" / "conditional_digits.py"), "--epochs", "1",
               "--k", "4", "--out", str(fig))
    assert "| conditional (log p(x \\| y)) | -" in out and fig.stat().st_size > 1000


@pytest.mark.slow
def test_bench_conv_quick_prints_a_ratio():
    out = _run(str(ROOT / "benchmarks" / "bench_conv.py"), "--quick")
    assert re.search(r"\| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out)
