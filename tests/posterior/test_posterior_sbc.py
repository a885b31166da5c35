"""Simulation-based calibration: the exact posterior passes, an overconfident guide fails."""

from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae.posterior.sbc import sbc, uniformity_bands
from pyrovae.toy import PPCA


class _Posterior:
    """The exact pPCA posterior as a guide, optionally with some marginal scales halved."""

    def __init__(self, toy: PPCA, shrink: list[int] | None = None) -> None:
        self.toy, self.shrink = toy, shrink or []

    def dist(self, x):
        p = self.toy.posterior(x)
        s = torch.ones(self.toy.latent_dim, dtype=p.loc.dtype)
        s[self.shrink] = 0.5
        return dist.MultivariateNormal(p.loc, scale_tril=s[:, None] * p.scale_tril)


def test_exact_posterior_passes_and_halved_scales_fail():
    toy = PPCA.example(data_dim=8, latent_dim=4, sigma=0.5, seed=1, correlation=0.3)
    for seed in range(3):
        good = sbc(toy, guide=_Posterior(toy), seed=seed)
        assert good.passed, (seed, good.p_value)
        bad = sbc(toy, guide=_Posterior(toy, shrink=[0, 2]), seed=seed)
        assert bad.failed.tolist() == [True, False, True, False], (seed, bad.p_value)
        assert bad.ranks.shape == (200, 4) and bad.ranks.max() <= 99


def test_bands_hold_their_level_on_uniform_ranks():
    grid, lo, hi, _ = uniformity_bands(100, 49, alpha=0.1, seed=0)
    rng = np.random.default_rng(5)
    r = rng.integers(0, 50, size=(1000, 100))
    idx = np.round(grid * 50).astype(int)
    diff = (r[:, :, None] < idx).mean(1) - grid
    outside = ((diff < lo - 1e-12) | (diff > hi + 1e-12)).any(1).mean()
    assert 0.05 < outside < 0.15, outside  # simultaneous level ≈ α = 0.1


def test_sbc_bad_arguments():
    toy = PPCA.example(4, 2)
    with pytest.raises(pyrovae.PyrovaeError, match="num_sims"):
        sbc(toy, guide=_Posterior(toy), num_sims=3)
    with pytest.raises(pyrovae.PyrovaeError, match="alpha"):
        sbc(toy, guide=_Posterior(toy), alpha=1.5)


def test_sbc_ranks_export_to_arviz():
    from pyrovae.posterior.reference import sbc_inference_data

    toy = PPCA.example(4, 2)
    r = sbc(toy, guide=_Posterior(toy), num_sims=20, num_draws=9)
    idata = sbc_inference_data(r.ranks, r.num_draws)
    assert idata.posterior["rank"].shape == (1, 20, 2)
    assert np.array_equal(idata.posterior["rank"].values[0], r.ranks)
