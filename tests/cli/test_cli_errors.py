"""CLI errors: one line on stderr, exit code 2, no traceback, nothing written; and
random malformed command lines (hypothesis) end the same way or reach training."""

from __future__ import annotations

import os
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import Trainer
from pyrovae.cli import main
from pyrovae.runs import pipeline


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    x = (np.random.default_rng(0).random((30, 5)) > 0.5).astype(np.float32)
    np.save(d / "bin.npy", x)
    np.save(d / "real.npy", np.random.default_rng(0).random((30, 5)).astype(np.float32))
    np.save(d / "nan.npy", np.array([[0.0, np.nan], [1.0, 0.0]], np.float32))
    np.save(d / "1d.npy", np.zeros(4))
    np.save(d / "str.npy", np.array([["a", "b"]]))
    np.save(d / "empty.npy", np.zeros((0, 3)))
    (d / "bad.yaml").write_text("train: {epochs: [\n")
    (d / "bad.toml").write_text("a = \n")
    (d / "list.yaml").write_text("- 1\n")
    (d / "ok.yaml").write_text("latent_dim: 2\nencoder: {hidden: [4]}\n")
    spec = {"latent_dim": 2, "encoder": {"hidden": [4]}, "likelihood": "bernoulli",
            "train": {"epochs": 1, "batch_size": 10}, "eval": {"num_samples": 2},
            "data": {"name": str(d / "bin.npy"), "test_fraction": 0.0}}
    pipeline.train_run(spec, d / "run", progress=False)
    return d


