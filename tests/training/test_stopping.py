"""Early stopping: the rule on a history, and ``fit(early_stopping=...)``."""

from __future__ import annotations

import pytest
import torch

from pyrovae import VAE, PyrovaeError, fit
from pyrovae.training.stopping import EarlyStopping


def _records(values):
    return [{"epoch": i + 1, "test_elbo": v} for i, v in enumerate(values)]


def test_patience_counts_evaluations_without_improvement():
    es = EarlyStopping(patience=2)
    assert not es.decide(_records([-5, -4, -4.5])).stop
    d = es.decide(_records([-5, -4, -4.5, -4.2]))
    assert d.stop and d.best_epoch == 2 and d.best_value == -4 and d.since_improvement == 2


def test_min_delta_needs_a_real_improvement_but_the_best_epoch_is_the_true_best():
    es = EarlyStopping(patience=2, min_delta=0.5)
    d = es.decide(_records([-5, -4.8, -4.6]))  # +0.2, +0.4 over -5: not improvements
    assert d.stop and d.best_epoch == 3
    assert not EarlyStopping(patience=2, min_delta=0.1).decide(_records([-5, -4.8, -4.6])).stop


def test_epochs_without_the_metric_do_not_count_and_min_mode_watches_a_loss():
    recs = [{"epoch": 1, "test_elbo": -3}, {"epoch": 2}, {"epoch": 3, "test_elbo": -3.1},
            {"epoch": 4}]
    assert EarlyStopping(patience=1).decide(recs).since_improvement == 1
    loss = [{"epoch": i + 1, "train_loss": v} for i, v in enumerate([3, 2, 2.5, 2.1])]
    d = EarlyStopping(monitor="train_loss", mode="min", patience=2).decide(loss)
    assert d.stop and d.best_epoch == 2


def test_options_are_validated_once():
    with pytest.raises(PyrovaeError, match=r"early_stopping\.patience"):
        EarlyStopping(patience=0)
    with pytest.raises(PyrovaeError, match=r"early_stopping\.mode"):
        EarlyStopping(mode="up")
    with pytest.raises(PyrovaeError, match=r"early_stopping\.patiense: unknown option"):
        fit(VAE(4, 2, encoder=[4]), torch.zeros(8, 4), epochs=1, progress=False,
            early_stopping={"patiense": 3})


def test_fit_stops_early_and_reports_where(capsys):
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((64, 10), 0.3), generator=g)
    torch.manual_seed(0)
    vae = VAE(10, 2, encoder=[8])
    h = fit(vae, x[:48], test_data=x[48:], epochs=500, batch_size=16, lr=1e-2,
            early_stopping={"patience": 3}, progress=True)
    assert len(h) < 500
    elbos = h["test_elbo"]
    best = max(range(len(elbos)), key=lambda i: (elbos[i], -i))
    assert len(h) - 1 - best == 3
    err = capsys.readouterr().err
    assert f"stopped early after epoch {len(h)}" in err and f"at epoch {best + 1})" in err


def test_watching_the_held_out_elbo_needs_held_out_data():
    with pytest.raises(PyrovaeError, match="needs test_data"):
        fit(VAE(4, 2, encoder=[4]), torch.zeros(8, 4), epochs=1, progress=False,
            early_stopping=EarlyStopping())
