"""Conditional runs from the command line: ``sample --y``, the per-class grid, ``check
--y`` with its quantity named log p(x | y), and one-line errors for a bad ``--y``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyrovae.cli import main
from pyrovae.runs.folder import load_run

QUICK = ["--quick", "--samples", "100", "--ais-steps", "3", "--ais-chains", "2",
         "--bdmc-points", "2", "--sbc-sims", "10", "--points", "2", "--collapse-points", "4",
         "--no-progress"]


@pytest.fixture(scope="module")
def label_run(tmp_path_factory, tiny_conditional_run):
    folder = tmp_path_factory.mktemp("cond")
    tiny_conditional_run(folder)
    return folder / "run"


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory, tiny_conditional_run):
    folder = tmp_path_factory.mktemp("condvec")
    tiny_conditional_run(folder, "vector")
    return folder / "run"


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err


def test_sample_y_draws_from_p_x_given_y(label_run, tmp_path, capsys):
    out = tmp_path / "threes.npy"
    assert main(["sample", str(label_run), "--y", "2", "-n", "16", "--out", str(out)]) == 0
    assert "wrote 16 samples given y = 2" in capsys.readouterr().out
    got = np.load(out)
    vae, _, _ = load_run(label_run)
    torch.manual_seed(0)  # the command's seed: the same draws as the Python call
    want = vae.sample(16, y=torch.full((16,), 2)).numpy()
    assert got.shape == (16, 4, 4) and np.array_equal(got, want)
    torch.manual_seed(0)
    other = vae.sample(16, y=torch.full((16,), 0)).numpy()
    assert not np.array_equal(got, other)  # the label changes the samples
    png = tmp_path / "twos.png"
    assert main(["sample", str(label_run), "--y", "2", "-n", "16", "--out", str(png)]) == 0
    assert png.stat().st_size > 500


def test_sample_without_y_on_a_label_run_is_a_grid_per_class(label_run, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["sample", str(label_run), "-n", "10", "--out", str(png)]) == 0
    assert "wrote 12 samples to" in capsys.readouterr().out  # ⌈10 / 3⌉ = 4 per class
    from matplotlib.image import imread

    h, w = imread(png).shape[:2]
    assert h < w  # 3 rows of 4 images: wider than tall
    _one_line_error(capsys, ["sample", str(label_run), "--out", str(tmp_path / "a.npy")],
                    "pass --y for a .npy")


@pytest.mark.parametrize("value, needle", [
    ("3", "expected a class label in 0..2, got 3"),
    ("-1", "expected a class label in 0..2, got -1"),
    ("two", "expected a class label, an integer in 0..2, got 'two'"),
    ("1,2", "expected a class label, an integer in 0..2"),
])
def test_bad_y_on_a_label_run_is_one_line(label_run, tmp_path, capsys, value, needle):
    _one_line_error(capsys, ["sample", str(label_run), f"--y={value}", "--out",
                             str(tmp_path / "s.npy")], needle)
    _one_line_error(capsys, ["check", str(label_run), f"--y={value}", "--out",
                             str(tmp_path / "c"), *QUICK], needle)
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "c").exists()


def test_y_on_a_vector_run(vector_run, tmp_path, capsys):
    out = tmp_path / "v.npy"
    assert main(["sample", str(vector_run), "--y", "1.5", "-n", "3", "--out", str(out)]) == 0
    assert np.load(out).shape == (3, 4, 4)
    _one_line_error(capsys, ["sample", str(vector_run), "--y", "1,2", "--out",
                             str(tmp_path / "w.npy")], "expected 1 finite number")
    _one_line_error(capsys, ["sample", str(vector_run), "--y", "nan", "--out",
                             str(tmp_path / "w.npy")], "expected 1 finite number")
    _one_line_error(capsys, ["sample", str(vector_run), "--out", str(tmp_path / "w.npy")],
                    "pass --y with the context")


def test_y_on_an_unconditional_run_is_refused(tmp_path, tiny_run, capsys):
    tiny_run(tmp_path)
    run = tmp_path / "run"
    _one_line_error(capsys, ["sample", str(run), "--y", "1", "--out", str(tmp_path / "s.npy")],
                    "unconditional")
    _one_line_error(capsys, ["check", str(run), "--y", "1", "--out", str(tmp_path / "c"),
                             *QUICK], "unconditional")
    _one_line_error(capsys, ["check", "ppca", "--y", "1", "--out", str(tmp_path / "t")],
                    "unconditional")


def test_check_y_checks_the_posterior_given_that_label(label_run, tmp_path, capsys):
    out = tmp_path / "c1"
    assert main(["check", str(label_run), "--y", "1", "--out", str(out), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "quantity: log p(x | y = 1)" in printed
    rep = json.loads((out / "report.json").read_text())
    assert rep["context"]["quantity"] == "log p(x | y = 1)" and rep["context"]["y"] == [1]
    # the points checked are held-out points of class 1, scored given y = 1
    from pyrovae.posterior.exact import log_marginal
    from pyrovae.posterior.target import as_target
    from pyrovae.runs.pipeline import load_run_data

    vae, spec, _ = load_run(label_run)
    _, _, test = load_run_data(label_run, spec)
    x = test.x[torch.as_tensor(test.y) == 1][:2]
    assert len(rep["log_px"]) == len(x) == 2
    reported = torch.as_tensor(rep["log_px"], dtype=torch.float64)  # grid quadrature
    given = log_marginal(as_target(vae, y=torch.tensor([1])), x, method="grid").value
    other = log_marginal(as_target(vae, y=torch.tensor([0])), x, method="grid").value
    assert torch.allclose(reported, given, atol=1e-6), (reported, given)
    assert (reported - other).abs().max() > 1e-4  # another label is another quantity
    assert "amortization" not in rep and rep["sbc"] and rep["bdmc"]
    # without --y: the first held-out point's label, said so
    assert main(["check", str(label_run), "--out", str(tmp_path / "c0"), *QUICK]) == 0
    rep0 = json.loads((tmp_path / "c0" / "report.json").read_text())
    assert rep0["context"]["y"] == [int(test.y[0])] and "first held-out" in \
        rep0["context"]["chosen"]
    assert "quantity: log p(x | y = 1), y from --y" in printed


def test_evaluate_names_log_p_x_given_y(label_run, capsys):
    assert main(["evaluate", str(label_run), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "log p(x | y) ≥" in out and "log p(x) ≥" not in out


def test_train_names_log_p_x_given_y(label_run, tmp_path, capsys):
    import yaml

    spec = yaml.safe_load((label_run / "spec.yaml").read_text()) \
        if (label_run / "spec.yaml").is_file() else None
    assert spec is not None
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "log p(x | y) ≥" in out and "log p(x) ≥" not in out
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["context"] == "label"
