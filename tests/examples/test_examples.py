"""Smoke tests of the core examples (each family of examples has its own test too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_runs_and_reports_numbers():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--epochs", "2"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    assert "held-out ELBO -" in out and "IWAE log p(x) -" in out
