"""Smoke test: examples/swap_priors_likelihoods.py runs end to end with --quick."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "swap_priors_likelihoods.py"


def _load():
    spec = importlib.util.spec_from_file_location("swap_priors_likelihoods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_swap_example_quick_prints_one_row_per_combination(capsys):
    module = _load()
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert lines[0].split("|")[1].strip() == "prior"
    assert "test log p(x) (IWAE, K=4)" in lines[0]
    rows = lines[1:]
    assert len(rows) == len(module.COMBOS)
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert {c[0] for c in cells} >= {"normal", "mixture(10)", "vamp(50)"}
    assert {c[2] for c in cells} == {"diagonal_normal", "full_covariance", "flow"}
    for c in cells:
        float(c[4])  # the ELBO column is a number
        assert float(c[5].split("±")[0]) >= float(c[4]) - 1.0  # IWAE ≈≥ ELBO
