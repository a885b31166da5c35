"""Resume: a killed run continues from its last checkpoint and ends bitwise equal
to an uninterrupted run (same seed, same thread count, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pyrovae import VAE, PyrovaeError, Trainer
from pyrovae import io as pio
from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.runs.spec import bound_spec_hash, section_hashes
from pyrovae.training.trainer import STATE_KEYS


def _data(path: Path, n: int = 96, d: int = 12, seed: int = 0) -> Path:
    """Intensities in [0, 1] (trained with dynamic binarisation: a per-step RNG use)."""
    rng = np.random.default_rng(seed)
    np.save(path, rng.random((n, d)).astype(np.float32))
    return path


def _spec(data: Path, **train) -> dict:
    return {
        "latent_dim": 2,
        "encoder": {"hidden": [12]},
        "decoder": {"hidden": [12]},
        "likelihood": {"family": "bernoulli", "dynamic_binarization": True},
        "kl_weight": {"family": "linear", "start": 0.1, "warmup_epochs": 3},
        "train": {"epochs": 6, "batch_size": 8, "checkpoint_every": 2, "eval_every": 2,
                  "seed": 3, **train},
        "data": {"name": str(data), "test_fraction": 0.25},
        "eval": {"num_samples": 3},
    }


def _assert_same_state(a: dict, b: dict) -> None:
    """Parameters, optimiser state, RNG states, epoch and step: all bitwise equal."""
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ta, tb = list(runs_tensors(a["optimizer"])), list(runs_tensors(b["optimizer"]))
    assert len(ta) == len(tb) > 0
    for x, y in zip(ta, tb):
        assert torch.equal(x, y)
    assert torch.equal(a["rng_torch"], b["rng_torch"])
    assert torch.equal(a["rng_shuffle"], b["rng_shuffle"])


def runs_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from runs_tensors(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from runs_tensors(v)


def _final(run: Path) -> dict:
    return pio.load_checkpoint(run / runs.CHECKPOINT_FILE)


# ------------------------------------------------------------ the real kill
@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_identical(tmp_path):
    data = _data(tmp_path / "x.npy", n=64)
    spec = _spec(data, epochs=60, checkpoint_every=3, eval_every=5)
    cfg = tmp_path / "spec.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    killed = tmp_path / "killed"
    threads = torch.get_num_threads()
    # The killed process sleeps 10 ms in every step (outside the arithmetic), so that
    # it is surely still running, and almost surely inside an epoch, when killed.
    code = (
        "import time, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from pyrovae.model.likelihoods import BernoulliLikelihood as B\n"
        "prepare = B.prepare_batch\n"
        "B.prepare_batch = lambda self, x: (time.sleep(0.01), prepare(self, x))[1]\n"
        "from pyrovae.cli import main\n"
        f"raise SystemExit(main(['train', '--config', {str(cfg)!r}, '--out', "
        f"{str(killed)!r}, '--quiet']))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / runs.CHECKPOINT_FILE
    deadline = time.monotonic() + 240
    try:
        while True:  # poll until the first periodic checkpoint (epoch 3) is in place
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint in time"
            if ckpt.is_file() and pio.load_checkpoint(ckpt)["epoch"] >= 3:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    at_kill = pio.load_checkpoint(ckpt)
    assert 3 <= at_kill["epoch"] < 60, "the run must be killed mid-run"
    assert not (killed / runs.METRICS_FILE).exists()

    assert main(["train", "--resume", str(killed), "--quiet"]) == 0

    ref = tmp_path / "ref"
    pipeline.train_run(spec, ref, progress=False)
    a, b = _final(killed), _final(ref)
    assert a["epoch"] == 60
    _assert_same_state(a, b)
    ma = runs.read_spec(killed / runs.SPEC_FILE)
    assert ma == runs.read_spec(ref / runs.SPEC_FILE)
    ha = json.loads((killed / runs.HISTORY_FILE).read_text())["records"]
    hb = json.loads((ref / runs.HISTORY_FILE).read_text())["records"]
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    ea = json.loads((killed / runs.METRICS_FILE).read_text())
    eb = json.loads((ref / runs.METRICS_FILE).read_text())
    assert ea["train"] == eb["train"] and ea["test"] == eb["test"]


# ------------------------------------------------ in-process interruption
@pytest.mark.parametrize("engine", ["fast", "pyro"])
def test_interrupted_before_first_periodic_checkpoint_resumes_from_epoch_0(
    tmp_path, monkeypatch, engine
):
    """A run stopped in epoch 3 with checkpoint_every=10 resumes from the epoch-0 checkpoint."""
    data = _data(tmp_path / "x.npy")
    spec = _spec(data, epochs=4, checkpoint_every=10, engine=engine)
    original = Trainer._train_epoch
    calls = {"n": 0}

    def dies_in_third_epoch(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_run(spec, tmp_path / "a", progress=False)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert _final(tmp_path / "a")["epoch"] == 0
    pipeline.resume_run(tmp_path / "a", progress=False)
    pipeline.train_run(spec, tmp_path / "b", progress=False)
    _assert_same_state(_final(tmp_path / "a"), _final(tmp_path / "b"))


@pytest.mark.parametrize(
    "options",
    [
        {"engine": "fast"},
        {"engine": "pyro"},
        {"engine": "fast", "clip_norm": 0.5},
        {"engine": "pyro", "clip_norm": 0.5},
        {"likelihood": {"family": "gaussian", "sigma": "calibrated"}, "data": "real"},
        {"objective": {"family": "renyi_elbo", "num_particles": 3}},
        {"prior": {"family": "mixture", "components": 3}},
        # the schedule's rate changes at the resumed epoch (epoch 2): the resumed run
        # must train that epoch at the new rate, in every engine
        {"engine": "fast", "optimizer": "adamw", "weight_decay": 0.05, "lr_schedule": "step",
         "lr_step": 2, "lr_gamma": 0.5},
        {"engine": "pyro", "optimizer": "adamw", "weight_decay": 0.05, "lr_schedule": "step",
         "lr_step": 2, "lr_gamma": 0.5, "betas": (0.8, 0.95)},
        {"engine": "pyro", "clip_norm": 0.5, "lr_schedule": "exponential", "lr_gamma": 0.7},
        {"engine": "fast", "lr_schedule": "cosine"},
    ],
    ids=["fast", "pyro", "fast-clip", "pyro-clip", "calibrated-sigma", "renyi", "mixture",
         "fast-adamw-step", "pyro-adamw-step", "pyro-clip-exponential", "fast-cosine"],
)
def test_trainer_state_round_trip_is_bitwise(tmp_path, options):
    """state_dict -> checkpoint file -> a fresh Trainer (other init, other RNG) -> same end."""
    options = dict(options)
    torch.manual_seed(0)
    x = torch.rand(40, 6)
    model = {k: options.pop(k) for k in ("likelihood", "prior") if k in options}
    if options.pop("data", None) != "real":
        model.setdefault("likelihood", {"family": "bernoulli", "dynamic_binarization": True})
    kw = dict(epochs=5, batch_size=8, seed=1, eval_every=2, progress=False,
              kl_weight={"family": "linear", "warmup_epochs": 2}, **options)

    def new_vae(seed):
        torch.manual_seed(seed)
        return VAE(6, 2, encoder=[8], **model)

    saved = {}
    vae = new_vae(0)
    t = Trainer(vae, x, test_data=x[:10], **kw)

    def save(tr, rec):
        if rec["epoch"] == 2:
            pio.save_checkpoint(tmp_path / "c.pt", tr.state_dict())

    t.callbacks.append(save)
    t.run()
    saved["end"] = t.state_dict()

    torch.manual_seed(12345)  # a resumed process starts from other RNG states
    vae2 = new_vae(7)
    t2 = Trainer(vae2, x, test_data=x[:10], **kw)
    t2.load_state_dict(pio.load_checkpoint(tmp_path / "c.pt"))
    assert t2.epoch == 2 and len(t2.history) == 2
    t2.run()
    _assert_same_state(t2.state_dict(), saved["end"])
    assert t2.history["train_loss"] == t.history["train_loss"]
    assert t2.history["test_elbo"] == t.history["test_elbo"]


def test_checkpoint_holds_everything_needed(tmp_path):
    data = _data(tmp_path / "x.npy")
    pipeline.train_run(_spec(data, epochs=2), tmp_path / "r", progress=False)
    state = _final(tmp_path / "r")
    for key in (*STATE_KEYS, "spec_hash", "spec_sections", "data_fingerprint", "rng_python",
                "rng_numpy", "num_threads", "format"):
        assert key in state, key
    spec = runs.read_spec(tmp_path / "r" / runs.SPEC_FILE)
    # bound to spec.yaml by hashes: the spec is stored once, in spec.yaml
    assert "spec" not in state and state["spec_hash"] == bound_spec_hash(spec)
    assert state["spec_sections"] == section_hashes(spec)
    assert state["epoch"] == 2 and state["step"] == 2 * 9


# ------------------------------------------------------- extend / finished
def test_resume_may_extend_epochs_bitwise(tmp_path):
    data = _data(tmp_path / "x.npy")
    pipeline.train_run(_spec(data, epochs=3), tmp_path / "short", progress=False)
    m = pipeline.resume_run(tmp_path / "short", _spec(data, epochs=5), progress=False)
    assert m["epochs"] == 5
    assert runs.read_spec(tmp_path / "short" / runs.SPEC_FILE)["train"]["epochs"] == 5
    pipeline.train_run(_spec(data, epochs=5), tmp_path / "long", progress=False)
    _assert_same_state(_final(tmp_path / "short"), _final(tmp_path / "long"))


def test_killed_after_extending_epochs_resumes_to_the_new_number(tmp_path, monkeypatch):
    """spec.yaml already says 5 epochs, the checkpoint (epoch 3) still 3: resume goes to 5."""
    data = _data(tmp_path / "x.npy")
    run = tmp_path / "r"
    pipeline.train_run(_spec(data, epochs=3, engine="pyro"), run, progress=False)
    spec = yaml.safe_load((run / runs.SPEC_FILE).read_text())
    spec["train"]["epochs"] = 5
    (run / runs.SPEC_FILE).write_text(yaml.safe_dump(spec))
    assert pipeline.resume_run(run, progress=False)["epochs"] == 5
    pipeline.train_run(_spec(data, epochs=5, engine="pyro"), tmp_path / "ref", progress=False)
    _assert_same_state(_final(run), _final(tmp_path / "ref"))


def test_resume_finished_run_says_it_is_complete_and_changes_nothing(tmp_path):
    data = _data(tmp_path / "x.npy")
    pipeline.train_run(_spec(data, epochs=2), tmp_path / "r", progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    with pytest.raises(pipeline.RunComplete, match=r"is complete \(2 of 2 epochs"):
        pipeline.resume_run(tmp_path / "r", progress=False)
    after = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    assert after == before


# ---------------------------------------------------------------- refusals
def test_resume_refuses_a_different_spec_and_names_the_keys(tmp_path):
    data = _data(tmp_path / "x.npy")
    run = tmp_path / "r"
    pipeline.train_run(_spec(data, epochs=2), run, progress=False)
    before = (run / runs.CHECKPOINT_FILE).read_bytes()
    other = _spec(data, epochs=2, lr=0.01)
    other["prior"] = {"family": "mixture", "components": 3}
    with pytest.raises(PyrovaeError) as err:
        pipeline.resume_run(run, other, progress=False)
    msg = str(err.value)
    assert "different spec" in msg and "train.lr" in msg and "prior.family" in msg
    assert "0.001" in msg and "0.01" in msg
    assert (run / runs.CHECKPOINT_FILE).read_bytes() == before


def test_resume_refuses_different_data(tmp_path):
    data = _data(tmp_path / "x.npy")
    run = tmp_path / "r"
    pipeline.train_run(_spec(data, epochs=2), run, progress=False)
    _data(data, seed=1)  # same shape, other values
    with pytest.raises(PyrovaeError, match="different data") as err:
        pipeline.resume_run(run, progress=False)
    assert "fingerprint" in str(err.value)
    _data(data, n=120)  # other shape
    with pytest.raises(PyrovaeError, match=r"different data.*\(90, 12\).*\(72, 12\)"):
        pipeline.resume_run(run, progress=False)


def test_resume_refuses_fewer_epochs_and_edited_spec_file(tmp_path):
    data = _data(tmp_path / "x.npy")
    run = tmp_path / "r"
    pipeline.train_run(_spec(data, epochs=3), run, progress=False)
    with pytest.raises(PyrovaeError, match=r"train\.epochs: 2 is fewer than the 3 epochs"):
        pipeline.resume_run(run, _spec(data, epochs=2), progress=False)
    spec = yaml.safe_load((run / runs.SPEC_FILE).read_text())
    spec["latent_dim"] = 3
    (run / runs.SPEC_FILE).write_text(yaml.safe_dump(spec))
    with pytest.raises(PyrovaeError, match=r"no longer matches the checkpoint.*latent_dim"):
        pipeline.resume_run(run, progress=False)


def test_resume_refuses_missing_run_or_checkpoint(tmp_path):
    with pytest.raises(PyrovaeError, match="run folder not found"):
        pipeline.resume_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PyrovaeError, match="not a pyrovae run folder"):
        pipeline.resume_run(tmp_path / "empty")
    data = _data(tmp_path / "x.npy")
    pipeline.train_run(_spec(data, epochs=1), tmp_path / "r", progress=False)
    (tmp_path / "r" / runs.CHECKPOINT_FILE).unlink()
    with pytest.raises(PyrovaeError, match="no checkpoint to resume from"):
        pipeline.resume_run(tmp_path / "r")


def test_load_state_dict_refuses_a_state_that_does_not_fit():
    torch.manual_seed(0)
    x = (torch.rand(20, 6) > 0.5).float()
    t = Trainer(VAE(6, 2, encoder=[8]), x, epochs=2, batch_size=5, progress=False)
    state = t.state_dict()
    with pytest.raises(PyrovaeError, match="missing"):
        t.load_state_dict({"model": state["model"]})
    other = Trainer(VAE(6, 3, encoder=[8]), x, epochs=2, batch_size=5, progress=False)
    with pytest.raises(PyrovaeError, match="parameters do not match"):
        other.load_state_dict(state)
    fewer = Trainer(VAE(6, 2, encoder=[8]), x[:10], epochs=2, batch_size=5, progress=False)
    with pytest.raises(PyrovaeError, match="num_data"):
        fewer.load_state_dict(state)
    pyro_t = Trainer(VAE(6, 2, encoder=[8]), x, epochs=2, batch_size=5, progress=False,
                     engine="pyro")
    with pytest.raises(PyrovaeError, match="engine"):
        pyro_t.load_state_dict(state)


def test_cli_resume(tmp_path, capsys):
    data = _data(tmp_path / "x.npy")
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(_spec(data, epochs=2)))
    run = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--quiet"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert _final(run)["epoch"] == 3
    capsys.readouterr()
    for argv, needle in [
        (["--set", "train.lr=0.5"], "train.lr: run has 0.001, given 0.5"),
        (["--seed", "9"], "train.seed"),
        (["--data", "digits"], "data.name"),
        (["--out", str(tmp_path / "x")], "takes no --out"),
        (["--overwrite"], "takes no --out or --overwrite"),
    ]:
        assert main(["train", "--resume", str(run), "--quiet", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
        assert "Traceback" not in err


def test_train_threads_are_the_runs_and_resume_compares_with_them(tmp_path):
    """A run trained with train.threads records that count; resuming it with the same
    spec trains with it again, so no thread-count warning (warnings are errors here),
    whatever torch's own count in the resuming process."""
    data = _data(tmp_path / "x.npy")
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    spec = _spec(data, epochs=2, threads=want)
    pipeline.train_run(spec, tmp_path / "r", progress=False)
    assert _final(tmp_path / "r")["num_threads"] == want
    assert torch.get_num_threads() == before  # restored after the run
    pipeline.resume_run(tmp_path / "r", {**spec, "train": {**spec["train"], "epochs": 3}},
                        progress=False)
    assert _final(tmp_path / "r")["num_threads"] == want and torch.get_num_threads() == before
