"""Every example runs (smoke-sized arguments), writes its figures into a fresh
``runs/examples/NAME-…`` folder of the directory it is run from, and leaves the
repository's tracked files unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: script -> (smoke arguments, files it must write by default, text its output must hold)
SMOKE: dict[str, tuple[list[str], list[str], str]] = {
    "toy_gaussian_mle.py": ([], ["gaussian_mle.png"], "closed form : mu = 1.936905"),
    "theta_fixed.py": (["--steps", "50"], ["theta_fixed_ppca_correlated.png",
                                           "theta_fixed_ppca_orthogonal.png"], "floor 0.26348"),
    "toy_conjugate.py": (["--steps", "30", "--num-samples", "200"],
                         ["beta_bernoulli_posterior.png", "gamma_poisson_posterior.png"],
                         "residual"),
    "toy_nonlinear.py": (["--steps", "30", "--num-samples", "200"],
                         ["banana_posterior.png", "bimodal_posterior.png", "square_posterior.png"],
                         "banana:"),
    "toy_ppca.py": (["--steps", "30", "--epochs", "3"], ["ppca_posterior.png"], "linear VAE"),
    "early_stopping.py": (["--epochs", "8", "--patience", "2", "--k", "3", "--track", "csv"],
                          ["early/history.csv", "early/best.pt"], "best epoch"),
    "check_pyro_tutorial_vae.py": (["--steps", "30", "--points", "3", "--ais-steps", "10",
                                    "--sbc-sims", "20", "--gap-steps", "10"],
                                   ["check.json", "sbc.png", "collapse.png"], "BDMC width"),
    "hierarchical_vs_single.py": (["--epochs", "1", "--points", "4", "--iwae-k", "50",
                                   "--ais-steps", "10", "--bdmc-points", "2"],
                                  ["hierarchical_vs_single.json"], "two layers (z1: 32, z2: 16)"),
    "check_trained_vae.py": (["--epochs", "1", "--points", "2", "--theta-steps", "20",
                              "--check-samples", "100", "--amortization-steps", "10",
                              "--nuts-points", "0"],
                             ["vae_posteriors.png", "vae_gaps.png", "vae_theta_fixed.png",
                              "check_trained_vae.json"], "theta fixed: KL"),
    "semi_supervised_digits.py": (["--epochs", "1", "--k", "3"],
                                  ["semi_supervised_digits.json", "m2/figures/style.png"],
                                  "supervised only (same classifier)"),
    # on the digits spec (full MNIST takes minutes an epoch): one epoch, K = 1 per class
    "semi_supervised_mnist.py": (["--labels", "100", "--epochs", "1", "--k", "1", "--config",
                                  str(EXAMPLES / "configs" / "digits_m2.yaml")],
                                 ["labels_100/figures/style.png"], "Kingma M2"),
}
SLOW = {"check_trained_vae.py", "toy_ppca.py", "toy_nonlinear.py", "hierarchical_vs_single.py",
        "semi_supervised_digits.py"}


def _tracked_state() -> str:
    """``git status`` of the checkout (tracked changes and untracked, not ignored, files)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def _run(script: str, args: list[str], cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True, timeout=400).stdout


def test_every_example_is_smoke_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    # quickstart and swap: tested below and in test_examples_swap.py; readme_figures only
    # chains the others (and the default `pyrovae train`, tested in tests/cli); the real
    # models in test_examples_real_models.py; is_my_loglik_real in tests/posterior
    assert scripts - set(SMOKE) == {"quickstart.py", "swap_priors_likelihoods.py",
                                    "readme_figures.py", "conv_vs_mlp.py",
                                    "conditional_digits.py", "is_my_loglik_real.py"}


@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SMOKE])
def test_example_writes_fresh_folder_not_the_repository(script, tmp_path):
    args, files, needle = SMOKE[script]
    before = _tracked_state()
    out = _run(script, args, cwd=tmp_path)
    assert needle in out
    folders = list((tmp_path / "runs" / "examples").glob(f"{script[:-3]}-*"))
    assert len(folders) == 1, folders
    for name in files:
        assert (folders[0] / name).stat().st_size > 1000, name
    assert _tracked_state() == before
    # a second run never reuses the first one's folder
    if script == "toy_gaussian_mle.py":
        _run(script, args, cwd=tmp_path)
        assert len(list((tmp_path / "runs" / "examples").glob("toy_gaussian_mle-*"))) == 2


def test_quickstart_runs_and_reports_numbers():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--epochs", "2"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    assert "held-out ELBO -" in out and "IWAE log p(x) -" in out


def test_semi_supervised_mnist_resumes_and_reads_back(tmp_path):
    """The MNIST label sweep: a second call with more epochs continues the same run folder
    (its history grows from 1 to 2 epochs, each with the held-out accuracy), a third call
    with fewer epochs trains nothing and reads the run back; the JSON row says which."""
    import json

    args = ["--labels", "100", "--k", "1", "--out", str(tmp_path / "sweep"),
            "--config", str(EXAMPLES / "configs" / "digits_m2.yaml")]
    for epochs in ("1", "2", "1"):
        _run("semi_supervised_mnist.py", [*args, "--epochs", epochs], cwd=tmp_path)
    row = json.loads((tmp_path / "sweep" / "semi_supervised_mnist.json").read_text())["rows"][0]
    assert row["labels"] == 100 and row["epochs"] == 2 and row["this_call"] is None
    assert [c["epoch"] for c in row["curve"]] == [1, 2]
    assert all(0.0 <= c["test_accuracy"] <= 1.0 for c in row["curve"])


def test_check_trained_vae_redraws_the_gaps_figure_from_its_json(tmp_path):
    """The README's gaps figure is redrawn from the recorded JSON, without training."""
    out = _run("check_trained_vae.py", ["--redraw", str(ROOT / "docs" / "figures" /
                                                     "check_trained_vae.json"),
                                        "--out", str(tmp_path / "g")], cwd=tmp_path)
    assert "redrawn" in out and (tmp_path / "g" / "vae_gaps.png").stat().st_size > 1000
