"""Early stopping, best and periodic checkpoints through the run folder: a resumed run
(also one SIGKILLed in the middle of writing best.pt or a periodic checkpoint) ends
bitwise equal to an uninterrupted one, with the same best.pt, checkpoints/ and logs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pyrovae import PyrovaeError, Trainer
from pyrovae import io as pio
from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.training.tracking import read_csv_log


def _data(path: Path, n: int = 96, d: int = 12, binary: bool = False) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((n, d))
    np.save(path, (x > 0.6 if binary else x).astype(np.float32))
    return path


def _spec(data: Path, epochs: int = 12, **extra) -> dict:
    return {
        "latent_dim": 2, "encoder": {"hidden": [12]},
        "likelihood": {"family": "bernoulli", "dynamic_binarization": True},
        "train": {"epochs": epochs, "batch_size": 16, "checkpoint_every": 3, "seed": 3},
        "data": {"name": str(data), "test_fraction": 0.25},
        "eval": {"num_samples": 3},
        "checkpoint": {"every": 2, "keep": 2, "keep_best": True},
        "track": ["csv", "jsonl"],
        **extra,
    }


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _untimed(records: list) -> list:
    """Records without their wall times (which no two runs share)."""
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in records]


def _same_state(a: Path, b: Path) -> None:
    sa, sb = pio.load_checkpoint(a), pio.load_checkpoint(b)
    assert sa["epoch"] == sb["epoch"] and sa["step"] == sb["step"], a.name
    ta, tb = list(_tensors(sa)), list(_tensors(sb))
    assert len(ta) == len(tb) > 0
    assert all(torch.equal(x, y) for x, y in zip(ta, tb)), a.name
    assert _untimed(sa["history"]["records"]) == _untimed(sb["history"]["records"]), a.name


def _same_run(a: Path, b: Path) -> None:
    """Every checkpoint, the history and its logs: the same in both run folders."""
    for name in (runs.CHECKPOINT_FILE, runs.BEST_FILE):
        _same_state(a / name, b / name)
    pa = sorted(p.name for p in (a / runs.CHECKPOINTS_DIR).iterdir())
    assert pa == sorted(p.name for p in (b / runs.CHECKPOINTS_DIR).iterdir())
    for name in pa:
        _same_state(a / runs.CHECKPOINTS_DIR / name, b / runs.CHECKPOINTS_DIR / name)
    ha = json.loads((a / runs.HISTORY_FILE).read_text())["records"]
    assert _untimed(ha) == _untimed(json.loads((b / runs.HISTORY_FILE).read_text())["records"])
    assert read_csv_log(a / "history.csv") == ha  # the logs equal history.json
    assert [json.loads(x) for x in (a / "history.jsonl").read_text().splitlines()] == ha
    ma, mb = (json.loads((p / runs.METRICS_FILE).read_text()) for p in (a, b))
    assert ma["test"] == mb["test"] and ma.get("best") == mb.get("best")
    assert ma.get("stopped_early") == mb.get("stopped_early")


def test_early_stopping_ends_the_run_and_keeps_the_best(tmp_path):
    spec = _spec(_data(tmp_path / "x.npy"), epochs=200,
                 early_stopping={"enabled": True, "patience": 3})
    m = pipeline.train_run(spec, tmp_path / "run", progress=False)
    stop = m["stopped_early"]
    assert stop["after_epoch"] == m["epochs"] < 200
    records = json.loads((tmp_path / "run" / runs.HISTORY_FILE).read_text())["records"]
    elbos = [r["test_elbo"] for r in records]
    best = int(np.argmax(elbos))
    assert stop["best_epoch"] == m["best"]["epoch"] == records[best]["epoch"]
    assert len(records) - 1 - best >= 3  # patience 3: no improvement in the last 3
    state = pio.load_checkpoint(tmp_path / "run" / runs.BEST_FILE)
    assert state["epoch"] == stop["best_epoch"]
    assert pio.load_checkpoint(tmp_path / "run" / runs.CHECKPOINT_FILE)["epoch"] == m["epochs"]
    kept = sorted(p.name for p in (tmp_path / "run" / runs.CHECKPOINTS_DIR).iterdir())
    last_even = m["epochs"] - m["epochs"] % 2
    assert kept == [f"epoch-{e:06d}.pt" for e in (last_even - 2, last_even)]
    best_eval = pipeline.evaluate_run(tmp_path / "run", which="best")
    assert best_eval["which"] == "best" and best_eval != pipeline.evaluate_run(tmp_path / "run")
    with pytest.raises(pipeline.RunComplete, match="early stopping ended it"):
        pipeline.resume_run(tmp_path / "run", progress=False)
    assert main(["evaluate", str(tmp_path / "run"), "--which", "best", "-k", "2"]) == 0


def test_interrupted_early_stopped_run_resumes_bitwise(tmp_path, monkeypatch):
    spec = _spec(_data(tmp_path / "x.npy"), epochs=60,
                 early_stopping={"enabled": True, "patience": 4})
    original = Trainer._train_epoch
    calls = {"n": 0}

    def dies_in_epoch_8(self):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_epoch_8)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_run(spec, tmp_path / "a", progress=False)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert pio.load_checkpoint(tmp_path / "a" / runs.CHECKPOINT_FILE)["epoch"] == 6
    pipeline.resume_run(tmp_path / "a", progress=False)
    pipeline.train_run(spec, tmp_path / "b", progress=False)
    _same_run(tmp_path / "a", tmp_path / "b")


#: In the killed process: the ``occurrence``-th write of file ``target`` stops half-way
#: through, by SIGKILL (its temporary file left behind, half written).
KILLER = textwrap.dedent('''
    import os, signal, sys, tempfile, torch
    from pathlib import Path
    torch.set_num_threads(1)
    import pyrovae.io as pio
    target, occurrence, cfg, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    write, seen = pio.atomic_write_bytes, {"n": 0}

    def dying_write(path, data):
        path = Path(path)
        if path.name == target:
            seen["n"] += 1
            if seen["n"] == occurrence:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                           suffix=pio.TEMP_SUFFIX)
                os.write(fd, data[: len(data) // 2])
                os.fsync(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return write(path, data)

    pio.atomic_write_bytes = dying_write
    from pyrovae.cli import main
    raise SystemExit(main(["train", "--config", cfg, "--out", out, "--quiet"]))
''')


@pytest.mark.parametrize("target,occurrence", [("best.pt", 2), ("epoch-000008.pt", 1)],
                         ids=["best", "periodic"])
def test_sigkill_while_writing_a_checkpoint_leaves_a_folder_that_resumes_bitwise(
        tmp_path, target, occurrence):
    spec = _spec(_data(tmp_path / "x.npy"), epochs=12,
                 early_stopping={"enabled": True, "patience": 5})
    cfg = tmp_path / "spec.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    (tmp_path / "killer.py").write_text(KILLER)
    killed = tmp_path / "killed"
    done = subprocess.run([sys.executable, str(tmp_path / "killer.py"), target,
                           str(occurrence), str(cfg), str(killed)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr  # killed by SIGKILL mid-write
    where = killed if target == "best.pt" else killed / runs.CHECKPOINTS_DIR
    assert [p.name for p in where.iterdir() if p.name.startswith(f".{target}.")]
    assert not (killed / runs.METRICS_FILE).exists()

    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert not [p for p in where.iterdir() if p.name.startswith(f".{target}.")]
    pipeline.train_run(spec, tmp_path / "ref", progress=False)
    _same_run(killed, tmp_path / "ref")


def test_early_stopping_on_a_run_without_held_out_data_is_refused(tmp_path):
    spec = _spec(_data(tmp_path / "x.npy"), early_stopping={"enabled": True})
    spec["data"]["test_fraction"] = 0.0
    with pytest.raises(PyrovaeError, match="no held-out data"):
        pipeline.train_run(spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_track_names_are_checked(tmp_path):
    spec = _spec(_data(tmp_path / "x.npy"), track=["csv", "tensorbord"])
    with pytest.raises(PyrovaeError, match=r"track\[1\]: expected one of"):
        pipeline.train_run(spec, tmp_path / "run", progress=False)


def test_check_of_a_tracked_run_logs_its_numbers_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = _spec(_data(tmp_path / "x.npy", binary=True), epochs=3,
                 track=["csv", "tensorboard"])
    spec["likelihood"] = "bernoulli"
    pipeline.train_run(spec, tmp_path / "run", progress=False)
    assert main(["check", str(tmp_path / "run"), "--quick", "--points", "2", "--samples",
                 "100", "--bdmc-points", "0", "--sbc-sims", "0",
                 "--collapse-points", "20"]) == 0
    report = json.loads((tmp_path / "run" / "check" / "report.json").read_text())
    acc = EventAccumulator(str(tmp_path / "run" / runs.TENSORBOARD_DIR))
    acc.Reload()
    logged = {t: acc.Scalars(t) for t in acc.Tags()["scalars"] if t.startswith("check/")}
    gap = logged["check/summary/mean_gap"]
    assert [e.step for e in gap] == [3]
    assert gap[0].value == pytest.approx(report["summary"]["mean_gap"], rel=1e-6)
    assert "check/collapse/active_units" in logged
    assert not any("settings" in t or t.startswith("check/data/") for t in logged)
    assert "train/elbo" in acc.Tags()["scalars"]  # beside the training curves
    assert runs.folder_kind(tmp_path / "run") == "run"


def test_a_tracker_whose_package_is_missing_is_refused_before_anything_is_written(
        tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    spec = _spec(_data(tmp_path / "x.npy"), track=["csv", "tensorboard"])
    with pytest.raises(PyrovaeError, match=r"tensorboard is not installed; pip install "):
        pipeline.train_run(spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_evaluate_says_a_run_is_unfinished(tmp_path, monkeypatch, capsys):
    spec = _spec(_data(tmp_path / "x.npy"), epochs=6)
    original = Trainer._train_epoch
    calls = {"n": 0}

    def dies_in_epoch_3(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_run(spec, tmp_path / "a", progress=False)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    m = pipeline.evaluate_run(tmp_path / "a", num_samples=2)
    done = pio.load_checkpoint(tmp_path / "a" / runs.CHECKPOINT_FILE)["epoch"]
    assert done < 6 and (m["epochs_done"], m["epochs"], m["finished"]) == (done, 6, False)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "-k", "2"]) == 0
    assert f"UNFINISHED run: {done} of 6 epochs trained" in capsys.readouterr().out
    pipeline.resume_run(tmp_path / "a", progress=False)
    m = pipeline.evaluate_run(tmp_path / "a", num_samples=2)
    assert (m["epochs_done"], m["epochs"], m["finished"]) == (6, 6, True)
    assert main(["evaluate", str(tmp_path / "a"), "-k", "2"]) == 0
    assert "UNFINISHED" not in capsys.readouterr().out
