"""Nothing a pyrovae command does can destroy what is not its own (issue 19): a lock
that cannot be redirected, own names only, check and sample as locked run-folder
writers, a checksum of the whole checkpoint state, one spec per run, size budgets
for specs and data files, and one line (never a traceback) for every refusal.

Each test reproduces one finding of the attack trials in the issue."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pyrovae import io as pio
from pyrovae.cli import MAX_MESSAGE, main
from pyrovae.errors import PyrovaeError
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_run) -> Path:
    """A tiny trained run (``base/run``), its data and config; tests copy the run."""
    d = tmp_path_factory.mktemp("safety")
    spec = tiny_run(d)
    spec["train"]["seed"] = 7
    pipeline.train_run(spec, d / "other", progress=False)
    return d


@pytest.fixture
def run(base, tmp_path) -> Path:
    shutil.copytree(base / "run", tmp_path / "run")
    return tmp_path / "run"


def _fails(argv: list[str], capsys, needle: str = "") -> str:
    """Exit 2 with exactly one short line on stderr (holding ``needle``), no traceback."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and len(err) <= MAX_MESSAGE + 40, err
    assert "Traceback" not in err and "pyrovae-new" not in err, err
    assert not re.search(r"\.[a-z0-9_]{8}\.tmp", err), err  # never one of our temp names
    assert needle in err, err
    return err


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _train(base: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", base / "ok.yaml", "--out", out, "--quiet", *extra]


# ====================================================== 1. the lock never follows links
@pytest.mark.parametrize("extra", [(), ("--overwrite",)])
def test_1_lock_file_symlink_never_redirects_a_write(base, tmp_path, capsys, extra):
    precious = tmp_path / "precious.txt"
    precious.write_text("my thesis\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / ".run.pyrovae-lock").symlink_to(precious)
    if extra:
        shutil.copytree(base / "run", shared / "run")
    _fails(_train(base, shared / "run", *extra), capsys, ".run.pyrovae-lock")
    assert precious.read_text() == "my thesis\n"
    assert (shared / ".run.pyrovae-lock").is_symlink()  # the evidence is kept


def test_1_lock_file_symlink_on_resume(run, tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("my thesis\n")
    (run.parent / ".run.pyrovae-lock").symlink_to(precious)
    _fails(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys, "lock")
    assert precious.read_text() == "my thesis\n"


def test_1_lock_file_hard_link_and_foreign_file_are_never_truncated(base, tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("my thesis\n")
    os.link(precious, tmp_path / ".a.pyrovae-lock")
    _fails(_train(base, tmp_path / "a"), capsys, "lock")
    (tmp_path / ".b.pyrovae-lock").write_text("not ours\n")
    _fails(_train(base, tmp_path / "b"), capsys, "lock")
    assert precious.read_text() == "my thesis\n"
    assert (tmp_path / ".b.pyrovae-lock").read_text() == "not ours\n"


def test_1_a_stale_lock_of_a_killed_holder_is_taken_over(base, tmp_path, capsys):
    lock = tmp_path / ".run.pyrovae-lock"
    lock.write_text(json.dumps({"command": "pyrovae train", "pid": 2**22 + 12345,
                                "host": "h", "started": 0}))
    assert main([str(a) for a in _train(base, tmp_path / "run")]) == 0
    assert not lock.exists()


# ====================================================== 2. check --overwrite owns its files only
def test_2_check_overwrite_never_deletes_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "src").mkdir(parents=True)
    (out / "src" / "main.c").write_text("int main;\n")
    (out / "thesis.tex").write_text("\\begin{document}\n")
    (out / "report.json").write_text("{}\n")
    before = _bytes(out)
    _fails(["check", "gaussian_mle", "--out", out, "--overwrite", "--quick", "--points", "1",
            "--samples", "100"], capsys, "did not write")
    assert _bytes(out) == before


def test_2_check_overwrite_replaces_its_own_report(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["check", "gaussian_mle", "--out", out, "--quick", "--points", "1", "--samples", "100"]
    assert main([str(a) for a in argv]) == 0
    assert main([str(a) for a in [*argv, "--overwrite"]]) == 0, capsys.readouterr().err
    assert (out / "report.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ====================================================== 3. refused folders are untouched
@pytest.mark.parametrize("how", ["out", "resume"])
def test_3_a_refused_folder_keeps_its_temp_files(base, tmp_path, capsys, how):
    d = tmp_path / "mine"
    (d / "figures").mkdir(parents=True)
    (d / "check").mkdir()
    for p in (d / ".draft.tmp", d / "figures" / ".x.tmp", d / "check" / ".y.tmp",
              d / "notes.txt"):
        p.write_text("mine\n")
    before = _bytes(d)
    argv = _train(base, d) if how == "out" else ["train", "--resume", d, "--quiet"]
    _fails(argv, capsys)
    assert _bytes(d) == before


# ====================================================== 4. own names: no glob of user text
def test_4_a_glob_character_name_never_touches_another_runs_staging(base, tmp_path, capsys):
    staging = tmp_path / ".exp1.pyrovae-new-abcd1234"
    staging.mkdir()
    (staging / "spec.yaml").write_text("being written\n")
    parked = tmp_path / ".exp1.pyrovae-old-123"
    parked.mkdir()
    (parked / "x").write_text("x")
    assert main([str(a) for a in _train(base, tmp_path / "exp[1]")]) == 0
    assert (staging / "spec.yaml").read_text() == "being written\n"
    assert (parked / "x").is_file()


def test_4_leftovers_are_ours_only_by_name_and_marker(base, tmp_path):
    # a folder named like our staging that is not a run of ours is left alone
    look_alike = tmp_path / ".run.pyrovae-new-abcd1234"
    look_alike.mkdir()
    (look_alike / "thesis.tex").write_text("x")
    longer = tmp_path / ".run.pyrovae-new-x.pyrovae-new-abcd1234"
    longer.mkdir()
    runs.clean_leftovers(tmp_path / "run")
    assert (look_alike / "thesis.tex").is_file() and longer.is_dir()
    # a killed writer's staging (our manifest inside) is ours, and removed
    killed = tmp_path / ".run.pyrovae-new-zzzz9999"
    killed.mkdir()
    runs.write_manifest(killed, "training")
    runs.clean_leftovers(tmp_path / "run")
    assert not killed.exists()


# ====================================================== 5. whole-state checksum
def _resave(path: Path, edit) -> None:
    """Change a checkpoint's content and keep its old checksum (as a flipped bit does)."""
    state = torch.load(path, weights_only=True)
    edit(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    path.write_bytes(buf.getvalue())


EDITS = {
    "lr": lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", 1.5e-8),
    "amsgrad": lambda s: s["optimizer"]["param_groups"][0].__setitem__("amsgrad", True),
    "epoch": lambda s: s.__setitem__("epoch", s["epoch"] + 1),
    "fingerprint": lambda s: s.__setitem__("data_fingerprint", "0" * 64),
    "spec hash": lambda s: s.__setitem__("spec_hash", "0" * 64),
    "spec key hash": lambda s: s["spec_sections"].__setitem__("encoder", "0" * 64),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_5_any_change_of_the_checkpoint_state_is_refused(run, capsys, edit):
    _resave(run / runs.CHECKPOINT_FILE, EDITS[edit])
    _fails(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys, "checkpoint.pt")
    _fails(["evaluate", run, "-k", "2"], capsys, "checkpoint.pt")


# ====================================================== 6. one spec per run
@pytest.mark.parametrize("old,new,keys", [("activation: relu", "activation: tanh",
                                           "encoder, decoder"),
                                          ("family: normal", "family: laplace", "prior")])
def test_6_an_edited_spec_yaml_is_refused_everywhere(run, tmp_path, capsys, old, new, keys):
    text = (run / runs.SPEC_FILE).read_text()
    assert old in text
    (run / runs.SPEC_FILE).write_text(text.replace(old, new))
    for argv in (["evaluate", run, "-k", "2"],
                 ["sample", run, "--out", tmp_path / "s.npy", "-n", "2"],
                 ["check", run, "--out", tmp_path / "c", "--quick", "--points", "1",
                  "--samples", "100"]):
        # the checkpoint's per-key hashes name what changed
        _fails(argv, capsys, f"(changed since training: {keys})")
    _fails(["train", "--resume", run, "--epochs", "3", "--quiet"], capsys,
           f"no longer matches the checkpoint's spec (changed since training: {keys})")


def test_6_a_checkpoint_holding_its_whole_spec_still_binds(run, capsys):
    """Checkpoints written before they were bound by hashes alone hold the whole spec:
    they still load, and an edit of spec.yaml is reported key by key."""
    spec = runs.read_spec(run / runs.SPEC_FILE)
    state = pio.load_checkpoint(run / runs.CHECKPOINT_FILE)
    state.pop("spec_sections")
    state["spec"] = spec.as_dict()
    pio.save_checkpoint(run / runs.CHECKPOINT_FILE, state)
    assert main(["evaluate", str(run), "-k", "2"]) == 0
    text = (run / runs.SPEC_FILE).read_text()
    (run / runs.SPEC_FILE).write_text(text.replace("activation: relu", "activation: tanh"))
    _fails(["evaluate", run, "-k", "2"], capsys,
           "encoder.activation: checkpoint 'relu', spec.yaml 'tanh'")


def test_6_another_runs_checkpoint_is_refused(base, run, tmp_path, capsys):
    shutil.copy(base / "other" / runs.CHECKPOINT_FILE, run / runs.CHECKPOINT_FILE)
    for argv in (["evaluate", run, "-k", "2"],
                 ["sample", run, "--out", tmp_path / "s.npy", "-n", "2"]):
        _fails(argv, capsys, "spec")


def test_6_check_verifies_the_data_fingerprint(base, tmp_path, capsys):
    data = tmp_path / "bin.npy"
    shutil.copy(base / "bin.npy", data)
    spec = yaml.safe_load((base / "ok.yaml").read_text())
    spec["data"]["name"] = str(data)
    pipeline.train_run(spec, tmp_path / "run", progress=False)
    np.save(data, 1 - np.load(data))
    _fails(["check", tmp_path / "run", "--out", tmp_path / "c", "--quick", "--points", "1",
            "--samples", "100"], capsys, "changed")


# ====================================================== smaller findings
@pytest.mark.parametrize("argv", [["train", "--out", "/", "--quiet"],
                                  ["train", "--resume", "/", "--quiet"],
                                  ["check", "gaussian_mle", "--out", ".", "--quick"]])
def test_small_root_and_nameless_folders_are_one_line(base, argv, capsys, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "train" and "--out" in argv:
        argv = [*argv, "--config", str(base / "ok.yaml")]
    _fails(argv, capsys)


def test_small_sample_of_huge_finite_parameters_is_one_line(run, tmp_path, capsys):
    def huge(state):
        for k, v in state["model"].items():
            if v.is_floating_point():
                state["model"][k] = torch.full_like(v, 3e38)
        state["checksum"] = pio.state_checksum(state)
    _resave(run / runs.CHECKPOINT_FILE, huge)
    code = main(["sample", str(run), "--out", str(tmp_path / "s.npy"), "-n", "3"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and err.count("\n") <= 1, err


def test_small_ctrl_c_during_start_up_is_exit_130(monkeypatch, capsys):
    import pyrovae.cli as cli

    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["evaluate", "x"]) == 130
    assert "Traceback" not in capsys.readouterr().err


SIZES = {
    "latent_dim 1e9": {"latent_dim": 10**9},
    "hidden 1e8": {"encoder": {"hidden": [10**8]}},
    "30000 layers": {"encoder": {"hidden": [16] * 30000}},
    "1e7 components": {"prior": {"family": "mixture", "components": 10**7}},
}


@pytest.mark.parametrize("case", sorted(SIZES))
def test_small_huge_specs_are_refused_before_anything_is_built(base, tmp_path, capsys,
                                                               monkeypatch, case):
    from pyrovae.model.vae import VAE

    def never(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(VAE, "from_spec", never)
    spec = yaml.safe_load((base / "ok.yaml").read_text())
    spec.update(SIZES[case])
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(spec))
    err = _fails(["train", "--config", cfg, "--out", tmp_path / "r", "--quiet"], capsys,
                 "estimated")
    assert "limit" in err
    assert not (tmp_path / "r").exists()


def test_small_overwrite_errors_name_the_users_folder(run, base, capsys, monkeypatch):
    real = pio.atomic_write_json

    def full_disk(path, obj):
        if Path(path).name == runs.METRICS_FILE:
            raise OSError(28, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(pio, "atomic_write_json", full_disk)
    err = _fails(_train(base, run, "--overwrite"), capsys, "No space left")
    assert str(run) in err


def test_small_overwrite_through_a_symlink_leaves_nothing_parked(run, base, capsys):
    link = run.parent / "link"
    link.symlink_to(run)
    assert main([str(a) for a in _train(base, link, "--overwrite")]) == 0
    assert link.is_symlink() and (link / runs.CHECKPOINT_FILE).is_file()
    assert sorted(p.name for p in run.parent.iterdir()) == ["link", "run"]


# ====================================================== the second trial
def test_trial2_resume_never_writes_through_a_figures_symlink(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run / runs.FIGURES_DIR)
    (run / runs.FIGURES_DIR).symlink_to(elsewhere)
    _fails(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys, "figures")
    assert list(elsewhere.iterdir()) == []


def test_trial2_resume_never_replaces_a_link_inside_figures(run, tmp_path, capsys):
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"mine")
    (run / runs.FIGURES_DIR / "latent_map.png").unlink()
    (run / runs.FIGURES_DIR / "latent_map.png").symlink_to(precious)
    _fails(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys, "latent_map.png")
    assert (run / runs.FIGURES_DIR / "latent_map.png").is_symlink()
    assert precious.read_bytes() == b"mine"


@pytest.mark.parametrize("name", [runs.MANIFEST_FILE, runs.HISTORY_FILE])
def test_trial2_a_file_replaced_by_a_folder_is_refused_before_any_write(run, capsys, name):
    (run / name).unlink()
    (run / name).mkdir()
    before = _bytes(run)
    _fails(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys, name)
    assert _bytes(run) == before


def test_trial2_a_newer_manifest_version_is_refused_by_resume(run, capsys):
    m = json.loads((run / runs.MANIFEST_FILE).read_text())
    m["version"] = 2
    (run / runs.MANIFEST_FILE).write_text(json.dumps(m))
    before = _bytes(run)
    _fails(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys, "version")
    assert _bytes(run) == before


def test_trial2_evaluate_does_not_read_history(run, capsys):
    (run / runs.HISTORY_FILE).write_text("[" * 10_000)
    assert main(["evaluate", str(run), "-k", "2"]) == 0, capsys.readouterr().err


def _npz_bomb(path: Path, n: int) -> None:
    """An .npz whose 'x' is ``n`` float32 zeros, deflated to a few kB."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (n // 4, 4)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("x.npy", "w") as f:
        f.write(header.getvalue())
        chunk = bytes(1 << 20)
        for _ in range(n * 4 // len(chunk)):
            f.write(chunk)


def _idx_bomb(path: Path, n: int) -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n // 784, 28, 28))
        chunk = bytes(1 << 20)
        for _ in range(n // len(chunk)):
            f.write(chunk)


def test_trial2_data_files_have_a_decompressed_size_budget(tmp_path, monkeypatch):
    from pyrovae.data import load_dataset

    monkeypatch.setattr(pio, "MAX_DATA_BYTES", 4 << 20)
    _npz_bomb(tmp_path / "bomb.npz", 8 << 20)
    with pytest.raises(PyrovaeError, match=r"bomb\.npz.*limit"):
        load_dataset(str(tmp_path / "bomb.npz"))
    (tmp_path / "idx").mkdir()
    _idx_bomb(tmp_path / "idx" / "train-images-idx3-ubyte.gz", 8 << 20)
    with pytest.raises(PyrovaeError, match=r"train-images-idx3-ubyte\.gz.*limit"):
        load_dataset("mnist", path=str(tmp_path / "idx"))


def test_trial2_timedelta_npy_is_refused_like_datetime(tmp_path):
    from pyrovae.data import load_dataset

    np.save(tmp_path / "t.npy", np.arange(12).reshape(6, 2).astype("timedelta64[s]"))
    with pytest.raises(PyrovaeError, match="timedelta64"):
        load_dataset(str(tmp_path / "t.npy"))


def test_trial2_a_checkpoint_with_integer_parameters_is_refused(run, capsys):
    def ints(state):
        for k, v in state["model"].items():
            state["model"][k] = v.round().to(torch.int64)
        state["checksum"] = pio.state_checksum(state)
    _resave(run / runs.CHECKPOINT_FILE, ints)
    _fails(["evaluate", run, "-k", "2"], capsys, "int64")


def test_a_run_in_the_current_folder_is_still_read_and_resumed(base, run, monkeypatch,
                                                               capsys):
    monkeypatch.chdir(run)
    assert main(["evaluate", ".", "-k", "2"]) == 0
    assert main(["train", "--resume", ".", "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    _fails(_train(base, Path(".")), capsys, "current folder")  # a swap would pull it away


def test_check_of_a_folder_that_is_not_a_run_creates_nothing_in_it(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "spec.yaml").write_text("my: notes\n")
    (d / "checkpoint.pt").write_bytes(b"mine")
    before, stamp = _bytes(d), os.stat(d).st_mtime_ns
    parent_stamp = os.stat(tmp_path).st_mtime_ns
    _fails(["check", d, *["--quick", "--points", "1", "--samples", "100"]], capsys,
           "not a pyrovae run")
    assert _bytes(d) == before and os.stat(d).st_mtime_ns == stamp
    assert os.stat(tmp_path).st_mtime_ns == parent_stamp  # no lock file came and went


def test_an_empty_stale_lock_file_of_ours_is_taken_over(base, tmp_path):
    lock = tmp_path / ".run.pyrovae-lock"
    lock.write_bytes(b"")  # its holder died between creating and writing it
    os.utime(lock, (0, 0))
    assert main([str(a) for a in _train(base, tmp_path / "run")]) == 0
    assert not lock.exists()
