"""Guide families q(z|x), one by one: covariance, flows, errors (the contract all
families keep is tests/model/test_family_contract.py)."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

# the shared contract's helpers (one copy; tests/model is on sys.path under pytest)
from test_family_contract import train_both_engines

from pyrovae import VAE, PyrovaeError, normalize_spec
from pyrovae.model.guides import MIN_SCALE


def build(guide, latent_dim=2, data_dim=6, seed=0):
    torch.manual_seed(seed)
    return VAE.from_spec(
        {"data_dim": data_dim, "latent_dim": latent_dim, "encoder": {"hidden": [16]},
         "guide": guide}
    )


def binary_data(n=32, d=6, seed=1):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def test_full_covariance_is_pd_correlated_and_matches_scipy():
    vae = build("full_covariance", latent_dim=3)
    assert vae.guide_family.num_outputs() == 3 + 3 + 3  # μ, diag L, strict lower L
    train_both_engines(vae, binary_data(), steps=2)
    x = binary_data(n=5)
    with torch.no_grad():
        q = vae.encode(x)
        out = vae.encoder(x)
    L = q.scale_tril
    assert torch.equal(L, torch.tril(L))
    assert (torch.diagonal(L, dim1=-2, dim2=-1) >= MIN_SCALE).all()
    cov = L @ L.transpose(-1, -2)
    assert (torch.linalg.eigvalsh(cov) > 0).all()
    # the strictly-lower entries come straight from the encoder: not a diagonal guide
    assert torch.allclose(L[:, 1, 0], out[:, 6]) and L[:, 1, 0].abs().max() > 1e-3
    z = q.sample((4,))
    for i in range(5):
        want = scipy.stats.multivariate_normal(
            q.loc[i].double().numpy(), cov[i].double().numpy()
        ).logpdf(z[:, i].double().numpy())
        assert torch.allclose(q.log_prob(z)[:, i].double(), torch.tensor(want), atol=1e-4)


def test_full_covariance_in_one_dimension_is_a_normal():
    vae = build("full_covariance", latent_dim=1)
    q = vae.encode(binary_data(n=3))
    assert q.scale_tril.shape == (3, 1, 1)
    z = q.sample()
    direct = torch.distributions.Normal(q.loc, q.scale_tril[..., 0]).log_prob(z).sum(-1)
    assert torch.allclose(q.log_prob(z), direct, atol=1e-5)


def test_flow_guide_context_makes_the_flow_depend_on_x():
    vae = build({"family": "flow", "num_layers": 2, "context_dim": 4})
    assert vae.guide_family.num_outputs() == 2 * 2 + 4
    x = binary_data(n=2)
    with torch.no_grad():
        out = vae.encoder(x)
        q = vae.guide_family(out)
        # same base (μ, σ), different context: a different q
        swapped = out.clone()
        swapped[:, 4:] = out.flip(0)[:, 4:]
        q2 = vae.guide_family(swapped)
        z = torch.randn(2, 2)
        assert not torch.allclose(q.log_prob(z), q2.log_prob(z), atol=1e-5)
    flat = build({"family": "flow", "num_layers": 1, "context_dim": 0})
    assert flat.guide_family.num_outputs() == 4


def test_flow_guide_log_prob_is_change_of_variables():
    """log q(z) = log N(u; μ, σ) − log|det ∂z/∂u| for z = f(u), the flow's own samples."""
    vae = build({"family": "flow", "num_layers": 2, "context_dim": 0})
    x = binary_data(n=4)
    q = vae.encode(x)
    u = q.base_dist.rsample()
    z, ladj = u, torch.zeros(4)
    for t in q.transforms:
        y = t(z)
        ladj = ladj + t.log_abs_det_jacobian(z, y)
        z = y
    assert torch.allclose(q.log_prob(z), q.base_dist.log_prob(u) - ladj, atol=1e-4)
    # pathwise gradients reach the flow layers
    q.log_prob(z).sum().backward()
    assert all(p.grad is not None for p in vae.guide_family.parameters())


def test_guide_spec_errors_name_the_key():
    with pytest.raises(PyrovaeError, match=r"guide\.context_dim: expected a non-negative integer"):
        normalize_spec({"guide": {"family": "flow", "context_dim": -1}})
    with pytest.raises(PyrovaeError, match=r"guide\.family: unknown guide family 'iaf'"):
        normalize_spec({"guide": "iaf"})


