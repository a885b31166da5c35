"""The posterior-check examples run and print their numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                          timeout=300, env=env).stdout


@pytest.mark.slow
def test_theta_fixed_example(tmp_path):
    out = _run(str(EXAMPLES / "theta_fixed.py"), "--steps", "300", "--out", str(tmp_path))
    assert "correlated: log p(x)" in out and re.search(r"floor \d+\.\d+", out)
    assert (tmp_path / "theta_fixed_ppca_correlated.png").is_file()


@pytest.mark.slow
def test_gaussian_mle_example(tmp_path):
    out = _run(str(EXAMPLES / "toy_gaussian_mle.py"), "--out", str(tmp_path))
    assert re.search(r"closed form : mu = -?\d+\.\d+", out) and "Pyro + Adam" in out
