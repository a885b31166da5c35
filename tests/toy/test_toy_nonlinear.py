"""Grid quadrature for the nonlinear toys: against a finer grid and 1-D quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

from pyrovae.toy import NonlinearToy


@pytest.mark.parametrize("kind", ["banana", "bimodal", "square"])
def test_grid_error_below_1e3_and_spacing_rule(kind):
    toy = NonlinearToy(kind)
    for xi in toy.sample(3, seed=1):
        g = toy.grid(xi)
        assert g.error_bound < 1e-3
        assert max(g.spacing) <= 1.5 * g.narrowest_std
        assert not g.truncated
        assert g.probs().sum().item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["banana", "bimodal", "square"])
def test_coarse_grid_against_finer_grid(kind):
    """The bound a coarse grid reports must cover its distance to a much finer grid."""
    toy = NonlinearToy(kind, sigma=0.2)
    xi = toy.sample(1, seed=4)[0]
    x1 = xi[None]

    def lj(z):
        return toy.log_joint(x1, z.unsqueeze(-2)).squeeze(-1)

    from pyrovae.quadrature import grid_posterior

    with pytest.warns(UserWarning, match="exceeds tol"):  # deliberately coarse
        coarse = grid_posterior(lj, toy.latent_dim, points=25, max_points=25)
    fine = grid_posterior(lj, toy.latent_dim, tol=1e-9)
    diff = abs(coarse.log_marginal - fine.log_marginal)
    assert diff <= coarse.error_bound + 1e-12
    assert fine.error_bound < 1e-8


def test_banana_against_one_dimensional_quadrature():
    """x = z₂ + z₁² + ε integrates over z₂ in closed form: p(x|z₁) = N(x; z₁², 1 + σ²)."""
    toy = NonlinearToy("banana", sigma=0.3)
    for xi in toy.sample(3, seed=2):
        x = float(xi)
        s = math.sqrt(1 + 0.09)

        def f(z1, x=x, s=s):
            return stats.norm.pdf(z1) * stats.norm.pdf(x, z1**2, s)

        val, _ = integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-12, limit=400)
        assert toy.log_marginal(xi[None]).item() == pytest.approx(math.log(val), abs=1e-8)


def test_square_against_quadrature_and_bimodality():
    toy = NonlinearToy("square", sigma=0.2)
    x = torch.tensor([[2.0]], dtype=torch.float64)
    val, _ = integrate.quad(lambda z: stats.norm.pdf(z) * stats.norm.pdf(2.0, z * z, 0.2),
                            -10, 10, epsabs=0, epsrel=1e-12, limit=400, points=[-1.4, 1.4])
    g = toy.grid(x[0])
    assert g.log_marginal == pytest.approx(math.log(val), abs=1e-8)
    # two symmetric modes near ±√2: half the mass on each side, mean 0
    z = g.points_z().reshape(-1)
    assert float(g.probs()[z > 0].sum()) == pytest.approx(0.5, abs=1e-9)
    assert abs(float(g.mean())) < 1e-9


def test_bimodal_posterior_has_two_modes():
    toy = NonlinearToy("bimodal", sigma=0.3)
    g = toy.grid(torch.tensor([3.0, 0.5], dtype=torch.float64))
    z1 = g.points_z()[:, 0].reshape(g.shape)
    assert float(g.probs()[z1 > 0].sum()) == pytest.approx(0.5, abs=1e-9)
    assert float(g.probs()[z1.abs() < 0.5].sum()) < 1e-3
