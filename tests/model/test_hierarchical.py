"""The hierarchical VAE (model kind ``hierarchical``): its Pyro pair, the fast estimator
that must equal Pyro's Trace_ELBO on the same draws (value and gradients), the spec,
evaluate's importance weights over all sites, and the checks through its Pyro pair."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.evaluate import evaluate
from pyrovae.estimators.hierarchical import layer_log_weights, layer_minibatch_loss
from pyrovae.model.hierarchical import HierarchicalVAE
from pyrovae.model.vae import VAE
from pyrovae.posterior import as_target
from pyrovae.posterior.target import PyroTarget
from pyrovae.runs.spec import normalize_spec
from pyrovae.training.trainer import fit


def make(dims=(3, 2), seed: int = 0, **kw) -> HierarchicalVAE:
    torch.manual_seed(seed)
    return HierarchicalVAE(10, list(dims), encoder=[12], layer_hidden=[8], **kw)


def data(n: int = 7, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 10, generator=g) > 0.5).float()


@pytest.mark.parametrize("dims", [(3, 2), (4, 3, 2)], ids=["two", "three"])
@pytest.mark.parametrize("beta", [0.7, 0.0])
def test_fast_loss_equals_trace_elbo_on_the_same_draws(dims, beta):
    m, x = make(dims), data()
    params = list(m.parameters())
    torch.manual_seed(1)
    out = layer_minibatch_loss(m, x, None, 20, beta)
    g_fast = torch.autograd.grad(out.loss, params, allow_unused=True)
    torch.manual_seed(1)
    stock = m.stock_elbo(1).differentiable_loss(m.model, m.guide, x, num_data=20,
                                                 kl_weight=beta)
    g_stock = torch.autograd.grad(stock, params, allow_unused=True)
    assert torch.allclose(out.loss, stock, rtol=1e-5)
    for a, b in zip(g_fast, g_stock, strict=True):
        if a is None or b is None:  # β = 0: the latent sites are masked in both
            assert (a is None and b is None) or float((a if a is not None else b).abs().sum()) == 0
        else:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    names = [f"z{i + 1}" for i in range(len(dims))]
    assert set(out.terms) == {"reconstruction", "kl", *(f"kl/{n}" for n in names)}
    assert torch.allclose(out.terms["kl"], sum(out.terms[f"kl/{n}"] for n in names))
    if beta:  # at β ≠ 0 the loss is −(N/B)(R − β KL)
        want = -(out.terms["reconstruction"] - beta * out.terms["kl"]) * 20 / 7
        assert torch.allclose(out.loss.detach(), want, rtol=1e-5)


def test_pair_sites_are_bottom_up_in_the_guide_and_top_down_in_the_model():
    m, x = make((3, 2)), data()
    g = poutine.trace(m.guide).get_trace(x)
    tr = poutine.trace(poutine.replay(m.model, trace=g)).get_trace(x)
    sample = [k for k, s in g.nodes.items() if s["type"] == "sample"]
    assert sample == ["data", "z1", "z2"]
    assert [k for k, s in tr.nodes.items() if s["type"] == "sample"] == ["data", "z2", "z1", "x"]
    assert g.nodes["z1"]["value"].shape == (7, 3) and g.nodes["z2"]["value"].shape == (7, 2)
    assert m.latent_dim == 5 and m.latent_dims == (3, 2)
    assert m.sample(4).shape == (4, 10) and m.reconstruct(x).shape == (7, 10)


def test_spec_derives_latent_dim_and_round_trips():
    spec = normalize_spec({"model": {"family": "hierarchical", "latent_dims": [4, 2]},
                           "data_dim": 10, "latent_dim": 9, "encoder": {"hidden": [8]}})
    assert spec["latent_dim"] == 6  # the sum of the layers, whatever was given
    m = VAE.from_spec(spec)
    assert isinstance(m, HierarchicalVAE) and m.latent_dims == (4, 2)
    again = VAE.from_spec(m.spec)
    assert again.spec == m.spec
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()}


@pytest.mark.parametrize("raw, match", [
    ({"model": {"family": "hierarchical", "latent_dims": [3]}}, r"latent_dims: expected at "
                                                                r"least 2 layers"),
    ({"model": {"family": "hierarchical", "latent_dims": [3, 0]}}, "model.latent_dims"),
    ({"model": "hierarchical", "context": {"family": "vector", "dim": 2}}, "context: model: "
                                                                           "hierarchical"),
    ({"model": "hierarchical", "prior": "vamp"}, "vamp"),
    ({"model": "hierarchical", "objective": "tracegraph_elbo"},
     "^objective: 'tracegraph_elbo' cannot train a model with several"),
    ({"model": "hierarchical", "objective": {"family": "trace_elbo", "free_bits": 0.5},
      "train": {"engine": "pyro"}}, "free_bits: needs train.engine: fast"),
    ({"model": "hierarchical", "objective": {"family": "trace_elbo", "free_bits": 0.5},
      "guide": "full_covariance"}, "free_bits: needs a guide and a prior that factorise"),
    ({"model": "hierarchical", "objective": {"family": "trace_elbo", "kl": "analytic"}},
     "kl: 'analytic' is not available"),
])
def test_bad_specs_are_refused_naming_the_key(raw, match):
    with pytest.raises(PyrovaeError, match=match):
        normalize_spec(raw)


def test_a_context_is_refused_at_call_time():
    m, x = make(), data()
    with pytest.raises(PyrovaeError, match="unconditional"):
        m.model(x, torch.zeros(7))
    with pytest.raises(PyrovaeError, match="unconditional"):
        layer_minibatch_loss(m, x, torch.zeros(7), 7, 1.0)


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_fit_records_the_kl_of_each_site(engine):
    m, x = make(), data(24)
    h = fit(m, x, epochs=3, batch_size=8, engine=engine, progress=False, lr=1e-2)
    for key in ("train_kl/z1", "train_kl/z2"):  # Monte Carlo per site: any sign per batch
        assert len(h[key]) == 3 and all(torch.isfinite(torch.tensor(h[key])))
    for kl, a, b in zip(h["train_kl"], h["train_kl/z1"], h["train_kl/z2"], strict=True):
        assert kl == pytest.approx(a + b, rel=1e-5)


def test_evaluate_weights_all_sites_jointly():
    """evaluate's IWAE equals the IWAE of the traced Pyro pair (another implementation),
    ELBO ≤ IWAE, and its importance weights are log p(x, z1, z2) − log q(z1, z2 | x)."""
    from pyrovae.posterior import iwae

    m, x = make(), data(5)
    m.eval()
    r = evaluate(m, x, num_samples=4000, seed=0)
    target = as_target(m)
    with torch.no_grad():
        torch.manual_seed(0)
        other = iwae(target, x, num_samples=4000)
        torch.manual_seed(3)
        lw, rec, kl = layer_log_weights(m, x, 3)
        torch.manual_seed(3)
        z, log_q = target.sample_guide(x, 3)
        lw_traced = target.log_joint(x, z) - log_q
    ll = torch.tensor(r["per_example"]["log_likelihood"], dtype=torch.float64)
    se = torch.tensor(r["per_example"]["log_likelihood_mc_se"], dtype=torch.float64)
    assert ((ll - other.value).abs() <= 4 * (se**2 + other.stderr**2).sqrt() + 0.01).all()
    assert r["elbo"] < r["log_likelihood"]
    assert torch.allclose(lw, lw_traced.float(), atol=1e-4)
    assert torch.allclose(rec - kl, lw.mean(0), atol=1e-4)


def test_checks_see_both_sites_and_ais_matches_the_grid():
    """A tiny model with z1, z2 of one dimension each: log p(x) by grid quadrature over
    (z2, z1) through the traced pair; AIS and IWAE agree with it; collapse reports per site."""
    from pyrovae.posterior import iwae, log_marginal
    from pyrovae.posterior.ais import ais
    from pyrovae.posterior.collapse import collapse_diagnostics

    m, x = make((1, 1), seed=2), data(4)
    m.eval()
    t = as_target(m)
    assert isinstance(t, PyroTarget) and list(t.sites) == ["z2", "z1"] and t.latent_dim == 2
    with torch.no_grad():
        exact = log_marginal(t, x, method="grid")
        iw = iwae(t, x, num_samples=4000)
    a = ais(m, x, num_steps=100, num_chains=16, seed=0)
    assert ((a.log_px - exact.value).abs() <= 4 * a.stderr + 0.02).all()
    assert ((iw.value - exact.value).abs() <= 4 * iw.stderr + 0.02).all()
    assert (a.log_px - exact.value).abs().mean() < 0.05
    c = collapse_diagnostics(m, x, num_samples=50)
    assert set(c["active_units_per_site"]) == {"z1", "z2"}
    assert set(c["kl_per_site"]) == {"z1", "z2"}


def test_stock_svi_trains_it():
    m, x = make(), data(20)
    pyro.clear_param_store()
    svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), m.stock_elbo())
    losses = [svi.step(x) for _ in range(40)]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_free_bits_floor_every_dimension_of_every_site():
    """λ above every dimension's KL: the loss is −(N/B)·R + β·N·λ·Σ dims and the KL
    sends no gradient; λ small: the floored loss is never below the plain one (same draws)."""
    from pyrovae.training.objectives import TraceELBOObjective

    m, x = make((3, 2)), data()
    torch.manual_seed(1)
    big = layer_minibatch_loss(m, x, None, 20, 0.5, free_bits=50.0)
    g_big = torch.autograd.grad(big.loss, list(m.encoder.parameters()))
    want = -big.terms["reconstruction"] * 20 / 7 + 0.5 * 20 * 50.0 * 5
    assert torch.allclose(big.loss.detach(), want, rtol=1e-5)
    torch.manual_seed(1)
    rec_only = layer_minibatch_loss(m, x, None, 20, 0.0)  # β = 0: reconstruction only
    g_rec = torch.autograd.grad(rec_only.loss, list(m.encoder.parameters()))
    for a, b in zip(g_big, g_rec, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    torch.manual_seed(1)
    small = layer_minibatch_loss(m, x, None, 20, 0.5, free_bits=1e-3)
    torch.manual_seed(1)
    plain = layer_minibatch_loss(m, x, None, 20, 0.5)
    assert float(small.loss.detach()) >= float(plain.loss.detach()) - 1e-4
    assert torch.equal(small.terms["kl/z2"], plain.terms["kl/z2"])  # recorded: plain MC KL
    fn = TraceELBOObjective(free_bits=0.5).loss_fn(m)
    h = fit(m, data(24), epochs=2, batch_size=8, objective=TraceELBOObjective(free_bits=0.5),
            progress=False)
    assert fn is not None and {"train_kl/z1", "train_kl/z2"} <= set(h)
    with pytest.raises(PyrovaeError, match=r"free_bits: needs train\.engine: fast"):
        fit(m, data(24), epochs=1, batch_size=8, engine="pyro",
            objective=TraceELBOObjective(free_bits=0.5), progress=False)


def test_activity_from_draws_is_not_inflated_by_monte_carlo_noise():
    """A traced pair whose guide ignores x (every unit collapsed, Var_q = 1): with S = 16
    draws the raw variance of the Monte Carlo means is ≈ 1/16 > the 0.01 threshold; the
    corrected activity reads no active unit, and a guide whose mean moves with x keeps
    its units active."""
    import pyro.distributions as dist

    from pyrovae.posterior.collapse import collapse_diagnostics

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("a", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def collapsed(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))

    def informed(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(x.expand(-1, 2) / 2, 0.7).to_event(1))

    x = torch.randn(400, 1, generator=torch.Generator().manual_seed(0)) * 1.5
    torch.manual_seed(0)
    c = collapse_diagnostics(as_target(model, collapsed, example=x), x, num_samples=16)
    assert c["active_units"] == 0 and max(c["activity"]) < 0.01
    torch.manual_seed(0)
    c = collapse_diagnostics(as_target(model, informed, example=x), x, num_samples=16)
    assert c["active_units"] == 2 and min(c["activity"]) > 0.3


@pytest.mark.parametrize("objective", [
    {"family": "trace_elbo"}, {"family": "trace_elbo", "num_particles": 2},
    {"family": "trace_elbo", "free_bits": 0.3},
    {"family": "renyi_elbo", "num_particles": 3},
    {"family": "renyi_elbo", "num_particles": 2, "alpha": 0.5},
], ids=["elbo", "elbo-K2", "free-bits", "iwae-K3", "renyi-half"])
@pytest.mark.parametrize("batch,world", [(7, 2), (2, 3)])
def test_distributed_shares_add_up_to_the_single_process_loss(objective, batch, world):
    """Data-parallel training of the hierarchical kind: the ranks' shares (each given
    only its rows; every layer drawn for the whole global batch) add up to the
    single-process loss, value and gradients, on the same draws (empty shards too)."""
    from pyrovae.registry import OBJECTIVES
    from pyrovae.training.distributed import check_supported
    from tests.training.test_distributed import param_grads, rank_shares

    m, x = make(), data(batch)
    obj = OBJECTIVES.build(objective, "objective")
    check_supported(m, obj, x[:2])  # accepted
    torch.manual_seed(1)
    ref = obj.differentiable_loss(m, x, num_data=20, kl_weight=0.7)
    ref_grads = param_grads(m, ref)
    total, total_grads, _ = rank_shares(m, obj, x, world, 20, 0.7)
    assert total == pytest.approx(float(ref.detach()), rel=1e-5)
    for g, r in zip(total_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
