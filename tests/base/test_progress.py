"""``pyrovae.progress``: rate limiting, the final line, the time left, silence by default,
and the number of reports the long loops (AIS, BDMC, evaluate, SBC, NUTS) make."""

from __future__ import annotations

import io
import math
import sys

import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.progress import Progress, expect, format_seconds, from_flag


class Clock:
    """A fake monotonic clock, advanced by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rate_limited_to_one_line_per_interval_and_always_the_final_one():
    clock, lines = Clock(), []
    p = Progress(100, "work", sink=lines.append, interval=0.5, clock=clock)
    for _ in range(99):  # 99 updates 1/8 s apart (exact in binary)
        clock.now += 0.125
        p(1)
    # a report once 0.5 s have passed since the previous one (none at the start)
    assert [line.split()[1] for line in lines] == [f"{k}/100" for k in range(4, 100, 4)]
    clock.now += 0.125
    p(1)  # the total is reached: the final line at once, whatever the interval
    assert lines[-1].startswith("work: 100/100 (100%)") and "left" not in lines[-1]
    n = len(lines)
    p.close()  # already final: nothing more
    p(1)
    assert len(lines) == n == p.lines


def test_nothing_before_the_first_interval_and_close_reports_once():
    clock, lines = Clock(), []
    p = Progress(None, "x", sink=lines.append, interval=5, clock=clock)
    clock.now += 4.9
    p(3)
    assert lines == []
    with p:
        pass
    assert lines == ["x: 3  elapsed 5s"]


def test_eta_is_the_linear_extrapolation_of_the_rate_so_far():
    clock = Clock()
    p = Progress(10, "e", sink=lambda s: None, clock=clock)
    assert math.isnan(p.eta)
    clock.now += 12.0
    p(3)  # 3 units in 12 s: 7 more take 28 s
    assert p.eta == pytest.approx(28.0)
    assert p.line() == "e: 3/10 (30%)  elapsed 12s, left 28s"
    p.expect(99)  # the caller's total wins
    assert p.total == 10
    assert format_seconds(187) == "3:07" and format_seconds(3723) == "1:02:03"
    assert format_seconds(math.nan) == "?"


def test_silent_off_a_terminal_unless_forced_and_when_disabled():
    clock = Clock()
    plain = io.StringIO()
    p = Progress(2, "s", sink=plain, interval=0, clock=clock)
    p(1), p(1), p.close()
    assert plain.getvalue() == ""
    forced = io.StringIO()
    p = Progress(2, "s", sink=forced, interval=0, force=True, clock=clock)
    clock.now += 1
    p(1), p(1)
    assert forced.getvalue().splitlines() == ["s: 1/2 (50%)  elapsed 1s, left 1s",
                                              "s: 2/2 (100%)  elapsed 1s"]
    tty = TTY()
    p = Progress(2, "t", sink=tty, interval=0, clock=clock)
    clock.now += 1
    p(1), p(1)
    assert tty.getvalue().startswith("\rt: 1/2") and tty.getvalue().endswith("\n")
    assert tty.getvalue().count("\n") == 1  # rewritten in place, one line in the end
    off = TTY()
    p = Progress(2, "t", sink=off, enabled=False, clock=clock)
    p(2), p.close()
    assert off.getvalue() == ""
    assert Progress(2).interval == (0.5 if sys.stderr.isatty() else 10.0)


def test_final_false_leaves_the_summary_to_the_caller():
    clock, lines = Clock(), []
    p = Progress(3, "f", sink=lines.append, interval=1, final=False, clock=clock)
    clock.now += 2
    p(1)
    p(2)
    p.close()
    assert lines == ["f: 1/3 (33%)  elapsed 2s, left 4s"]


def test_from_flag_maps_the_command_line_switches():
    assert from_flag(False, "x") is None
    off = io.StringIO()
    auto = from_flag(None, "x", 1, sink=off)
    assert auto is not None and not auto.enabled  # a log file: silent
    forced = from_flag(True, "x", 1, sink=off)
    assert forced is not None and forced.enabled and forced.interval == 10.0
    forced(1)
    assert off.getvalue() == "x: 1/1 (100%)  elapsed 0s\n"
    expect(None, 3)  # None and plain callables are left alone
    with pytest.raises(PyrovaeError, match="total"):
        Progress(-1)


def _counting() -> tuple[Progress, list[str]]:
    lines: list[str] = []
    return Progress(label="c", sink=lines.append, interval=1e9), lines


def test_ais_and_bdmc_advance_once_per_temperature_and_chunk():
    from pyrovae.posterior.ais import ais
    from pyrovae.posterior.bdmc import bdmc
    from pyrovae.toy import get_toy

    toy = get_toy("ppca")
    vae = toy.to_linear_vae()
    x = toy.sample(5, seed=0).to(next(vae.parameters()).dtype)
    p, lines = _counting()
    ais(vae, x, num_steps=7, num_chains=3, chunk_size=2, progress=p)
    assert p.total == 7 * 3 and p.done == 21  # T per chunk, 3 chunks of 2 points
    # the line's elapsed time is the clock's when it was written (a loaded machine may
    # tick a second before p.elapsed is read here)
    assert len(lines) == 1 and lines[0].startswith("c: 21/21 (100%)  elapsed ")
    p, lines = _counting()
    bdmc(vae, 3, num_steps=4, num_chains=2, chunk_size=2, progress=p)
    assert p.total == p.done == 2 * 4 * 2 and len(lines) == 1  # forward and reverse


def test_evaluate_sbc_and_nuts_report_their_units():
    from pyrovae import VAE, evaluate
    from pyrovae.posterior.reference import nuts_reference
    from pyrovae.posterior.sbc import sbc

    vae = VAE(6, 2, encoder=[4], likelihood="bernoulli")
    x = torch.bernoulli(torch.full((11, 6), 0.4), generator=torch.Generator().manual_seed(0))
    p, lines = _counting()
    calls: list[int] = []
    p.sink = lambda s: calls.append(p.done)
    evaluate(vae, x, num_samples=4, max_elements=4 * 3 * 16, progress=p)
    assert p.total == p.done == 11 and calls == [11]
    silent = evaluate(vae, x, num_samples=4, max_elements=4 * 3 * 16)
    assert silent["elbo"] == evaluate(vae, x, num_samples=4, max_elements=4 * 3 * 16,
                                      progress=Progress(sink=lines.append))["elbo"]
    ticks: list[int] = []  # one data chunk of 2 examples, 2 chunks of 32 draws each
    evaluate(vae, x[:2], num_samples=64, max_elements=6 * 64, progress=ticks.append)
    assert ticks == [1, 1]
    p, _ = _counting()
    sbc(vae, num_sims=25, num_draws=3, chunk_size=10, progress=p)
    assert p.total == p.done == 25
    p, _ = _counting()
    nuts_reference(vae, x, num_samples=5, warmup=4, num_chains=2, points=1, progress=p)
    assert p.total == p.done == 2 * (5 + 4)


def test_local_guides_and_label_ais_report_their_units():
    from pyrovae import VAE
    from pyrovae.model.m2 import SemiSupervisedVAE
    from pyrovae.posterior.amortization import optimise_local
    from pyrovae.posterior.labels import label_ais

    vae = VAE(6, 2, encoder=[4])
    x = torch.bernoulli(torch.full((3, 6), 0.4), generator=torch.Generator().manual_seed(0))
    p, _ = _counting()
    optimise_local(vae, x, steps=3, rounds=2, num_particles=8, progress=p)
    assert p.total == p.done == 2  # one unit per L-BFGS round
    m2 = SemiSupervisedVAE(5, 2, classes=3, encoder=[], decoder=[], classify_weight=0.0)
    p, _ = _counting()
    label_ais(m2, torch.randn(4, 5).clamp(0, 1).round(), num_steps=5, num_chains=2, progress=p)
    assert p.total == p.done == 5  # the 4 points and 3 classes of each in one batch
