"""M2 through the spec, `pyrovae train`, the run folder, evaluate and the CLI's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pyrovae.cli import main
from pyrovae.runs import pipeline
from pyrovae.runs.folder import load_run


def _spec(name: str, **model) -> dict:
    return {"model": {"family": "m2", "classes": 3, **model}, "latent_dim": 2,
            "encoder": {"hidden": [8]}, "train": {"epochs": 2, "batch_size": 16},
            "eval": {"num_samples": 3}, "data": {"name": name, "test_fraction": 0.25}}


@pytest.fixture(scope="module")
def labelled_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("m2")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.random((60, 6)) < (0.2 + 0.3 * y[:, None] * (np.arange(6) % 2))).astype(np.float32)
    np.savez(d / "lab.npz", x=x, y=y)
    np.save(d / "nolab.npy", x)
    np.savez(d / "badlab.npz", x=x, y=y + 5)
    return d


def test_m2_run_trains_evaluates_and_reports_classification(labelled_file, tmp_path):
    spec = _spec(str(labelled_file / "lab.npz"), labelled_fraction=0.2)
    pipeline.train_run(spec, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    c = metrics["test"]["classification"]
    assert 0.0 <= c["accuracy"] <= 1.0 and len(c["confusion"]) == 3
    assert sum(map(sum, c["confusion"])) == 15
    assert np.isfinite(metrics["test"]["log_likelihood"])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    rec = history["records"][-1] if isinstance(history, dict) else history[-1]
    assert {"train_kl/z", "train_kl/y", "train_classify"} <= set(rec)
    # the classifier's learning curve: held-out accuracy every evaluated epoch, the last
    # one the final metrics' (the same q(y|x) on the same held-out rows)
    curve = [r["test_accuracy"] for r in history["records"]]
    assert len(curve) == 2 and all(0.0 <= a <= 1.0 for a in curve)
    assert curve[-1] == pytest.approx(c["accuracy"], abs=1e-12)
    for name in ("reliability.png", "confusion.png"):
        assert (tmp_path / "run" / "figures" / name).is_file()
    vae, _, _ = load_run(tmp_path / "run")
    assert type(vae).__name__ == "SemiSupervisedVAE"
    again = pipeline.evaluate_run(tmp_path / "run", num_samples=3)
    assert again["classification"]["num_examples"] == 15


def test_training_labels_keep_the_spec_fraction(labelled_file):
    spec, vae, train, _ = pipeline.build(_spec(str(labelled_file / "lab.npz"),
                                               labelled_count=6))
    y = pipeline.training_labels(spec, vae, train)
    assert int((y >= 0).sum()) == 6 and len(y) == len(train.x)


@pytest.mark.parametrize("data, sets, match", [
    ("nolab.npy", [], "learns from labels; data .* has none"),
    ("badlab.npz", [], r"labels of data .*: expected class labels in 0\.\.2"),
    ("lab.npz", ["model.labelled_fraction=0"], r"labelled_fraction: expected a fraction"),
    ("lab.npz", ["model.labelled_fraction=1.5"], "labelled_fraction"),
    ("lab.npz", ["model.labelled_count=1000"], "labelled_count: expected an integer in"),
    ("lab.npz", ["context.family=vector", "context.dim=2"],
     "enumeration, which needs a discrete site"),
])
def test_cli_refuses_bad_label_input_in_one_line(labelled_file, tmp_path, capsys, data, sets,
                                                 match):
    import re

    cfg = tmp_path / "m2.yaml"
    cfg.write_text(yaml.safe_dump(_spec(str(labelled_file / data))))
    argv = ["train", "--config", str(cfg), "--out", str(tmp_path / "run")]
    for s in sets:
        argv += ["--set", s]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(match, err[0]), err
    assert not (tmp_path / "run").exists()


def test_check_of_an_m2_run_sums_the_label_out(labelled_file, tmp_path):
    from pyrovae.runs.check import check_vae

    spec = _spec(str(labelled_file / "lab.npz"), labelled_fraction=0.5)
    pipeline.train_run(spec, tmp_path / "run", progress=False)
    vae, saved, _ = load_run(tmp_path / "run")
    _, train, _ = pipeline.load_data(saved)
    x = train.x[:3]
    report, grids = check_vae(vae, x, num_samples=50, ais_steps=10, ais_chains=4,
                              bdmc_points=3, sbc_sims=30)
    assert grids is None and report["classes"] == 3
    gap = np.asarray(report["gap"])
    assert np.allclose(gap, np.asarray(report["gap_label"]) + np.asarray(report["gap_code"]))
    post = np.asarray(report["label_posterior"])
    assert post.shape == (3, 3) and np.allclose(post.sum(-1), 1.0)
    assert len(report["bdmc"]["width"]) == 3 and report["bdmc"]["classes"].tolist() == [0, 1, 2]
    assert "failed" in report["sbc_label"] and "passed" in report["calibration"]
    assert len(report["sbc"]["failed"]) == vae.latent_dim
    s = report["summary"]
    assert {"mean_gap_label", "mean_gap_code", "sbc_label_pit_failed", "label_ece",
            "sbc_failed_dims"} <= set(s)


def test_m2_run_resumes_bitwise(labelled_file, tmp_path):
    """Two epochs in one go equal one epoch, then a resume to two: the masked labels, the
    mixed minibatches and the enumeration are all reproducible."""
    import torch

    spec = _spec(str(labelled_file / "lab.npz"), labelled_fraction=0.3)
    spec["train"]["checkpoint_every"] = 1
    pipeline.train_run(spec, tmp_path / "whole", progress=False)
    short = {**spec, "train": {**spec["train"], "epochs": 1}}
    pipeline.train_run(short, tmp_path / "parts", progress=False)
    pipeline.resume_run(tmp_path / "parts", spec, progress=False)
    a, _, _ = load_run(tmp_path / "whole")
    b, _, _ = load_run(tmp_path / "parts")
    for (k, u), (_, v) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(u, v), k
