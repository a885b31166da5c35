"""The training loop: running-mean records at β = 1, held-out evaluation every
``eval_every`` epochs, data through sources, progress lines, the guard on evaluation,
an explicit fit signature and a read-only History mapping."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from pyrovae import VAE, DivergenceError, History, PyrovaeError, fit
from pyrovae.data import TensorSource
from pyrovae.training.config import SEED_MAX, TrainConfig, check_seed, parse_device
from pyrovae.training.trainer import Trainer

D = 10


def _vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(D, latent_dim=2, encoder=[8])


def _x(n: int = 60) -> torch.Tensor:
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(0)) > 0.5).float()


KW = dict(batch_size=20, seed=0, progress=False)


def test_records_are_running_means_of_the_step_terms_at_beta_one():
    """With a constant β = 0.25 the loss is −(R − β·KL) but train_elbo is R − KL."""
    h = fit(_vae(), _x(), epochs=2, kl_weight=0.25, eval_every=None, **KW)
    r = h.last
    assert r["train_elbo"] == pytest.approx(r["train_reconstruction"] - r["train_kl"])
    assert r["train_loss"] == pytest.approx(-(r["train_reconstruction"] - 0.25 * r["train_kl"]),
                                            rel=1e-5)
    assert r["kl_closed_form"] is True and r["train_kl"] > 0
    assert "test_elbo" not in r


def test_running_mean_equals_a_hand_written_loop():
    """The recorded train ELBO is the mean over the epoch's examples of the terms
    the steps computed; reproduce it with the same draws by hand."""
    x = _x()
    vae, ref = _vae(), _vae()
    h = fit(vae, x, epochs=1, eval_every=None, lr=1e-2, **KW)
    from pyrovae.training.objectives import TraceELBOObjective

    torch.manual_seed(0)  # fit seeds the global RNG with its seed
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    fn = TraceELBOObjective().loss_fn(ref)
    total = 0.0
    for b in range(3):
        out = fn(ref, x[perm[b * 20:(b + 1) * 20]], None, 60, 1.0)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        total += float(out.reconstruction - out.kl)
    assert h["train_elbo"][0] == pytest.approx(total / 60, rel=1e-5)


def test_held_out_elbo_every_eval_every_epochs_and_at_the_end():
    x = _x()
    h = fit(_vae(), x, epochs=5, test_data=x[:20], eval_every=2, **KW)
    assert [e for e, t in zip(h["epoch"], h["test_elbo"], strict=True) if t is not None] \
        == [2, 4, 5]
    none = fit(_vae(), x, epochs=2, test_data=x[:20], eval_every=0, **KW)
    assert none["test_elbo"] == [None, None]


def test_history_is_a_read_only_mapping():
    h = fit(_vae(), _x(), epochs=2, test_data=_x()[:20], **KW)
    assert isinstance(h, History) and len(h) == 2
    keys = list(h.keys())
    assert keys[:4] == ["epoch", "step", "train_loss", "kl_weight"]
    assert {"train_elbo", "train_reconstruction", "train_kl", "test_elbo", "seconds"} <= set(h)
    assert dict(h.items())["epoch"] == [1, 2] and "nope" not in h
    with pytest.raises(TypeError):
        h["epoch"] = [0]  # type: ignore[index]
    for r in h.records:
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in r.values())


def test_fit_signature_is_explicit():
    params = inspect.signature(fit).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert {"epochs", "batch_size", "lr", "seed", "test_data", "objective", "kl_weight",
            "engine", "clip_norm", "eval_every", "progress", "device", "callbacks",
            "y"} <= set(params)
    with pytest.raises(TypeError):
        fit(_vae(), _x(), epochz=1)  # type: ignore[call-arg]


def test_train_config_validates_once_with_one_seed_range():
    assert TrainConfig(epochs=3).epochs == 3
    assert check_seed(SEED_MAX) == SEED_MAX
    for bad, key in (({"seed": SEED_MAX + 1}, "seed"), ({"seed": -1}, "seed"),
                     ({"epochs": 0}, "epochs"), ({"lr": math.nan}, "lr"),
                     ({"eval_every": -1}, "eval_every"), ({"engine": "jit"}, "engine")):
        with pytest.raises(PyrovaeError, match=key):
            TrainConfig(**bad)
    with pytest.raises(PyrovaeError, match="seed"):
        fit(_vae(), _x(), epochs=1, seed=SEED_MAX + 1, progress=False)


@pytest.mark.parametrize("device", ["gpu", "cuda:banana", "tpu", 3])
def test_bad_device_is_one_line(device):
    with pytest.raises(PyrovaeError) as err:
        parse_device(device)
    msg = str(err.value)
    assert msg.startswith("device:") and "\n" not in msg and len(msg) < 160


def test_fit_reads_any_data_source_and_tensors_alike():
    x = _x()
    a, b = _vae(), _vae()
    ha = fit(a, x, epochs=2, eval_every=None, **KW)
    hb = fit(b, TensorSource(x), epochs=2, eval_every=None, **KW)
    assert ha["train_elbo"] == hb["train_elbo"]
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_float64_vae_trains_in_float64():
    vae = _vae().double()
    h = fit(vae, _x(), epochs=2, test_data=_x()[:20], **KW)
    assert all(p.dtype == torch.float64 for p in vae.parameters())
    assert math.isfinite(h["test_elbo"][-1])


def test_plain_progress_lines_when_stderr_is_not_a_terminal(capsys):
    fit(_vae(), _x(), epochs=2, test_data=_x()[:20], batch_size=20, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("fit: epoch 1/2") and "test" in err[1]


def test_non_finite_evaluation_is_a_divergence_not_a_traceback(monkeypatch):
    """A held-out evaluation that overflows (or raises) stops training with
    DivergenceError; the history holds no NaN and the trainer the last good state."""
    x = _x()
    trainer = Trainer(_vae(), x, epochs=3, test_data=x[:20], **KW)
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("Expected parameter logits to satisfy the constraint Real()")
        return -1.0

    monkeypatch.setattr(Trainer, "_evaluate", flaky)
    with pytest.raises(DivergenceError) as err:
        trainer.run()
    e = err.value
    assert e.what == "evaluation" and e.epoch == 2 and e.good_epoch == 1
    assert "\n" not in str(e) and "held-out evaluation" in str(e)
    assert trainer.epoch == 1 and len(trainer.history) == 1
    monkeypatch.setattr(Trainer, "_evaluate", lambda self: math.nan)
    with pytest.raises(DivergenceError, match="non-finite held-out evaluation"):
        trainer.run()


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_huge_learning_rate_with_clipping_is_a_divergence(engine):
    x = _x()
    vae = _vae()
    with pytest.raises(DivergenceError) as err:
        fit(vae, x, epochs=3, lr=1e30, clip_norm=1.0, test_data=x[:20], engine=engine, **KW)
    assert err.value.good_epoch == 0
    assert all(torch.isfinite(p).all() for p in vae.parameters())


def test_repeated_calls_check_the_data_once_but_see_in_place_edits():
    x = _x()
    vae = _vae()
    fit(vae, x, epochs=1, eval_every=None, **KW)
    fit(vae, x, epochs=1, eval_every=None, **KW)  # same tensor: no second check needed
    x[0, 0] = 0.5  # an in-place edit makes it a different data set
    with pytest.raises(PyrovaeError, match="outside the support"):
        fit(vae, x, epochs=1, eval_every=None, **KW)
