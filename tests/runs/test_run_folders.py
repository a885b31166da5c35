"""Run folders never lose anything (issue 12): an overwrite swaps at the end, a lock
excludes a second writer, our own marker, temp files cleaned, checksummed and
finite-only checkpoints, strict JSON, data found again from any directory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pyrovae import PyrovaeError
from pyrovae import io as pio
from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.training.trainer import DivergenceError


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float32))
    return path


def _spec(data: Path, **train) -> dict:
    return {"latent_dim": 2, "encoder": {"hidden": [6]}, "likelihood": "bernoulli",
            "train": {"epochs": 2, "batch_size": 10, "checkpoint_every": 1, **train},
            "data": {"name": str(data), "test_fraction": 0.25},
            "eval": {"num_samples": 2}}


def _bytes(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``, byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _siblings(folder: Path) -> list[str]:
    """Our hidden siblings of ``folder`` (lock file, staging or parked folders)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


@pytest.fixture
def old_run(tmp_path, data) -> Path:
    run = tmp_path / "run"
    pipeline.train_run(_spec(data), run, progress=False)
    return run


# ------------------------------------------------------------ overwrite: swap at the end
class _Boom(Exception):
    pass


FAILURES = {
    "divergence": lambda: DivergenceError("boom", epoch=2, step=5, what="loss",
                                          good_epoch=1, detail="non-finite loss"),
    "ctrl-c": KeyboardInterrupt,
    "full disk": lambda: OSError(28, "No space left on device"),
    "crash": _Boom,
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failed_overwrite_leaves_the_old_run_byte_for_byte(old_run, data, monkeypatch,
                                                           failure):
    before = _bytes(old_run)
    real = pipeline.trainer_for

    def failing(*args, **kwargs):
        trainer = real(*args, **kwargs)

        def fail(trainer, record):
            if record["epoch"] == 1:
                raise FAILURES[failure]()

        trainer.callbacks.append(fail)
        return trainer

    monkeypatch.setattr(pipeline, "trainer_for", failing)
    with pytest.raises((PyrovaeError, KeyboardInterrupt, OSError, _Boom)) as err:
        pipeline.train_run(_spec(data, seed=5), old_run, overwrite=True, progress=False)
    if failure == "divergence":
        assert f"{old_run} still holds the previous run" in str(err.value)
        assert "pyrovae-new" not in str(err.value)
    assert _bytes(old_run) == before
    assert _siblings(old_run) == []  # no staging folder, no lock file left
    pipeline.evaluate_run(old_run)  # still usable


def test_failed_final_evaluation_of_an_overwrite_keeps_the_old_run(old_run, data,
                                                                   monkeypatch):
    before = _bytes(old_run)
    monkeypatch.setattr(pipeline, "summary", lambda r: {"elbo": float("nan")})
    with pytest.raises(PyrovaeError, match="non-finite values"):
        pipeline.train_run(_spec(data, seed=5), old_run, overwrite=True, progress=False)
    assert _bytes(old_run) == before and _siblings(old_run) == []


def test_successful_overwrite_swaps_in_the_new_run(old_run, data):
    old_ckpt = (old_run / runs.CHECKPOINT_FILE).read_bytes()
    pipeline.train_run(_spec(data, seed=5), old_run, overwrite=True, progress=False)
    assert (old_run / runs.CHECKPOINT_FILE).read_bytes() != old_ckpt
    assert runs.read_spec(old_run / runs.SPEC_FILE)["train"]["seed"] == 5
    assert runs.read_manifest(old_run)["status"] == "finished"
    assert _siblings(old_run) == []


def test_killed_overwrite_leftovers_are_cleaned_and_the_old_run_restored(old_run, data):
    """What a SIGKILL leaves (a staging folder; or the old run parked mid-swap) is
    tidied by the next writer; the old run is never lost."""
    before = _bytes(old_run)
    stage = runs.staging_folder(old_run)
    runs.write_manifest(stage, "training")  # our marker: a killed writer's staging folder
    parked = old_run.with_name(f".{old_run.name}.pyrovae-old-99999")
    os.rename(old_run, parked)  # killed between the two renames of a swap
    with pytest.raises(PyrovaeError, match="exists; pass --overwrite"):
        pipeline.train_run(_spec(data), old_run, progress=False)
    assert _bytes(old_run) == before and _siblings(old_run) == []


def test_exchange_fallback_of_two_renames(tmp_path, monkeypatch):
    new, target = tmp_path / "new", tmp_path / "t"
    new.mkdir(), target.mkdir()
    (new / "a").write_text("new"), (target / "a").write_text("old")
    monkeypatch.setattr(runs, "_exchange", lambda a, b: False)
    runs.replace_folder_atomically(new, target)
    assert (target / "a").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["t"]


# ------------------------------------------------------------ our marker
def test_a_folder_with_someone_elses_spec_yaml_is_never_replaced(tmp_path, data):
    folder = tmp_path / "thesis"
    (folder / "src").mkdir(parents=True)
    (folder / "spec.yaml").write_text("title: my thesis\n")
    (folder / "thesis.tex").write_text("precious")
    (folder / "src" / "main.c").write_text("int main;")
    before = _bytes(folder)
    for overwrite in (False, True):
        with pytest.raises(PyrovaeError, match="pyrovae will not replace it"):
            pipeline.train_run(_spec(data), folder, overwrite=overwrite, progress=False)
    assert _bytes(folder) == before


def test_a_run_holding_a_file_we_did_not_write_is_not_replaced(old_run, data):
    (old_run / "notes.txt").write_text("mine")
    before = _bytes(old_run)
    with pytest.raises(PyrovaeError, match=r"files pyrovae did not write \(notes.txt\)"):
        pipeline.train_run(_spec(data), old_run, overwrite=True, progress=False)
    assert _bytes(old_run) == before


def test_manifest_marks_the_run(old_run):
    m = json.loads((old_run / runs.MANIFEST_FILE).read_text())
    assert m["format"] == "pyrovae-run" and m["version"] == runs.FORMAT_VERSION
    assert runs.folder_kind(old_run) == "run"
    (old_run / runs.MANIFEST_FILE).write_text(json.dumps({**m, "version": 99}))
    assert runs.folder_kind(old_run) == "foreign"


# ------------------------------------------------------------ unfinished starts, temp files
def test_a_folder_with_only_our_temp_file_is_an_unfinished_start(tmp_path, data):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".pyrovae-run.json.k2j3h4l5.tmp").write_bytes(b"{")  # killed in its first write
    assert runs.folder_kind(run) == "unfinished"
    with pytest.raises(PyrovaeError, match="unfinished start"):
        pipeline.evaluate_run(run)
    pipeline.train_run(_spec(data), run, progress=False)  # no --overwrite needed
    assert not [p for p in run.iterdir() if pio.is_temp_file(p.name)]
    assert runs.folder_kind(run) == "run"


