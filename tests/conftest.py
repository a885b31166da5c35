"""Shared fixtures: small data, small models, a clean Pyro param store per test."""

from __future__ import annotations

import pyro
import pytest
import torch


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


@pytest.fixture
def binary_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((40, 12), 0.3), generator=g)
