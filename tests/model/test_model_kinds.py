"""The contract every model kind keeps (registry ``MODELS``), one test parametrised over
every registered kind: it builds from a spec, its spec round-trips, both engines train it
a few steps through ``fit`` with finite losses and moving parameters, ``evaluate`` is
finite, and it saves and loads bit for bit."""

from __future__ import annotations

import warnings

import pytest
import torch

from pyrovae.estimators.evaluate import evaluate
from pyrovae.model.spec import build_model, model_class
from pyrovae.model.vae import VAE, load_vae
from pyrovae.registry import MODELS
from pyrovae.runs.spec import normalize_spec
from pyrovae.training.trainer import fit

D = 8


def _spec(kind: str) -> dict:
    return normalize_spec({"model": kind, "data_dim": D, "latent_dim": 2,
                           "encoder": {"hidden": [8]}})


def _data(kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(24, D, generator=g) > 0.5).float()
    if getattr(model_class({"model": kind}), "label_latent", False):
        y = torch.randint(0, 10, (24,), generator=g)
        y[::2] = -1  # half of the rows unlabelled
        return x, y
    return x, None


@pytest.mark.parametrize("kind", MODELS.names())
@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_every_kind_builds_trains_evaluates_and_round_trips(kind, engine, tmp_path):
    spec = _spec(kind)
    torch.manual_seed(0)
    m = build_model(spec)
    assert isinstance(m, VAE) and type(m) is MODELS.get(kind)
    assert m.spec["model"]["family"] == kind
    assert VAE.from_spec(m.spec).spec == m.spec
    x, y = _data(kind)
    before = [p.detach().clone() for p in m.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback
        h = fit(m, x, y=y, epochs=2, batch_size=8, engine=engine, progress=False)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])))
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    r = evaluate(m, x, num_samples=4)
    assert torch.isfinite(torch.tensor([r["elbo"], r["log_likelihood"]])).all()
    m.save(tmp_path / "w")
    again = load_vae(tmp_path / "w")
    assert type(again) is type(m)
    for (k, a), (_, b) in zip(m.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
