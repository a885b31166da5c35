"""Property-based (hypothesis): config files of random shape (deep, wide, huge numbers,
YAML aliases) and run folders with random damage, driving every subcommand.  Each
case ends with exit 0 or one line and exit 2 (never a traceback), within a memory
bound, and a refused ``--overwrite`` leaves the old folder byte for byte.

``PYROVAE_FUZZ_EXAMPLES=500`` searches longer (and randomly)."""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import Trainer
from pyrovae.cli import MAX_MESSAGE, main
from pyrovae.runs import folder as runs

_EXAMPLES = int(os.environ.get("PYROVAE_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 15, deadline=None, derandomize=not _EXAMPLES,
                    suppress_health_check=list(HealthCheck))
#: Python memory one case may allocate (tracemalloc peak); the YAML bomb once took 4.4 GB.
MEMORY_BOUND = 96 << 20


class ReachedTraining(Exception):
    """Raised instead of training: everything before training passed."""


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_run) -> Path:
    d = tmp_path_factory.mktemp("fuzzrun")
    tiny_run(d)
    return d


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int | str, str, int]:
    """``(exit code or "training", stderr, peak Python memory)`` of one command."""
    def no_training(self):
        raise ReachedTraining

    monkeypatch.setattr(Trainer, "run", no_training)
    tracemalloc.start()
    try:
        try:
            code: int | str = main(argv)
        except ReachedTraining:
            code = "training"
        except SystemExit as e:
            code = e.code
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return code, capsys.readouterr().err, peak


def _check(code, err: str, peak: int, argv: list[str]) -> None:
    assert code in (0, 2, "training"), (argv, code, err[:500])
    assert "Traceback" not in err, err[:2000]
    if code == 2:
        assert err.count("\n") == 1 and "error" in err, (argv, err[:500])
        assert len(err) <= MAX_MESSAGE + 40 and ".tmp" not in err
    assert peak < MEMORY_BOUND, (argv, peak)


# ------------------------------------------------------------ random config files
_HUGE = st.integers(1, 6000).map(lambda n: "7" * n)  # raw digits, as long as any parser sees
_leaf = st.one_of(st.integers(-5, 50).map(str), _HUGE, st.sampled_from(
    ["1e-3", "0.5", "-1", "true", "null", '"digits"', '"mixture"', '"x"', "1e400", "-0.0"]))


@st.composite
def _value(draw, depth: int = 0):
    """JSON-ish text of a random value: deep, wide, or a leaf."""
    kind = draw(st.integers(0, 5)) if depth < 4 else 0
    if kind <= 2:
        return draw(_leaf)
    if kind == 3:  # deep: a chain of lists, sometimes beyond the limits
        n = draw(st.sampled_from([2, 31, 33, 200, 1200]))
        return "[" * n + draw(_leaf) + "]" * n
    if kind == 4:  # wide
        items = [draw(_leaf) for _ in range(draw(st.integers(0, 6)))]
        return "[" + ", ".join(items * draw(st.sampled_from([1, 50, 3000]))) + "]"
    keys = draw(st.lists(st.sampled_from(["family", "hidden", "epochs", "lr", "seed",
                                          "num_samples", "split_seed", "name", "z"]),
                         max_size=3, unique=True))
    return "{" + ", ".join(f'"{k}": {draw(_value(depth + 1))}' for k in keys) + "}"


COLON, EQUALS = '": ', '" = '
_TOP = ["latent_dim", "encoder", "prior", "likelihood", "objective", "train", "data", "eval",
        "bogus"]


@st.composite
def config_files(draw) -> tuple[str, str]:
    """``(suffix, text)`` of a random config: JSON, YAML (flow style, maybe with an
    alias bomb or a recursive alias) or TOML."""
    entries = {k: draw(_value()) for k in draw(st.lists(st.sampled_from(_TOP), max_size=4,
                                                         unique=True))}
    fmt = draw(st.sampled_from(["json", "yaml", "toml"]))
    if fmt == "json":
        return ".json", "{" + ", ".join(f'"{k}": {v}' for k, v in entries.items()) + "}"
    if fmt == "toml":  # TOML: inline tables use '=' instead of ':'
        return ".toml", "".join(f"{k} = {v.replace(COLON, EQUALS)}\n"
                                for k, v in entries.items())
    text = "".join(f"{k}: {v}\n" for k, v in entries.items())
    alias = draw(st.integers(0, 3))
    if alias == 1:
        levels = draw(st.integers(2, 9))
        text = "b0: &b0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, levels)) + text
    elif alias == 2:
        text += "train: &t {epochs: 1, seed: *t}\n" if "train" not in entries else ""
    return ".yaml", text


