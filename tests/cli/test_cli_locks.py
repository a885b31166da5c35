"""``check`` is a run-folder writer like ``train`` (issue 19): two ``check --overwrite
RUN`` at once, or a ``check`` during ``train --resume`` of the same run, never both
write: one proceeds, the other exits 2 naming the holder, and the run stays valid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyrovae.cli import main
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline

CHECK = ["--quick", "--points", "1", "--samples", "100", "--bdmc-points", "0",
         "--sbc-sims", "0", "--collapse-points", "4"]


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_run) -> Path:
    d = tmp_path_factory.mktemp("locks")
    tiny_run(d)
    return d


@pytest.fixture
def run(base, tmp_path) -> Path:
    shutil.copytree(base / "run", tmp_path / "run")
    return tmp_path / "run"


def _valid(run: Path) -> None:
    """The run still verifies and evaluates; its check report (if any) is whole."""
    pipeline.evaluate_run(run)
    report = run / runs.CHECK_DIR / runs.REPORT_FILE
    if report.exists():
        assert isinstance(json.loads(report.read_text()), dict)
    assert not [p.name for p in run.parent.iterdir() if ".pyrovae-" in p.name]  # no leftovers
    assert not [p.name for p in run.iterdir() if ".pyrovae-" in p.name]


def test_a_check_while_another_holds_the_run_exits_2_naming_it(run, capsys):
    assert main(["check", str(run), *CHECK]) == 0
    capsys.readouterr()
    with runs.RunLock(run, "pyrovae check"):
        assert main(["check", str(run), "--overwrite", *CHECK]) == 2
        err = capsys.readouterr().err
        assert f"is locked by pyrovae check (pid {os.getpid()} on host" in err
        assert err.count("\n") == 1
    _valid(run)
    assert main(["check", str(run), "--overwrite", *CHECK]) == 0
    _valid(run)


def _gated(*args: str, cwd: Path, gate: Path, where: str) -> subprocess.Popen:
    """A real ``pyrovae`` process whose function ``where`` (``module:function``)
    waits, when first called, until the file ``gate`` exists (so it surely holds its
    lock when the test acts); it writes ``gate.started`` on arrival."""
    module, func = where.split(":")
    code = (
        "import importlib, os, sys, time\n"
        f"m = importlib.import_module({module!r})\n"
        f"real = getattr(m, {func!r})\n"
        "def wait(*a, **k):\n"
        f"    open({str(gate) + '.started'!r}, 'w').close()\n"
        f"    while not os.path.exists({str(gate)!r}):\n"
        "        time.sleep(0.02)\n"
        "    return real(*a, **k)\n"
        f"setattr(m, {func!r}, wait)\n"
        "from pyrovae.cli import main\nraise SystemExit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _hold_then(first: subprocess.Popen, gate: Path, second: list[str], capsys) -> str:
    """Wait until ``first`` holds its lock, run ``second`` in process (must exit 2),
    then let ``first`` finish (must exit 0); returns the second's stderr."""
    try:
        deadline = time.monotonic() + 180
        while not Path(str(gate) + ".started").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first process never got going"
            time.sleep(0.05)
        assert main(second) == 2
        err = capsys.readouterr().err
        gate.write_text("")
        _, first_err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_err
    return err


@pytest.mark.slow
def test_two_checks_at_once_one_proceeds_the_other_names_it(run, tmp_path, capsys):
    gate = tmp_path / "go"
    a = _gated("check", str(run), "--overwrite", *CHECK, cwd=tmp_path, gate=gate,
               where="pyrovae.runs.check:check_vae")
    err = _hold_then(a, gate, ["check", str(run), "--overwrite", *CHECK], capsys)
    assert f"is locked by pyrovae check (pid {a.pid} on host" in err and err.count("\n") == 1
    _valid(run)
    assert (run / runs.CHECK_DIR / runs.REPORT_FILE).is_file()


@pytest.mark.slow
def test_a_check_during_train_resume_of_the_run_names_the_resume(run, tmp_path, capsys):
    gate = tmp_path / "go"
    a = _gated("train", "--resume", str(run), "--epochs", "3", "--quiet", cwd=tmp_path,
               gate=gate, where="pyrovae.runs.pipeline:finish_run")
    err = _hold_then(a, gate, ["check", str(run), "--overwrite", *CHECK], capsys)
    assert f"is locked by pyrovae train --resume (pid {a.pid} on host" in err
    _valid(run)
    assert pipeline.evaluate_run(run) and runs.read_history(run).last["epoch"] == 3
    assert main(["check", str(run), *CHECK]) == 0  # once the resume is done
    _valid(run)
