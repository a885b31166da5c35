"""Divergence guard: a non-finite loss or gradient stops training with an error
naming epoch and step, keeps the last good state, and suggests remedies."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from pyrovae import VAE, PyrovaeError, Trainer, fit
from pyrovae import io as pio
from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.training.objectives import ConstantSchedule, KLSchedule, TraceELBOObjective
from pyrovae.training.trainer import DivergenceError


class NaNAt(KLSchedule):
    """β = 1, except NaN at one global step (0-based): an injected failure that a
    replay of the epoch reproduces exactly."""

    def __init__(self, bad_step: int, value: float = math.nan) -> None:
        self.bad_step, self.value = bad_step, value

    def weight(self, step: int, steps_per_epoch: int) -> float:
        return self.value if step == self.bad_step else 1.0


class NaNGradient(TraceELBOObjective):
    """The ELBO plus 0·sqrt(0) when β = 0.5: the loss stays finite, the gradient is NaN."""

    def loss_fn(self, vae):
        inner = super().loss_fn(vae)

        def fn(vae, x, y, num_data, kl_weight):
            out = inner(vae, x, y, num_data, 1.0)
            if kl_weight == 0.5:
                w = next(vae.parameters())
                out = dataclasses.replace(out, loss=out.loss + 0.0 * torch.sqrt(w.sum() * 0.0))
            return out

        return fn


def _vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(6, 2, encoder=[8])


def _x() -> torch.Tensor:
    return (torch.rand(40, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()


KW = dict(batch_size=8, seed=0, progress=False, eval_every=None)  # 5 steps per epoch


def test_injected_nan_names_epoch_and_step_and_keeps_last_good_state():
    vae = _vae()
    with pytest.raises(DivergenceError) as err:
        fit(vae, _x(), epochs=6, kl_weight=NaNAt(bad_step=12), **KW)
    e = err.value
    # step 12 (0-based) is the 13th step: epoch 3, its 3rd step; epochs 1-2 were good
    assert (e.epoch, e.step, e.what, e.good_epoch) == (3, 13, "loss", 2)
    msg = str(e)
    assert "epoch 3, step 13 (step 3 of 5 in the epoch)" in msg
    assert "non-finite loss" in msg and "lr" in msg and "clip_norm" in msg
    assert "\n" not in msg
    # the model holds exactly the state after epoch 2 of an undisturbed run
    ref = _vae()
    fit(ref, _x(), epochs=2, **KW)
    for k, v in ref.state_dict().items():
        assert torch.equal(vae.state_dict()[k], v), k


def test_trainer_after_divergence_holds_last_good_state():
    t = Trainer(_vae(), _x(), epochs=6, kl_weight=NaNAt(bad_step=12), **KW)
    with pytest.raises(DivergenceError):
        t.run()
    assert (t.epoch, t.step, len(t.history)) == (2, 10, 2)
    state = t.state_dict()
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(
        torch.isfinite(v).all()
        for s in state["optimizer"]["state"].values() for v in s.values()
    )


def test_non_finite_gradient_with_finite_loss_is_caught():
    class HalfAt(NaNAt):
        pass

    with pytest.raises(DivergenceError) as err:
        fit(_vae(), _x(), epochs=4, objective=NaNGradient(),
            kl_weight=HalfAt(bad_step=7, value=0.5), **KW)
    e = err.value
    assert (e.epoch, e.step, e.what) == (2, 8, "gradient")
    assert "non-finite gradient at epoch 2, step 8" in str(e)


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_huge_learning_rate_diverges_cleanly(engine):
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0)) * 1e3
    torch.manual_seed(0)
    vae = VAE(6, 2, encoder=[8], likelihood="gaussian")
    with pytest.raises(DivergenceError) as err:
        fit(vae, x, epochs=30, lr=1e6, engine=engine, **KW)
    msg = str(err.value)
    assert msg.startswith("training diverged: non-finite")
    assert f"epoch {err.value.epoch}" in msg and "lr=1e+06" in msg
    assert all(torch.isfinite(p).all() for p in vae.parameters())


def test_clip_norm_is_optional_validated_and_active():
    a, b = _vae(), _vae()
    fit(a, _x(), epochs=2, **KW)
    fit(b, _x(), epochs=2, clip_norm=1e-3, **KW)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    for bad in (0, -1.0, math.inf, math.nan, "1", True):
        with pytest.raises(PyrovaeError, match="clip_norm"):
            fit(_vae(), _x(), epochs=1, clip_norm=bad, **KW)


# ------------------------------------------------------- run folder + CLI
def _spec(data, **train):
    return {
        "latent_dim": 2, "encoder": {"hidden": [8]}, "likelihood": "bernoulli",
        "train": {"epochs": 8, "batch_size": 8, "checkpoint_every": 2, "seed": 0,
                  "eval_every": 4, **train},
        "data": {"name": str(data), "test_fraction": 0.0}, "eval": {"num_samples": 2},
    }


@pytest.fixture
def nan_in_epoch_6(monkeypatch):
    """The constant schedule returns β = inf at step 27 (0-based): epoch 6, its 3rd step
    (inf, not NaN: Pyro's poutine.scale refuses a NaN scale outright)."""
    original = ConstantSchedule.weight

    def weight(self, step, steps_per_epoch):
        return math.inf if step == 27 else original(self, step, steps_per_epoch)

    monkeypatch.setattr(ConstantSchedule, "weight", weight)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, _x().numpy())
    return path


