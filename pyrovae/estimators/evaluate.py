"""Per-example ELBO and the importance-weighted estimate of log p_θ(x), with diagnostics.

With K draws z_k ~ q_φ(z|x) and log-weights log w_k = log p_θ(x|z_k) + log p(z_k) − log q_φ(z_k|x):

* reconstruction  R(x) = (1/K) Σ_k log p_θ(x|z_k)
* KL term         KL(q_φ(z|x) ‖ p(z)), in closed form where one is registered, else
                  (1/K) Σ_k [log q − log p](z_k) (:func:`~pyrovae.estimators.kl.kl_term`)
* ELBO(x)         = R(x) − KL
* IWAE bound      L_K(x) = log (1/K) Σ_k w_k ≤ log p_θ(x), increasing in K, with its
                  delta-method Monte Carlo standard error, the effective sample size
                  and the Pareto k̂ of the weights
                  (:mod:`pyrovae.estimators.importance`).  Where k̂ exceeds
                  min(1 − 1/log10 K, 0.7) the IWAE estimate and its standard error
                  are unreliable; the result flags it.

Data are read through :func:`pyrovae.data.as_source` in order, in chunks over data
points and over k, so peak memory is bounded by ``max_elements`` floats per
tensor; computations follow the model's dtype (a float64 VAE evaluates in float64).

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
    Vehtari, Simpson, Gelman, Yao & Gabry (2024), *Pareto Smoothed Importance
    Sampling*, JMLR 25.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pyro
import torch

from pyrovae.data import as_source
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.importance import (
    ess,
    iwae_bound,
    khat_threshold,
    pareto_khats,
)
from pyrovae.estimators.kinds import kind_estimator
from pyrovae.estimators.kl import closed_form_kl_or_none, mc_kl
from pyrovae.progress import Progress, expect
from pyrovae.randomness import seeded
from pyrovae.registry import check_seed

#: Fewest draws for which evaluate fits a Pareto tail (k̂); fewer: k̂ is not reported.
KHAT_MIN_SAMPLES = 50

#: Kept for callers of the old name.
closed_form_kl = closed_form_kl_or_none


def _param(vae: torch.nn.Module) -> torch.Tensor:
    return next(vae.parameters())


def _width(vae: Any, event_numel: int) -> int:
    """Floats one (sample, example) pair costs in the widest layer (bounds the chunks)."""
    sizes = [event_numel, int(getattr(vae, "width", 0))]
    like = getattr(vae, "likelihood", None)
    if like is not None and hasattr(like, "num_outputs"):
        sizes.append(int(like.num_outputs()))
    sizes += [m.out_features for m in vae.modules() if isinstance(m, torch.nn.Linear)]
    return max(sizes)


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise PyrovaeError(f"{name}: expected an integer >= {lo}, got {value!r}")
    return int(value)


@torch.no_grad()
def evaluate(
    vae: Any,
    data: Any,
    *,
    y: Any = None,
    num_samples: int = 1000,
    max_elements: int = 2**24,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a trained VAE on ``data`` (array, tensor, :class:`~pyrovae.data.Dataset`
    or any :class:`~pyrovae.data.DataSource`; ``y`` the context, if any).

    Returns means per example in nats: ``elbo``, ``reconstruction``, ``kl``,
    ``log_likelihood`` (IWAE with K = ``num_samples``) and ``log_likelihood_se``
    (standard error of that mean over examples; the per-example spread already
    holds the Monte Carlo error); ``khat_max`` and ``khat_threshold`` (Pareto k̂ of
    the importance weights, worst example, and min(1 − 1/log10 K, 0.7); ``None``
    for K < 50), ``khat_bad`` (how many examples exceed it) and
    ``log_likelihood_se_reliable`` (False when any does: the Monte Carlo standard
    errors of those examples cannot be trusted); and ``per_example`` lists of floats
    (``elbo``, ``reconstruction``, ``kl``, ``log_likelihood``,
    ``log_likelihood_mc_se``, ``ess``, ``khat``; ``khat`` is NaN for K < 50).  The
    whole result is plain Python (``json.dumps`` works; ``np.asarray`` gives arrays).

    Random draws use their own seeded stream; the global RNG is left untouched.
    ``progress`` (a :class:`~pyrovae.progress.Progress`; ``None``: silent) is advanced
    by the examples of each chunk, in step with its draws (half the draws of a chunk
    of 100 examples: 50), its total the number of examples.
    """
    K = _check_int("num_samples", num_samples, 1)
    max_elements = _check_int("max_elements", max_elements, 1)
    seed = check_seed(seed, "seed")
    source = as_source(data, y, "data")
    p0 = _param(vae)
    device, dtype = p0.device, p0.dtype
    width = _width(vae, math.prod(source.event_shape))
    per_draw = max(1, max_elements // width)  # (sample, example) pairs per chunk
    # a kind with its own estimator (M2's label summed out unless y gives it; several
    # stochastic layers): its importance weights, C of them per sample
    own = kind_estimator(vae)
    if own is not None and y is not None and getattr(vae, "label_latent", False):
        own = None  # labels given: q(z | x, y) of the label's class, the VAE's path
    C = own.draws_per_sample(vae) if own is not None else 1
    data_chunk = max(1, min(source.num_data, per_draw // C, max(1, max_elements // (K * C))))
    sample_chunk = max(1, min(K, per_draw // (data_chunk * C)))
    want_khat = K >= KHAT_MIN_SAMPLES
    expect(progress, source.num_data)

    cols: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("elbo", "reconstruction", "kl", "log_likelihood",
                        "log_likelihood_mc_se", "ess", "khat")
    }
    used_closed_form = True
    was_training = vae.training
    vae.eval()
    try:
        with seeded(seed, vae), pyro.validation_enabled(False):
            for batch in source.batches(data_chunk):
                x = batch.x.to(device=device, dtype=dtype)
                if hasattr(vae, "as_event"):  # flat data for an image VAE and back
                    x = vae.as_event(x, "data")
                yb = None if batch.y is None else batch.y.to(device)
                vae.likelihood.check_data(x)
                if own is not None:  # the kind's own weights (per class for a label)
                    parts = [own.log_weights(vae, x, min(sample_chunk, K - s0))
                             for s0 in range(0, K, sample_chunk)]
                    counts = [p[0].shape[0] // C for p in parts]
                    recon = sum(p[1] * c for p, c in zip(parts, counts, strict=True)) / K
                    kl = sum(p[2] * c for p, c in zip(parts, counts, strict=True)) / K
                    used_closed_form = False
                    _collect(cols, torch.cat([p[0] for p in parts], 0), recon, kl, want_khat)
                    if progress is not None:
                        progress(x.shape[0])
                    continue
                q = vae.encode(x) if yb is None else vae.encode(x, y=yb)
                prior = vae.prior_dist()
                kl_cf = closed_form_kl_or_none(q, prior)
                used_closed_form &= kl_cf is not None
                lw_parts, sum_recon, sum_kl, shown = [], 0.0, 0.0, 0
                for s0 in range(0, K, sample_chunk):
                    z = q.sample((min(sample_chunk, K - s0),))
                    px = vae.decode(z, x) if yb is None else vae.decode(z, x, y=yb)
                    log_px = px.log_prob(x)
                    ratio = q.log_prob(z) - prior.log_prob(z)
                    lw_parts.append(log_px - ratio)
                    sum_recon = sum_recon + log_px.sum(0)
                    if kl_cf is None:
                        sum_kl = sum_kl + mc_kl(q, prior, z) * z.shape[0]
                    if progress is not None:  # the chunk's examples, in step with its draws
                        done = x.shape[0] * (s0 + z.shape[0]) // K
                        progress(done - shown)
                        shown = done
                lw = torch.cat(lw_parts, 0)  # (K, n)
                recon = sum_recon / K
                kl = kl_cf if kl_cf is not None else sum_kl / K
                _collect(cols, lw, recon, kl, want_khat)
    finally:
        vae.train(was_training)

    per = {k: torch.cat(v).cpu().double().numpy() for k, v in cols.items()}
    n = len(per["elbo"])
    ll = per["log_likelihood"]
    spread = ll.std(ddof=1) if n > 1 else 0.0
    threshold = khat_threshold(K) if want_khat else None
    bad = int((per["khat"] > threshold).sum()) if threshold is not None else 0
    finite_k = per["khat"][np.isfinite(per["khat"])]
    return {
        "elbo": float(per["elbo"].mean()),
        "reconstruction": float(per["reconstruction"].mean()),
        "kl": float(per["kl"].mean()),
        "log_likelihood": float(ll.mean()),
        "log_likelihood_se": float(spread / math.sqrt(n)),
        "log_likelihood_se_reliable": bad == 0,
        "khat_max": float(finite_k.max()) if want_khat and finite_k.size else None,
        "khat_threshold": threshold,
        "khat_bad": bad,
        "num_samples": K,
        "num_examples": n,
        "kl_closed_form": bool(used_closed_form),
        "per_example": {k: [float(v) for v in a] for k, a in per.items()},
    }


def _collect(cols: dict[str, list[torch.Tensor]], lw: torch.Tensor, recon: torch.Tensor,
             kl: torch.Tensor, want_khat: bool) -> None:
    """Append one chunk's per-example columns (``lw``: log-weights (samples, n))."""
    bound = iwae_bound(lw)
    cols["reconstruction"].append(recon)
    cols["kl"].append(kl)
    cols["elbo"].append(recon - kl)
    cols["log_likelihood"].append(bound.value)
    cols["log_likelihood_mc_se"].append(bound.stderr)
    cols["ess"].append(ess(lw))
    cols["khat"].append(pareto_khats(lw).to(lw) if want_khat
                        else torch.full_like(bound.value, math.nan))


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result of :func:`evaluate` without the per-example arrays (JSON-able)."""
    return {k: v for k, v in result.items() if k != "per_example"}
