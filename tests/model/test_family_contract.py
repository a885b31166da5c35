"""The contract every model family keeps, one test parametrised over every registry.

For each registered prior, guide and likelihood (the variants listed below, plus
every registered family not listed, with its defaults: new families are picked up
automatically): the VAE builds from a spec with it, trains a few stock-SVI and
fast-engine steps (Monte Carlo and closed-form KL) with finite losses, the family's
own parameters move, the shapes are right, evaluation is finite, the spec
round-trips, a trained model deep-copies, and densities over z integrate to one.
"""

from __future__ import annotations

import copy
import math

import pyro
import pytest
import torch

from pyrovae import VAE
from pyrovae.estimators.evaluate import evaluate
from pyrovae.registry import REGISTRIES
from pyrovae.training.objectives import TraceELBOMCObjective, TraceELBOObjective

D, L = 6, 2

#: Variants worth exercising; any registered family missing here is added by name.
VARIANTS: dict[str, list] = {
    "prior": [
        "normal",
        {"family": "normal_learned", "scale_init": 0.5},
        {"family": "laplace", "scale": 0.7},
        {"family": "student_t", "df": 4.0},
        {"family": "mixture", "components": 3},
        {"family": "vamp", "components": 4},
        {"family": "flow", "flow": "affine_autoregressive", "num_layers": 2},
        {"family": "flow", "flow": "spline_autoregressive", "num_layers": 1},
        {"family": "flow", "flow": "affine_coupling", "num_layers": 2},
        {"family": "flow", "flow": "spline", "num_layers": 1},
    ],
    "guide": [
        "diagonal_normal",
        "full_covariance",
        {"family": "flow", "num_layers": 2, "context_dim": 4},
        {"family": "flow", "num_layers": 1, "context_dim": 0},
    ],
    "likelihood": [
        "bernoulli",
        {"family": "bernoulli", "dynamic_binarization": True},
        "continuous_bernoulli",
        {"family": "gaussian", "sigma": "fixed", "sigma_init": 0.5},
        {"family": "gaussian", "sigma": "shared"},
        {"family": "gaussian", "sigma": "per_dim"},
        {"family": "gaussian", "sigma": "predicted"},
        {"family": "gaussian", "sigma": "calibrated"},
        {"family": "laplace", "scale": "shared"},
        {"family": "binomial", "total_count": 16},
        {"family": "categorical", "levels": 5},
        "poisson",
    ],
}
#: Registries of training choices (covered by tests/training), not model families.
TRAINING_KINDS = ("objective", "kl_weight")
#: Network and context families: their contract needs shaped data and lives in
#: tests/model/test_networks.py, which is parametrised over every registered one.
NETWORK_KINDS = ("encoder", "decoder", "context")
#: Model kinds (the latent structure): their contract is tests/model/test_model_kinds.py,
#: parametrised over every registered kind.
STRUCTURE_KINDS = ("model",)
#: The family module of each model kind on a built VAE.
MODULE = {"prior": "prior", "guide": "guide_family", "likelihood": "likelihood"}


def _family(entry) -> str:
    return entry if isinstance(entry, str) else entry["family"]


def _cases() -> list[tuple[str, object]]:
    cases = []
    for kind in MODULE:
        listed = VARIANTS[kind]
        named = {_family(e) for e in listed}
        extra = [name for name in REGISTRIES[kind].names() if name not in named]
        cases += [(kind, e) for e in [*listed, *extra]]
    return cases


CASES = _cases()


def _id(case) -> str:
    kind, entry = case
    text = entry if isinstance(entry, str) else "-".join(str(v) for v in entry.values())
    return f"{kind}:{text}"


