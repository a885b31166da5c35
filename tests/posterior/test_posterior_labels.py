"""Checks of a model whose label is a latent, against the closed form of a linear-Gaussian
M2: p(x | y) = N(b + V e_y, W Wᵀ + σ² I), so log p(x) = log Σ_y p(y) p(x | y) and the
label posterior p(y | x) are exact."""

from __future__ import annotations

import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.model.m2 import SemiSupervisedVAE
from pyrovae.model.vae import VAE
from pyrovae.posterior.labels import label_ais, label_gap_split, label_pit, label_sbc
from pyrovae.training.trainer import fit

D, L, C, SIGMA = 5, 2, 3, 0.5


def linear_m2(train_guide: bool = True) -> SemiSupervisedVAE:
    """The linear-Gaussian M2; with ``train_guide``, fitted on labelled simulations (still
    linear-Gaussian, so still exact) so that q(z|x,y) is a reasonable AIS start."""
    torch.manual_seed(0)
    m = SemiSupervisedVAE(D, L, classes=C, encoder=[], decoder=[], classify_weight=0.0,
                          likelihood={"family": "gaussian", "sigma": "fixed",
                                      "sigma_init": SIGMA})
    with torch.no_grad():
        m.decoder[0].weight.mul_(3.0)  # well separated classes
    m = m.double()
    if train_guide:
        with torch.no_grad():
            y = m.label_prior().sample((600,))
            x = m.decode(m.prior_dist().sample((600,)), y=y).sample()
        fit(m, x, y=y, epochs=60, batch_size=100, lr=3e-2, progress=False, eval_every=0)
    return m.eval()


_M2 = {}


def trained() -> SemiSupervisedVAE:
    if "m" not in _M2:
        _M2["m"] = linear_m2()
    return _M2["m"]


def exact(m: SemiSupervisedVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x), p(y|x)) in closed form."""
    lin = m.decoder[0]
    W, V, b = lin.weight[:, :L], lin.weight[:, L:], lin.bias
    cov = W @ W.T + SIGMA**2 * torch.eye(D, dtype=W.dtype)
    logs = torch.stack([torch.distributions.MultivariateNormal(b + V[:, k], cov).log_prob(x)
                        for k in range(C)]) - torch.log(torch.tensor(float(C)))
    return torch.logsumexp(logs, 0), torch.softmax(logs, 0).T


def test_label_ais_matches_the_closed_form():
    m = trained()
    x = m.sample(6, mean=False)
    want, post = exact(m, x)
    a = label_ais(m, x, num_steps=150, num_chains=32, seed=1)
    assert (a.value - want).abs().max() < 0.05
    assert (a.log_class_posterior.exp().T - post).abs().max() < 0.02


def test_gap_split_adds_up_and_the_label_part_is_the_kl_to_the_posterior():
    m = trained()
    x = m.sample(4, mean=False)
    a = label_ais(m, x, num_steps=100, num_chains=16, seed=2)
    g = label_gap_split(m, x, a, num_samples=2000)
    assert torch.allclose(g["gap"], g["gap_label"] + g["gap_code"])
    q = m.label_posterior(x).probs.double()
    _, post = exact(m, x)
    kl = (q * (q.log() - post.log())).sum(-1)
    assert torch.allclose(g["gap_label"], kl, atol=0.02)
    assert (g["gap"] > -0.05).all()  # U(x) is a lower bound


def test_label_sbc_passes_the_exact_posterior_and_fails_a_wrong_one(monkeypatch):
    m = linear_m2(train_guide=False)

    def exact_posterior(x):
        return torch.distributions.Categorical(probs=exact(m, m.as_event(x))[1])

    monkeypatch.setattr(m, "label_posterior", exact_posterior)
    good = label_pit(m, num_sims=2000, seed=0)
    assert not good["failed"]
    assert label_sbc(m, num_sims=1000, seed=0).calibration.passed

    def rotated(x):  # the posterior of the next class: confidently wrong
        return torch.distributions.Categorical(probs=exact(m, m.as_event(x))[1].roll(1, -1))

    monkeypatch.setattr(m, "label_posterior", rotated)
    assert label_pit(m, num_sims=2000, seed=0)["failed"]
    assert not label_sbc(m, num_sims=1000, seed=0).calibration.passed


def test_refuses_a_model_without_a_label_latent():
    with pytest.raises(PyrovaeError, match="no discrete label latent"):
        label_ais(VAE(4, 2), torch.zeros(2, 4))
    with pytest.raises(PyrovaeError, match="num_sims"):
        label_pit(linear_m2(train_guide=False), num_sims=5)
