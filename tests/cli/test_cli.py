"""Every CLI subcommand runs on a tiny run; the console script is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyrovae.cli import main

TINY = ["--set", "train.epochs=2", "--set", "eval.num_samples=8", "--set", "encoder.hidden=[8]",
        "--set", "decoder.hidden=[8]", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_folder(run_dir):
    for name in ("spec.yaml", "checkpoint.pt", "history.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    for fig in ("learning_curve", "reconstructions", "samples", "latent_map"):
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 1000
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test"]["num_examples"] == 359
    assert metrics["test"]["log_likelihood"] >= metrics["test"]["elbo"] - 0.5


def test_train_refuses_existing_folder(run_dir, capsys):
    assert main(["train", "--out", str(run_dir), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "--overwrite" in err


def test_evaluate(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "-k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_samples"] == 5 and out["split"] == "test"
    assert main(["evaluate", str(run_dir), "-k", "5", "--split", "train"]) == 0
    assert "log p(x)" in capsys.readouterr().out


def test_sample_png_and_npy(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "-n", "12", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 500
    assert main(["sample", str(run_dir), "-n", "6", "--out", str(tmp_path / "s.npy")]) == 0
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (6, 1, 8, 8) and (arr >= 0).all() and (arr <= 1).all()
    # never overwrites without being asked
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "s.npy")]) == 2
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 8, 8)


def test_missing_run_is_one_line_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run folder not found" in err


def test_console_script_help():
    exe = Path(sys.executable).with_name("pyrovae")  # installed beside this interpreter
    assert exe.is_file(), "the `pyrovae` console script is installed"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("train", "evaluate", "sample"):
        assert cmd in out
