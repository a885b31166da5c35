"""Conjugate models: closed-form log p(x) and posterior against quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch.distributions import biject_to

from pyrovae.quadrature import grid_posterior
from pyrovae.toy import BetaBernoulli, GammaPoisson


def _quad_log_marginal(toy, xi, lo, hi):
    def f(z):
        zt = torch.tensor([[z]], dtype=torch.float64)
        return math.exp(float(toy.log_joint(xi[None], zt)))
    val, _ = integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-12, limit=200)
    return math.log(val)


@pytest.mark.parametrize("toy,lo,hi", [
    (BetaBernoulli(2.0, 3.0, data_dim=12), 0.0, 1.0),
    (GammaPoisson(3.0, 1.5, data_dim=6), 0.0, 60.0),
])
def test_log_marginal_matches_quadrature(toy, lo, hi):
    x = toy.sample(6, seed=1)
    exact = toy.log_marginal(x)
    for i in range(len(x)):
        assert float(exact[i]) == pytest.approx(_quad_log_marginal(toy, x[i], lo, hi), abs=1e-8)


@pytest.mark.parametrize("toy", [BetaBernoulli(0.7, 1.3, data_dim=8), GammaPoisson(2.0, 0.5)])
def test_posterior_matches_bayes_rule_on_a_grid(toy):
    x = toy.sample(4, seed=2)
    post = toy.posterior(x)
    transform = biject_to(toy.support)
    for i in range(len(x)):
        xi = x[i:i + 1]
        g = grid_posterior(lambda z, xi=xi: toy.log_joint(xi, z.unsqueeze(-2)).squeeze(-1), 1,
                           box=toy.grid_box(), transform=transform)
        assert g.error_bound < 1e-3
        assert abs(g.log_marginal - float(toy.log_marginal(xi))) < 1e-8
        # Bayes' rule pointwise, in z (the grid's density is in u = T⁻¹(z))
        u = g.points_u()
        z = transform(u)
        ladj = transform.log_abs_det_jacobian(u, z).reshape(-1)
        grid_logp_z = g.log_density.reshape(-1) - ladj
        closed = post.log_prob(z.unsqueeze(-2))[:, i]
        near = grid_logp_z > grid_logp_z.max() - 10
        assert torch.allclose(grid_logp_z[near], closed[near], atol=1e-7)
        assert float(g.mean()) == pytest.approx(float(post.mean[i]), abs=1e-7)


def test_samples_lie_in_the_support():
    x = BetaBernoulli(data_dim=7).sample(50)
    assert x.shape == (50, 7) and set(x.unique().tolist()) <= {0.0, 1.0}
    y = GammaPoisson(data_dim=3).sample(50)
    assert y.shape == (50, 3) and bool((y >= 0).all()) and bool((y == y.round()).all())
