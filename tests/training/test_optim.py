"""The optimiser and the learning-rate schedule, the same in both engines."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae import VAE
from pyrovae.errors import PyrovaeError
from pyrovae.runs.spec import normalize_spec, spec_hash
from pyrovae.training.optim import lr_at
from pyrovae.training.trainer import fit


def test_schedules_in_closed_form():
    assert lr_at(7, lr=1.0) == 1.0
    assert lr_at(7, lr=1.0, schedule="step", gamma=0.5, step=3) == 0.25
    assert lr_at(3, lr=2.0, schedule="exponential", gamma=0.5) == 0.25
    assert lr_at(0, lr=1.0, schedule="cosine", epochs=4) == 1.0
    assert lr_at(2, lr=1.0, schedule="cosine", epochs=4) == pytest.approx(0.5)


@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_each_epoch_trains_at_the_schedules_rate_with_adamw(engine, binary_data):
    torch.manual_seed(0)
    vae = VAE(12, 2, encoder=[8])
    h = fit(vae, binary_data, epochs=4, batch_size=20, lr=0.01, engine=engine,
            optimizer="adamw", weight_decay=0.01, lr_schedule="step", lr_gamma=0.5,
            lr_step=2, progress=False, eval_every=0)
    assert h["lr"] == pytest.approx([0.01, 0.01, 0.005, 0.005])
    assert all(math.isfinite(v) for v in h["train_loss"])


def test_adamw_is_not_adam_and_the_default_is_plain_adam(binary_data):
    def train(**kw):
        torch.manual_seed(0)
        vae = VAE(12, 2, encoder=[8])
        fit(vae, binary_data, epochs=2, batch_size=20, lr=0.01, progress=False,
            eval_every=0, seed=3, **kw)
        return torch.cat([p.detach().flatten() for p in vae.parameters()])

    adam = train()
    assert torch.equal(adam, train(optimizer="adam", weight_decay=0.0, betas=[0.9, 0.999]))
    assert not torch.equal(adam, train(betas=(0.5, 0.9)))  # the betas reach the optimiser
    assert not torch.equal(adam, train(optimizer="adamw", weight_decay=0.1))


def test_threads_are_set_while_training_and_restored(binary_data):
    before = torch.get_num_threads()
    seen = []
    fit(VAE(12, 2, encoder=[8]), binary_data, epochs=1, threads=1, progress=False,
        eval_every=0, callbacks=[lambda t, r: seen.append(torch.get_num_threads())])
    assert seen == [1] and torch.get_num_threads() == before


def test_bad_options_are_refused_naming_them():
    with pytest.raises(PyrovaeError, match="optimizer"):
        fit(VAE(4, 2), torch.zeros(8, 4), optimizer="sgd")
    with pytest.raises(PyrovaeError, match="lr_schedule"):
        normalize_spec({"train": {"lr_schedule": "linear"}})
    for bad in ([0.9], [0.9, 1.0], [-0.1, 0.9], "0.9,0.99", [0.9, 0.99, 0.5]):
        with pytest.raises(PyrovaeError, match=r"^train\.betas: expected two numbers in \[0, 1\)"):
            normalize_spec({"train": {"betas": bad}})
    assert normalize_spec({"train": {"betas": (0.5, 0.6)}})["train"]["betas"] == [0.5, 0.6]


def test_new_options_at_their_defaults_leave_the_spec_hash_unchanged():
    """A run folder written before these options (and the ``model`` kind) existed still
    verifies: its spec, normalized now, hashes as it did."""
    spec = normalize_spec({})
    old = {k: v for k, v in spec.items() if k != "model"}
    old["train"] = {k: v for k, v in spec["train"].items()
                    if k not in ("optimizer", "weight_decay", "betas", "lr_schedule",
                                 "lr_gamma", "lr_step", "threads")}
    assert spec_hash(spec) == spec_hash(old)
    assert spec_hash(normalize_spec({"train": {"optimizer": "adamw"}})) != spec_hash(spec)
    # threads: null (its default until 1 became the default) hashes as before too
    assert spec_hash(normalize_spec({"train": {"threads": None}})) == spec_hash(spec)
    assert spec_hash(normalize_spec({"train": {"threads": 2}})) != spec_hash(spec)


def test_burda_schedule_is_3_to_the_i_epochs_at_10_to_the_minus_i_over_7():
    from pyrovae.training.optim import burda_epochs, burda_stage

    assert [burda_stage(e) for e in range(14)] == [0, 1, 1, 1, *[2] * 9, 3]
    assert burda_epochs(8) == 3280 and burda_epochs(4) == 40 and burda_epochs(0) == 0
    assert burda_stage(3279) == 7 and burda_stage(3280) == 8
    assert lr_at(0, lr=1e-3, schedule="burda") == 1e-3
    assert lr_at(3, lr=1e-3, schedule="burda") == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert lr_at(3279, lr=1e-3, schedule="burda") == pytest.approx(1e-3 * 10 ** (-1))
    assert normalize_spec({"train": {"lr_schedule": "burda"}})["train"]["lr_schedule"] == "burda"


def test_fit_follows_the_burda_schedule(binary_data):
    h = fit(VAE(12, 2, encoder=[8]), binary_data, epochs=5, batch_size=20, lr=0.01,
            lr_schedule="burda", progress=False, eval_every=0)
    f = 10 ** (-1 / 7)
    assert h["lr"] == pytest.approx([0.01, 0.01 * f, 0.01 * f, 0.01 * f, 0.01 * f ** 2])
