"""Safe loading: a checkpoint whose pickle would run code is refused, and the code
does not run, wherever a checkpoint is read (API, evaluate, sample, resume)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae import PyrovaeError, load_run
from pyrovae import io as pio
from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline


class Payload:
    """Unpickling this calls ``os.makedirs(marker)``: code running on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _evil_bytes(marker: Path, legit: dict | None = None) -> bytes:
    state = dict(legit or {"model": {"w": torch.zeros(2)}})
    state["extra"] = Payload(marker)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_payload_is_live_with_an_unsafe_loader(tmp_path):
    """Sanity check of the test itself: an ordinary unpickle does run the payload."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.pt").write_bytes(_evil_bytes(marker))
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_code_and_does_not_run_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(_evil_bytes(marker))
    with pytest.raises(PyrovaeError) as err:
        pio.load_checkpoint(path)
    msg = str(err.value)
    assert "refused to load checkpoint" in msg and "could run code" in msg
    assert "makedirs" in msg and "\n" not in msg
    assert not marker.exists()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safe")
    x = (np.random.default_rng(0).random((30, 5)) > 0.5).astype(np.float32)
    np.save(tmp / "x.npy", x)
    spec = {"latent_dim": 2, "encoder": {"hidden": [4]}, "likelihood": "bernoulli",
            "train": {"epochs": 1, "batch_size": 10}, "eval": {"num_samples": 2},
            "data": {"name": str(tmp / "x.npy"), "test_fraction": 0.0}}
    pipeline.train_run(spec, tmp / "run", progress=False)
    return tmp / "run"


@pytest.mark.parametrize(
    "argv",
    [["evaluate", "{run}"], ["sample", "{run}", "--out", "{tmp}/s.npy"],
     ["train", "--resume", "{run}", "--quiet"]],
    ids=["evaluate", "sample", "resume"],
)
def test_cli_refuses_a_poisoned_run(tmp_path, run_folder, argv, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    legit = pio.load_checkpoint(run / runs.CHECKPOINT_FILE)
    marker = tmp_path / "ran"
    (run / runs.CHECKPOINT_FILE).write_bytes(_evil_bytes(marker, legit))
    code = main([a.format(run=run, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "could run code" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "s.npy").exists()


def test_load_run_and_resume_refuse_code(tmp_path, run_folder):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    marker = tmp_path / "ran"
    (run / runs.CHECKPOINT_FILE).write_bytes(
        _evil_bytes(marker, pio.load_checkpoint(run / runs.CHECKPOINT_FILE))
    )
    with pytest.raises(PyrovaeError, match="could run code"):
        load_run(run)
    with pytest.raises(PyrovaeError, match="could run code"):
        pipeline.resume_run(run, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", os.urandom(2000), "truncated", "list", "no-model",
     "model-not-tensors"],
    ids=["empty", "text", "random", "truncated", "list", "no-model", "model-not-tensors"],
)
def test_corrupt_checkpoints_are_refused_cleanly(tmp_path, run_folder, content):
    path = tmp_path / "c.pt"
    good = (run_folder / runs.CHECKPOINT_FILE).read_bytes()
    if content == "truncated":
        content = good[: len(good) // 2]
    elif isinstance(content, str):
        obj = {"list": [1, 2], "no-model": {"epoch": 1},
               "model-not-tensors": {"model": {"w": [1.0, 2.0]}}}[content]
        buf = io.BytesIO()
        torch.save(obj, buf)
        content = buf.getvalue()
    path.write_bytes(content)
    with pytest.raises(PyrovaeError) as err:
        pio.load_checkpoint(path)
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def test_a_legit_checkpoint_loads(run_folder):
    state = pio.load_checkpoint(run_folder / runs.CHECKPOINT_FILE)
    assert state["epoch"] == 1 and isinstance(state["model"], dict)
    _vae, spec, history = load_run(run_folder)
    assert len(history) == 1 and spec["latent_dim"] == 2
