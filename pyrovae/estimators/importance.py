"""Importance weights: the IWAE bound with its standard error, the effective sample
size and the Pareto k̂ diagnostic, from log-weights log w_s = log p(x, z_s) − log q(z_s|x),
z_s ~ q(z|x), s = 1..S (sample dimension first).

* IWAE bound  L_S = log (1/S) Σ_s w_s ≤ log p(x), increasing in S (Burda et al. 2016).
* Its Monte Carlo standard error by the delta method: with w̄ the mean weight and
  v the sample variance of the w_s, se(L_S) ≈ sqrt(v / S) / w̄.
* ESS = (Σ w)² / Σ w² (Kong 1992), between 1 and S.
* Pareto k̂: the shape of a generalized Pareto fitted to the M = ⌈min(S/5, 3√S)⌉
  largest weights (exceedances over the next one).  k̂ above
  :func:`khat_threshold` (S) = min(1 − 1/log10 S, 0.7) means the importance-sampling
  estimate (and its standard error) cannot be trusted.

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
    Kong (1992), *A note on importance sampling using standardized weights*.
    Vehtari, Simpson, Gelman, Yao & Gabry (2024), *Pareto Smoothed Importance
    Sampling*, JMLR 25 (the S-dependent threshold; as in the R package loo 2.7).
    Yao, Vehtari, Simpson & Gelman (2018), *Yes, but Did It Work?: Evaluating
    Variational Inference*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro.ops.stats import fit_generalized_pareto


@dataclass(frozen=True)
class IWAEEstimate:
    """Per data point: the IWAE bound ``value`` and its Monte Carlo ``stderr``."""

    value: torch.Tensor
    stderr: torch.Tensor
    num_samples: int


def iwae_bound(log_weights: torch.Tensor, dim: int = 0) -> IWAEEstimate:
    """log (1/S) Σ_s w_s along ``dim`` and its delta-method standard error
    sqrt(v/S)/w̄ with v the (S − 1)-denominator sample variance of the weights."""
    s = log_weights.shape[dim]
    value = torch.logsumexp(log_weights, dim) - math.log(s)
    wn = torch.softmax(log_weights, dim)  # w / Σw
    var_ratio = (s * s * (wn**2).sum(dim) - s) / max(s - 1, 1)  # v / w̄²
    return IWAEEstimate(value, (var_ratio.clamp_min(0) / s).sqrt(), s)


def ess(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Importance-sampling effective sample size (Σw)² / Σw² along ``dim``."""
    return (2 * torch.logsumexp(log_weights, dim) - torch.logsumexp(2 * log_weights, dim)).exp()


def khat_threshold(num_samples: int) -> float:
    """min(1 − 1/log10 S, 0.7): the largest k̂ at which S draws give a reliable
    estimate (Vehtari et al. 2024); for S ≤ 10 every k̂ is beyond it (−∞)."""
    if num_samples <= 10:
        return -math.inf
    return min(1.0 - 1.0 / math.log10(num_samples), 0.7)


def pareto_khat(log_weights: torch.Tensor) -> float:
    """Pareto k̂ of one data point's log-weights (1-D): +∞ when S < 50 (too few draws
    to fit a tail), −∞ when the tail is flat (weights nearly constant)."""
    lw = log_weights.detach().double().reshape(-1)
    lw = lw[torch.isfinite(lw)]
    s = lw.numel()
    if s < 50:
        return math.inf
    lw = torch.sort(lw - lw.max())[0]
    m = math.ceil(min(0.2 * s, 3.0 * math.sqrt(s)))
    cutoff = float(lw[-m - 1])
    exceed = lw[-m:].exp() - math.exp(cutoff)
    exceed = exceed[exceed > 0]
    if exceed.numel() < 10:
        return -math.inf
    k, _ = fit_generalized_pareto(exceed)
    return float(k)


def pareto_khats(log_weights: torch.Tensor) -> torch.Tensor:
    """k̂ for each data point of (S, N) log-weights: a float64 tensor of length N."""
    lw = log_weights.reshape(log_weights.shape[0], -1)
    return torch.tensor([pareto_khat(lw[:, i]) for i in range(lw.shape[1])], dtype=torch.float64)
