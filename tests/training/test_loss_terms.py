"""The loss terms are an open record: whatever an objective reports reaches the history."""

from __future__ import annotations

import torch

import pyrovae
from pyrovae.estimators.elbo import MinibatchLoss
from pyrovae.training.objectives import TraceELBOObjective


class WithPenalty(TraceELBOObjective):
    """The default objective, reporting one more term: the squared norm of the code."""

    def loss_fn(self, vae):
        inner = super().loss_fn(vae)

        def loss(vae, x, y, num_data, kl_weight):
            out = inner(vae, x, y, num_data, kl_weight)
            with torch.no_grad():
                penalty = vae.encode(x).mean.pow(2).sum()
            return MinibatchLoss(out.loss, {**out.terms, "code_norm": penalty},
                                 out.kl_closed_form)

        return loss


def _x():
    return (torch.rand(64, 10, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def test_an_objectives_extra_term_reaches_the_history():
    torch.manual_seed(0)
    vae = pyrovae.VAE(10, 2, encoder=[8], decoder=[8])
    h = pyrovae.fit(vae, _x(), epochs=2, batch_size=16, lr=1e-2, seed=0, progress=False,
                    objective=WithPenalty())
    assert "train_code_norm" in h
    assert all(v > 0 for v in h["train_code_norm"])
    # the ELBO is still reconstruction − KL, and the standard terms are kept
    for r in h.records:
        assert r["train_elbo"] == r["train_reconstruction"] - r["train_kl"]


def test_the_default_terms_equal_the_plain_objective():
    x = _x()

    def run(objective):
        torch.manual_seed(0)
        vae = pyrovae.VAE(10, 2, encoder=[8], decoder=[8])
        return pyrovae.fit(vae, x, epochs=2, batch_size=16, lr=1e-2, seed=0, progress=False,
                           objective=objective)

    a, b = run(TraceELBOObjective()), run(WithPenalty())
    assert a["train_elbo"] == b["train_elbo"] and "train_code_norm" not in a
