"""log p(x) = ELBO + KL(q ‖ p(z|x)), with each term computed independently."""

from __future__ import annotations

import pytest
import torch

from pyrovae.posterior.exact import (
    check_identity,
    elbo,
    gaussian_kl,
    grid_posteriors,
    iwae,
    kl_to_posterior,
    log_marginal,
)
from pyrovae.posterior.local import LocalGuide, fit_local_guide
from pyrovae.posterior.target import as_target
from pyrovae.toy import PPCA, BetaBernoulli, NonlinearToy


@pytest.fixture
def ppca() -> PPCA:
    return PPCA.example(5, 2, correlation=0.8, sigma=0.5, seed=0)


def test_identity_on_ppca_with_closed_form_kl(ppca):
    torch.manual_seed(0)
    x = ppca.sample(8, seed=1)
    post = ppca.posterior(x)
    # a guide that is off in mean and scale: KL well above zero
    guide = LocalGuide(8, 2, loc=post.mean + 0.5, scale=torch.full((8, 2), 0.3))
    r = check_identity(as_target(ppca, guide), x, num_samples=4000)
    assert r["kl_method"] == "closed_form" and r["log_px_method"] == "exact"
    assert bool((r["kl"] > 0.3).all())
    assert bool(r["ok"].all()), r["residual"]
    # the check has teeth: a KL off by 0.3 nats would be caught at every point
    assert not bool((r["residual"] + 0.3).abs().le(r["allowed"]).any())


def test_kl_closed_form_equals_quadrature(ppca):
    x = ppca.sample(3, seed=2)
    guide = LocalGuide(3, 2, loc=torch.zeros(3, 2), scale=torch.full((3, 2), 0.5))
    target = as_target(ppca, guide)
    closed = kl_to_posterior(target, x)
    grids = grid_posteriors(target, x)
    on_grid = torch.tensor([g.kl_q_p() for g in grids], dtype=torch.float64)
    assert closed.method == "closed_form"
    assert torch.allclose(closed.value, on_grid, atol=1e-6)
    assert all(abs(g.q_mass() - 1) < 1e-6 for g in grids)


def test_identity_on_nonlinear_and_conjugate_toys_via_grid():
    torch.manual_seed(0)
    for toy in (NonlinearToy("banana"), BetaBernoulli(2.0, 2.0, data_dim=10)):
        x = toy.sample(4, seed=3)
        guide = fit_local_guide(toy, x, steps=300)
        r = check_identity(as_target(toy, guide), x, num_samples=4000)
        assert r["kl_method"] == "grid"
        assert bool(r["ok"].all()), (toy.name, r["residual"], r["allowed"])
        assert bool((r["kl"] > 0).all())


def test_generic_pyro_path_matches_fast_vae_path(ppca):
    vae = ppca.to_linear_vae(optimal_encoder=True)
    x = ppca.sample(5, seed=4)
    fast = as_target(vae)
    generic = as_target(vae.model, vae.guide, latent_dim=2)
    z = torch.randn(7, 5, 2, dtype=torch.float64)
    assert torch.allclose(fast.log_joint(x, z), generic.log_joint(x, z))
    assert torch.allclose(fast.guide_log_prob(x, z), generic.guide_log_prob(x, z))
    zs, lq = generic.sample_guide(x, 11)
    assert zs.shape == (11, 5, 2) and lq.shape == (11, 5)
    assert torch.allclose(lq, fast.guide_log_prob(x, zs))
    # and the exact answers through the generic path
    lp = log_marginal(generic, x)
    assert lp.method == "grid"
    assert torch.allclose(lp.value, ppca.log_marginal(x), atol=1e-6)


def test_iwae_bounds_and_converges(ppca):
    torch.manual_seed(1)
    x = ppca.sample(4, seed=5)
    guide = LocalGuide(4, 2, loc=ppca.posterior(x).mean, scale=torch.full((4, 2), 0.7))
    target = as_target(ppca, guide)
    exact = ppca.log_marginal(x)
    e1 = elbo(target, x, num_samples=4000)
    big = iwae(target, x, num_samples=20000)
    assert bool((e1.value < exact).all())
    assert bool(((big.value - exact).abs() < 4 * big.stderr + 2e-3).all())
    assert bool((big.value > e1.value).all())


def test_gaussian_kl_none_for_non_gaussians():
    import pyro.distributions as dist

    b = dist.Beta(torch.ones(1), torch.ones(1)).to_event(1)
    assert gaussian_kl(b, b) is None
