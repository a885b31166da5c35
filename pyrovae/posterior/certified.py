"""Certified log p_θ(x): frozen-kernel AIS at a budget chosen by the BDMC width.

AIS's error at a budget (T intermediate distributions × C chains) is unknown on real
data, but on data simulated from the model BDMC brackets it: forward AIS is a
stochastic lower bound, reverse AIS from the exact latent an upper one, and their
width upper − lower bounds the error of either (Grosse et al. 2015).  Wu et al. (2017)
trust AIS on real data at a budget where the sandwich is tight on simulated data.
:func:`certified_ais` automates that choice::

    T ← num_steps
    loop:  w(T) ± s(T) = mean width of frozen BDMC at T on ``bdmc_points`` simulated
                         points ± its standard error over them
           stop if w(T) + z·s(T) ≤ target_width      (stopped = "target", met)
           stop if 2T > max_steps                     (stopped = "max_steps")
           stop if elapsed + 2·cost(T) > time_limit_s (stopped = "time_limit")
           T ← 2T
    then:  frozen AIS on x at the last T

The standard error matters: per point, both bounds carry Monte Carlo noise of the
order of their own standard errors (with a poor start, easily ±1 nat at small T, in
either direction), so a mean width over 16 points can fall under the target by chance
while AIS is still far off.  ``z`` = ``confidence_z`` (2 by default: one-sided, about
97.7% for a normal mean) makes the test "the width is under the target with
confidence", not "the noisy mean happened to be"; ``confidence_z=0`` compares the mean.

Each round doubles T, so a round costs about twice the previous one and the whole
search about twice its last round; the time limit is checked *before* a round with that
prediction, so the search never starts a round it expects to overrun.  The first round
always runs (there is no width without it).  The final AIS on ``x`` is not cut by the
limit (an estimate stopped midway is no estimate); its cost is about
``len(x) / bdmc_points`` halves of the last BDMC round, and ``seconds`` reports it.

Every AIS run here is two-round (:func:`pyrovae.posterior.ais.ais` with
``frozen=True``), so the reported estimate's weights are unbiased, E[w] = p_θ(x), and
the BDMC width certifies exactly the kernels that produced it.

References:
    Neal (2001), *Annealed importance sampling*.
    Grosse, Ghahramani & Adams (2015), *Sandwiching the marginal likelihood using
    bidirectional Monte Carlo*.
    Wu, Burda, Salakhutdinov & Grosse (2017), *On the quantitative analysis of
    decoder-based generative models*.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.ais import AISResult, ais
from pyrovae.posterior.bdmc import BDMCResult, bdmc
from pyrovae.posterior.target import as_target

__all__ = ["CertifiedAIS", "certified_ais"]


@dataclass
class CertifiedAIS:
    """A frozen-kernel AIS estimate of log p(x) and the budget that certified it."""

    ais: AISResult  #: frozen AIS on the data at ``num_steps``
    bdmc: BDMCResult  #: frozen BDMC on simulated data at ``num_steps``
    num_steps: int  #: T chosen (the last one tried)
    num_chains: int  #: C chains per point
    width: float  #: mean BDMC width at ``num_steps``
    width_stderr: float  #: its standard error over the simulated points
    target_width: float  #: the width asked for
    met: bool  #: whether ``width`` + ``confidence_z`` × ``width_stderr`` ≤ ``target_width``
    stopped: str  #: "target", "max_steps" or "time_limit"
    confidence_z: float = 2.0  #: standard errors added to the width before comparing
    #: one row per T tried (T, width, seconds)
    history: list[dict] = field(default_factory=list)
    search_seconds: float = 0.0  #: the BDMC rounds
    seconds: float = 0.0  #: the BDMC rounds and the final AIS

    def mean(self) -> tuple[float, float]:
        """(mean over the data of the AIS estimate, its Monte Carlo standard error
        √(Σ sᵢ²) / N from the per-point standard errors sᵢ)."""
        n = self.ais.log_px.numel()
        return (float(self.ais.log_px.mean()),
                float(self.ais.stderr.pow(2).sum().sqrt() / n))

    def line(self) -> str:
        """The one-line certificate, e.g. ``certified: AIS (frozen kernels, T=400)
        -85.310 ± 0.012 (mean of 100 points), BDMC width 0.150 ± 0.020 on 16 simulated
        points (target 0.2, met)``."""
        m, se = self.mean()
        verdict = "met" if self.met else f"NOT met, stopped by {self.stopped}"
        return (f"certified: AIS (frozen kernels, T={self.num_steps}, C={self.num_chains}) "
                f"{m:.3f} ± {se:.3f} (mean of {self.ais.log_px.numel()} points), "
                f"BDMC width {self.width:.3f} ± "
                f"{self.width_stderr:.3f} on {self.bdmc.x.shape[0]} simulated points "
                f"(target {self.target_width:g}, {verdict})")

    def as_dict(self) -> dict:
        """The budget, the certificate line and the history, as a dict (for reports)."""
        return {
            "line": self.line(), "num_steps": self.num_steps, "num_chains": self.num_chains,
            "width": self.width, "width_stderr": self.width_stderr,
            "target_width": self.target_width, "confidence_z": self.confidence_z,
            "met": self.met, "stopped": self.stopped,
            "history": self.history, "search_seconds": self.search_seconds,
            "seconds": self.seconds, "mode": self.ais.mode,
        }


def certified_ais(
    model,
    x: torch.Tensor,
    *,
    guide=None,
    target_width: float = 0.2,
    num_steps: int = 100,
    max_steps: int = 6400,
    time_limit_s: float | None = None,
    num_chains: int = 32,
    bdmc_points: int = 16,
    confidence_z: float = 2.0,
    start: str = "guide",
    schedule_name: str = "sigmoid",
    leapfrog_steps: int = 5,
    chunk_size: int = 128,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> CertifiedAIS:
    """log p_θ(x) per row of ``x`` by frozen-kernel AIS, at the smallest T in
    ``num_steps``·2ᵏ whose frozen BDMC mean width on simulated data is ≤ ``target_width``
    with confidence (width + ``confidence_z``·s.e.; see the module text for the loop and
    the time limit).

    Args:
        model, guide: as for :func:`pyrovae.posterior.ais.ais`.
        target_width: the BDMC mean width (nats per point) to reach.
        num_steps: the first T tried; T doubles from there.
        max_steps: the largest T tried.
        time_limit_s: a bound on the seconds of the search (``None``: none).
        num_chains, start, schedule_name, leapfrog_steps, chunk_size: the AIS settings,
            the same for BDMC and the final run.
        bdmc_points: simulated points per BDMC round.
        confidence_z: the target is met when mean width + ``confidence_z`` × its
            standard error ≤ ``target_width`` (0: the mean alone).
        seed: BDMC round k uses ``seed + 10·k`` (its runs ``+1``, ``+2``); the final run
            ``seed``.
        progress: called with 1 after each intermediate distribution of each run (a
            :class:`~pyrovae.progress.Progress` is not told a total: the number of
            rounds is not known in advance).

    Returns:
        :class:`CertifiedAIS`; ``line()`` is the report's certificate.

    Raises:
        PyrovaeError: a target width ≤ 0, ``num_steps`` < 1, ``max_steps`` <
            ``num_steps``, a time limit ≤ 0, ``bdmc_points`` < 1 or a negative
            ``confidence_z``.

    References:
        Grosse, Ghahramani & Adams (2015), *Sandwiching the marginal likelihood using
        bidirectional Monte Carlo*.
        Wu et al. (2017), *On the quantitative analysis of decoder-based generative models*.
    """
    if not (isinstance(target_width, (int, float)) and math.isfinite(target_width)
            and target_width > 0):
        raise PyrovaeError(f"certified_ais target_width: expected a positive number, "
                           f"got {target_width}")
    if num_steps < 1:
        raise PyrovaeError(f"certified_ais num_steps: expected a positive integer, "
                           f"got {num_steps}")
    if max_steps < num_steps:
        raise PyrovaeError(f"certified_ais max_steps: expected an integer >= num_steps "
                           f"({num_steps}), got {max_steps}")
    if time_limit_s is not None and not time_limit_s > 0:
        raise PyrovaeError(f"certified_ais time_limit_s: expected a positive number of "
                           f"seconds, got {time_limit_s}")
    if bdmc_points < 1:
        raise PyrovaeError(f"certified_ais bdmc_points: expected a positive integer, "
                           f"got {bdmc_points}")
    if not (math.isfinite(confidence_z) and confidence_z >= 0):
        raise PyrovaeError(f"certified_ais confidence_z: expected a number >= 0, "
                           f"got {confidence_z}")
    target = as_target(model, guide)
    common = {"num_chains": num_chains, "start": start, "schedule_name": schedule_name,
              "leapfrog_steps": leapfrog_steps, "chunk_size": chunk_size,
              # a plain callable: the rounds are not known in advance, so no total is set
              "progress": None if progress is None else (lambda n=1: progress(n))}
    t0 = time.perf_counter()
    history: list[dict] = []
    steps, k = num_steps, 0
    while True:
        t = time.perf_counter()
        b = bdmc(target, bdmc_points, num_steps=steps, seed=seed + 10 * k, frozen=True,
                 **common)
        cost = time.perf_counter() - t
        width, width_se = float(b.width.mean()), b.mean_width_stderr()
        history.append({"num_steps": steps, "width": width, "width_stderr": width_se,
                        "seconds": cost})
        if width + confidence_z * width_se <= target_width:
            stopped = "target"
            break
        if 2 * steps > max_steps:
            stopped = "max_steps"
            break
        if time_limit_s is not None and (time.perf_counter() - t0) + 2 * cost > time_limit_s:
            stopped = "time_limit"
            break
        steps, k = 2 * steps, k + 1
    search = time.perf_counter() - t0
    a = ais(target, x, num_steps=steps, seed=seed, frozen=True, **common)
    return CertifiedAIS(
        ais=a, bdmc=b, num_steps=steps, num_chains=num_chains, width=width,
        width_stderr=width_se, target_width=float(target_width), met=stopped == "target",
        stopped=stopped, confidence_z=float(confidence_z), history=history, search_seconds=search,
        seconds=time.perf_counter() - t0,
    )