CASES = [
    (["train", "--data", "{d}/missing.npy"], "data file not found"),
    (["train", "--data", "no_such_set"], "unknown data set 'no_such_set'"),
    (["train", "--data", "{d}/nan.npy"], "1 NaN and 0 infinite values"),
    (["train", "--data", "{d}/1d.npy"], "expected shape (n, d)"),
    (["train", "--data", "{d}/str.npy"], "expected numbers, got dtype <U1"),
    (["train", "--data", "{d}/empty.npy"], "empty data"),
    (["train", "--data", "{d}/real.npy", "--set", "likelihood=bernoulli"],
     "outside the support of the 'bernoulli' likelihood"),
    (["train", "--config", "{d}/bad.yaml"], "is malformed"),
    (["train", "--config", "{d}/bad.toml"], "is malformed"),
    (["train", "--config", "{d}/list.yaml"], "expected a mapping at the top level"),
    (["train", "--config", "{d}/nope.yaml"], "config file not found"),
    (["train", "--set", "latnet_dim=3"], "latnet_dim: unknown spec key"),
    (["train", "--set", "prior.components=0", "--set", "prior.family=mixture"],
     "prior.components: expected a positive integer, got 0"),
    (["train", "--set", "nonsense"], "expected KEY.PATH=VALUE"),
    (["train", "--epochs", "0"], "train.epochs: expected a positive integer, got 0"),
    (["train", "--device", "cuda:5"], "train.device"),
    (["train", "--seed", "-1"], "train.seed"),
    (["train", "--resume", "{d}/nope"], "run folder not found"),
    (["train", "--out", "{d}/run"], "exists; pass --overwrite"),
    (["evaluate", "{d}/nope"], "run folder not found"),
    (["evaluate", "{d}", "-k", "3"], "not a pyrovae run folder"),
    (["evaluate", "{d}/run", "-k", "0"], "--num-samples: expected an integer in [1, 1000000]"),
    (["sample", "{d}/run", "-n", "0"], "--num: expected an integer"),
    (["sample", "{d}/run", "--out", "{d}/s.jpg"], "expected a .png or .npy"),
    (["sample", "{d}/run", "--out", "{d}/s.png"], "not images"),
    (["sample", "{d}/run", "--seed", "-4"], "--seed"),
    (["sample", "{d}/run", "--out", "{d}/bin.npy"], "exists; pass --overwrite"),
]


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_user_errors_are_one_line_exit_2_and_write_nothing(files, argv, needle, capsys,
                                                          monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # where a default runs/ folder would appear
    before = sorted(p.name for p in files.iterdir())
    run_before = {p.name: p.read_bytes() for p in (files / "run").iterdir() if p.is_file()}
    code = main([a.format(d=files) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith(f"pyrovae {argv[0]}: error: "), err
    assert needle in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in files.iterdir()) == before
    assert {p.name: p.read_bytes() for p in (files / "run").iterdir() if p.is_file()} \
        == run_before
    assert list(tmp_path.iterdir()) == []


def test_argument_errors_exit_2_one_line(capsys):
    for argv in (["train", "--epochs", "many"], ["frobnicate"], ["evaluate"],
                 ["sample", "x", "-n", "1.5"], []):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err


def test_unwritable_output_is_one_line(files, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["sample", str(files / "run"), "--out", str(blocker / "s.npy")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.slow
def test_console_script_prints_no_traceback(tmp_path):
    """The real ``pyrovae`` process: exit status 2, exactly one line on stderr."""
    exe = Path(sys.executable).with_name("pyrovae")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pyrovae.cli"]
    r = subprocess.run([*cmd, "train", "--data", str(tmp_path / "gone.npy"), "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert r.stderr == f"pyrovae train: error: data file not found: {tmp_path / 'gone.npy'}\n"
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


# ======================================================= random command lines
_EXAMPLES = int(os.environ.get("PYROVAE_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 60, deadline=None, derandomize=not _EXAMPLES,
                    suppress_health_check=list(HealthCheck))


class ReachedTraining(Exception):
    """Raised instead of training: the command line was valid all the way through."""


_junk = st.text(string.ascii_letters + string.digits + "-_.=/:,[]{} ", max_size=12)
_numbers = st.one_of(st.integers(-3, 40), st.integers(2**62, 2**70), st.floats()).map(str)
_set_values = st.one_of(
    _junk, _numbers,
    st.sampled_from(["null", "[]", "[4]", "{}", "mixture", "bernoulli", "gaussian", "true",
                     "[1, -2]", "{family: linear}", "cuda", "'1e-3'", "-.inf", ".nan"]),
)
_set_keys = st.one_of(
    st.sampled_from(["latent_dim", "data_dim", "encoder.hidden", "decoder.activation",
                     "prior", "prior.family", "prior.components", "likelihood",
                     "likelihood.family", "guide", "objective.num_particles", "kl_weight",
                     "kl_weight.family", "train.epochs", "train.lr", "train.batch_size",
                     "train.seed", "train.device", "train.engine", "train.clip_norm",
                     "data.name", "data.transform", "data.test_fraction", "eval.num_samples",
                     "train", "data", "bogus.key", "train..lr", ""]),
    _junk,
)
_sets = st.lists(st.builds(lambda k, v: ["--set", f"{k}={v}"], _set_keys, _set_values),
                 max_size=3).map(lambda xs: [a for pair in xs for a in pair])
_paths = st.sampled_from(["{d}/bin.npy", "{d}/real.npy", "{d}/run", "{d}/bad.yaml",
                          "{d}/ok.yaml", "digits", "{d}/out.npy", "{d}/out.png", "{d}",
                          "{d}/nope", "{d}/run/spec.yaml"])
_value = st.one_of(_paths, _numbers, _junk)
_OPTIONS = {
    "train": (["--epochs", "--seed", "--device", "--data", "--config", "--out", "--resume",
               "--set"], ["--overwrite", "--quiet"]),
    "evaluate": (["-k", "--num-samples", "--split"], ["--json"]),
    "sample": (["-n", "--num", "--out", "--seed"], ["--draw", "--overwrite"]),
    "families": (["--kind"], ["--json"]),
}


@st.composite
def command_lines(draw):
    """A subcommand with mostly its own options (values often wrong), now and then junk."""
    command = draw(st.sampled_from(sorted(_OPTIONS)))
    with_value, switches = _OPTIONS[command]
    argv = [command]
    if command in ("evaluate", "sample"):
        argv.append(draw(st.sampled_from(["{d}/run", "{d}/run", "{d}", "{d}/nope"])))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 9))
        if kind < 6:
            argv += [draw(st.sampled_from(with_value)), draw(_value)]
        elif kind < 9:
            argv.append(draw(st.sampled_from(switches)))
        else:
            argv.append(draw(_junk))
    if command == "train":
        argv += draw(_sets)
    return argv


@SETTINGS
@given(argv=command_lines())
def test_random_command_lines_end_cleanly(files, argv, monkeypatch, tmp_path_factory, capsys):
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)

    def no_training(self):
        raise ReachedTraining

    monkeypatch.setattr(Trainer, "run", no_training)
    work = tmp_path_factory.mktemp("work")  # outputs of sample go to a scratch copy
    import shutil

    shutil.copytree(files / "run", work / "run")
    for name in ("bin.npy", "real.npy", "bad.yaml", "ok.yaml"):
        shutil.copy(files / name, work / name)
    argv = [a.replace("{d}", str(work)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        code = e.code
    except ReachedTraining:
        return
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.count("\n") == 1 and "error" in err and "Traceback" not in err, (argv, err)
