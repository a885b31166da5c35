"""pPCA closed forms against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.optimize import minimize

from pyrovae.experiments.theta_fixed import ppca_exact
from pyrovae.posterior.exact import gaussian_kl
from pyrovae.quadrature import grid_posterior
from pyrovae.toy import PPCA


@pytest.fixture
def ppca() -> PPCA:
    return PPCA.example(5, 2, correlation=0.8, sigma=0.5, seed=3)


def test_log_marginal_matches_direct_mvn(ppca):
    x = ppca.sample(20, seed=1)
    C = (ppca.W @ ppca.W.T).numpy() + 0.25 * np.eye(5)
    direct = stats.multivariate_normal(ppca.mu.numpy(), C).logpdf(x.numpy())
    np.testing.assert_allclose(ppca.log_marginal(x).numpy(), direct, rtol=0, atol=1e-10)
    # and by hand: −½ (D log 2π + log|C| + (x−μ)ᵀ C⁻¹ (x−μ))
    r = x.numpy() - ppca.mu.numpy()
    quad = np.einsum("nd,de,ne->n", r, np.linalg.inv(C), r)
    by_hand = -0.5 * (5 * math.log(2 * math.pi) + np.linalg.slogdet(C)[1] + quad)
    np.testing.assert_allclose(ppca.log_marginal(x).numpy(), by_hand, atol=1e-10)


def test_posterior_matches_bayes_rule_on_a_grid(ppca):
    x = ppca.sample(3, seed=2)
    post = ppca.posterior(x)
    for i in range(3):
        xi = x[i:i + 1]
        g = grid_posterior(lambda z, xi=xi: ppca.log_joint(xi, z.unsqueeze(-2)).squeeze(-1), 2)
        # Bayes' rule: p(z|x) = p(x|z) p(z) / p(x), pointwise on the grid
        closed = post.log_prob(g.points_z().unsqueeze(-2))[:, i].reshape(g.shape)
        near = g.log_density > g.log_density.max() - 10
        assert torch.allclose(g.log_density[near], closed[near], atol=1e-8)
        assert abs(g.log_marginal - float(ppca.log_marginal(xi))) < 1e-8
        assert torch.allclose(g.mean(), post.mean[i], atol=1e-8)
        assert torch.allclose(g.cov(), post.covariance_matrix[i], atol=1e-8)


def test_closed_form_mle_is_the_maximum(ppca):
    x = ppca.sample(400, seed=4)
    mle = PPCA.mle(x, 2)
    best = PPCA.max_log_likelihood(x, 2)
    assert abs(float(mle.log_marginal(x).mean()) - best) < 1e-10
    # a generic optimiser over (W, μ, log σ) from a random start gets no higher
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=5 * 2 + 5 + 1) * 0.5

    def nll(theta):
        W = theta[:10].reshape(5, 2)
        mu = theta[10:15]
        C = W @ W.T + np.exp(2 * theta[15]) * np.eye(5)
        return -stats.multivariate_normal(mu, C).logpdf(x.numpy()).mean()

    res = minimize(nll, theta0, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10})
    assert -res.fun <= best + 1e-8
    assert -res.fun > best - 1e-4
    # and the truth is worse on this sample (the MLE fits noise too)
    assert float(ppca.log_marginal(x).mean()) < best


def test_meanfield_floor_matches_numerical_optimum(ppca):
    xi = ppca.sample(1, seed=5)
    post = ppca.posterior(xi)
    m, S = post.mean[0].numpy(), post.covariance_matrix[0].numpy()
    P, logdet_S = np.linalg.inv(S), np.linalg.slogdet(S)[1]

    def kl(params):  # KL(N(a, diag s²) ‖ N(m, S)), written out in numpy
        a, s2 = params[:2], np.exp(2 * params[2:])
        return 0.5 * (np.sum(np.diag(P) * s2) + (m - a) @ P @ (m - a) - 2
                      + logdet_S - np.sum(np.log(s2)))

    res = minimize(kl, np.zeros(4), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000})
    assert ppca.meanfield_floor() > 0.2
    assert abs(res.fun - ppca.meanfield_floor()) < 1e-8
    q_star = ppca.optimal_meanfield(xi)
    assert float(gaussian_kl(q_star, post)) == pytest.approx(ppca.meanfield_floor(), abs=1e-10)
    assert float(gaussian_kl(q_star, post)) == pytest.approx(kl(res.x), abs=1e-8)


def test_floor_is_zero_for_orthogonal_columns():
    p = PPCA.example(6, 3, orthogonal=True)
    prec = p.posterior_precision
    assert torch.allclose(prec, torch.diag(prec.diagonal()), atol=1e-10)
    assert abs(p.meanfield_floor()) < 1e-12


def test_linear_vae_round_trip_and_optimal_encoder(ppca):
    vae = ppca.to_linear_vae(optimal_encoder=True)
    back = PPCA.from_linear_vae(vae)
    assert torch.allclose(back.W, ppca.W) and torch.allclose(back.mu, ppca.mu)
    assert float(back.sigma) == pytest.approx(float(ppca.sigma))
    x = ppca.sample(10, seed=6)
    lp, kl = ppca_exact(vae, x)
    assert torch.allclose(lp, ppca.log_marginal(x))
    assert torch.allclose(kl, torch.full_like(kl, ppca.meanfield_floor()), atol=1e-6)
