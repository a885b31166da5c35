"""Progress of the long steps as a user sees it: ``fit`` within epochs, the command
line's ``--progress/--no-progress`` on ``evaluate``, ``check`` and ``train``, with
stderr captured (not a terminal)."""

from __future__ import annotations

import re

import pytest
import torch

from pyrovae import VAE, fit
from pyrovae.cli import main


class Clock:
    """Every reading 3 s after the previous one: each step of work "takes" 3 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 3.0
        return self.now


def test_fit_reports_within_an_epoch_at_least_every_ten_seconds_of_work(monkeypatch, capsys):
    monkeypatch.setattr("pyrovae.progress._monotonic", Clock())
    x = torch.bernoulli(torch.full((100, 6), 0.4), generator=torch.Generator().manual_seed(0))
    fit(VAE(6, 2, encoder=[4]), x, epochs=2, batch_size=10, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    steps = [line for line in err if ", step: " in line]
    epochs = [line for line in err if re.match(r"fit: epoch \d/2  elbo", line)]
    assert len(epochs) == 2 and err[-1] == epochs[-1]
    # 10 steps of 3 s each per epoch: a line once 10 s have passed, i.e. every 4th step
    assert [s.split(", step: ")[1].split()[0] for s in steps] == ["4/10", "8/10"] * 2
    assert all(s.startswith(("fit: epoch 1/2", "fit: epoch 2/2")) and "left" in s
               for s in steps)


def test_fit_without_progress_is_silent(monkeypatch, capsys):
    monkeypatch.setattr("pyrovae.progress._monotonic", Clock())
    fit(VAE(6, 2, encoder=[4]), torch.zeros(40, 6), epochs=1, batch_size=10, progress=False)
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_run):
    folder = tmp_path_factory.mktemp("progress")
    tiny_run(folder)
    return folder / "run"


def test_evaluate_progress_switches(run, capsys):
    assert main(["evaluate", str(run), "-k", "3"]) == 0
    assert capsys.readouterr().err == ""  # not a terminal: silent by default
    assert main(["evaluate", str(run), "-k", "3", "--progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [e for e in err if e.startswith("evaluate (K=3): ")]
    assert err[-1].startswith("evaluate (K=3): 6/6 (100%)")  # 6 held-out rows
    assert main(["evaluate", str(run), "-k", "3", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_check_progress_switches(run, tmp_path, capsys, monkeypatch):
    quick = ["--quick", "--samples", "100", "--ais-steps", "8", "--ais-chains", "2",
             "--bdmc-points", "2", "--sbc-sims", "10", "--points", "2"]
    assert main(["check", str(run), "--out", str(tmp_path / "a"), *quick,
                 "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr("pyrovae.progress._monotonic", Clock())  # 3 s per AIS temperature
    assert main(["check", str(run), "--out", str(tmp_path / "b"), *quick]) == 0
    err = capsys.readouterr().err
    assert "check: AIS done" in err and "check: SBC done" in err
    assert "check: AIS: " not in err  # the within-stage line only on a terminal
    assert main(["check", str(run), "--out", str(tmp_path / "c"), *quick, "--progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    ais = [e for e in err if e.startswith("check: AIS: ")]
    # 8 temperatures of 3 s: a line once 10 s have passed (the 4th), none at the end
    # (the stage's own "done" line follows)
    assert ais == ["check: AIS: 4/8 (50%)  elapsed 12s, left 12s"]
    assert err.index(ais[0]) < err.index(next(e for e in err if e.startswith("check: AIS done")))
    bdmc = [e for e in err if e.startswith("check: BDMC: ")]
    assert [b.split()[2] for b in bdmc] == ["4/16", "8/16", "12/16"]  # forward + reverse
