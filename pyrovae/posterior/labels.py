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

SBC for the discrete site: simulate (y, z, x) from the model; if q(y | x) were the exact
posterior, the randomised probability integral transform u = F(y − 1) + V·q(y | x),
V ~ U(0, 1), F the CDF of q(· | x) over the ordered classes, is uniform on (0, 1) (a
Kolmogorov–Smirnov test at level α, :func:`label_pit`).  :func:`label_sbc` runs the
generic checks of :mod:`pyrovae.posterior.enumerate` on the model's own simulations: the
top-label calibration of q(y | x) against its resampled null, and the ranks of z under
q(z | x, y) for the simulated class.  The per-class estimates are combined by
:func:`~pyrovae.posterior.enumerate.combine_classes` and the label's part of the gap is
:func:`~pyrovae.posterior.enumerate.enumerated_kl` with the code's part set aside.

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
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.ais import ais
from pyrovae.posterior.enumerate import (
    EnumeratedEstimate,
    EnumeratedSBCResult,
    combine_classes,
    enumerated_kl,
    enumerated_sbc,
)
from pyrovae.posterior.target import VAETarget
from pyrovae.progress import Progress, expect
from pyrovae.randomness import seeded

__all__ = ["label_ais", "label_gap_split", "label_pit", "label_sbc", "simulate_labelled"]

#: (data point, class) pairs annealed together by :func:`label_ais`.
_CHUNK = 640


def _require_label_model(vae: Any) -> None:
    if not getattr(vae, "label_latent", False):
        raise PyrovaeError(f"{type(vae).__name__} has no discrete label latent (model: m2 has)")


def label_ais(vae: Any, x: torch.Tensor, *, num_steps: int = 200, num_chains: int = 32,
              seed: int = 0, progress: Progress | None = None) -> EnumeratedEstimate:
    """log p(x) = log Σ_y p(y) p(x|y) per row of ``x``, AIS over z for each class.

    Args:
        vae: a model whose label is a latent (``label_latent``).
        x: the data rows.
        num_steps, num_chains, seed: the AIS budget per class; every class of a point is
            annealed in the same batch (up to 640 (point, class) pairs at a time).
        progress: advanced after each intermediate distribution of each batch (total
            ``num_steps`` × batches); ``None``: silent.

    Returns:
        :class:`~pyrovae.posterior.enumerate.EnumeratedEstimate` (``value`` log p(x),
        ``per_class`` log p̂(x | y), ``log_class_posterior`` log p̂(y | x)), combined by
        :func:`~pyrovae.posterior.enumerate.combine_classes`.
    """
    _require_label_model(vae)
    x = vae.as_event(x)
    C = vae.classes
    with torch.no_grad():
        log_py = vae.label_prior().logits.log_softmax(-1).double()
    n = x.shape[0]
    rows = max(1, _CHUNK // C)  # data points per AIS run: every class of each in one batch
    expect(progress, num_steps * -(-n // rows))
    lp_parts, se_parts, seconds = [], [], 0.0
    for i, lo in enumerate(range(0, n, rows)):
        xb = x[lo:lo + rows]
        m = xb.shape[0]
        xx = xb.repeat(C, *([1] * (xb.ndim - 1)))  # (C·m, ...): class-major
        yy = torch.arange(C, device=x.device).repeat_interleave(m)
        a = ais(VAETarget(vae, yy), xx, num_steps=num_steps, num_chains=num_chains,
                seed=seed + i, chunk_size=C * m, progress=progress)
        lp_parts.append(a.log_px.double().reshape(C, m))
        se_parts.append(a.stderr.double().reshape(C, m))
        seconds += a.seconds
    return combine_classes(log_py, torch.cat(lp_parts, 1), torch.cat(se_parts, 1),
                           method=f"ais per class [T={num_steps},C={num_chains}], "
                                  f"label summed out ({seconds:.1f} s)")


def label_gap_split(vae: Any, x: torch.Tensor, a: EnumeratedEstimate, *,
                    num_samples: int = 1000,
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
        log_q = vae.label_posterior(x).logits.double().log_softmax(-1).T  # (C, N)
    elbo = t.elbo().double()
    log_post = a.log_class_posterior  # (C, N)
    gap_label = enumerated_kl(log_q, log_post, torch.zeros_like(log_q))
    gap = a.value - elbo
    return {"elbo": elbo, "gap": gap, "gap_label": gap_label, "gap_code": gap - gap_label,
            "label_tv": 0.5 * (log_q.exp() - log_post.exp()).abs().sum(0)}


@torch.no_grad()
def label_pit(vae: Any, *, num_sims: int = 1000, alpha: float = 0.01,
              seed: int = 0) -> dict[str, Any]:
    """SBC of the discrete site by the randomised PIT: simulate (y, z, x) from the model;
    u = F(y − 1) + V·q(y | x) is uniform on (0, 1) when q(y | x) is the exact posterior
    (Kolmogorov–Smirnov test at level ``alpha``).  Unlike the top-label calibration of
    :func:`~pyrovae.posterior.enumerate.class_calibration`, it sees the whole
    distribution q(· | x), in the classes' order."""
    _require_label_model(vae)
    if isinstance(num_sims, bool) or not isinstance(num_sims, int) or num_sims < 20:
        raise PyrovaeError(f"num_sims: expected an integer >= 20, got {num_sims!r}")
    if not 0 < alpha < 1:
        raise PyrovaeError(f"alpha: expected a level in (0, 1), got {alpha!r}")
    y, _, x = simulate_labelled(vae, num_sims, seed=seed)
    was = vae.training
    vae.eval()
    try:
        with seeded(seed + 1, vae):
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
    return {"pit": u, "ks": ks, "p_value": p_value, "alpha": alpha,
            "failed": bool(p_value < alpha), "num_sims": num_sims,
            "accuracy": float((q.argmax(-1) == y).double().mean())}


@torch.no_grad()
def simulate_labelled(vae: Any, num: int, *, seed: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, z, x)``: ``num`` draws y ~ p(y), z ~ p(z), x ~ p(x | y, z) (seeded; the
    global random state is left as it was)."""
    was = vae.training
    vae.eval()
    try:
        with seeded(seed, vae):
            y = vae.label_prior().sample((num,))
            z = vae.prior_dist().sample((num,))
            x = vae.decode(z, y=y).sample()
    finally:
        vae.train(was)
    return y, z, x


def label_sbc(vae: Any, *, num_sims: int = 200, num_draws: int = 99, alpha: float = 0.05,
              seed: int = 0) -> EnumeratedSBCResult:
    """SBC of both sites of the guide (:func:`~pyrovae.posterior.enumerate.enumerated_sbc`
    on the model's own simulations): calibration of q(y | x) and ranks of z under
    q(z | x, y)."""
    _require_label_model(vae)
    return enumerated_sbc(
        lambda n: simulate_labelled(vae, n, seed=seed),
        lambda x: vae.label_posterior(x).logits.log_softmax(-1).T,
        lambda k: VAETarget(vae, torch.tensor(k)),
        num_classes=vae.classes, num_sims=num_sims, num_draws=num_draws, alpha=alpha,
        seed=seed)


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
