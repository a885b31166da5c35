"""The mixture of pPCAs: its closed forms against brute force, its Pyro pair, bad input."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.errors import PyrovaeError
from pyrovae.toy import MixturePPCA, get_toy


@pytest.fixture(scope="module")
def toy() -> MixturePPCA:
    return MixturePPCA.example()


def test_the_log_marginal_matches_brute_force_over_z(toy):
    _, _, x = toy.simulate(5, seed=3)
    torch.manual_seed(0)
    z = torch.randn(400_000, 5, 2, dtype=torch.float64)
    # p(x) = E_p(z)[Σ_y π_y p(x|y,z)], log_joint sums the class out
    lw = toy.log_joint(x, z) - toy.prior().log_prob(z)
    mc = torch.logsumexp(lw, 0) - math.log(z.shape[0])
    assert torch.allclose(mc, toy.log_marginal(x), atol=0.03)


def test_class_posterior_and_conditional_posterior_are_the_ppca_ones(toy):
    _, _, x = toy.simulate(6, seed=4)
    post = toy.log_class_posterior(x).exp()
    assert torch.allclose(post.sum(0), torch.ones(6, dtype=torch.float64))
    assert float(post.max(0).values.min()) < 0.999  # the classes overlap: not one-hot
    for c in range(toy.num_classes):
        ppca = toy.class_toy(c)
        assert torch.allclose(toy.class_log_likelihoods(x)[c], ppca.log_marginal(x))
        exact, ours = ppca.posterior(x), toy.conditional_posterior(x, c)
        assert torch.allclose(ours.mean, exact.mean)
        assert torch.allclose(ours.covariance_matrix, exact.covariance_matrix)
    # an enumerated y (K, 1) broadcasts against the N points
    q = toy.conditional_posterior(x, torch.arange(toy.num_classes).unsqueeze(-1))
    assert q.batch_shape == (toy.num_classes, 6)
    assert torch.allclose(q.mean[1], toy.class_toy(1).posterior(x).mean)


def test_simulate_draws_the_classes_with_their_weights(toy):
    y, z, x = toy.simulate(20_000, seed=5)
    assert y.shape == (20_000,) and z.shape == (20_000, 2) and x.shape == (20_000, 4)
    freq = torch.bincount(y, minlength=toy.num_classes).double() / 20_000
    assert torch.allclose(freq, toy.pi, atol=0.015)
    assert torch.equal(toy.simulate(7, seed=1)[2], toy.sample(7, seed=1))
    assert not torch.equal(toy.sample(7, seed=1), toy.sample(7, seed=2))


def test_the_pyro_pair_traces_with_the_class_enumerated(toy):
    _, _, x = toy.simulate(5, seed=6)
    guide = pyro.infer.config_enumerate(toy.guide())
    tr = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(x)
    assert tr.nodes["y"]["value"].shape == (toy.num_classes, 1)
    assert tr.nodes["z"]["value"].shape == (toy.num_classes, 5, 2)
    mt = poutine.trace(poutine.replay(toy.model, trace=tr)).get_trace(x)
    assert mt.nodes["x"]["fn"].batch_shape == (toy.num_classes, 5)
    assert tr.nodes["y"]["infer"]["enumerate"] == "parallel"


def test_the_registry_and_the_guide_variants(toy):
    t = get_toy("mixture")
    assert isinstance(t, MixturePPCA) and t.discrete_site == "y" and t.num_classes == 3
    x = toy.sample(4)
    exact = toy.guide().log_class_probs(x)
    assert torch.allclose(exact, toy.log_class_posterior(x))
    flat = toy.guide("flat_class").log_class_probs(x).exp()
    assert float(flat.max(0).values.max()) < float(exact.exp().max(0).values.max())
    wide = toy.guide("wide_z").z_dist(x, 0)
    assert torch.allclose(wide.scale_tril, 1.6 * toy.conditional_posterior(x, 0).scale_tril)


@pytest.mark.parametrize("make", [
    lambda: MixturePPCA(torch.tensor([0.5, 0.6]), torch.zeros(2, 3, 1), torch.zeros(2, 3)),
    lambda: MixturePPCA(torch.tensor([1.0]), torch.zeros(1, 3, 1), torch.zeros(1, 3)),
    lambda: MixturePPCA(torch.tensor([0.5, 0.5]), torch.zeros(2, 3), torch.zeros(2, 3)),
    lambda: MixturePPCA(torch.tensor([0.5, 0.5]), torch.zeros(2, 3, 1), torch.zeros(2, 3),
                        sigma=0.0),
    lambda: MixturePPCA.example().guide("wrong"),
    lambda: MixturePPCA.example().class_toy(3),
    lambda: MixturePPCA.example().posterior(torch.zeros(1, 4)),
])
def test_bad_parameters_are_refused_in_one_line(make):
    with pytest.raises(PyrovaeError) as e:
        make()
    assert "\n" not in str(e.value)
