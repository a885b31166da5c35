"""Annealed importance sampling and BDMC against exact log p(x)."""

from __future__ import annotations

import pytest
import torch

import pyrovae
from pyrovae.posterior.ais import SCHEDULES, ais, schedule
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.exact import log_marginal
from pyrovae.toy import PPCA, get_toy


def _ppca(k: int, d: int) -> PPCA:
    return PPCA.example(data_dim=d, latent_dim=k, sigma=0.5, seed=1, correlation=0.3)


@pytest.mark.parametrize("k,d", [(10, 20), (50, 80)])
def test_ais_matches_exact_ppca(k, d):
    toy = _ppca(k, d)
    x = toy.sample(24, seed=2)
    vae = toy.to_linear_vae(optimal_encoder=True)  # mean-field guide: a non-zero gap
    r = ais(vae, x)
    err = r.log_px - toy.log_marginal(x)
    assert abs(float(err.mean())) < 0.05, err
    assert bool((err.abs() < 4 * r.stderr + 0.05).all()), (err, r.stderr)
    assert r.log_px.shape == r.stderr.shape == r.ess.shape == r.acceptance.shape == (24,)
    assert bool(((r.acceptance > 0.4) & (r.acceptance < 0.9)).all())
    assert bool(((r.ess >= 1) & (r.ess <= 32 + 1e-9)).all())


def test_ais_rises_toward_exact_with_more_distributions():
    toy = _ppca(5, 10)
    x = toy.sample(16, seed=3)
    exact = toy.log_marginal(x)
    errs = [float((ais(toy, x, num_steps=t, start="prior", num_chains=8).log_px - exact).mean())
            for t in (3, 30, 300)]
    assert errs[0] < errs[1] < errs[2] + 0.05, errs
    assert errs[0] < -0.3 and abs(errs[2]) < 0.15, errs


def test_ais_constrained_support_matches_exact():
    toy = get_toy("beta_bernoulli")  # z on (0, 1): sampled in logit space with the Jacobian
    x = toy.sample(4, seed=0)
    r = ais(toy, x, start="prior", num_steps=200, num_chains=32)
    assert torch.allclose(r.log_px, toy.log_marginal(x).to(r.log_px), atol=0.05), (
        r.log_px, toy.log_marginal(x))


def test_ais_reproducible_and_leaves_global_rng_alone():
    toy = _ppca(3, 6)
    x = toy.sample(5, seed=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = ais(toy, x, start="prior", num_steps=20, num_chains=4, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = ais(toy, x, start="prior", num_steps=20, num_chains=4, seed=7, chunk_size=5)
    c = ais(toy, x, start="prior", num_steps=20, num_chains=4, seed=8)
    assert torch.equal(a.log_weights, b.log_weights)
    assert not torch.equal(a.log_weights, c.log_weights)


def test_schedules_and_bad_arguments():
    for name in SCHEDULES:
        b = schedule(name, 10)
        assert b[0] == 0 and b[-1] == 1 and bool((b.diff() > 0).all())
    toy = _ppca(2, 4)
    x = toy.sample(2)
    with pytest.raises(pyrovae.PyrovaeError, match="schedule"):
        ais(toy, x, schedule_name="cosine", start="prior")
    with pytest.raises(pyrovae.PyrovaeError, match="guide"):
        ais(toy, x)  # no guide given: start='guide' is impossible
    with pytest.raises(pyrovae.PyrovaeError, match="init_z"):
        ais(toy, x, start="prior", reverse=True)


def test_bdmc_sandwich_contains_exact_ppca():
    toy = _ppca(10, 20)
    vae = toy.to_linear_vae(optimal_encoder=True)
    r = bdmc(vae, 24, num_steps=200)
    exact = toy.log_marginal(r.x)
    se_lo = float((r.forward.stderr ** 2).mean().sqrt()) / 24 ** 0.5
    se_hi = float((r.reverse.stderr ** 2).mean().sqrt()) / 24 ** 0.5
    assert float((r.lower - exact).mean()) <= 3 * se_lo + 1e-3
    assert float((r.upper - exact).mean()) >= -3 * se_hi - 1e-3
    assert float(r.width.mean()) < 0.1
    # with very few distributions the sandwich opens up
    loose = bdmc(vae, 24, num_steps=2, start="prior")
    assert float(loose.width.mean()) > 1.0


def test_pyro_pair_latent_dim_is_inferred():
    toy = _ppca(3, 6)
    x = toy.sample(4)
    t = pyrovae.posterior.as_target(toy.model, lambda x: None)
    assert t.latent_dim == 3
    # the generic trace path computes the same chains as the toy's own densities
    r = ais(toy.model, x, guide=lambda x: None, start="prior", num_steps=30, num_chains=4)
    s = ais(toy, x, start="prior", num_steps=30, num_chains=4)
    assert torch.allclose(r.log_weights, s.log_weights)


@pytest.mark.slow
def test_ais_matches_grid_on_2d_digits_vae():
    from pyrovae.data.datasets import load_dataset

    x = load_dataset("digits").x
    torch.manual_seed(0)
    vae = pyrovae.VAE(64, 2, encoder=[64], decoder=[64])
    pyrovae.fit(vae, x[:1000], epochs=30, batch_size=100, lr=3e-3, seed=0, progress=False)
    vae.eval()
    xt = x[1500:1532]
    grid = log_marginal(vae, xt, method="grid")
    r = ais(vae, xt)  # the default budget
    err = r.log_px.double() - grid.value
    assert abs(float(err.mean())) < 0.01, err
    assert bool((err.abs() < 4 * r.stderr + 0.01).all()), (err, r.stderr)
