"""Fixtures of the benchmark tests: bench_mnist.py loaded once, and small made data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench_mnist.py as a module."""
    spec = importlib.util.spec_from_file_location("_bench_mnist", BENCH / "bench_mnist.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data(tmp_path):
    """75 grey 'images' of 16 pixels in [0, 1] (60 train, 15 test at test_fraction 0.2)."""
    path = tmp_path / "grey.npy"
    np.save(path, np.random.default_rng(0).random((75, 16)).astype(np.float32))
    return str(path)
