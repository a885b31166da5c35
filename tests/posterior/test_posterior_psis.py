"""PSIS k̂ per data point and the importance-sampling ESS."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer.importance import psis_diagnostic

from pyrovae.posterior.local import LocalGuide
from pyrovae.posterior.psis import category, ess, khat, psis_per_point
from pyrovae.posterior.target import as_target
from pyrovae.toy import PPCA


@pytest.fixture
def ppca() -> PPCA:
    return PPCA.example(5, 2, orthogonal=True, sigma=0.5, seed=0)


def _guide(ppca, x, scale_factor):
    q = ppca.optimal_meanfield(x)  # exact here: the floor is 0 (orthogonal W)
    return LocalGuide(len(x), 2, loc=q.base_dist.loc, scale=q.base_dist.scale * scale_factor)


def test_exact_guide_good_khat_and_full_ess(ppca):
    torch.manual_seed(0)
    x = ppca.sample(6, seed=1)
    r = psis_per_point(as_target(ppca, _guide(ppca, x, 1.0)), x, num_samples=2000)
    assert bool((r["ess_fraction"] > 0.999).all())
    assert all(c == "good" for c in r["category"])


def test_too_narrow_guide_bad_khat_wide_guide_good(ppca):
    torch.manual_seed(0)
    x = ppca.sample(6, seed=2)
    narrow = psis_per_point(as_target(ppca, _guide(ppca, x, 0.4)), x, num_samples=4000)
    wide = psis_per_point(as_target(ppca, _guide(ppca, x, 1.3)), x, num_samples=4000)
    assert bool((narrow["khat"] > 0.7).all()), narrow["khat"]
    assert bool((wide["khat"] < 0.5).all()), wide["khat"]
    assert bool((narrow["ess_fraction"] < wide["ess_fraction"]).all())


def test_per_point_khat_does_not_grow_with_batch_size(ppca):
    """Pyro's psis_diagnostic sums log-weights over the plate; ours does not."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    x = ppca.sample(64, seed=3)
    q = ppca.optimal_meanfield(x)
    # slightly wide and shifted: every point's weights are bounded (k̂ < 0.5) ...
    sd = q.base_dist.scale
    guide = LocalGuide(64, 2, loc=q.base_dist.loc + 0.3 * sd, scale=1.1 * sd)
    r = psis_per_point(as_target(ppca, guide), x, num_samples=2000)
    assert float(r["khat"].max()) < 0.5
    # ... but the weight of the whole batch, a product over 64 points, is not
    assert khat(r["log_weights"].sum(1)) > 0.7
    assert psis_diagnostic(ppca.model, guide, x, num_particles=2000) > 0.7


def test_khat_on_known_tails():
    g = torch.Generator().manual_seed(0)
    # Pareto(α) weights have k = 1/α
    for alpha in (1.0, 2.5):
        u = torch.rand(20000, generator=g, dtype=torch.float64)
        log_w = -torch.log(u) / alpha
        assert khat(log_w) == pytest.approx(1 / alpha, abs=0.1)
    assert khat(torch.zeros(1000, dtype=torch.float64)) == -math.inf
    assert category(0.3) == "good" and category(0.6) == "ok" and category(0.9) == "bad"


def test_khat_matches_arviz_psislw():
    from pyrovae.posterior.reference import arviz_khat
    from pyrovae.toy import BetaBernoulli

    torch.manual_seed(0)
    toy = BetaBernoulli(0.5, 0.5, data_dim=5)
    x = toy.sample(3, seed=2)
    # a Gaussian on logit z has lighter tails than the Beta posterior: heavy weights
    guide = LocalGuide(3, 1, support=toy.support, loc=torch.zeros(3, 1),
                       scale=torch.full((3, 1), 1.0))
    r = psis_per_point(as_target(toy, guide), x, num_samples=3000)
    np.testing.assert_allclose(r["khat"].numpy(), arviz_khat(r["log_weights"].numpy()),
                               rtol=1e-10)


def test_ess_formula():
    lw = torch.log(torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(ess(lw), torch.tensor([3.0, 1.0], dtype=torch.float64))
