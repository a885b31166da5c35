"""IWAE bound and its standard error, ESS, Pareto k̂ and its sample-size threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyrovae.estimators.importance import (
    ess,
    iwae_bound,
    khat_threshold,
    pareto_khat,
    pareto_khats,
)


def test_iwae_bound_is_the_log_mean_weight_with_a_delta_method_stderr():
    g = torch.Generator().manual_seed(0)
    lw = torch.randn(500, 3, generator=g, dtype=torch.float64) * 0.3
    est = iwae_bound(lw)
    w = lw.exp().numpy()
    assert np.allclose(est.value.numpy(), np.log(w.mean(0)))
    want = np.sqrt(w.var(0, ddof=1) / 500) / w.mean(0)
    assert np.allclose(est.stderr.numpy(), want)
    flat = iwae_bound(torch.zeros(10, 2))
    assert torch.allclose(flat.value, torch.zeros(2), atol=1e-6)
    assert torch.allclose(flat.stderr, torch.zeros(2), atol=1e-3)


def test_ess_is_sum_squared_over_sum_of_squares():
    lw = torch.tensor([[0.0, 1.0], [math.log(3.0), 1.0], [-1.0, 1.0]], dtype=torch.float64)
    w = lw.exp().numpy()
    assert np.allclose(ess(lw).numpy(), w.sum(0) ** 2 / (w**2).sum(0))
    assert ess(lw)[1].item() == pytest.approx(3.0)  # equal weights: ESS = S


def test_khat_threshold_follows_vehtari_et_al_2024():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(1000) == pytest.approx(1 - 1 / 3)
    assert khat_threshold(10**6) == 0.7  # capped
    assert khat_threshold(5) == -math.inf


@pytest.mark.parametrize("shape", [0.2, 0.5, 0.9])
def test_pareto_khat_recovers_the_tail_shape(shape):
    # Pareto weights with tail index 1/shape: the generalized Pareto shape is `shape`
    g = torch.Generator().manual_seed(1)
    u = torch.rand(20000, generator=g, dtype=torch.float64)
    lw = -shape * torch.log(u)  # log of u^(−shape)
    assert pareto_khat(lw) == pytest.approx(shape, abs=0.12)
    assert pareto_khat(lw[:20]) == math.inf  # too few draws to fit a tail
    assert pareto_khat(torch.zeros(200)) == -math.inf  # flat weights


def test_pareto_khats_one_per_data_point():
    g = torch.Generator().manual_seed(2)
    lw = torch.randn(400, 5, generator=g)
    k = pareto_khats(lw)
    assert k.shape == (5,) and k.dtype == torch.float64
    assert k[2].item() == pareto_khat(lw[:, 2])
