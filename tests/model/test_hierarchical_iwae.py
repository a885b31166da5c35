"""The importance-weighted objectives (``renyi_elbo``; α = 0 is the IWAE bound) on the
hierarchical kind, through the capability its estimator declares
(``KindEstimator.particle_weights``): the fast estimator equals Pyro's ``RenyiELBO``
(vectorised particles) on the same draws, value and gradients; equals a hand-written
log-mean-exp of log p(x, z_1, z_2) − log q(z_1, z_2 | x) with the minibatch scale N/B
outside it; both engines train with it; M2 (no such capability) is refused naming the
key."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.kinds import KIND_ESTIMATORS, kind_estimator
from pyrovae.model.hierarchical import HierarchicalVAE
from pyrovae.model.m2 import SemiSupervisedVAE
from pyrovae.runs.spec import normalize_spec
from pyrovae.training.engines import PyroEngine, make_engine
from pyrovae.training.objectives import RenyiObjective
from pyrovae.training.trainer import fit


def make(dims=(3, 2), seed: int = 0) -> HierarchicalVAE:
    torch.manual_seed(seed)
    return HierarchicalVAE(10, list(dims), encoder=[12], layer_hidden=[8])


def data(n: int = 7, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 10, generator=g) > 0.5).float()


@pytest.mark.parametrize("dims", [(3, 2), (4, 3, 2)], ids=["two", "three"])
@pytest.mark.parametrize("alpha, k, beta", [(0.0, 5, 1.0), (0.0, 1, 1.0), (0.5, 4, 0.7),
                                            (-1.0, 3, 1.0)])
def test_fast_iwae_equals_pyro_renyi_elbo_on_the_same_draws(dims, alpha, k, beta):
    m, x = make(dims), data()
    params = list(m.parameters())
    objective = RenyiObjective(num_particles=k, alpha=alpha)
    torch.manual_seed(1)
    out = objective.loss_fn(m)(m, x, None, x.shape[0], beta)  # full batch: N = B
    g_fast = torch.autograd.grad(out.loss, params)
    pyro.clear_param_store()
    for p in params:
        p.grad = None
    torch.manual_seed(1)
    stock = objective.kind_elbo(m)
    assert isinstance(stock, pyro.infer.RenyiELBO) and stock.vectorize_particles
    value = stock.loss_and_grads(m.model, m.guide, x, num_data=x.shape[0], kl_weight=beta)
    assert float(out.loss.detach()) == pytest.approx(value, rel=1e-5)
    for a, p in zip(g_fast, params, strict=True):
        assert p.grad is not None
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-5)
    assert set(out.terms) == {"reconstruction", "kl"}


def _hand_iwae(m: HierarchicalVAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """log (1/K) Σ_k p(x, z1_k, z2_k) / q(z1_k, z2_k | x) per row, written out."""
    q1 = m.encode(x)
    z1 = q1.rsample((k,))
    q2 = m.layer_guide(1, z1)
    z2 = q2.rsample()
    log_p = (m.prior_dist().log_prob(z2) + m.layer_prior(1, z2).log_prob(z1)
             + m.decode(z1, x).log_prob(x))
    log_q = q1.log_prob(z1) + q2.log_prob(z2)
    return torch.logsumexp(log_p - log_q, 0) - math.log(k)


def test_fast_iwae_is_the_log_mean_exp_of_the_joint_weights_scaled_outside():
    m, x = make(), data()
    params = list(m.parameters())
    torch.manual_seed(3)
    out = RenyiObjective(num_particles=6).loss_fn(m)(m, x, None, 70, 1.0)
    g_fast = torch.autograd.grad(out.loss, params)
    torch.manual_seed(3)
    hand = -_hand_iwae(m, x, 6).sum() * 70 / 7  # a minibatch of 7 out of 70
    g_hand = torch.autograd.grad(hand, params)
    assert float(out.loss.detach()) == pytest.approx(float(hand.detach()), rel=1e-5)
    for a, b in zip(g_fast, g_hand, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_iwae_bound_is_tighter_than_the_elbo_and_grows_with_k():
    m, x = make(seed=2), data(200)
    torch.manual_seed(0)
    with torch.no_grad():
        bound = {k: -float(RenyiObjective(num_particles=k).loss_fn(m)(m, x, None, 200, 1.0)
                          .loss) / 200 for k in (1, 50)}
    elbo_loss = RenyiObjective(num_particles=1).loss_fn(m)(m, x, None, 200, 1.0)
    # K = 1 is the ELBO (Monte Carlo); K = 50 is above it by far more than the noise
    assert float(elbo_loss.terms["reconstruction"] - elbo_loss.terms["kl"]) / 200 \
        == pytest.approx(bound[1], abs=0.5)
    assert bound[50] > bound[1] + 0.5


def test_the_capability_is_declared_by_the_estimator_not_the_kind_name():
    assert KIND_ESTIMATORS["hierarchical"].particle_weights is not None
    assert KIND_ESTIMATORS["enumerated"].particle_weights is None
    assert RenyiObjective.trains_kind(kind_estimator(make()))
    spec = normalize_spec({"model": "hierarchical",
                           "objective": {"family": "renyi_elbo", "num_particles": 5}})
    assert spec["objective"]["family"] == "renyi_elbo"


def test_m2_refuses_the_renyi_bound_naming_the_key():
    with pytest.raises(PyrovaeError, match=r"^objective: 'renyi_elbo' cannot train a model "
                                           r"whose label is a latent \(model: m2\)"):
        normalize_spec({"model": "m2", "objective": "renyi_elbo"})
    m2 = SemiSupervisedVAE(10, 2, classes=3, encoder=[8])
    with pytest.raises(PyrovaeError, match=r"objective: 'renyi_elbo' cannot train .*model: m2"):
        RenyiObjective().loss_fn(m2)
    with pytest.raises(PyrovaeError, match=r"objective: 'renyi_elbo' cannot train .*model: m2"):
        make_engine("pyro", m2, RenyiObjective(), 1e-3)


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_both_engines_train_the_two_layer_iwae(engine):
    m, x = make(), data(24)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    eng = make_engine(engine, m, RenyiObjective(num_particles=3), 1e-2, sample=x[:4])
    assert isinstance(eng, PyroEngine) == (engine == "pyro")
    h = fit(m, x, epochs=2, batch_size=8, engine=engine, progress=False, lr=1e-2,
            objective=RenyiObjective(num_particles=3))
    assert len(h["train_kl"]) == 2 and all(math.isfinite(v) for v in h["train_kl"])
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_the_gap_split_frees_q_z1_per_point_and_converges():
    from pyrovae.posterior.amortization import amortization_gap, gap_split

    m, x = make(seed=4), data(5)
    fit(m, data(64, seed=9), epochs=3, batch_size=16, progress=False, lr=1e-2)
    r = amortization_gap(m, x, steps=200, num_particles=256, num_samples=4000, tol=2e-3)
    assert r["converged"] and r["iterations"] > 4
    assert r["local_family"].startswith("q(z1|x) per point")
    # q* starts at the amortised q(z1|x) and is optimised: its ELBO is not below it
    assert bool((r["elbo_optimized"] >= r["elbo_amortized"] - 3 * r["amortization_gap_stderr"])
                .all())
    # log p(x) (IWAE from q*) is above the ELBO of q*: both gaps ≥ 0 up to noise
    assert bool((r["approximation_gap"] > -3 * r["approximation_gap_stderr"]).all())
    assert torch.allclose(r["approximation_gap"] + r["amortization_gap"], r["inference_gap"])
    # gap_split routes the kind here (not to a per-point Gaussian over all sites)
    assert "q(z1|x)" in gap_split(m, x, steps=20, num_samples=200)["local_family"]
