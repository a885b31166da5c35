"""fit: reproducible for a seed, learns, records history, engines agree on structure."""

from __future__ import annotations

import pytest
import torch

from pyrovae import VAE, History, PyrovaeError, fit
from pyrovae.data import load_dataset, train_test_split


def _vae(seed: int = 0, d: int = 12) -> VAE:
    torch.manual_seed(seed)
    return VAE(d, latent_dim=2, encoder=[16])


def test_fit_is_reproducible_for_a_seed(binary_data):
    a, b = _vae(), _vae()
    ha = fit(a, binary_data, epochs=3, batch_size=8, seed=5, progress=False)
    hb = fit(b, binary_data, epochs=3, batch_size=8, seed=5, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert ha["train_loss"] == hb["train_loss"]
    c = _vae()
    fit(c, binary_data, epochs=3, batch_size=8, seed=6, progress=False)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                         strict=True))


def test_evaluation_does_not_change_the_training_path(binary_data):
    a, b = _vae(), _vae()
    fit(a, binary_data, epochs=3, batch_size=8, seed=1, progress=False, eval_every=1)
    fit(b, binary_data, epochs=3, batch_size=8, seed=1, progress=False, eval_every=None)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_history_records_and_held_out_elbo_improves_on_digits():
    ds = load_dataset("digits")
    train, test = train_test_split(ds, 0.2, seed=0)
    torch.manual_seed(0)
    vae = VAE(64, latent_dim=2, encoder=[64, 32])
    h = fit(vae, train, epochs=15, batch_size=64, lr=3e-3, test_data=test, progress=False)
    assert isinstance(h, History) and len(h) == 15
    assert h["epoch"] == list(range(1, 16))
    assert h["step"][-1] == 15 * 23  # ceil(1438 / 64) steps per epoch
    assert h["test_elbo"][-1] > h["test_elbo"][0] + 3.0
    assert h["train_elbo"][-1] > h["train_elbo"][0] + 3.0
    assert all(b == 1.0 for b in h["kl_weight"])


def test_pyro_engine_trains_the_same_model(binary_data):
    vae = _vae()
    h = fit(vae, binary_data, epochs=4, batch_size=10, engine="pyro", lr=1e-2, progress=False)
    assert h["train_elbo"][-1] > h["train_elbo"][0]


def test_kl_weight_number_is_recorded(binary_data):
    h = fit(_vae(), binary_data, epochs=2, batch_size=10, kl_weight=0.5, progress=False)
    assert h["kl_weight"] == [0.5, 0.5]


def test_fit_refuses_data_outside_the_likelihood_support(binary_data):
    with pytest.raises(PyrovaeError, match="outside the support of the 'bernoulli'"):
        fit(_vae(), binary_data * 0.5 + 0.25, epochs=1, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"), ({"lr": 0.0}, "lr"),
     ({"engine": "jit"}, "engine"), ({"objective": "nope"}, "unknown objective")],
)
def test_bad_arguments_are_user_errors(binary_data, kwargs, match):
    with pytest.raises(PyrovaeError, match=match):
        fit(_vae(), binary_data, progress=False, **kwargs)