def test_resume_restarts_an_unfinished_start_from_its_spec(tmp_path, data):
    run = tmp_path / "run"
    run.mkdir()
    runs.write_manifest(run, "training")
    (run / runs.SPEC_FILE).write_text(yaml.safe_dump(_spec(data)))
    (run / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"half")
    m = pipeline.resume_run(run, progress=False)
    assert m["epochs"] == 2 and not (run / ".checkpoint.pt.abcd1234.tmp").exists()


def test_resume_removes_our_temp_files(old_run, data):
    (old_run / ".history.json.zzzz9999.tmp").write_text("[")
    (old_run / runs.FIGURES_DIR / ".samples.png.aaaa1111.tmp").write_bytes(b"")
    pipeline.resume_run(old_run, _spec(data, epochs=3), progress=False)
    assert not list(old_run.rglob("*.tmp"))


# ------------------------------------------------------------ the lock
def test_a_locked_run_folder_is_refused_naming_the_holder(old_run, data):
    before = _bytes(old_run)
    with runs.RunLock(old_run, "pyrovae train"):
        for call in (lambda: pipeline.train_run(_spec(data), old_run, overwrite=True,
                                                progress=False),
                     lambda: pipeline.resume_run(old_run, _spec(data, epochs=3),
                                                 progress=False)):
            with pytest.raises(PyrovaeError) as err:
                call()
            msg = str(err.value)
            assert f"locked by pyrovae train (pid {os.getpid()} on host " in msg
            assert socket.gethostname() in msg and "UTC" in msg
    assert _bytes(old_run) == before
    assert _siblings(old_run) == []  # released: the lock file is gone
    pipeline.resume_run(old_run, _spec(data, epochs=3), progress=False)


def test_a_stale_lock_file_of_a_dead_process_does_not_block(old_run, data):
    lock = old_run.with_name(f".{old_run.name}.pyrovae-lock")
    lock.write_text(json.dumps({"command": "pyrovae train", "pid": 2**22 + 7,
                                "host": socket.gethostname(), "started": 0}))
    pipeline.resume_run(old_run, _spec(data, epochs=3), progress=False)
    assert not lock.exists()


