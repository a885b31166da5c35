"""Objectives and KL-weight schedules: the fast estimators equal stock Pyro's (value and
gradients, same draws), β weights exactly the KL term, free bits, IWAE, schedules."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch.distributions import kl_divergence

from pyrovae import OBJECTIVES, SCHEDULES, VAE, PyrovaeError, normalize_spec
from pyrovae.training.engines import make_engine

N_DATA, BATCH, BETA = 50, 8, 0.3

COMBOS = [
    ("normal", "diagonal_normal", "bernoulli"),  # closed-form KL
    ({"family": "laplace", "scale": 0.5}, "diagonal_normal", "bernoulli"),
    ("student_t", "diagonal_normal", "bernoulli"),  # no closed form
    ({"family": "mixture", "components": 3}, "full_covariance", "bernoulli"),
    ({"family": "vamp", "components": 3}, {"family": "flow", "context_dim": 2}, "bernoulli"),
    ("normal_learned", "diagonal_normal", {"family": "gaussian", "sigma": "calibrated"}),
]


def build(prior="normal", guide="diagonal_normal", likelihood="bernoulli", seed=0):
    torch.manual_seed(seed)
    return VAE.from_spec(
        {"data_dim": 5, "latent_dim": 2, "encoder": {"hidden": [8]}, "prior": prior,
         "guide": guide, "likelihood": likelihood}
    )


def batch(n=BATCH, seed=1):
    return (torch.rand(n, 5, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def loss_and_grads(vae, fn):
    vae.zero_grad()
    torch.manual_seed(123)
    loss = fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(a, b):
    (la, ga), (lb, gb) = a, b
    assert torch.allclose(la, lb, rtol=1e-5, atol=1e-4), (la, lb)
    assert ga.keys() == gb.keys() and len(ga) > 0
    for name in ga:
        assert torch.allclose(ga[name], gb[name], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize(
    ("name", "pyro_elbo"),
    [
        ("trace_elbo", pyro.infer.TraceMeanField_ELBO),  # default: closed-form KL where known
        ({"family": "trace_elbo", "kl": "mc"}, pyro.infer.Trace_ELBO),
        ("trace_elbo_mc", pyro.infer.Trace_ELBO),
        ("trace_meanfield_elbo", pyro.infer.TraceMeanField_ELBO),
    ],
    ids=["trace_elbo", "trace_elbo-kl-mc", "trace_elbo_mc", "trace_meanfield_elbo"],
)
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: str(c[0])[:20] + "/" + str(c[1])[:20])
def test_fast_loss_equals_stock_pyro_value_and_gradients(name, pyro_elbo, combo):
    vae = build(*combo)
    x = batch()
    objective = OBJECTIVES.build(name)
    assert isinstance(objective.elbo(), pyro_elbo)
    stock = loss_and_grads(
        vae,
        lambda: pyro_elbo().differentiable_loss(
            vae.model, vae.guide, x, num_data=N_DATA, kl_weight=BETA
        ),
    )
    fast = loss_and_grads(vae, lambda: objective.differentiable_loss(
            vae, x, num_data=N_DATA, kl_weight=BETA))
    assert_same(stock, fast)


def test_beta_weighted_objective_is_reconstruction_plus_beta_kl():
    """Trace_ELBO with kl_weight=β is −(N/B)·Σ[log p(x|z) + β(log p(z) − log q(z|x))]."""
    vae = build()
    x = batch()
    torch.manual_seed(7)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(
        vae.model, vae.guide, x, num_data=N_DATA, kl_weight=BETA
    )
    torch.manual_seed(7)
    q = vae.encode(x)
    z = q.rsample()
    rec = vae.decode(z, x).log_prob(x).sum()
    kl_mc = (q.log_prob(z) - vae.prior_dist().log_prob(z)).sum()
    assert loss.item() == pytest.approx((-(rec - BETA * kl_mc) * N_DATA / BATCH).item(), rel=1e-5)
    # and with the closed-form KL (TraceMeanField): reconstruction + β·KL(q ‖ p)
    torch.manual_seed(7)
    loss_mf = pyro.infer.TraceMeanField_ELBO().differentiable_loss(
        vae.model, vae.guide, x, num_data=N_DATA, kl_weight=BETA
    )
    kl_cf = kl_divergence(q, vae.prior_dist().expand((BATCH,))).sum()
    want = -(rec - BETA * kl_cf) * N_DATA / BATCH
    assert loss_mf.item() == pytest.approx(want.item(), rel=1e-5)
    # β = 0 leaves only the reconstruction term
    torch.manual_seed(7)
    loss0 = pyro.infer.Trace_ELBO().differentiable_loss(
        vae.model, vae.guide, x, num_data=N_DATA, kl_weight=0.0
    )
    assert loss0.item() == pytest.approx((-rec * N_DATA / BATCH).item(), rel=1e-5)


# ------------------------------------------------------------------ Rényi / IWAE
def test_renyi_fast_loss_equals_pyro_renyi_on_full_batches():
    vae = build()
    x = batch()
    objective = OBJECTIVES.build({"family": "renyi_elbo", "alpha": 0.0, "num_particles": 4})
    elbo = objective.elbo()
    assert isinstance(elbo, pyro.infer.RenyiELBO) and elbo.num_particles == 4

    pyro.clear_param_store()
    vae.zero_grad()
    torch.manual_seed(123)
    stock_value = elbo.loss_and_grads(vae.model, vae.guide, x, num_data=BATCH, kl_weight=BETA)
    stock_grads = {n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None}
    fast = loss_and_grads(vae, lambda: objective.differentiable_loss(
            vae, x, num_data=BATCH, kl_weight=BETA))
    assert_same((torch.tensor(stock_value), stock_grads), fast)


def test_iwae_with_one_particle_is_the_elbo_and_tightens_with_more():
    vae = build()
    x = batch()
    iwae1 = OBJECTIVES.build({"family": "renyi_elbo", "num_particles": 1})
    torch.manual_seed(5)
    a = iwae1.differentiable_loss(vae, x, num_data=N_DATA, kl_weight=1.0)
    torch.manual_seed(5)
    b = OBJECTIVES.build("trace_elbo_mc").differentiable_loss(
            vae, x, num_data=N_DATA, kl_weight=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    # on average over draws, the K=50 bound is tighter (smaller loss) than the ELBO
    with torch.no_grad():
        torch.manual_seed(0)
        elbo = torch.stack([b.new_tensor(OBJECTIVES.build("trace_elbo").differentiable_loss(
                vae, x, num_data=N_DATA, kl_weight=1.0).item()) for _ in range(50)]).mean()
        iwae = OBJECTIVES.build({"family": "renyi_elbo", "num_particles": 50}).differentiable_loss(
                vae, x, num_data=N_DATA, kl_weight=1.0)
    assert iwae < elbo


def test_renyi_minibatch_scaling_is_outside_the_logsumexp():
    """fast: (N/B)·Σ_i IWAE_i, i.e. the full-batch value times N/B on the same draws."""
    vae = build()
    x = batch()
    objective = OBJECTIVES.build({"family": "renyi_elbo", "num_particles": 3})
    torch.manual_seed(9)
    full = objective.differentiable_loss(vae, x, num_data=BATCH, kl_weight=1.0)
    torch.manual_seed(9)
    scaled = objective.differentiable_loss(vae, x, num_data=N_DATA, kl_weight=1.0)
    assert scaled.item() == pytest.approx(full.item() * N_DATA / BATCH, rel=1e-6)


def test_renyi_alpha_one_is_refused():
    with pytest.raises(PyrovaeError, match=r"objective\.alpha: expected a number other than 1"):
        normalize_spec({"objective": {"family": "renyi_elbo", "alpha": 1}})


def test_tracegraph_runs_stock_svi_and_equals_trace_elbo_value():
    vae = build()
    x = batch()
    objective = OBJECTIVES.build("tracegraph_elbo")
    assert isinstance(objective.elbo(), pyro.infer.TraceGraph_ELBO)
    assert objective.loss_fn(vae) is None  # no direct form
    engine = make_engine("fast", vae, objective, lr=1e-2)
    assert engine.name == "pyro"  # no direct form: stock SVI
    losses = [engine.step(x, N_DATA, BETA).item() for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    torch.manual_seed(3)
    graph = pyro.infer.TraceGraph_ELBO().loss(vae.model, vae.guide, x, num_data=N_DATA,
                                              kl_weight=BETA)
    torch.manual_seed(3)
    plain = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x, num_data=N_DATA,
                                         kl_weight=BETA)
    assert graph == pytest.approx(plain, rel=1e-5)


@pytest.mark.parametrize(
    "entry",
    ["trace_elbo", "trace_elbo_mc", "trace_meanfield_elbo",
     {"family": "renyi_elbo", "num_particles": 2}, "tracegraph_elbo"],
)
def test_every_objective_trains_with_both_engines(entry):
    x = batch(32)
    for engine_name in ("fast", "pyro"):
        vae = build()
        objective = OBJECTIVES.build(entry)
        engine = make_engine(engine_name, vae, objective, lr=1e-2)
        losses = [engine.step(x, 32, 1.0).item() for _ in range(4)]
        assert all(math.isfinite(v) for v in losses)


def test_every_registered_objective_and_schedule_is_covered_here():
    assert set(OBJECTIVES.names()) == {
        "trace_elbo", "trace_elbo_mc", "trace_meanfield_elbo", "renyi_elbo", "tracegraph_elbo"
    }
    assert set(SCHEDULES.names()) == {"constant", "linear", "cyclical"}


# ------------------------------------------------------------------ free bits
@pytest.mark.parametrize("name", ["trace_elbo_mc", "trace_elbo", "trace_meanfield_elbo"])
def test_free_bits_loss_is_reconstruction_plus_floored_per_dimension_kl(name):
    vae = build()
    x = batch()
    lam = 0.2
    objective = OBJECTIVES.build({"family": name, "free_bits": lam})
    torch.manual_seed(11)
    loss = objective.differentiable_loss(vae, x, num_data=N_DATA, kl_weight=BETA)
    torch.manual_seed(11)
    q = vae.encode(x)
    z = q.rsample()
    rec = vae.decode(z, x).log_prob(x).sum() * N_DATA / BATCH
    p = vae.prior_dist()
    if name != "trace_elbo_mc":
        kl = kl_divergence(q.base_dist, p.base_dist)  # (batch, latent): closed form
    else:
        kl = q.base_dist.log_prob(z) - p.base_dist.log_prob(z)
    per_dim = kl.mean(0)
    want = -(rec - BETA * N_DATA * torch.clamp(per_dim, min=lam).sum())
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_free_bits_above_every_kl_leaves_only_reconstruction_gradients_for_the_encoder():
    vae = build()
    x = batch()
    big = OBJECTIVES.build({"family": "trace_meanfield_elbo", "free_bits": 100.0})
    _, g_fb = loss_and_grads(vae, lambda: big.differentiable_loss(
            vae, x, num_data=N_DATA, kl_weight=1.0))

    def reconstruction_only():
        q = vae.encode(x)
        z = q.rsample()
        return -vae.decode(z, x).log_prob(x).sum() * N_DATA / BATCH

    _, g_rec = loss_and_grads(vae, reconstruction_only)
    for name in g_rec:
        assert torch.allclose(g_fb[name], g_rec[name], atol=1e-5), name
    # whereas without free bits the KL pulls on the encoder
    plain = OBJECTIVES.build("trace_meanfield_elbo")
    _, g_plain = loss_and_grads(vae, lambda: plain.differentiable_loss(
            vae, x, num_data=N_DATA, kl_weight=1.0))
    assert not torch.allclose(g_plain["encoder.2.weight"], g_rec["encoder.2.weight"])


def test_free_bits_is_refused_where_it_cannot_be_honest():
    fb = {"family": "trace_elbo", "free_bits": 0.5}
    with pytest.raises(PyrovaeError, match=r"objective\.free_bits: needs train\.engine: fast"):
        OBJECTIVES.build(fb).elbo()
    with pytest.raises(PyrovaeError, match=r"objective\.free_bits: needs train\.engine: fast"):
        normalize_spec({"objective": fb, "train": {"engine": "pyro"}})
    with pytest.raises(PyrovaeError, match=r"objective\.free_bits: needs .*'full_covariance'"):
        normalize_spec({"objective": fb, "guide": "full_covariance"})
    with pytest.raises(PyrovaeError, match=r"objective\.free_bits: needs .*'mixture'"):
        normalize_spec({"objective": fb, "prior": "mixture"})
    # a model built outside a spec is refused at the first step, by name
    vae = build(prior="mixture")
    with pytest.raises(PyrovaeError, match=r"objective\.free_bits"):
        OBJECTIVES.build(fb).differentiable_loss(vae, batch(), num_data=N_DATA, kl_weight=1.0)
    assert normalize_spec({"objective": fb})["objective"]["free_bits"] == 0.5


def test_free_bits_trains_with_the_fast_engine():
    vae = build()
    engine = make_engine("fast", vae, OBJECTIVES.build(
        {"family": "trace_elbo", "free_bits": 0.5}), lr=1e-2)
    assert engine.name == "fast"
    assert all(math.isfinite(engine.step(batch(32), 32, 1.0).item()) for _ in range(3))


# ------------------------------------------------------------------ schedules
def test_default_objective_uses_the_closed_form_kl_and_mc_stays_available_by_name():
    """Gaussian guide, N(0, I) prior: the default's KL term is torch's kl_divergence
    (zero variance across draws); ``trace_elbo_mc`` and ``kl: mc`` are the Monte Carlo KL."""
    vae = build()
    x = batch()
    q = vae.encode(x)
    exact = kl_divergence(q, vae.prior_dist().expand((BATCH,))).sum().detach()
    default = OBJECTIVES.build("trace_elbo")
    assert default.kl == "auto" and "closed form" in default.describe()
    fn = default.loss_fn(vae)
    kls = [fn(vae, x, None, N_DATA, 1.0) for _ in range(3)]
    for out in kls:
        assert out.kl_closed_form
        assert torch.allclose(out.kl, exact, rtol=1e-5)
    for entry in ("trace_elbo_mc", {"family": "trace_elbo", "kl": "mc"}):
        mc = OBJECTIVES.build(entry)
        assert mc.kl == "mc" and isinstance(mc.elbo(), pyro.infer.Trace_ELBO)
        draws = torch.stack([mc.loss_fn(vae)(vae, x, None, N_DATA, 1.0).kl for _ in range(3)])
        assert not torch.allclose(draws[0], draws[1])  # a Monte Carlo estimate varies
    # the generic (distribution-object) path gives the same closed-form KL
    gen = build(prior={"family": "normal_learned"})
    out = OBJECTIVES.build("trace_elbo").loss_fn(gen)(gen, x, None, N_DATA, 1.0)
    q = gen.encode(x)
    assert out.kl_closed_form
    want = kl_divergence(q, gen.prior_dist().expand((BATCH,))).sum()
    assert torch.allclose(out.kl, want.detach(), rtol=1e-5)


def test_analytic_kl_is_refused_without_a_closed_form():
    vae = build(prior={"family": "student_t"})
    objective = OBJECTIVES.build({"family": "trace_elbo", "kl": "analytic"})
    with pytest.raises(PyrovaeError, match=r"objective\.kl: 'analytic'"):
        make_engine("fast", vae, objective, lr=1e-2, sample=batch())
    auto = OBJECTIVES.build("trace_elbo").loss_fn(vae)(vae, batch(), None, N_DATA, 1.0)
    assert not auto.kl_closed_form  # auto falls back to Monte Carlo


def test_constant_and_linear_schedules():
    assert SCHEDULES.build({"family": "constant", "value": 4.0}).weight(123, 10) == 4.0
    lin = SCHEDULES.build({"family": "linear", "start": 0.1, "end": 1.0, "warmup_epochs": 2})
    spe = 10
    assert lin.weight(0, spe) == pytest.approx(0.1)
    assert lin.weight(10, spe) == pytest.approx(0.55)
    assert lin.weight(20, spe) == pytest.approx(1.0)
    assert lin.weight(1000, spe) == pytest.approx(1.0)
    ws = [lin.weight(t, spe) for t in range(25)]
    assert ws == sorted(ws)


def test_cyclical_schedule_follows_fu_et_al():
    cyc = SCHEDULES.build(
        {"family": "cyclical", "period_epochs": 2, "ratio": 0.5, "cycles": 2, "end": 1.0}
    )
    spe = 10  # a cycle is 20 steps; the ramp is the first 10
    assert cyc.weight(0, spe) == 0.0
    assert cyc.weight(5, spe) == pytest.approx(0.5)
    assert cyc.weight(10, spe) == pytest.approx(1.0)
    assert cyc.weight(19, spe) == pytest.approx(1.0)
    assert cyc.weight(20, spe) == 0.0  # second cycle restarts
    assert cyc.weight(25, spe) == pytest.approx(0.5)
    assert cyc.weight(40, spe) == 1.0 and cyc.weight(75, spe) == 1.0  # after M = 2 cycles
    forever = SCHEDULES.build({"family": "cyclical", "period_epochs": 1, "cycles": None})
    assert forever.weight(1000, 10) == 0.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"family": "cyclical", "ratio": 1.5}, "kl_weight.ratio: expected a number in [0, 1]"),
        ({"family": "linear", "warmup_epochs": 0}, "kl_weight.warmup_epochs: expected a positive"),
        ({"family": "constant", "value": -1}, "kl_weight.value: expected a non-negative number"),
        ({"family": "cyclic"}, "kl_weight.family: unknown kl_weight family 'cyclic'"),
        ({"family": "trace_elbo", "num_particles": 0}, "objective.num_particles: expected a"),
    ],
)
def test_objective_and_schedule_errors_name_the_key(entry, message):
    key = "objective" if entry["family"].startswith("trace") else "kl_weight"
    with pytest.raises(PyrovaeError) as info:
        normalize_spec({key: entry})
    assert message in str(info.value)