def test_run_folder_keeps_last_good_checkpoint(tmp_path, data, nan_in_epoch_6):
    run = tmp_path / "r"
    with pytest.raises(DivergenceError) as err:
        pipeline.train_run(_spec(data), run, progress=False)
    msg = str(err.value)
    assert "epoch 6, step 28 (step 3 of 5 in the epoch)" in msg
    assert str(run / runs.CHECKPOINT_FILE) in msg and "end of epoch 5" in msg
    assert "train.lr" in msg and "train.clip_norm" in msg
    state = pio.load_checkpoint(run / runs.CHECKPOINT_FILE)
    assert state["epoch"] == 5 and state["step"] == 25
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    history = json.loads((run / runs.HISTORY_FILE).read_text())["records"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert not (run / runs.METRICS_FILE).exists()
    # the kept state is the undisturbed run's state after epoch 5
    pipeline.train_run(_spec(data, epochs=5), tmp_path / "ref", progress=False)
    ref = pio.load_checkpoint(tmp_path / "ref" / runs.CHECKPOINT_FILE)
    for k, v in ref["model"].items():
        assert torch.equal(state["model"][k], v), k
    # the run folder still evaluates
    assert math.isfinite(pipeline.evaluate_run(run, num_samples=2)["elbo"])


def test_pyro_engine_keeps_its_optimiser_state_in_the_kept_checkpoint(
    tmp_path, data, nan_in_epoch_6
):
    run = tmp_path / "r"
    with pytest.raises(DivergenceError, match="epoch 6"):
        pipeline.train_run(_spec(data, engine="pyro"), run, progress=False)
    state = pio.load_checkpoint(run / runs.CHECKPOINT_FILE)
    assert state["epoch"] == 5 and state["engine"] == "pyro"
    pipeline.train_run(_spec(data, epochs=5, engine="pyro"), tmp_path / "ref", progress=False)
    ref = pio.load_checkpoint(tmp_path / "ref" / runs.CHECKPOINT_FILE)
    # encoder [8] and its mirror, the decoder [8]: 2 + 2 layers, 8 tensors
    assert state["optimizer"].keys() == ref["optimizer"].keys() and len(ref["optimizer"]) == 8
    for k, v in ref["optimizer"].items():
        assert torch.equal(state["optimizer"][k]["state"][0]["exp_avg"], v["state"][0]["exp_avg"])


def test_cli_divergence_is_one_line_exit_2(tmp_path, data, nan_in_epoch_6, capsys):
    import yaml

    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(_spec(data)))
    code = main(["train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pyrovae train: error: training diverged")
    assert "epoch 6, step 28" in err and "Traceback" not in err