def test_lock_without_flock_takes_over_only_a_dead_holder(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = runs.RunLock(tmp_path / "r")
    lock.path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(PyrovaeError, match=f"pid {os.getppid()}"):
        lock.acquire()
    lock.path.write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname()}))
    with lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


# ------------------------------------------------------------ checkpoints
def _flip_a_parameter_bit(ckpt: Path) -> None:
    state = torch.load(ckpt, weights_only=True)
    w = next(v for v in state["model"].values() if v.numel() >= 6)
    raw = ckpt.read_bytes()
    where = raw.find(w.contiguous().numpy().tobytes())
    assert where > 0
    flipped = bytearray(raw)
    flipped[where + 2] ^= 0x10
    ckpt.write_bytes(bytes(flipped))


def test_a_flipped_bit_in_the_checkpoint_is_refused(old_run, capsys):
    _flip_a_parameter_bit(old_run / runs.CHECKPOINT_FILE)
    with pytest.raises(PyrovaeError, match="fails its checksum"):
        runs.load_run(old_run)
    assert main(["evaluate", str(old_run)]) == 2
    err = capsys.readouterr().err
    assert "damaged checkpoint" in err and err.count("\n") == 1


def _resave(ckpt: Path, change) -> None:
    """Edit a checkpoint as an attacker would, with a matching checksum."""
    state = torch.load(ckpt, weights_only=True)
    change(state)
    state["checksum"] = pio.tensor_checksum(state)
    torch.save(state, ckpt)


def test_a_checkpoint_with_nan_parameters_is_refused_everywhere(old_run, data, capsys):
    ckpt = old_run / runs.CHECKPOINT_FILE
    _resave(ckpt, lambda s: next(iter(s["model"].values())).fill_(float("nan")))
    before = ckpt.read_bytes()
    with pytest.raises(PyrovaeError, match="non-finite values"):
        pipeline.resume_run(old_run, _spec(data, epochs=3), progress=False)
    for argv in (["evaluate", str(old_run)], ["sample", str(old_run), "--out",
                                              str(old_run / "s.npy")],
                 ["train", "--resume", str(old_run), "--epochs", "4"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "non-finite values" in err and err.count("\n") == 1
    assert ckpt.read_bytes() == before and not (old_run / "s.npy").exists()


def test_non_finite_values_are_never_written_to_a_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    pio.save_checkpoint(path, {"model": {"w": torch.ones(2)}})
    before = path.read_bytes()
    with pytest.raises(PyrovaeError, match=r"non-finite values \(model.w\)"):
        pio.save_checkpoint(path, {"model": {"w": torch.tensor([1.0, float("inf")])}})
    assert path.read_bytes() == before


def test_a_checkpoint_without_checksum_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"model": {"w": torch.ones(2)}}, path)
    with pytest.raises(PyrovaeError, match="has no checksum"):
        pio.load_checkpoint(path)


@pytest.mark.parametrize("key", ["rng_numpy", "rng_python", "rng_shuffle"])
def test_a_malformed_rng_state_is_refused_on_resume(old_run, data, key):
    def damage(state):
        if key == "rng_numpy":
            state[key]["keys"] = torch.zeros(3, dtype=torch.int64)
        elif key == "rng_python":
            state[key]["internal"] = torch.zeros(2, dtype=torch.int64)
        else:
            state[key] = torch.zeros(3, dtype=torch.uint8)

    _resave(old_run / runs.CHECKPOINT_FILE, damage)
    before = _bytes(old_run)
    with pytest.raises(PyrovaeError, match="cannot resume from it"):
        pipeline.resume_run(old_run, _spec(data, epochs=3), progress=False)
    assert _bytes(old_run) == before


# ------------------------------------------------------------ strict JSON, no NaN results
def test_json_files_are_strict_and_flag_non_finite_values(tmp_path):
    path = tmp_path / "h.json"
    pio.atomic_write_json(path, {"records": [{"loss": float("nan"), "x": [1.0, float("inf")]}]})

    def refuse(name):
        raise AssertionError(name)

    d = json.loads(path.read_text(), parse_constant=refuse)
    assert d["records"] == [{"loss": None, "x": [1.0, None]}]
    assert d["non_finite"] == ["records[0].loss", "records[0].x[1]"]


