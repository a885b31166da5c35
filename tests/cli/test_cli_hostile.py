"""Hostile input through the CLI (issue 12): one line on stderr, exit 2, nothing written,
never a traceback; bounded parsing; two real processes on one run folder."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from pyrovae import io as pio
from pyrovae.cli import MAX_MESSAGE, main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.runs.spec import (
    MAX_NUM_SAMPLES,
    apply_overrides,
    bound_spec_hash,
    load_spec,
    normalize_spec,
)

HUGE = "9" * 5000  # beyond Python's 4300-digit limit on int parsing
BIG = "9" * 4000  # parses, but is far beyond any bound

# The YAML alias "bomb": 9 levels of 9 aliases each expand to 9**9 values.
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_run) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    tiny_run(d)
    return d


def _fails(argv: list[str], capsys, needle: str) -> str:
    """Exit 2, exactly one short line on stderr holding ``needle``, nothing on stdout."""
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1 and len(out.err) <= MAX_MESSAGE + 40, out.err[:300]
    assert needle in out.err, out.err
    assert "Traceback" not in out.err and ".tmp" not in out.err
    return out.err


CONFIGS = {
    "huge int yaml": ("c.yaml", f"train: {{epochs: {HUGE}}}\n", "longer than 4300 digits"),
    "huge int json": ("c.json", f'{{"train": {{"epochs": {HUGE}}}}}', "longer than 4300 digits"),
    "huge int toml": ("c.toml", f"[train]\nepochs = {HUGE}\n", "is malformed"),
    "big int yaml": ("c.yaml", f"train: {{epochs: {BIG}}}\n", "integer too large"),
    "deep yaml": ("c.yaml", "a: " + "[" * 1500 + "]" * 1500 + "\n", "nested"),
    "deep json": ("c.json", '{"a": ' + "[" * 1500 + "]" * 1500 + "}", "nested"),
    "deep toml": ("c.toml", "a = " + "[" * 1500 + "]" * 1500 + "\n", "nested"),
    "medium deep yaml": ("c.yaml", "a: " + "[" * 40 + "]" * 40 + "\n", "more than 32 levels"),
    "alias bomb": ("c.yaml", BOMB, "more than 100000 values"),
    "split seed 2**64": ("c.yaml", f"data: {{split_seed: {2**64}}}\n", "integer too large"),
    "split seed 2**40": ("c.yaml", f"data: {{split_seed: {2**40}}}\n",
                         "data.split_seed: expected an integer in [0, 4294967295]"),
    "num_particles 1e21": ("c.yaml", f"objective: {{family: trace_elbo, num_particles: "
                           f"{10**21}}}\n", "objective.num_particles: integer too large"),
    "total_count 1e21": ("c.yaml", f"likelihood: {{family: binomial, total_count: {10**21}}}\n",
                         "likelihood.total_count: integer too large"),
    "num_particles 1e12": ("c.yaml", f"objective: {{family: trace_elbo, num_particles: "
                           f"{10**12}}}\n", "objective.num_particles: expected an integer up to"),
    "total_count 1e12": ("c.yaml", f"likelihood: {{family: binomial, total_count: {10**12}}}\n",
                         "likelihood.total_count: expected an integer up to"),
    "eval.num_samples 1e15": ("c.yaml", f"eval: {{num_samples: {10**15}}}\n",
                              f"eval.num_samples: expected an integer in [1, {MAX_NUM_SAMPLES}]"),
    "too large file": ("c.yaml", "#" * (pio.MAX_CONFIG_BYTES + 1), "bytes allowed"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_hostile_configs_fail_in_one_short_line_before_anything_is_written(
        files, tmp_path, capsys, case):
    name, text, needle = CONFIGS[case]
    cfg = tmp_path / name
    cfg.write_text(text)
    out = tmp_path / "out"
    tracemalloc.start()
    try:
        _fails(["train", "--config", str(cfg), "--out", str(out), "--quiet"], capsys, needle)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # bounded memory (the bomb once took 4.4 GB)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [name]


SETS = {
    "huge int": (f"train.epochs={HUGE}", "longer than 4300 digits"),
    "seed 2**64": (f"train.seed={2**64}", "integer too large"),
    "deep": ("encoder.hidden=" + "[" * 2000, "nested"),
    "num_samples": (f"eval.num_samples={10**15}", "eval.num_samples: expected an integer in"),
}


@pytest.mark.parametrize("case", sorted(SETS))
def test_hostile_set_overrides(files, tmp_path, capsys, case):
    item, needle = SETS[case]
    _fails(["train", "--data", str(files / "bin.npy"), "--set", item, "--out",
            str(tmp_path / "o")], capsys, needle)
    assert not (tmp_path / "o").exists()


def test_huge_integers_on_the_command_line(files, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit, one short line
        main(["train", "--epochs", HUGE, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and len(err) <= MAX_MESSAGE + 40
    assert "invalid int value" in err
    _fails(["evaluate", str(files / "run"), "-k", str(10**15)], capsys,
           f"--num-samples: expected an integer in [1, {MAX_NUM_SAMPLES}]")
    _fails(["sample", str(files / "run"), "--seed", str(2**64)], capsys, "--seed")


def test_one_samples_bound_everywhere():
    from pyrovae.cli import evaluate as cli_evaluate

    assert cli_evaluate.MAX_K == MAX_NUM_SAMPLES
    assert normalize_spec({"eval": {"num_samples": MAX_NUM_SAMPLES}})
    with pytest.raises(ValueError, match=str(MAX_NUM_SAMPLES)):
        pipeline.evaluate_run("nowhere", num_samples=MAX_NUM_SAMPLES + 1)


def test_yaml_reads_numbers_as_a_user_means(tmp_path):
    (tmp_path / "c.yaml").write_text("train: {lr: 1e-3, clip_norm: 1E+1}\n")
    assert normalize_spec(load_spec(tmp_path / "c.yaml"))["train"]["lr"] == 1e-3
    raw = apply_overrides({}, ["train.lr=1e-3", "train.clip_norm=5e0"])
    assert raw["train"] == {"lr": 0.001, "clip_norm": 5.0}
    assert apply_overrides({}, ["data.name=1e"])["data"]["name"] == "1e"  # a string stays


def test_empty_out_is_refused(files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(["train", "--out", ""], capsys, "--out: expected a folder name")
    _fails(["sample", str(files / "run"), "--out", ""], capsys, "--out: expected a .png")
    assert list(tmp_path.iterdir()) == []


def test_idx_with_nan_pixels_is_refused_like_npy(tmp_path, capsys):
    images = np.array([[[0.0, np.nan], [1.0, 0.5]]] * 3, np.float32)
    header = struct.pack(">BBBB", 0, 0, 0x0D, 3) + struct.pack(">III", *images.shape)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + images.astype(">f4").tobytes())
    _fails(["train", "--data", "mnist", "--set", f"data.path={tmp_path}", "--out",
            str(tmp_path / "o")], capsys, "3 NaN and 0 infinite values")


def test_library_warnings_never_appear_beside_an_error(files, capsys, monkeypatch):
    import warnings

    real = runs.load_run

    def noisy(path):
        warnings.warn("weights_only=False would load it", FutureWarning, stacklevel=1)
        warnings.warn("TorchScript archive", UserWarning, stacklevel=1)
        return real(path)

    monkeypatch.setattr(runs, "load_run", noisy)
    _fails(["sample", str(files / "run"), "-n", "0"], capsys, "--num")
    _fails(["sample", str(files / "run"), "--out", str(files / "x.jpg")], capsys, ".png or .npy")


def test_ascii_stdout_gets_ascii_stand_ins(files, monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    assert main(["evaluate", str(files / "run"), "-k", "2"]) == 0
    sys.stdout.flush()
    text = raw.getvalue().decode("ascii")
    assert "log p(x) >=" in text and "+/-" in text and "KL(q || p)" in text


def test_broken_pipe_after_success_is_quiet(files, monkeypatch, capsys):
    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("builtins.print", closed)
    assert main(["evaluate", str(files / "run"), "-k", "2"]) == 0
    assert capsys.readouterr().err == ""


# ====================================================== two real processes
def _pyrovae(*args: str, cwd: Path, gate: Path | None = None,
             after: str = "") -> subprocess.Popen:
    """A real ``pyrovae`` process; with ``gate``, every training step once a file
    matching the glob ``after`` exists waits until ``gate`` exists (so the process
    surely is mid-run when the test acts)."""
    code = ("import glob, os, sys, time\n"
            "from pyrovae.model.likelihoods import BernoulliLikelihood as B\n"
            "prepare = B.prepare_batch\n"
            "def wait():\n"
            f"    while glob.glob({after!r}) and not os.path.exists({str(gate)!r}):\n"
            "        time.sleep(0.02)\n"
            "B.prepare_batch = lambda self, x: (wait(), prepare(self, x))[1]\n"
            if gate is not None else "import sys\n")
    code += "from pyrovae.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(check, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 180
    while not check():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_on_one_folder_one_wins_the_other_names_the_lock(files, tmp_path):
    cfg = tmp_path / "c.yaml"
    spec = yaml.safe_load((files / "ok.yaml").read_text())
    spec["train"]["epochs"] = 4
    cfg.write_text(yaml.safe_dump(spec))
    run = tmp_path / "run"
    gate = tmp_path / "go"
    a = _pyrovae("train", "--config", str(cfg), "--out", str(run), "--quiet", cwd=tmp_path,
                 gate=gate, after=str(run / runs.CHECKPOINT_FILE))
    try:
        _wait_for(lambda: (run / runs.CHECKPOINT_FILE).is_file(), a, "checkpoint")
        b = _pyrovae("train", "--config", str(cfg), "--out", str(run), "--overwrite",
                     "--set", "train.seed=9", "--quiet", cwd=tmp_path)
        _, b_err = b.communicate(timeout=180)
        gate.write_text("")
        _, a_err = a.communicate(timeout=180)
    finally:
        for p in (a,):
            if p.poll() is None:
                p.kill()
    assert a.returncode == 0, a_err
    assert b.returncode == 2 and b_err.count("\n") == 1, b_err
    assert f"is locked by pyrovae train (pid {a.pid} on host " in b_err
    # consistent: A's spec and A's checkpoint, evaluable and not overwritten by B
    state = pio.load_checkpoint(run / runs.CHECKPOINT_FILE)
    spec = runs.read_spec(run / runs.SPEC_FILE)
    assert state["spec_hash"] == bound_spec_hash(spec)
    assert spec["train"]["seed"] == 0 and state["epoch"] == 4
    pipeline.evaluate_run(run)
    assert not list(tmp_path.glob(".run.*"))


@pytest.mark.slow
def test_sigkilled_overwrite_leaves_the_old_run_intact(files, tmp_path):
    run = tmp_path / "run"
    spec = yaml.safe_load((files / "ok.yaml").read_text())
    pipeline.train_run(spec, run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    spec["train"]["epochs"] = 50
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    proc = _pyrovae("train", "--config", str(cfg), "--out", str(run), "--overwrite",
                    "--quiet", cwd=tmp_path, gate=tmp_path / "never",
                    after=str(tmp_path / ".run.pyrovae-new-*" / runs.CHECKPOINT_FILE))
    try:
        _wait_for(lambda: any((s / runs.CHECKPOINT_FILE).is_file()
                              for s in tmp_path.glob(".run.pyrovae-new-*")), proc, "staging")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    pipeline.evaluate_run(run)  # usable while the leftovers are still there
    pipeline.train_run(yaml.safe_load((files / "ok.yaml").read_text()), run, overwrite=True,
                       progress=False)
    assert not list(tmp_path.glob(".run.*"))  # the killed run's staging folder is gone


@pytest.mark.slow
def test_console_script_pipe_closed_early_and_ascii_output(files, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONIOENCODING": "ascii"}
    code = "import sys\nfrom pyrovae.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    r = subprocess.run([sys.executable, "-c", code, "evaluate", str(files / "run"), "-k", "2"],
                       env=env, capture_output=True, timeout=180)
    assert r.returncode == 0 and b">=" in r.stdout and r.stderr == b""
    p = subprocess.Popen([sys.executable, "-c", code, "evaluate", str(files / "run"), "-k", "2"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `| head` that has already exited
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait(timeout=180) == 0 and b"Broken pipe" not in err and err == b""


def test_lock_file_json_names_the_holder(tmp_path):
    with runs.RunLock(tmp_path / "r", "pyrovae check") as lock:
        info = json.loads(lock.path.read_text())
        assert info["command"] == "pyrovae check" and info["pid"] == os.getpid()
        assert lock.path.name == ".r.pyrovae-lock"
    assert not lock.path.exists()


def test_check_samples_and_seed_bounds_before_any_work(files, capsys, tmp_path):
    _fails(["check", "gaussian", "--out", str(tmp_path / "c"), "--samples", str(10**15)],
           capsys, f"--samples: expected an integer in [100, {MAX_NUM_SAMPLES}]")
    _fails(["check", "gaussian", "--out", str(tmp_path / "c"), "--seed", str(2**64)],
           capsys, "--seed: expected an integer in [0, 4294967295]")
    assert not (tmp_path / "c").exists()
