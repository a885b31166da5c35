"""Run folders: atomic writes, periodic checkpoints, never overwritten unless asked,
nothing written when validation fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml

from pyrovae import PyrovaeError
from pyrovae import io as pio
from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    x = (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float32)
    np.save(path, x)
    return path


def _spec(data: Path, **train) -> dict:
    return {"latent_dim": 2, "encoder": {"hidden": [6]}, "likelihood": "bernoulli",
            "train": {"epochs": 2, "batch_size": 10, "checkpoint_every": 2, **train},
            "data": {"name": str(data), "test_fraction": 0.25},
            "eval": {"num_samples": 2}}


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------- atomic writes
def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.json"
    pio.atomic_write_json(path, {"a": 1})
    pio.atomic_write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o044  # readable by others as with open(): not mkstemp's 0600


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    pio.atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        pio.atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_checkpoints_every_n_epochs_and_at_the_end(tmp_path, data, monkeypatch):
    saved = []
    original = pio.save_checkpoint

    def spy(path, state):
        if Path(path).name == "checkpoint.pt":
            saved.append(state["epoch"])
        original(path, state)

    monkeypatch.setattr(pio, "save_checkpoint", spy)
    pipeline.train_run(_spec(data, epochs=5, checkpoint_every=2), tmp_path / "r",
                       progress=False)
    assert saved == [0, 2, 4, 5]
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == ["best.pt", "checkpoint.pt", "figures", "history.csv", "history.json",
                     "metrics.json", "pyrovae-run.json", "spec.yaml"]


# --------------------------------------------------------- no overwriting
def test_existing_run_is_not_overwritten_unless_asked(tmp_path, data):
    run = tmp_path / "r"
    pipeline.train_run(_spec(data), run, progress=False)
    before = _snapshot(run)
    with pytest.raises(PyrovaeError, match="exists; pass --overwrite"):
        pipeline.train_run(_spec(data, seed=1), run, progress=False)
    assert _snapshot(run) == before
    pipeline.train_run(_spec(data, seed=1), run, overwrite=True, progress=False)
    assert runs.read_spec(run / runs.SPEC_FILE)["train"]["seed"] == 1


def test_overwrite_never_clears_a_folder_that_is_not_a_run(tmp_path, data):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(PyrovaeError, match=r"holds files pyrovae did not write .thesis.tex"):
        pipeline.train_run(_spec(data), folder, overwrite=True, progress=False)
    assert (folder / "thesis.tex").read_text() == "precious"
    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(PyrovaeError, match="not a folder"):
        pipeline.train_run(_spec(data), file, overwrite=True, progress=False)


def test_an_empty_existing_folder_is_used(tmp_path, data):
    (tmp_path / "empty").mkdir()
    pipeline.train_run(_spec(data), tmp_path / "empty", progress=False)
    assert (tmp_path / "empty" / runs.CHECKPOINT_FILE).is_file()


@pytest.mark.parametrize(
    "change",
    [
        {"latent_dim": 0},
        {"train": {"epochs": 2, "lr": -1}},
        {"train": {"device": "cuda:7"}},
        {"train": {"device": "tpu"}},
        {"train": {"seed": 2**40}},
        {"data": {"name": "missing.npy"}},
        {"data": {"name": "no-such-set"}},
        {"likelihood": {"family": "poisson"}, "data_values": -1.0},
        {"data_values": float("nan")},
        {"data_dim": 3},
    ],
    ids=["spec", "lr", "cuda", "device", "seed", "missing-file", "unknown-set",
         "support", "nan", "data_dim"],
)
def test_failed_validation_with_overwrite_writes_nothing(tmp_path, data, change):
    run = tmp_path / "r"
    pipeline.train_run(_spec(data), run, progress=False)
    before = _snapshot(run)
    spec = _spec(data)
    change = dict(change)
    if "data_values" in change:
        x = np.load(data)
        x[0, 0] = change.pop("data_values")
        np.save(data, x)
    for k, v in change.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict) and k != "likelihood":
            spec[k] = {**spec[k], **v}
        else:
            spec[k] = v
    if spec["data"]["name"] == "missing.npy":
        spec["data"]["name"] = str(tmp_path / "missing.npy")
    with pytest.raises(PyrovaeError):
        pipeline.train_run(spec, run, overwrite=True, progress=False)
    assert _snapshot(run) == before
    with pytest.raises(PyrovaeError):
        pipeline.train_run(spec, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()


def test_cli_refuses_existing_run_and_writes_nothing_on_bad_input(tmp_path, data, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(_spec(data)))
    run = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--quiet"]) == 0
    before = _snapshot(run)
    capsys.readouterr()
    for extra in ([], ["--overwrite", "--set", "train.lr=0"],
                  ["--overwrite", "--data", str(tmp_path / "nope.npy")],
                  ["--overwrite", "--epochs", "-3"]):
        code = main(["train", "--config", str(cfg), "--out", str(run), "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert _snapshot(run) == before
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert main(["train", "--config", str(cfg), "--set", "latent_dim=-1"]) == 2
        assert not (tmp_path / "runs").exists()
    finally:
        os.chdir(cwd)
