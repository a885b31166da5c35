"""Shared fixtures: small data, small models, a clean Pyro param store per test."""

from __future__ import annotations

import pyro
import pytest
import torch

torch.set_num_threads(1)  # small tensors: one thread is fastest and deterministic


@pytest.fixture(autouse=True)
def _clean_pyro():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture
def binary_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((40, 12), 0.3), generator=g)
