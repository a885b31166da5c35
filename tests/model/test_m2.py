"""The M2 semi-supervised VAE: its Pyro pair, TraceEnum_ELBO, and the fast estimator
that must equal it on the same draws (value and gradients)."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.enumerated import label_minibatch_loss, label_terms
from pyrovae.model.m2 import SemiSupervisedVAE
from pyrovae.model.vae import VAE
from pyrovae.runs.spec import normalize_spec

Y_MIXED = torch.tensor([0, -1, 2, -1, -1, 3, 1])


def make(seed: int = 0, **kw) -> SemiSupervisedVAE:
    torch.manual_seed(seed)
    return SemiSupervisedVAE(12, 3, classes=4, classify_weight=2.0, encoder=[16], **kw)


def data(n: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return (torch.rand(n, 12, generator=g) > 0.5).float()


@pytest.mark.parametrize("y", [Y_MIXED, None, torch.tensor([0, 1, 2, 3, 0, 1, 2])],
                         ids=["mixed", "unlabelled", "labelled"])
def test_fast_loss_equals_trace_enum_elbo_on_the_same_draws(y):
    m, x = make(), data()
    torch.manual_seed(1)
    fast = label_minibatch_loss(m, x, y, 20, 0.7).loss
    g_fast = torch.autograd.grad(fast, list(m.parameters()), allow_unused=True)
    torch.manual_seed(1)
    stock = m.stock_elbo(1).differentiable_loss(m.model, m.guide, x, y, num_data=20,
                                                 kl_weight=0.7)
    g_stock = torch.autograd.grad(stock, list(m.parameters()), allow_unused=True)
    assert torch.allclose(fast, stock, rtol=1e-5)
    for a, b in zip(g_fast, g_stock, strict=True):
        if a is None or b is None:
            assert (a is None and b is None) or float((a if a is not None else b).abs().sum()) == 0
        else:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_guide_enumerates_the_label_and_the_model_sums_it_out():
    """Under TraceEnum_ELBO's enumeration, the unlabelled rows' z has a class dimension."""
    m, x = make(), data()
    with poutine.enum(first_available_dim=-2):
        tr = poutine.trace(m.guide).get_trace(x, Y_MIXED)
    assert tr.nodes["y"]["infer"]["enumerate"] == "parallel"
    assert tr.nodes["y"]["value"].shape == (4, 1)
    assert tr.nodes["z"]["value"].shape == (4, 3, 3)  # (classes, unlabelled rows, latent)
    assert tr.nodes["z_labelled"]["value"].shape == (4, 3)


def test_unlabelled_bound_is_the_enumerated_sum_of_labelled_bounds():
    """U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x)), with L computed with y observed."""
    m, x = make(), data(3)
    with torch.no_grad():
        torch.manual_seed(0)
        u = label_terms(m, x, None, num_particles=4000, kl="auto").elbo()
        qy = m.label_posterior(x).probs
        per_class = []
        for c in range(4):
            torch.manual_seed(0)
            per_class.append(label_terms(m, x, torch.full((3,), c), num_particles=4000,
                                         kl="auto").elbo())
        want = (qy * torch.stack(per_class, -1)).sum(-1) - (qy * qy.log()).sum(-1)
    assert torch.allclose(u, want, atol=0.05)


def test_bad_labels_are_refused_in_one_line():
    m, x = make(), data()
    with pytest.raises(PyrovaeError, match=r"0\.\.3 \(or -1 for unlabelled\)"):
        m.model(x, torch.tensor([0, 1, 2, 9, 0, 1, 2]))
    with pytest.raises(PyrovaeError, match="integer class labels"):
        label_terms(m, x, torch.full((7,), 0.5))


def test_spec_round_trip_and_vae_from_spec_builds_the_kind():
    spec = normalize_spec({"model": {"family": "m2", "classes": 4}, "data_dim": 12,
                           "latent_dim": 3, "encoder": {"hidden": [16]}})
    assert spec["context"] == {"family": "label", "classes": 4}
    m = VAE.from_spec(spec)
    assert isinstance(m, SemiSupervisedVAE) and m.classes == 4
    again = VAE.from_spec(m.spec)
    assert again.spec == m.spec
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()}


@pytest.mark.parametrize("raw, match", [
    ({"model": {"family": "m2", "labelled_fraction": 0}}, r"labelled_fraction: expected a "
                                                          r"fraction in \(0, 1\]"),
    ({"model": {"family": "m2", "labelled_fraction": 1.5}}, "labelled_fraction"),
    ({"model": {"family": "m2", "classes": 3}, "context": {"family": "label", "classes": 5}},
     "context: an m2 model conditions"),
    ({"model": "m2", "context": {"family": "vector", "dim": 2}},
     "context: model m2 sums its label out by enumeration, which needs a discrete site"),
    ({"model": "m2", "objective": "renyi_elbo"}, "cannot train a model whose label"),
    ({"model": "m2", "objective": {"family": "trace_elbo", "free_bits": 0.5}}, "free_bits"),
    ({"model": "m2", "prior": "vamp"}, "vamp"),
    ({"model": {"family": "m3"}}, "unknown model family 'm3'"),
])
def test_bad_specs_are_refused_naming_the_key(raw, match):
    with pytest.raises(PyrovaeError, match=match):
        normalize_spec(raw)


def test_style_and_samples_shapes():
    m = SemiSupervisedVAE((1, 4, 4), 2, classes=3, encoder=[8])
    x = (torch.rand(5, 1, 4, 4) > 0.5).float()
    assert m.style(x).shape == (5, 3, 1, 4, 4)
    assert m.sample(6).shape == (6, 1, 4, 4)
    assert m.reconstruct(x).shape == (5, 1, 4, 4)
    assert m.classify(x).shape == (5,)


def test_stock_svi_trains_it():
    m, x = make(), data(20)
    y = torch.tensor([0, 1, 2, 3] + [-1] * 16)
    pyro.clear_param_store()
    svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), m.stock_elbo())
    losses = [svi.step(x, y) for _ in range(30)]
    assert losses[-1] < losses[0]


def test_distributed_training_refuses_the_summed_out_label():
    from pyrovae.training.distributed import check_supported
    from pyrovae.training.objectives import TraceELBOObjective

    with pytest.raises(PyrovaeError, match="model: m2 trains with its own estimator "
                                           r"\(enumerated\), which is not sharded"):
        check_supported(make(), TraceELBOObjective(), data())