def test_evaluate_never_reports_nan(old_run, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "summary", lambda r: {"elbo": float("nan"),
                                                        "num_examples": 3})
    assert main(["evaluate", str(old_run)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "non-finite values (elbo)" in out.err


def test_damaged_history_and_spec_are_one_line_errors(old_run, capsys):
    (old_run / runs.SPEC_FILE).write_text("a: " + "[" * 50_000)
    assert main(["evaluate", str(old_run)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and err.count("\n") == 1 and len(err) < 300
    (old_run / runs.HISTORY_FILE).write_text("[" * 50_000)  # evaluate never reads it
    with pytest.raises(PyrovaeError, match="nested too deeply"):
        runs.read_history(old_run)


# ------------------------------------------------------------ data found again; resume
def test_a_run_on_a_user_file_works_from_another_directory(tmp_path, monkeypatch, capsys):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir(), elsewhere.mkdir()
    np.save(home / "x.npy", (np.random.default_rng(1).random((40, 6)) > 0.5).astype(np.float32))
    monkeypatch.chdir(home)
    spec = _spec(Path("x.npy"))
    pipeline.train_run(spec, "run", progress=False)
    saved = runs.read_spec(home / "run" / runs.SPEC_FILE)
    assert saved["data"]["name"] == str(home / "x.npy")
    identity = runs.read_manifest(home / "run")["data"]
    assert identity["name"] == str(home / "x.npy") and len(identity["fingerprint"]) == 64
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(home / "run")]) == 0
    assert main(["sample", str(home / "run"), "--out", "s.npy"]) == 0
    capsys.readouterr()
    np.save(home / "x.npy", np.ones((40, 6), np.float32))  # the data changed
    assert main(["evaluate", str(home / "run")]) == 2
    assert "changed since it was trained" in capsys.readouterr().err


def test_resume_of_a_finished_run_says_it_is_complete(old_run, capsys):
    before = _bytes(old_run)
    assert main(["train", "--resume", str(old_run), "--quiet"]) == 0
    assert "is complete (2 of 2 epochs" in capsys.readouterr().out
    assert _bytes(old_run) == before


def test_atomic_write_errors_name_the_file_not_our_temp_file(tmp_path, monkeypatch):
    def broken(src, dst):
        raise OSError(28, "No space left on device", src)

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError) as err:
        pio.atomic_write_text(tmp_path / "metrics.json", "{}")
    assert err.value.filename == str(tmp_path / "metrics.json")
    assert ".tmp" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_the_swap_is_one_atomic_exchange_here(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("a"), (b / "f").write_text("b")
    assert runs._exchange(a, b)  # Linux renameat2(RENAME_EXCHANGE)
    assert (a / "f").read_text() == "b" and (b / "f").read_text() == "a"


def test_run_json_files_have_a_size_limit(tmp_path):
    assert pio.MAX_JSON_BYTES == 64 << 20 and pio.MAX_CONFIG_BYTES == 1 << 20
    (tmp_path / "h.json").write_text("[" + "0, " * 20 + "0]")
    with pytest.raises(PyrovaeError, match="larger than the 10 bytes allowed"):
        pio.read_json(tmp_path / "h.json", "history", max_bytes=10)


def test_sigterm_ends_a_command_like_ctrl_c_and_keeps_the_old_run(old_run, data, monkeypatch,
                                                                   capsys):
    import signal

    before = _bytes(old_run)
    real = pipeline.trainer_for

    def terminated(*args, **kwargs):
        trainer = real(*args, **kwargs)
        trainer.callbacks.append(lambda t, r: os.kill(os.getpid(), signal.SIGTERM))
        return trainer

    monkeypatch.setattr(pipeline, "trainer_for", terminated)
    cfg = old_run.parent / "c.yaml"
    cfg.write_text(yaml.safe_dump(_spec(data, seed=4)))
    assert main(["train", "--config", str(cfg), "--out", str(old_run), "--overwrite",
                 "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _bytes(old_run) == before and _siblings(old_run) == []


def test_sample_refuses_non_finite_samples(old_run, monkeypatch, capsys):
    from pyrovae.model.vae import VAE

    monkeypatch.setattr(VAE, "sample", lambda self, n, **kw: torch.full((n, 6), float("nan")))
    assert main(["sample", str(old_run), "--out", str(old_run / "s.npy")]) == 2
    assert "non-finite values" in capsys.readouterr().err
    assert not (old_run / "s.npy").exists()


def test_the_lock_names_posix_where_fcntl_is_missing(tmp_path, monkeypatch):
    import sys

    (tmp_path / "r").mkdir()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows: import fails
    with pytest.raises(PyrovaeError, match="POSIX"), runs.RunLock(tmp_path / "r", "pyrovae train"):
        pass
