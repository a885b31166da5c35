"""A conditional VAE through the spec, the trainer's fast engine and the run folder."""

from __future__ import annotations

import warnings

import torch

from pyrovae.runs import pipeline
from pyrovae.runs.folder import load_run


def test_conditional_spec_trains_with_labels_and_evaluates(tmp_path):
    spec = {"context": {"family": "label", "classes": 10}, "latent_dim": 2,
            "encoder": {"hidden": [16]}, "train": {"epochs": 2, "batch_size": 256},
            "eval": {"num_samples": 5}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to stock SVI
        pipeline.train_run(spec, tmp_path / "run", progress=False)
    vae, saved, history = load_run(tmp_path / "run")
    assert saved["context"]["family"] == "label" and len(history) == 2
    metrics = pipeline.evaluate_run(tmp_path / "run", num_samples=5)
    assert torch.isfinite(torch.tensor(metrics["elbo"]))
    threes = vae.sample(4, y=torch.full((4,), 3))
    assert threes.shape == (4, 1, 8, 8)
