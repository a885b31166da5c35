"""Guide families q(z|x): build from a spec, train a few steps, check each one's density."""

from __future__ import annotations

import math

import pyro
import pytest
import scipy.stats
import torch

from pyrovae import GUIDES, VAE, PyrovaeError, normalize_spec
from pyrovae.estimators.evaluate import evaluate
from pyrovae.model.guides import MIN_SCALE
from pyrovae.training.objectives import TraceELBOObjective, TraceMeanFieldObjective

ENTRIES = [
    "diagonal_normal",
    "full_covariance",
    {"family": "flow", "num_layers": 2, "context_dim": 4},
    {"family": "flow", "num_layers": 1, "context_dim": 0},
]


def _ids(entry):
    return entry if isinstance(entry, str) else "-".join(str(v) for v in entry.values())


def build(guide, latent_dim=2, data_dim=6, seed=0):
    torch.manual_seed(seed)
    return VAE.from_spec(
        {"data_dim": data_dim, "latent_dim": latent_dim, "encoder": {"hidden": [16]},
         "guide": guide}
    )


def binary_data(n=32, d=6, seed=1):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def train_both_engines(vae, x, steps=4):
    pyro.clear_param_store()
    svi = pyro.infer.SVI(
        vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO()
    )
    losses = [svi.step(x, num_data=len(x)) for _ in range(steps)]
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for objective in (TraceELBOObjective(), TraceMeanFieldObjective()):
        for _ in range(steps):
            loss = objective.fast_loss(vae, x, len(x), 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_every_guide_builds_trains_and_evaluates(entry):
    vae = build(entry)
    x = binary_data()
    q = vae.encode(x)
    assert q.event_shape == (2,) and q.batch_shape == (32,)
    assert vae.encoder[-1].out_features == vae.guide_family.num_outputs()
    before = {k: v.detach().clone() for k, v in vae.guide_family.named_parameters()}
    losses = train_both_engines(vae, x)
    assert all(math.isfinite(v) for v in losses)
    for name, value in vae.guide_family.named_parameters():  # flow layers train
        assert not torch.equal(value.detach(), before[name]), name
    assert vae.reconstruct(x[:3]).shape == (3, 6)  # flows: mean estimated by samples
    result = evaluate(vae, x, num_samples=8)
    assert math.isfinite(result["elbo"]) and math.isfinite(result["log_likelihood"])
    # ELBO ≤ IWAE estimate (both use the same guide; the bound is the point)
    assert result["elbo"] <= result["log_likelihood"] + 1e-4


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_every_guide_density_integrates_to_one(entry):
    vae = build(entry)
    train_both_engines(vae, binary_data(), steps=2)
    n, lim = 201, 8.0
    axis = torch.linspace(-lim, lim, n)
    zz = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        x = binary_data(n=1, seed=3)
        q = vae.encode(x)  # batch (1,): broadcast over the grid
        mass = q.log_prob(zz[:, None, :].expand(-1, 1, 2)).exp().sum().item()
    assert mass * (axis[1] - axis[0]).item() ** 2 == pytest.approx(1.0, abs=0.02)


def test_every_registered_guide_is_covered_here():
    covered = {e if isinstance(e, str) else e["family"] for e in ENTRIES}
    assert covered == set(GUIDES.names())


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


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_every_guide_deepcopies_after_a_step(entry):
    import copy

    vae = build(entry)
    x = binary_data(8)
    TraceELBOObjective().fast_loss(vae, x, 8, 1.0).backward()
    twin = copy.deepcopy(vae)
    torch.manual_seed(0)
    a = TraceELBOObjective().fast_loss(vae, x, 8, 1.0)
    torch.manual_seed(0)
    b = TraceELBOObjective().fast_loss(twin, x, 8, 1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
