"""Prior families, one by one: each density against its formula or scipy (the contract
all families keep is tests/model/test_family_contract.py)."""

from __future__ import annotations

import math

import pyro
import pytest
import scipy.stats
import torch

# the shared contract's helpers (one copy; tests/model is on sys.path under pytest)
from test_family_contract import train_both_engines

from pyrovae import VAE, PyrovaeError, normalize_spec
from pyrovae.training.objectives import TraceELBOObjective


def build(prior, latent_dim=2, data_dim=6, seed=0):
    torch.manual_seed(seed)
    return VAE.from_spec(
        {
            "data_dim": data_dim,
            "latent_dim": latent_dim,
            "encoder": {"hidden": [16]},
            "decoder": {"hidden": [16]},
            "prior": prior,
        }
    )


def binary_data(n=32, d=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) > 0.5).float()


def test_standard_and_learned_normal_match_direct_formula():
    z = torch.randn(5, 3)
    vae = build("normal", latent_dim=3)
    direct = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(vae.prior_dist().log_prob(z), direct, atol=1e-5)
    assert list(vae.prior.parameters()) == []  # the N(0, I) of "The Intuitive VAE" is fixed

    learned = build({"family": "normal_learned", "scale_init": 2.0}, latent_dim=3)
    with torch.no_grad():
        learned.prior.loc.copy_(torch.tensor([0.5, -1.0, 2.0]))
    loc, scale = learned.prior.loc, learned.prior.log_scale.exp()
    assert torch.allclose(scale, torch.full((3,), 2.0))
    direct = (
        -0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    assert torch.allclose(learned.prior_dist().log_prob(z), direct, atol=1e-5)


def test_laplace_and_student_t_match_scipy():
    z = torch.randn(7, 2, dtype=torch.float64) * 3
    lap = build({"family": "laplace", "scale": 0.7}).prior_dist()
    want = scipy.stats.laplace(scale=0.7).logpdf(z.numpy()).sum(-1)
    assert torch.allclose(lap.log_prob(z.float()).double(), torch.tensor(want), atol=1e-4)
    st = build({"family": "student_t", "df": 2.5, "scale": 1.5}).prior_dist()
    want = scipy.stats.t(df=2.5, scale=1.5).logpdf(z.numpy()).sum(-1)
    assert torch.allclose(st.log_prob(z.float()).double(), torch.tensor(want), atol=1e-4)


def test_mixture_log_density_is_the_direct_logsumexp():
    vae = build({"family": "mixture", "components": 4, "spread": 2.0}, latent_dim=3)
    train_both_engines(vae, binary_data(), steps=3)
    prior = vae.prior
    z = torch.randn(9, 3) * 2
    log_pi = torch.log_softmax(prior.logits, 0)
    comps = []
    for k in range(4):
        mu, sd = prior.locs[k], prior.log_scales[k].exp()
        comps.append(
            log_pi[k]
            + (-0.5 * ((z - mu) / sd) ** 2 - sd.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        )
    direct = torch.logsumexp(torch.stack(comps), 0)
    assert torch.allclose(vae.prior_dist().log_prob(z), direct, atol=1e-5)
    # the components are different points (they were not collapsed at init)
    assert torch.cdist(prior.locs, prior.locs).fill_diagonal_(1.0).min() > 1e-3


@pytest.mark.parametrize("guide", ["diagonal_normal", "full_covariance", "flow"])
def test_vamp_prior_is_the_mean_of_encoded_pseudo_inputs(guide):
    torch.manual_seed(0)
    vae = VAE.from_spec(
        {"data_dim": 6, "latent_dim": 2, "encoder": {"hidden": [8]},
         "prior": {"family": "vamp", "components": 5}, "guide": guide}
    )
    # encoder parameters are registered once (the prior keeps the VAE out of its tree)
    ids = [id(p) for p in vae.parameters()]
    assert len(ids) == len(set(ids))
    assert [n for n, _ in vae.prior.named_parameters()] == ["pseudo_inputs"]
    assert vae.prior.pseudo_inputs.shape == (5, 6)
    z = torch.randn(7, 2)
    q = vae.encode(vae.prior.pseudo_inputs)
    per_k = q.log_prob(z[:, None, :].expand(7, 5, 2)).T  # (k, n): log q(z_n | u_k)
    direct = torch.logsumexp(per_k, 0) - math.log(5)
    assert torch.allclose(vae.prior_dist().log_prob(z), direct, atol=1e-4)
    # gradients reach the pseudo-inputs through the encoder
    loss = TraceELBOObjective().differentiable_loss(vae, binary_data(8), num_data=8, kl_weight=1.0)
    loss.backward()
    assert vae.prior.pseudo_inputs.grad.abs().sum() > 0


def test_flow_prior_layers_are_pyro_transform_modules_that_train():
    vae = build({"family": "flow", "flow": "affine_autoregressive", "num_layers": 3})
    layers = list(vae.prior.layers)
    assert len(layers) == 3
    assert all(isinstance(t, pyro.distributions.torch_transform.TransformModule) for t in layers)
    names = [n for n, _ in vae.named_parameters()]
    assert any(n.startswith("prior.layers.2.") for n in names)
    # not a normal any more once trained: differs from N(0, I) at some point
    train_both_engines(vae, binary_data(), steps=5)
    z = torch.randn(20, 2)
    std = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert not torch.allclose(vae.prior_dist().log_prob(z), std, atol=1e-4)


def test_flow_prior_refuses_coupling_in_one_dimension():
    with pytest.raises(PyrovaeError, match=r"prior\.flow"):
        build({"family": "flow", "flow": "affine_coupling"}, latent_dim=1)


def test_flow_prior_offers_only_invertible_transforms():
    with pytest.raises(PyrovaeError, match=r"prior\.flow: expected one of"):
        normalize_spec({"prior": {"family": "flow", "flow": "planar"}})


@pytest.mark.parametrize(
    ("prior", "message"),
    [
        ({"family": "mixture", "components": 0},
         "prior.components: expected a positive integer, got 0"),
        ({"family": "student_t", "df": -1}, "prior.df: expected a positive number, got -1"),
        ({"family": "vamp", "components": 2.5}, "prior.components: expected a positive integer"),
        ({"family": "laplace", "loc": 1.0}, "prior.loc: unknown parameter"),
        ("gamma", "prior.family: unknown prior family 'gamma'; known: flow, laplace"),
    ],
)
def test_prior_spec_errors_name_the_key(prior, message):
    with pytest.raises(PyrovaeError) as info:
        normalize_spec({"prior": prior})
    assert message in str(info.value)


