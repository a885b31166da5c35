"""The two-layer linear-Gaussian toy: closed forms against independent routes, the
identity, AIS/IWAE and the θ-fixed experiment reaching the mean-field floor."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.experiments.theta_fixed import theta_fixed_local
from pyrovae.posterior import as_target, check_identity, iwae
from pyrovae.posterior.ais import ais
from pyrovae.toy import HierarchicalGaussian, get_toy


class _DistGuide:
    """A guide given by a distribution per data point (``dist(x)``)."""

    def __init__(self, fn):
        self.dist = fn


@pytest.fixture(scope="module")
def toy():
    return HierarchicalGaussian.example(data_dim=12, k1=5, k2=3, seed=1)


def test_the_model_has_two_latent_sites_in_the_flat_order(toy):
    x = toy.sample(4, seed=0)
    t = as_target(toy.model, None, example=x)
    assert list(t.sites) == ["z2", "z1"] and t.latent_dim == 8
    z = torch.randn(3, 4, 8, dtype=torch.float64)
    # the trace of the two-site Pyro model agrees with the toy's own flat densities
    assert torch.allclose(t.log_joint(x, z), toy.log_joint(x, z))


def test_posterior_and_marginal_agree_with_the_joint(toy):
    # with the exact posterior as proposal every weight equals p(x): log w is constant
    x = toy.sample(5, seed=2)
    post = toy.posterior(x)
    z = post.sample((50,))
    lw = toy.log_joint(x, z) - post.log_prob(z)
    assert torch.allclose(lw, toy.log_marginal(x).expand_as(lw), atol=1e-8)
    # (log p(x, z) − log p(z|x) constant in z pins down both the posterior and p(x))


def test_the_floor_is_positive_and_reached_by_the_optimal_meanfield(toy):
    x = toy.sample(3, seed=3)
    from pyrovae.posterior.exact import gaussian_kl

    kl = gaussian_kl(toy.optimal_meanfield(x), toy.posterior(x))
    assert toy.meanfield_floor() > 0.05
    assert torch.allclose(kl, torch.full_like(kl, toy.meanfield_floor()), atol=1e-8)


def test_identity_iwae_and_ais_against_the_closed_form(toy):
    x = toy.sample(12, seed=4)
    exact = toy.log_marginal(x)
    target = as_target(toy, _DistGuide(toy.optimal_meanfield))
    r = check_identity(target, x, num_samples=4000)
    assert bool(r["ok"].all()), (r["residual"], r["allowed"])
    assert torch.allclose(r["kl"].double(), torch.full((12,), toy.meanfield_floor(),
                                                     dtype=torch.float64), atol=1e-6)
    w = iwae(target, x, num_samples=2000)
    assert bool((w.value <= exact + 4 * w.stderr + 1e-9).all())
    a = ais(target, x, num_steps=300, num_chains=32, seed=0)
    err = a.log_px.double() - exact
    assert abs(float(err.mean())) < 0.05, err
    assert bool((err.abs() < 4 * a.stderr + 0.05).all()), (err, a.stderr)


def test_theta_fixed_reaches_the_meanfield_floor(toy):
    x = toy.sample(16, seed=5)
    res = theta_fixed_local(toy, x, steps=400, lr=0.05, record_every=50)
    assert res.kl[0] > res.kl[-1] + 1.0  # the KL falls
    assert res.floor is not None and res.floor > 0.05
    assert abs(res.final_kl_above_floor) < 0.05, (res.final_kl, res.floor)
    # log p(x) is flat and the identity closes at every record
    assert len(set(res.log_px)) == 1
    assert abs(res.final_residual) < 0.05


def test_the_registered_toy_is_2d_and_bad_shapes_are_refused():
    t = get_toy("hierarchical")
    assert t.latent_dim == 2 and t.exact_posterior
    with pytest.raises(PyrovaeError, match="A must be"):
        HierarchicalGaussian(torch.ones(2, 1), torch.zeros(2), torch.ones(2),
                             torch.ones(4, 3), torch.zeros(4))


def test_a_user_guide_over_the_two_sites_is_checked(toy):
    x = toy.sample(6, seed=6)
    q = toy.optimal_meanfield(x)

    def guide(x):
        loc, scale = q.base_dist.loc, q.base_dist.scale
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z2", dist.Normal(loc[:, :3], scale[:, :3]).to_event(1))
            pyro.sample("z1", dist.Normal(loc[:, 3:], scale[:, 3:]).to_event(1))

    generic = as_target(toy.model, guide, example=x)
    z, lq = generic.sample_guide(x, 20)
    assert torch.allclose(lq, q.log_prob(z))
    assert torch.allclose(generic.log_joint(x, z), toy.log_joint(x, z))
