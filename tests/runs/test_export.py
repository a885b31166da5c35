"""``pyrovae export RUN``: the run's weights as model.safetensors plus its spec, read
back in a fresh process (no pyrovae checkpoint, nothing unpickled)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from pyrovae import PyrovaeError
from pyrovae.cli import main
from pyrovae.runs import pipeline
from pyrovae.runs.export import export_run

LOAD = textwrap.dedent('''
    import json, sys, torch
    torch.set_num_threads(1)
    import pyrovae
    from pyrovae.estimators.evaluate import summary
    vae = pyrovae.load_vae(sys.argv[1])
    x = torch.load(sys.argv[2], weights_only=True)
    print(json.dumps(summary(pyrovae.evaluate(vae, x, num_samples=int(sys.argv[3])))))
''')


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    np.save(root / "x.npy", (rng.random((80, 10)) > 0.6).astype(np.float32))
    spec = {"latent_dim": 2, "encoder": {"hidden": [8]},
            "train": {"epochs": 3, "batch_size": 16, "seed": 1},
            "data": {"name": str(root / "x.npy"), "test_fraction": 0.25},
            "eval": {"num_samples": 7}}
    pipeline.train_run(spec, root / "run", progress=False)
    return root / "run"


def test_exported_weights_reproduce_evaluate_in_a_fresh_process(run, tmp_path, capsys):
    assert main(["export", str(run)]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    folder = run / "export"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "spec.yaml"]
    expected = pipeline.evaluate_run(run)  # what `pyrovae evaluate RUN` prints
    _, _, test = pipeline.load_run_data(run, pipeline.runs.read_spec(run / "spec.yaml"))
    torch.save(test.x, tmp_path / "x.pt")
    (tmp_path / "load.py").write_text(LOAD)
    done = subprocess.run([sys.executable, str(tmp_path / "load.py"), str(folder),
                           str(tmp_path / "x.pt"), "7"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout)
    run_keys = ("split", "which", "epochs_done", "epochs", "finished", "context")
    assert there == {k: v for k, v in expected.items() if k not in run_keys}


def test_export_refuses_to_replace_without_overwrite_and_foreign_folders(run, tmp_path,
                                                                          capsys):
    out = tmp_path / "mine"
    export_run(run, out)
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PyrovaeError, match="holds files pyrovae did not write"):
        export_run(run, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_best_without_a_best_checkpoint_is_one_clear_line(run, tmp_path, capsys):
    spec = pipeline.runs.read_spec(run / "spec.yaml")
    spec = spec.replace({"checkpoint": {**spec["checkpoint"], "keep_best": False}})
    pipeline.train_run(spec, tmp_path / "nobest", progress=False)
    assert not (tmp_path / "nobest" / "best.pt").exists()
    assert main(["export", str(tmp_path / "nobest"), "--which", "best"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no best checkpoint" in err
    assert main(["export", str(run), "--which", "best", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "model.safetensors").is_file()
