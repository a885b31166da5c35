"""The VAE as a Pyro model/guide pair: sites, shapes, plate, scaling, Pyro tools."""

from __future__ import annotations

import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    SVI,
    Importance,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)

from pyrovae import VAE


@pytest.fixture
def vae() -> VAE:
    torch.manual_seed(0)
    return VAE(12, latent_dim=3, encoder=[16])


def test_site_names_shapes_and_plate(vae, binary_data):
    x = binary_data[:5]
    model_tr = poutine.trace(vae.model).get_trace(x)
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    sample_sites = {n for n, s in model_tr.nodes.items() if s["type"] == "sample"}
    assert sample_sites == {"z", "x", "data"}
    assert model_tr.nodes["x"]["is_observed"] and torch.equal(model_tr.nodes["x"]["value"], x)
    assert not model_tr.nodes["z"]["is_observed"]
    assert {n for n, s in guide_tr.nodes.items() if s["type"] == "sample"} == {"z", "data"}
    for tr in (model_tr, guide_tr):
        z = tr.nodes["z"]
        assert z["value"].shape == (5, 3)
        assert z["fn"].event_shape == (3,) and z["fn"].batch_shape == (5,)
        assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    xs = model_tr.nodes["x"]
    assert xs["fn"].event_shape == (12,) and xs["fn"].batch_shape == (5,)
    assert [f.name for f in xs["cond_indep_stack"]] == ["data"]


def test_minibatch_and_kl_weight_scaling(vae, binary_data):
    x = binary_data[:5]
    model_tr = poutine.trace(vae.model).get_trace(x, num_data=40, kl_weight=0.25)
    guide_tr = poutine.trace(vae.guide).get_trace(x, num_data=40, kl_weight=0.25)
    assert model_tr.nodes["x"]["scale"] == pytest.approx(8.0)
    assert model_tr.nodes["z"]["scale"] == pytest.approx(8.0 * 0.25)
    assert guide_tr.nodes["z"]["scale"] == pytest.approx(8.0 * 0.25)


def test_elbo_with_beta_is_reconstruction_minus_beta_kl(vae, binary_data):
    x = binary_data[:7]
    guide_tr = poutine.trace(vae.guide).get_trace(x, kl_weight=0.3)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x, kl_weight=0.3)
    z = guide_tr.nodes["z"]["value"]
    recon = vae.decode(z).log_prob(x).sum()
    log_ratio = (vae.prior_dist().log_prob(z) - vae.encode(x).log_prob(z)).sum()
    elbo = model_tr.log_prob_sum() - guide_tr.log_prob_sum()
    torch.testing.assert_close(elbo, recon + 0.3 * log_ratio)


@pytest.mark.parametrize(
    "loss", [Trace_ELBO(), TraceMeanField_ELBO(), RenyiELBO(alpha=0.5, num_particles=4)],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "RenyiELBO"],
)
def test_runs_under_svi(vae, binary_data, loss):
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), loss=loss)
    before = [p.detach().clone() for p in vae.parameters()]
    losses = [svi.step(binary_data, num_data=400) for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [not torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True)]
    assert all(changed), "SVI must update encoder and decoder parameters"


def test_predictive_posterior_and_prior(vae, binary_data):
    post = Predictive(vae.model, guide=vae.guide, num_samples=6)(binary_data[:4])
    assert post["z"].shape == (6, 4, 3) and post["x"].shape == (6, 4, 12)
    prior = Predictive(vae.model, num_samples=5)(None, batch_size=3)
    assert prior["x"].shape == (5, 3, 12)
    assert set(prior["x"].unique().tolist()) <= {0.0, 1.0}


def test_importance_sampling_estimates_log_marginal(vae, binary_data):
    x = binary_data[:3]
    imp = Importance(vae.model, guide=vae.guide, num_samples=200).run(x)
    log_z = imp.get_log_normalizer()
    assert torch.isfinite(log_z)
    # log p(x) of 3 points of 12 binary pixels: between the uniform model and 0
    assert 3 * 12 * torch.log(torch.tensor(0.5)) - 20 < log_z < 0


def test_encode_decode_reconstruct_sample(vae, binary_data):
    q = vae.encode(binary_data)
    assert q.batch_shape == (40,) and q.event_shape == (3,)
    p = vae.decode(q.rsample())
    assert p.batch_shape == (40,) and p.event_shape == (12,)
    r = vae.reconstruct(binary_data)
    assert r.shape == (40, 12) and (r >= 0).all() and (r <= 1).all()
    s = vae.sample(9)
    assert s.shape == (9, 12)
    assert set(vae.sample(9, mean=False).unique().tolist()) <= {0.0, 1.0}


def test_empty_hidden_list_is_affine():
    vae = VAE(5, latent_dim=2, encoder=[], likelihood="gaussian")
    assert len(vae.encoder) == 1 and isinstance(vae.encoder[0], torch.nn.Linear)
    assert len(vae.decoder) == 1 and isinstance(vae.decoder[0], torch.nn.Linear)


def test_parameter_split_theta_phi(vae):
    theta = {id(p) for p in vae.model_parameters()}
    phi = {id(p) for p in vae.guide_parameters()}
    assert theta and phi and not theta & phi
    assert theta | phi == {id(p) for p in vae.parameters()}
    assert {id(p) for p in vae.decoder.parameters()} <= theta


def test_spec_round_trip_rebuilds_same_structure(vae):
    again = VAE.from_spec(vae.spec)
    assert again.spec == vae.spec
    a, b = vae.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
