"""Shared fixtures: small data, small models, a clean Pyro param store per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
import yaml


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the models in tests are tiny (one thread is fastest), the
    2 cores are shared with subprocess tests, and results do not depend on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _clean_pyro():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def make_tiny_run(folder: Path) -> dict:
    """Write ``folder/bin.npy`` (30 binary rows of 5) and ``folder/ok.yaml`` (a latent-2,
    one-epoch spec on it), train ``folder/run`` from them and return the spec: the tiny run
    folder the run-folder, lock and hostile-input tests start from."""
    from pyrovae.runs import pipeline

    np.save(folder / "bin.npy",
            (np.random.default_rng(0).random((30, 5)) > 0.5).astype(np.float32))
    spec = {"latent_dim": 2, "encoder": {"hidden": [4]}, "likelihood": "bernoulli",
            "train": {"epochs": 1, "batch_size": 10}, "eval": {"num_samples": 2},
            "data": {"name": str(folder / "bin.npy"), "test_fraction": 0.2}}
    (folder / "ok.yaml").write_text(yaml.safe_dump(spec))
    pipeline.train_run(spec, folder / "run", progress=False)
    return spec


def make_tiny_conditional_run(folder: Path, family: str = "label") -> dict:
    """Write ``folder/lab.npz`` (40 binary 4 × 4 images, labels 0, 1, 2 in turn) and train
    ``folder/run`` on it: a one-epoch, latent-2 VAE conditioned on the label (``family
    "label"``, 3 classes) or on the label as a number (``"vector"``, dim 1)."""
    from pyrovae.runs import pipeline

    rng = np.random.default_rng(0)
    np.savez(folder / "lab.npz", x=(rng.random((40, 4, 4)) > 0.5).astype(np.float32),
             y=np.arange(40) % 3)
    context = {"family": "label", "classes": 3} if family == "label" else \
        {"family": "vector", "dim": 1}
    spec = {"latent_dim": 2, "encoder": {"hidden": [4]}, "likelihood": "bernoulli",
            "context": context, "train": {"epochs": 1, "batch_size": 10},
            "eval": {"num_samples": 2},
            "data": {"name": str(folder / "lab.npz"), "test_fraction": 0.25}}
    pipeline.train_run(spec, folder / "run", progress=False)
    return spec


@pytest.fixture(scope="session")
def tiny_run():
    """:func:`make_tiny_run`, for module fixtures that build their own copy."""
    return make_tiny_run


@pytest.fixture(scope="session")
def tiny_conditional_run():
    """:func:`make_tiny_conditional_run`, for module fixtures that build their own copy."""
    return make_tiny_conditional_run


@pytest.fixture
def binary_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((40, 12), 0.3), generator=g)
