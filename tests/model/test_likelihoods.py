"""Likelihood families, one by one: each density and support check against its formula
or scipy (the contract all families keep is tests/model/test_family_contract.py)."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

# the shared contract's helpers (one copy; tests/model is on sys.path under pytest)
from test_family_contract import data_for, train_both_engines

from pyrovae import VAE, PyrovaeError, normalize_spec

D = 6


def build(likelihood, latent_dim=2, seed=0, guide="diagonal_normal"):
    torch.manual_seed(seed)
    return VAE.from_spec(
        {"data_dim": D, "latent_dim": latent_dim, "encoder": {"hidden": [16]},
         "likelihood": likelihood, "guide": guide}
    )


def test_bernoulli_and_continuous_bernoulli_match_direct_formulas():
    out = torch.randn(4, D)
    x = torch.rand(4, D)
    lam = torch.sigmoid(out)
    cb = build("continuous_bernoulli").likelihood(out)
    # C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ)  (Loaiza-Ganem & Cunningham 2019, eq. 7)
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    direct = (log_c + x * lam.log() + (1 - x) * (1 - lam).log()).sum(-1)
    assert torch.allclose(cb.log_prob(x), direct, atol=1e-4)
    # its mean is not λ (the pervasive error the paper fixes)
    lik = build("continuous_bernoulli").likelihood
    assert not torch.allclose(lik.mean(cb), lam, atol=1e-3)
    b = build("bernoulli").likelihood(out)
    xb = (x > 0.5).float()
    direct = (xb * lam.log() + (1 - xb) * (1 - lam).log()).sum(-1)
    assert torch.allclose(b.log_prob(xb), direct, atol=1e-5)


def test_dynamic_binarization_resamples_binary_batches_with_mean_x():
    lik = build({"family": "bernoulli", "dynamic_binarization": True}).likelihood
    x = torch.rand(4, D)
    lik.check_data(x)  # [0, 1] accepted
    torch.manual_seed(0)
    draws = torch.stack([lik.prepare_batch(x) for _ in range(4000)])
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(draws.mean(0), x, atol=0.03)
    with pytest.raises(PyrovaeError, match=r"1 of 24 values .* \[0, 1\]"):
        lik.check_data(torch.where(torch.arange(24).reshape(4, D) == 5, 1.5, x))
    plain = build("bernoulli").likelihood
    assert torch.equal(plain.prepare_batch(x), x)
    with pytest.raises(PyrovaeError, match=r"24 of 24 values are outside .*\{0, 1\}"):
        plain.check_data(x.clamp(0.01, 0.99))


def test_gaussian_sigma_modes_have_the_right_parameters():
    fixed = build({"family": "gaussian", "sigma": "fixed", "sigma_init": 0.5}).likelihood
    assert list(fixed.parameters()) == []
    assert fixed(torch.zeros(2, D)).base_dist.scale.eq(0.5).all()
    shared = build({"family": "gaussian", "sigma": "shared"}).likelihood
    assert [p.shape for p in shared.parameters()] == [torch.Size([])]
    per_dim = build({"family": "gaussian", "sigma": "per_dim"}).likelihood
    assert [p.shape for p in per_dim.parameters()] == [torch.Size([D])]
    pred = build({"family": "gaussian", "sigma": "predicted"})
    assert pred.likelihood.num_outputs() == 2 * D and pred.decoder[-1].out_features == 2 * D
    out = torch.randn(3, 2 * D) * 5
    d = pred.likelihood(out)
    sigma = torch.nn.functional.softplus(out[:, D:]) + 1e-3
    assert torch.allclose(d.base_dist.scale, sigma) and (d.base_dist.scale > 0).all()
    x = torch.randn(3, D)
    want = scipy.stats.norm(out[:, :D].numpy(), sigma.numpy()).logpdf(x.numpy()).sum(-1)
    assert torch.allclose(d.log_prob(x).double(), torch.tensor(want), atol=1e-3)


def test_calibrated_sigma_is_the_batch_rmse_and_eval_uses_the_running_value():
    vae = build({"family": "gaussian", "sigma": "calibrated", "momentum": 0.5})
    x = data_for(vae, "likelihood", "gaussian")
    train_both_engines(vae, x, steps=3)
    lik = vae.likelihood
    z = vae.encode(x).rsample()
    mu = vae.decoder(z)
    d = vae.decode(z, x)
    rmse = ((x - mu) ** 2).mean().sqrt()
    assert torch.allclose(lik.last_sigma, rmse.expand_as(mu))
    # σ* maximises the Gaussian log-likelihood over a shared σ: nudging it lowers it
    for factor in (0.9, 1.1):
        other = torch.distributions.Normal(mu, rmse * factor).log_prob(x).sum()
        assert d.log_prob(x).sum() > other
    # the running value moved towards σ* (momentum 0.5) and is used in eval mode
    running = lik.log_sigma.exp()
    assert running != pytest.approx(1.0)
    vae.eval()
    d_eval = vae.decode(z, x + 100.0)  # held-out data does not set its own σ
    assert torch.allclose(d_eval.base_dist.scale, running.expand_as(mu))
    vae.train()
    sampled = vae.decode(z)  # x unknown: running value
    assert torch.allclose(sampled.base_dist.scale, running.expand_as(mu))


def test_laplace_likelihood_matches_scipy():
    lik = build({"family": "laplace", "scale": "fixed", "scale_init": 0.3}).likelihood
    assert list(lik.parameters()) == []
    out, x = torch.randn(3, D), torch.randn(3, D)
    want = scipy.stats.laplace(out.numpy(), 0.3).logpdf(x.numpy()).sum(-1)
    assert torch.allclose(lik(out).log_prob(x).double(), torch.tensor(want), atol=1e-4)


def test_binomial_matches_scipy_and_names_offending_values():
    lik = build({"family": "binomial", "total_count": 16}).likelihood
    out = torch.randn(3, D)
    x = torch.randint(0, 17, (3, D)).float()
    want = scipy.stats.binom(16, torch.sigmoid(out).double().numpy()).logpmf(x.numpy()).sum(-1)
    assert torch.allclose(lik(out).log_prob(x).double(), torch.tensor(want), atol=1e-4)
    assert torch.allclose(lik.mean(lik(out)), 16 * torch.sigmoid(out))
    bad = x.clone()
    bad[0, 0], bad[1, 1], bad[2, 2] = 17.0, 2.5, -1.0
    with pytest.raises(PyrovaeError) as info:
        lik.check_data(bad)
    msg = str(info.value)
    assert "3 of 18 values" in msg and "integers 0..16" in msg and "'binomial'" in msg


def test_categorical_log_prob_mean_and_support():
    lik = build({"family": "categorical", "levels": 5}).likelihood
    assert lik.num_outputs() == 5 * D
    out = torch.randn(2, 5 * D)
    x = torch.randint(0, 5, (2, D)).float()
    logits = out.reshape(2, D, 5)
    direct = torch.log_softmax(logits, -1).gather(-1, x.long()[..., None]).squeeze(-1).sum(-1)
    d = lik(out)
    assert torch.allclose(d.log_prob(x), direct, atol=1e-5)
    probs = torch.softmax(logits, -1)
    assert torch.allclose(lik.mean(d), (probs * torch.arange(5.0)).sum(-1), atol=1e-5)
    bad = x.clone()
    bad[0, :2] = torch.tensor([5.0, -1.0])
    with pytest.raises(PyrovaeError, match=r"2 of 12 values .*integers 0\.\.4"):
        lik.check_data(bad)
    with pytest.raises(PyrovaeError, match=r"likelihood\.levels: expected an integer >= 2, got 1"):
        normalize_spec({"likelihood": {"family": "categorical", "levels": 1}})


def test_poisson_matches_scipy_and_refuses_negatives():
    lik = build("poisson").likelihood
    out = torch.randn(3, D)
    x = torch.poisson(torch.full((3, D), 2.0))
    rate = torch.nn.functional.softplus(out) + 1e-6
    want = scipy.stats.poisson(rate.double().numpy()).logpmf(x.numpy()).sum(-1)
    assert torch.allclose(lik(out).log_prob(x).double(), torch.tensor(want), atol=1e-4)
    bad = x.clone()
    bad[0, 0], bad[1, 0] = -2.0, 0.5
    with pytest.raises(PyrovaeError, match=r"2 of 18 values .*non-negative integers"):
        lik.check_data(bad)


def test_nan_and_inf_are_counted_before_support():
    lik = build("poisson").likelihood
    x = torch.ones(2, D)
    x[0, 0], x[0, 1], x[1, 2] = math.nan, math.inf, -1.0
    with pytest.raises(PyrovaeError, match="1 NaN and 1 infinite values out of 12"):
        lik.check_data(x)


def test_likelihood_spec_errors_name_the_key():
    with pytest.raises(PyrovaeError, match=r"likelihood\.sigma: expected one of 'fixed'"):
        normalize_spec({"likelihood": {"family": "gaussian", "sigma": "learned"}})
    with pytest.raises(PyrovaeError, match=r"likelihood\.total_count: expected a positive integer"):
        normalize_spec({"likelihood": {"family": "binomial", "total_count": -16}})
    with pytest.raises(PyrovaeError, match=r"likelihood\.dynamic_binarization: expected true"):
        normalize_spec({"likelihood": {"family": "bernoulli", "dynamic_binarization": "yes"}})