def build(kind: str, entry, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE.from_spec({"data_dim": D, "latent_dim": L, "encoder": {"hidden": [16]},
                          "decoder": {"hidden": [16]}, kind: entry})


def data_for(vae: VAE, kind: str, entry, n: int = 32, seed: int = 1) -> torch.Tensor:
    """Small data inside the likelihood's support."""
    g = torch.Generator().manual_seed(seed)
    if kind != "likelihood":
        return (torch.rand(n, D, generator=g) > 0.5).float()
    family = _family(entry)
    if family == "bernoulli" and isinstance(entry, dict) and entry.get("dynamic_binarization"):
        return torch.rand(n, D, generator=g)
    if family == "bernoulli":
        return (torch.rand(n, D, generator=g) > 0.5).float()
    if family == "continuous_bernoulli":
        return torch.rand(n, D, generator=g)
    if family == "binomial":
        return torch.randint(0, entry.get("total_count", 16) + 1, (n, D), generator=g).float()
    if family == "categorical":
        return torch.randint(0, entry.get("levels", 17), (n, D), generator=g).float()
    if family == "poisson":
        return torch.poisson(3 * torch.rand(n, D, generator=g), generator=g)
    if family in ("gaussian", "laplace"):
        return torch.randn(n, D, generator=g) * 2 + 1
    with torch.no_grad(), torch.random.fork_rng():  # a new family: its own draws
        torch.manual_seed(seed)
        return vae.sample(n, mean=False)


def train_both_engines(vae: VAE, x: torch.Tensor, steps: int = 4) -> list[float]:
    """Stock SVI steps, then fast-engine steps (Monte Carlo and closed-form KL)."""
    vae.likelihood.check_data(x)
    pyro.clear_param_store()
    svi = pyro.infer.SVI(
        vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO()
    )
    losses = [svi.step(vae.likelihood.prepare_batch(x), num_data=len(x)) for _ in range(steps)]
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for objective in (TraceELBOMCObjective(), TraceELBOObjective()):
        for _ in range(steps):
            loss = objective.differentiable_loss(
                    vae, vae.likelihood.prepare_batch(x), num_data=len(x), kl_weight=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def test_every_registry_is_a_model_kind_or_a_training_choice():
    """A new registry must get a place here (and in MODULE) so that its families are tested."""
    assert set(REGISTRIES) == (set(MODULE) | set(TRAINING_KINDS) | set(NETWORK_KINDS)
                               | set(STRUCTURE_KINDS))
    for kind in MODULE:  # every registered family is exercised
        assert {_family(e) for k, e in CASES if k == kind} == set(REGISTRIES[kind].names())


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_family_builds_trains_and_evaluates(case):
    kind, entry = case
    vae = build(kind, entry)
    x = data_for(vae, kind, entry)
    module = getattr(vae, MODULE[kind])
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    losses = train_both_engines(vae, x)
    assert all(math.isfinite(v) for v in losses)
    for name, value in module.named_parameters():  # learnable families train
        assert not torch.equal(value.detach(), before[name]), name
    # shapes
    p, q = vae.prior_dist(), vae.encode(vae.likelihood.prepare_batch(x))
    assert p.event_shape == (L,) and p.batch_shape == ()
    assert q.event_shape == (L,) and q.batch_shape == (32,)
    assert vae.encoder[-1].out_features == vae.guide_family.num_outputs()
    d = vae.decode(torch.randn(3, L))
    assert d.event_shape == (D,) and d.batch_shape == (3,)
    assert vae.decoder[-1].out_features == vae.likelihood.num_outputs()
    assert vae.sample(4).shape == (4, D) and vae.reconstruct(x[:3]).shape == (3, D)
    # evaluation on held-out data
    held_out = vae.likelihood.prepare_batch(data_for(vae, kind, entry, n=16, seed=2))
    result = evaluate(vae, held_out, num_samples=8)
    assert math.isfinite(result["elbo"]) and math.isfinite(result["log_likelihood"])
    if kind == "guide":  # ELBO ≤ IWAE estimate (same guide; the bound is the point)
        assert result["elbo"] <= result["log_likelihood"] + 1e-4
    # the spec round-trips to the same structure
    again = VAE.from_spec(vae.spec)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in vae.state_dict().items()
    }


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_family_deepcopies_after_a_step(case):
    """Flow layers cache non-leaf tensors; a trained model must still deepcopy (snapshots)."""
    kind, entry = case
    vae = build(kind, entry)
    x = vae.likelihood.prepare_batch(data_for(vae, kind, entry, n=8))
    TraceELBOObjective().differentiable_loss(vae, x, num_data=8, kl_weight=1.0).backward()
    twin = copy.deepcopy(vae)
    torch.manual_seed(0)
    a = TraceELBOObjective().differentiable_loss(vae, x, num_data=8, kl_weight=1.0)
    torch.manual_seed(0)
    b = TraceELBOObjective().differentiable_loss(twin, x, num_data=8, kl_weight=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("prior", "guide")], ids=_id)
def test_density_over_z_integrates_to_one(case):
    """exp(log p(z)) and exp(log q(z|x)) summed over a fine 2-D grid are 1."""
    kind, entry = case
    vae = build(kind, entry)
    train_both_engines(vae, data_for(vae, kind, entry), steps=2)
    n, lim = (241, 12.0) if kind == "prior" else (201, 8.0)
    axis = torch.linspace(-lim, lim, n)
    zz = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        if kind == "prior":
            log_density = vae.prior_dist().log_prob(zz)
        else:
            q = vae.encode(data_for(vae, kind, entry, n=1, seed=3))  # batch (1,): broadcast
            log_density = q.log_prob(zz[:, None, :].expand(-1, 1, 2))
    mass = log_density.exp().sum().item() * (axis[1] - axis[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("prior", "guide")], ids=_id)
def test_declared_factorisation_is_the_distributions(case):
    """A family's ``factorised`` flag (what free bits reads) says what its distribution is:
    True exactly when p(z) or q(z|x) is one univariate distribution per latent dimension,
    whose per-dimension log densities sum to the joint one."""
    from pyrovae.training.objectives import _per_dim, free_bits_families

    kind, entry = case
    vae = build(kind, entry)
    x = data_for(vae, kind, entry, n=3)
    with torch.no_grad():
        d = vae.prior_dist() if kind == "prior" else vae.encode(x)
        z = d.sample()
        per_dim = _per_dim(d)
    declared = type(getattr(vae, MODULE[kind])).factorised
    assert declared == (per_dim is not None)
    if declared:
        assert torch.allclose(per_dim.log_prob(z).sum(-1), d.log_prob(z), atol=1e-5)
    names = free_bits_families()[0 if kind == "prior" else 1]
    assert (_family(entry) in names) == declared


def test_a_prior_that_encodes_inputs_is_refused_by_conditional_and_structured_models():
    """``encodes_inputs`` (declared by the VampPrior class) is what the conditional VAE,
    M2 and the hierarchical kind refuse, each in one line naming the family."""
    from pyrovae.errors import PyrovaeError
    from pyrovae.registry import PRIORS

    assert [n for n in PRIORS.names() if PRIORS.get(n).encodes_inputs] == ["vamp"]
    base = {"data_dim": D, "latent_dim": L, "encoder": {"hidden": [8]},
            "decoder": {"hidden": [8]}, "prior": {"family": "vamp", "components": 2}}
    for extra in ({"context": {"family": "label", "classes": 3}},
                  {"model": {"family": "m2", "classes": 3}},
                  {"model": {"family": "hierarchical", "latent_dims": [2, 2]}}):
        with pytest.raises(PyrovaeError, match="'vamp'"):
            VAE.from_spec({**base, **extra})
