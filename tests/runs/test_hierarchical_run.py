"""The hierarchical VAE through `pyrovae train`, `pyrovae evaluate` and `pyrovae check`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyrovae.cli import main
from pyrovae.runs.folder import load_run


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("hier")
    rng = np.random.default_rng(0)
    np.save(d / "d.npy", (rng.random((48, 6)) < 0.4).astype(np.float32))
    return d / "d.npy"


@pytest.mark.slow
def test_train_evaluate_and_check_a_hierarchical_run(data_file, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--set", "model.family=hierarchical",
                 "--set", "model.latent_dims=[2,1]", "--set", f"data.name={data_file}",
                 "--set", "train.epochs=2", "--set", "train.batch_size=16",
                 "--set", "eval.num_samples=5", "--set", "encoder.hidden=[8]",
                 "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    vae, spec, _ = load_run(run)
    assert type(vae).__name__ == "HierarchicalVAE" and spec["latent_dim"] == 3
    history = json.loads((run / "history.json").read_text())
    rec = history["records"][-1] if isinstance(history, dict) else history[-1]
    assert {"train_kl/z1", "train_kl/z2"} <= set(rec)
    assert rec["train_kl"] == pytest.approx(rec["train_kl/z1"] + rec["train_kl/z2"], rel=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["elbo"] <= metrics["test"]["log_likelihood"] + 0.5
    capsys.readouterr()
    assert main(["evaluate", str(run), "--num-samples", "20"]) == 0
    assert "IWAE" in capsys.readouterr().out
    code = main(["check", str(run), "--quick", "--points", "2", "--ais-steps", "10",
                 "--ais-chains", "4", "--bdmc-points", "2", "--sbc-sims", "10",
                 "--collapse-points", "20"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((run / "check" / "report.json").read_text())
    assert report["model"]["family"] == "hierarchical" and report["latent_dim"] == 3
    assert set(report["collapse"]["active_units_per_site"]) == {"z1", "z2"}
    assert len(report["ais"]["log_px"]) == 2 and np.isfinite(report["ais"]["log_px"]).all()
    assert len(report["sbc"]["failed"]) == 3  # every dimension of z2 and z1


def test_cli_refuses_a_one_layer_hierarchy_in_one_line(data_file, tmp_path, capsys):
    code = main(["train", "--set", "model.family=hierarchical", "--set",
                 "model.latent_dims=[3]", "--set", f"data.name={data_file}",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "latent_dims: expected at least 2 layers" in err[0]
    assert not (tmp_path / "run").exists()


def test_image_run_with_two_one_dimensional_layers_writes_its_figures(tmp_path, capsys):
    """latent_dim = 1 + 1 = 2 on images: no decoded 2-d manifold (the decoder reads z1
    alone) and no prior components on z1's map (the mixture prior is on z2)."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "img.npy", (rng.random((40, 1, 4, 4)) < 0.4).astype(np.float32))
    run = tmp_path / "run"
    code = main(["train", "--set", "model.family=hierarchical",
                 "--set", "model.latent_dims=[1,1]", "--set", f"data.name={tmp_path / 'img.npy'}",
                 "--set", "prior=mixture", "--set", "train.epochs=1",
                 "--set", "eval.num_samples=3", "--set", "encoder.hidden=[8]",
                 "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"latent_map.png", "samples.png", "reconstructions.png"} <= figures
    assert "latent_manifold.png" not in figures