@SETTINGS
@given(cfg=config_files())
def test_random_config_files_end_cleanly(base, cfg, monkeypatch, capsys, tmp_path_factory):
    work = tmp_path_factory.mktemp("cfg")
    suffix, text = cfg
    (work / f"c{suffix}").write_text(text)
    argv = ["train", "--config", str(work / f"c{suffix}"), "--out", str(work / "out"),
            "--quiet"]
    code, err, peak = _run(argv, monkeypatch, capsys)
    _check(code, err, peak, argv)
    if code == 2:
        assert not (work / "out").exists()


# ------------------------------------------------------------ damaged run folders
_FILES = [runs.SPEC_FILE, runs.CHECKPOINT_FILE, runs.HISTORY_FILE, runs.METRICS_FILE,
          runs.MANIFEST_FILE]
_JUNK = ["[" * 5000, "a: " + "[" * 5000, "9" * 5000, "{}", "", "\x00\xff\xfe",
         "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
         "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
         "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
         json.dumps({"format": "pyrovae-run", "version": 10**30}),
         json.dumps({"records": [{"epoch": float("nan")}]})]


@st.composite
def damages(draw) -> list[tuple[str, str, object]]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(_FILES))
        how = draw(st.sampled_from(["truncate", "flip", "junk", "delete", "temp", "folder",
                                    "link"]))
        arg = (draw(st.floats(0, 1)) if how in ("truncate", "flip")
               else draw(st.sampled_from(_JUNK)) if how == "junk" else None)
        out.append((name, how, arg))
    return out


def _damage(run: Path, name: str, how: str, arg) -> None:
    path = run / name
    if how == "folder":  # a file of the layout replaced by a folder (issue 19's trial)
        if path.is_file() and not path.is_symlink():
            path.unlink()
        path.mkdir(exist_ok=True)
    elif how == "link":  # figures/ pointing outside the run: nothing may be written there
        shutil.rmtree(run / runs.FIGURES_DIR, ignore_errors=True)
        (run / runs.FIGURES_DIR).unlink(missing_ok=True)
        (run / runs.FIGURES_DIR).symlink_to(run.parent / "outside", target_is_directory=True)
    elif path.is_dir():  # replaced by a folder above: nothing more to damage there
        return
    elif how == "temp":
        (run / f".{name}.q1w2e3r4.tmp").write_bytes(b"half")
    elif how == "delete":
        path.unlink(missing_ok=True)
    elif how == "junk":
        path.write_text(arg, encoding="utf-8", errors="surrogateescape")
    elif path.is_file():
        raw = bytearray(path.read_bytes())
        if raw:
            at = min(int(arg * len(raw)), len(raw) - 1)
            if how == "truncate":
                raw = raw[:at]
            else:
                raw[at] ^= 1 << (at % 8)
        path.write_bytes(bytes(raw))


_COMMANDS = [["evaluate", "{r}", "-k", "2"], ["evaluate", "{r}", "--json", "--split", "train"],
             ["sample", "{r}", "--out", "{w}/s.npy", "-n", "3"],
             ["train", "--resume", "{r}", "--quiet"],
             ["train", "--resume", "{r}", "--epochs", "2", "--quiet"],
             ["train", "--config", "{b}/ok.yaml", "--out", "{r}", "--overwrite", "--quiet"],
             ["train", "--config", "{b}/ok.yaml", "--out", "{r}", "--quiet"],
             ["check", "{r}", "--out", "{w}/check", "--quick", "--points", "1",
              "--samples", "100"]]


def _files(run: Path) -> dict[str, bytes]:
    """Every file of the run but our temp files (which a writer cleans up)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*")
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


@SETTINGS
@given(damage=damages(), command=st.sampled_from(_COMMANDS))
def test_damaged_run_folders_end_cleanly(base, damage, command, monkeypatch, capsys,
                                         tmp_path_factory):
    work = tmp_path_factory.mktemp("dmg")
    run = work / "run"
    shutil.copytree(base / "run", run)
    (work / "outside").mkdir()
    for d in damage:
        _damage(run, *d)
    before = _files(run)
    argv = [a.replace("{r}", str(run)).replace("{w}", str(work)).replace("{b}", str(base))
            for a in command]
    code, err, peak = _run(argv, monkeypatch, capsys)
    _check(code, err, peak, argv)
    assert list((work / "outside").iterdir()) == []  # nothing written through a link
    if "--out" in argv and str(run) in argv and code != 0:  # a refused or cut-short new run
        if "--overwrite" in argv:
            assert _files(run) == before  # the old run, byte for byte
        assert not list(work.glob(".run.pyrovae-*"))
