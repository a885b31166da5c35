"""Every code block in README.md runs, verbatim.

How a block runs is said by an HTML comment on the line before its fence
(invisible on GitHub):

* no comment: run it.  ``python`` blocks are exec'd in order in one namespace (the
  second block uses the first one's ``vae`` and ``train``); ``bash`` blocks run with
  ``bash -eu`` in a scratch folder holding a copy of ``examples/configs``, with the
  interpreter's ``bin/`` (so ``pyrovae``) first on ``PATH``;
* ``<!-- readme-test: slow -->``: run it, as a slow test;
* ``<!-- readme-test: given runs/first -->``: first train a small run into
  ``runs/first`` of the scratch folder (2 epochs, K = 10: the block's commands are
  the README's, only the run they read is cheaper);
* ``<!-- readme-test: error -->``: a ``bash`` block showing a mistake: every line
  must fail with exit status 2 and a one-line message;
* ``<!-- readme-test: file PATH -->``: the block is the repository's YAML file PATH
  (the same mapping; the file may hold comments);
* ``<!-- readme-test: skip REASON -->``: not run here (the set-up commands create a
  virtual environment and download packages; ``.ci/run`` runs the test command).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(
    r"(?:<!--\s*readme-test:\s*(?P<mode>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w*)\n(?P<code>.*?)\n```",
    re.S,
)


def _blocks() -> list[tuple[int, str, str, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start("lang")].count("\n") + 1, m["lang"], (m["mode"] or "").strip(),
             m["code"]) for m in FENCE.finditer(text)]


BLOCKS = _blocks()


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1")


def _scratch(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples" / "configs", tmp_path / "examples" / "configs")
    return tmp_path


def _bash(code: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-euc", code], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=480)
    if check and proc.returncode != 0:
        tail = proc.stderr[-3000:]
        raise AssertionError(f"exit {proc.returncode}\n{code}\n--- stderr ---\n{tail}")
    return proc


def _params(lang: str):
    out = []
    for line, lg, mode, code in BLOCKS:
        if lg != lang:
            continue
        marks = [pytest.mark.slow] if mode == "slow" else []
        out.append(pytest.param(mode, code, marks=marks, id=f"line{line}"))
    return out


def test_readme_has_blocks_and_every_mode_is_known():
    assert len(BLOCKS) >= 8
    for line, lang, mode, _ in BLOCKS:
        assert lang in {"bash", "python", "yaml", "text"}, f"line {line}: {lang!r}"
        assert mode == "" or re.fullmatch(r"slow|given runs/first|error|file \S+|skip .+", mode), (
            f"line {line}: unknown readme-test mode {mode!r}")


def test_setup_commands_are_the_ci_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = re.search(r"TEST_COMMAND='(.*)'", ci)[1]
    skipped = [code for _, lang, mode, code in BLOCKS if lang == "bash" and mode.startswith("skip")]
    assert test_cmd in skipped
    assert test_cmd.replace(".venv/bin/python -m pytest -q", ".venv/bin/pyrovae train") in skipped


def test_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for line, lang, mode, code in BLOCKS:
        if lang == "python" and not mode.startswith("skip"):
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
            ran += 1
    assert ran >= 2
    assert namespace["result"]["log_likelihood"] >= namespace["result"]["elbo"] - 1.0


@pytest.mark.parametrize(("mode", "code"), _params("bash"))
def test_bash_block(mode, code, tmp_path):
    if mode.startswith("skip"):
        pytest.skip(mode)
    cwd = _scratch(tmp_path)
    if mode == "given runs/first":
        _bash("pyrovae train --out runs/first --set train.epochs=2 --set eval.num_samples=10 "
              "--quiet", cwd)
    if mode == "error":
        for cmd in [ln for ln in code.splitlines() if ln.strip() and not ln.startswith("#")]:
            proc = _bash(cmd, cwd, check=False)
            assert proc.returncode == 2, (cmd, proc.stderr[-2000:])
            assert proc.stderr.count("\n") == 1, (cmd, proc.stderr)
            assert not (cwd / "runs").exists() or not any((cwd / "runs").iterdir())
        return
    _bash(code, cwd)


@pytest.mark.parametrize(("mode", "code"), _params("yaml") + _params("text"))
def test_file_blocks_match_the_repository(mode, code):
    """A YAML block is the same spec as the file (the file may carry comments)."""
    import yaml

    if not mode.startswith("file "):
        pytest.skip("illustration")
    text = (ROOT / mode.split(" ", 1)[1]).read_text(encoding="utf-8")
    assert yaml.safe_load(code) == yaml.safe_load(text)
