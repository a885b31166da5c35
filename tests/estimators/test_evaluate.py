"""evaluate: IWAE ≥ ELBO, increasing in K, exact on a linear-Gaussian model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from pyrovae import VAE, PyrovaeError, evaluate, fit


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.rand(300, 16, generator=g).pow(2), generator=g)
    vae = VAE(16, latent_dim=2, encoder=[32])
    fit(vae, x[:200], epochs=5, batch_size=50, progress=False, eval_every=None)
    return vae, x[200:]


def test_returns_the_documented_keys(trained):
    vae, x = trained
    r = evaluate(vae, x, num_samples=20)
    for key in ("elbo", "reconstruction", "kl", "log_likelihood", "log_likelihood_se"):
        assert math.isfinite(r[key])
    assert r["num_examples"] == 100 and r["num_samples"] == 20 and r["kl_closed_form"]
    assert r["elbo"] == pytest.approx(r["reconstruction"] - r["kl"])
    assert len(r["per_example"]["log_likelihood"]) == 100
    assert json.loads(json.dumps(r))["num_examples"] == 100  # plain Python all through
    assert r["kl"] > 0


def test_iwae_at_least_elbo_and_increasing_in_k(trained):
    vae, x = trained
    ll = {k: evaluate(vae, x, num_samples=k, seed=k)["log_likelihood"] for k in (1, 10, 100)}
    elbo = evaluate(vae, x, num_samples=100)["elbo"]
    assert ll[100] >= elbo
    assert ll[1] < min(ll[10], ll[100])  # beyond K = 10 this barely trained model is flat


def test_chunking_does_not_change_the_estimate(trained):
    vae, x = trained
    big = evaluate(vae, x, num_samples=400)
    small = evaluate(vae, x, num_samples=400, max_elements=64 * 7)  # tiny chunks
    assert small["log_likelihood"] == pytest.approx(big["log_likelihood"], abs=0.05)
    assert small["kl"] == pytest.approx(big["kl"], rel=1e-5)  # closed form: same


def test_global_rng_untouched(trained):
    vae, x = trained
    state = torch.get_rng_state()
    evaluate(vae, x, num_samples=5)
    assert torch.equal(state, torch.get_rng_state())


def test_matches_exact_log_likelihood_of_linear_gaussian_model():
    """z ~ N(0, I), x | z ~ N(Wz + b, σ² I): log p(x) = log N(x; b, WWᵀ + σ² I).

    The guide is the exact posterior N(A(x − b), σ² M⁻¹), A = M⁻¹Wᵀ, M = WᵀW + σ²I,
    shifted and widened (so it is not exact); with K = 20000 the IWAE estimate
    must match the exact value within its Monte Carlo error.
    """
    torch.manual_seed(3)
    d, k, sigma = 4, 2, 0.5
    vae = VAE(d, latent_dim=k, encoder=[],
              likelihood={"family": "gaussian", "sigma": "fixed", "sigma_init": sigma})
    W, b = torch.randn(d, k), torch.randn(d)
    M = W.T @ W + sigma**2 * torch.eye(k)
    A = torch.linalg.solve(M, W.T)
    post_sd = (sigma**2 * torch.linalg.inv(M)).diagonal().sqrt()
    with torch.no_grad():
        vae.decoder[0].weight.copy_(W)
        vae.decoder[0].bias.copy_(b)
        enc = vae.encoder[0]
        enc.weight.zero_()
        enc.weight[:k] = A
        enc.bias[:k] = -A @ b + 0.2 * post_sd  # shifted mean
        wide = 1.5 * post_sd                   # widened scale: softplus(raw) + 1e-4 = wide
        enc.bias[k:] = torch.log(torch.expm1(wide - 1e-4))
    exact = MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(d))
    x = exact.sample((20,))
    r = evaluate(vae, x, num_samples=20000)
    per = {k: np.asarray(v) for k, v in r["per_example"].items()}
    truth = exact.log_prob(x).double().numpy()
    err = per["log_likelihood"] - truth
    assert (abs(err) < 5 * per["log_likelihood_mc_se"] + 1e-3).all()
    assert abs(err.mean()) < 0.01
    gap = truth - per["elbo"]
    assert (gap > 0).all() and (gap > 0.01).any(), "the guide is not exact: ELBO < log p(x)"


def test_bad_num_samples_is_a_user_error(trained):
    vae, x = trained
    with pytest.raises(PyrovaeError, match="num_samples"):
        evaluate(vae, x, num_samples=0)


def test_khat_is_reported_beside_the_iwae_estimate_and_flags_its_stderr(trained):
    vae, x = trained
    few = evaluate(vae, x, num_samples=20)
    assert few["khat_max"] is None and few["khat_threshold"] is None
    assert few["log_likelihood_se_reliable"]
    r = evaluate(vae, x, num_samples=200)
    k = np.asarray(r["per_example"]["khat"])
    assert k.shape == (100,) and r["khat_threshold"] == pytest.approx(1 - 1 / math.log10(200))
    assert r["khat_max"] == pytest.approx(float(k[~(k != k)].max()))
    assert r["khat_bad"] == int((k > r["khat_threshold"]).sum())
    assert r["log_likelihood_se_reliable"] == (r["khat_bad"] == 0)


def test_a_float64_vae_evaluates_in_float64():
    torch.manual_seed(0)
    vae = VAE(6, latent_dim=2, encoder=[8]).double()
    x = (torch.rand(30, 6) > 0.5).float()  # float32 data: cast to the model's dtype
    r = evaluate(vae, x, num_samples=60)
    assert math.isfinite(r["log_likelihood"]) and type(r["per_example"]["elbo"][0]) is float
    assert r["log_likelihood"] >= r["elbo"] - 1e-6


def test_reads_any_data_source(trained):
    from pyrovae.data import TensorSource

    vae, x = trained
    a = evaluate(vae, x, num_samples=10, seed=3)
    b = evaluate(vae, TensorSource(x), num_samples=10, seed=3)
    assert a["log_likelihood"] == b["log_likelihood"] and a["elbo"] == b["elbo"]
