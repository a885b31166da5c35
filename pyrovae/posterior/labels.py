"""Checks of a model whose class label is a discrete latent (the M2 kind), the label
summed out exactly.

log p(x) = log Σ_y p(y) p(x | y): AIS over the continuous z for each class y (the
conditional target p(z) p(x | y, z) with guide q(z | x, y)), then the exact sum over the
classes.  Each class's AIS estimate is unbiased for p(x | y), so the sum is unbiased for
p(x); its standard error on the log scale is √(Σ_y p̂(y|x)² se_y²) (delta method), with
p̂(y | x) ∝ p(y) p̂(x | y) the label posterior those estimates imply.

The gap of the unlabelled bound U(x) splits exactly in two::

    log p(x) − U(x) = KL(q(y|x) ‖ p(y|x)) + Σ_y q(y|x) [log p(x|y) − ELBO_z(x, y)]
                      (the label's part)      (the continuous code's part)

SBC for the discrete site (the calibration of q(y | x)): simulate (y, z, x) from the
model; if q(y | x) were the exact posterior, the randomised probability integral transform
u = F(y − 1) + V·q(y | x), V ~ U(0, 1), F the CDF of q(· | x) over the ordered classes,
is uniform on (0, 1) (a Kolmogorov–Smirnov test at level α); the expected calibration
error of q(y | x) on the simulations is reported beside it.  SBC of q(z | x, y) runs per
class on data simulated from that class (:func:`pyrovae.posterior.sbc.sbc`).

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.
    Neal (2001), *Annealed Importance Sampling*.
    Talts et al. (2018), *Validating Bayesian Inference Algorithms with Simulation-Based
    Calibration*.
    Czado, Gneiting & Held (2009), *Predictive Model Assessment for Count Data* (the
    randomised PIT of a discrete distribution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.classification import classification_metrics
from pyrovae.posterior.ais import ais
from pyrovae.posterior.enumerate import class_calibration
from pyrovae.posterior.target import VAETarget
from pyrovae.randomness import seeded

__all__ = ["LabelAIS", "label_ais", "label_calibration", "label_gap_split"]

#: (data point, class) pairs annealed together by :func:`label_ais`.
_CHUNK = 640


def _require_label_model(vae: Any) -> None:
    if not getattr(vae, "label_latent", False):
        raise PyrovaeError(f"{type(vae).__name__} has no discrete label latent (model: m2 has)")


@dataclass(frozen=True)
class LabelAIS:
    """log p(x) with the label summed out, per point, from AIS per class."""

    log_px: torch.Tensor  #: (N,) log Σ_y p(y) p̂(x|y)
    stderr: torch.Tensor  #: (N,) delta-method standard error
    log_px_given_y: torch.Tensor  #: (C, N) AIS log p̂(x | y)
    stderr_given_y: torch.Tensor  #: (C, N)
    label_posterior: torch.Tensor  #: (N, C) p̂(y | x) ∝ p(y) p̂(x | y)
    settings: dict

    def as_dict(self) -> dict:
        """The per-point results as a dict (for reports)."""
        return {"log_px": self.log_px, "stderr": self.stderr,
                "log_px_given_y": self.log_px_given_y.T, "label_posterior":
                self.label_posterior, "settings": self.settings}


def label_ais(vae: Any, x: torch.Tensor, *, num_steps: int = 200, num_chains: int = 32,
              seed: int = 0) -> LabelAIS:
    """log p(x) = log Σ_y p(y) p(x|y) per row of ``x``, AIS over z for each class.

    Args:
        vae: a model whose label is a latent (``label_latent``).
        x: the data rows.
        num_steps, num_chains, seed: the AIS budget per class; every class of a point is
            annealed in the same batch (up to 640 (point, class) pairs at a time).

    Returns:
        :class:`LabelAIS`.
    """
    _require_label_model(vae)
    x = vae.as_event(x)
    C = vae.classes
    with torch.no_grad():
        log_py = vae.label_prior().logits.log_softmax(-1).double()
    n = x.shape[0]
    rows = max(1, _CHUNK // C)  # data points per AIS run: every class of each in one batch
    lp_parts, se_parts, seconds = [], [], 0.0
    for i, lo in enumerate(range(0, n, rows)):
        xb = x[lo:lo + rows]
        m = xb.shape[0]
        xx = xb.repeat(C, *([1] * (xb.ndim - 1)))  # (C·m, ...): class-major
        yy = torch.arange(C, device=x.device).repeat_interleave(m)
        a = ais(VAETarget(vae, yy), xx, num_steps=num_steps, num_chains=num_chains,
                seed=seed + i, chunk_size=C * m)
        lp_parts.append(a.log_px.double().reshape(C, m))
        se_parts.append(a.stderr.double().reshape(C, m))
        seconds += a.seconds
    lp = torch.cat(lp_parts, 1)  # (C, N)
    se = torch.cat(se_parts, 1)
    joint = log_py.unsqueeze(-1) + lp
    log_px = torch.logsumexp(joint, 0)
    post = torch.softmax(joint, 0)
    stderr = ((post * se) ** 2).sum(0).sqrt()
    return LabelAIS(log_px, stderr, lp, se, post.T,
                    {"num_steps": num_steps, "num_chains": num_chains, "classes": C,
                     "seconds": seconds})


def label_gap_split(vae: Any, x: torch.Tensor, a: LabelAIS, *, num_samples: int = 1000,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """The unlabelled bound's gap split into the label's and the code's parts.

    Returns per point: ``elbo`` U(x) (Monte Carlo with ``num_samples`` draws per class),
    ``gap`` = AIS log p(x) − U(x), ``gap_label`` = KL(q(y|x) ‖ p̂(y|x)), ``gap_code`` =
    gap − gap_label, and ``label_tv``, the total-variation distance between q(y|x) and
    p̂(y|x).
    """
    from pyrovae.estimators.enumerated import label_terms

    _require_label_model(vae)
    x = vae.as_event(x)
    with torch.no_grad(), seeded(seed, vae):
        t = label_terms(vae, x, None, num_particles=num_samples, kl="auto")
        q = vae.label_posterior(x).probs.double()
    elbo = t.elbo().double()
    p = a.label_posterior.clamp_min(1e-300)
    gap_label = (q * (q.clamp_min(1e-300).log() - p.log())).sum(-1)
    gap = a.log_px - elbo
    return {"elbo": elbo, "gap": gap, "gap_label": gap_label, "gap_code": gap - gap_label,
            "label_tv": 0.5 * (q - a.label_posterior).abs().sum(-1)}


@torch.no_grad()
def label_calibration(vae: Any, *, num_sims: int = 1000, alpha: float = 0.01,
                      seed: int = 0) -> dict[str, Any]:
    """SBC of the discrete site: the randomised PIT of the simulated label under q(y|x)
    (Kolmogorov–Smirnov against U(0, 1)) and the calibration of q(y|x) on the
    simulations (accuracy, ECE, reliability), each tested at level ``alpha``/2.

    The PIT over arbitrarily ordered classes sees a confidently wrong q(y|x) but not a
    tempered one (q ∝ p(y|x)^(1/T): marginally over x its PIT stays near uniform; on the
    exact mixture-of-pPCAs toy, T = 3 and T = 1/3 pass the KS test), so ``failed`` is
    also set when the ECE exceeds the threshold a calibrated q would exceed with
    probability α/2 (:func:`pyrovae.posterior.enumerate.class_calibration`, consistency
    resampling).  ``pit_failed`` and ``ece_failed`` say which."""
    _require_label_model(vae)
    if isinstance(num_sims, bool) or not isinstance(num_sims, int) or num_sims < 20:
        raise PyrovaeError(f"num_sims: expected an integer >= 20, got {num_sims!r}")
    if not 0 < alpha < 1:
        raise PyrovaeError(f"alpha: expected a level in (0, 1), got {alpha!r}")
    was = vae.training
    vae.eval()
    try:
        with seeded(seed, vae):
            y = vae.label_prior().sample((num_sims,))
            z = vae.prior_dist().sample((num_sims,))
            x = vae.decode(z, y=y).sample()
            q = vae.label_posterior(x).probs.double()
            v = torch.rand(num_sims, dtype=torch.float64)
    finally:
        vae.train(was)
    cdf = torch.cumsum(q, -1)
    below = torch.where(y > 0, cdf.gather(-1, (y - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1),
                        torch.zeros_like(v))
    u = (below + v * q.gather(-1, y.unsqueeze(-1)).squeeze(-1)).clamp(0, 1)
    ks = _ks_uniform(u)
    p_value = _ks_p_value(ks, num_sims)
    metrics = classification_metrics(q, y)
    cal = class_calibration(q, y, num_bins=15, alpha=alpha / 2, seed=seed)
    pit_failed = bool(p_value < alpha / 2)
    return {"pit": u, "ks": ks, "p_value": p_value, "alpha": alpha,
            "failed": pit_failed or not cal.passed, "pit_failed": pit_failed,
            "ece_failed": not cal.passed, "ece_threshold": cal.threshold,
            "ece_p_value": cal.p_value, "num_sims": num_sims,
            "accuracy": metrics["accuracy"], "ece": metrics["ece"],
            "reliability": metrics["reliability"]}


def _ks_uniform(u: torch.Tensor) -> float:
    """sup |ECDF(u) − u| for draws ``u`` in [0, 1]."""
    s, _ = torch.sort(u)
    n = len(s)
    i = torch.arange(1, n + 1, dtype=s.dtype)
    return float(torch.maximum(i / n - s, s - (i - 1) / n).max())


def _ks_p_value(d: float, n: int) -> float:
    """Asymptotic Kolmogorov p-value with Stephens' small-sample correction."""
    t = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    if t < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))
