"""Pareto-smoothed importance sampling diagnostics, per data point.

With importance weights wₛ = p(x, zₛ) / q(zₛ|x), zₛ ~ q, the shape k̂ of a generalized
Pareto fit to the largest weights says how heavy their tail is (Yao et al. 2018,
"Yes, but did it work?"): k̂ < 0.5 the guide is good; 0.5 ≤ k̂ < 0.7 usable;
k̂ ≥ 0.7 the guide misses posterior mass that importance sampling cannot recover.

``pyro.infer.importance.psis_diagnostic`` sums the log-weights over the data plate,
so its k̂ describes the *joint* weight of the whole batch and grows with batch size;
here k̂ is fitted separately for each data point.  The tail fit follows Vehtari et
al. (PSIS): the M = ⌈min(S/5, 3√S)⌉ largest weights, exceedances over the next one.
"""

from __future__ import annotations

import torch

from pyrovae.estimators.importance import ess as importance_ess
from pyrovae.estimators.importance import pareto_khat, pareto_khats
from pyrovae.posterior.target import as_target

#: k̂ thresholds (Yao et al. 2018; Vehtari et al. 2024).
GOOD, OK = 0.5, 0.7


def khat(log_weights: torch.Tensor) -> float:
    """Pareto k̂ of one point's log importance weights (1-D)
    (:func:`pyrovae.estimators.importance.pareto_khat`)."""
    return pareto_khat(log_weights)


def ess(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Importance-sampling effective sample size (Σw)² / Σw² along ``dim``
    (:func:`pyrovae.estimators.importance.ess`, in float64)."""
    return importance_ess(log_weights.double(), dim)


def category(k: float) -> str:
    if k < GOOD:
        return "good"
    if k < OK:
        return "ok"
    return "bad"


def psis_per_point(target, x: torch.Tensor, *, num_samples: int = 2000) -> dict:
    """k̂, ESS and ESS/S for each row of ``x`` (log-weights from the guide)."""
    target = as_target(target)
    with torch.no_grad():
        lw = target.log_weights(x, num_samples).double()  # (S, N)
    ks = pareto_khats(lw)
    e = ess(lw, 0)
    return {
        "khat": ks,
        "category": [category(float(k)) for k in ks],
        "ess": e,
        "ess_fraction": e / num_samples,
        "num_samples": num_samples,
        "log_weights": lw,
    }
