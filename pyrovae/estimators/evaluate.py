"""Per-example ELBO and the importance-weighted estimate of log p_θ(x).

With K draws z_k ~ q_φ(z|x) and log-weights log w_k = log p_θ(x|z_k) + log p(z_k) − log q_φ(z_k|x):

* reconstruction  R(x) = (1/K) Σ_k log p_θ(x|z_k)
* KL term         KL(q_φ(z|x) ‖ p(z)), in closed form where one is registered
                  (``torch.distributions.kl``), else (1/K) Σ_k [log q − log p](z_k)
* ELBO(x)         = R(x) − KL
* IWAE bound      L_K(x) = log (1/K) Σ_k w_k ≤ log p_θ(x), increasing in K
                  (Burda, Grosse & Salakhutdinov 2016); used as the log-likelihood.
* its Monte Carlo standard error (delta method) sqrt(1/ESS − 1/K), with the
  importance-sampling effective sample size ESS = (Σ w)² / Σ w².

Samples are drawn in chunks over data points and over k with a streaming
log-sum-exp, so peak memory is bounded by ``max_elements`` floats per tensor
whatever K.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pyro
import torch
from torch.distributions import kl_divergence

from pyrovae.data import as_tensor


def closed_form_kl(q: torch.distributions.Distribution, p: torch.distributions.Distribution):
    """KL(q ‖ p) per batch element if a closed form is registered, else ``None``."""
    try:
        return kl_divergence(q, p.expand(q.batch_shape))
    except NotImplementedError:
        return None


def _device(vae: torch.nn.Module) -> torch.device:
    return next(vae.parameters()).device


def _width(vae: Any) -> int:
    sizes = [vae.data_dim, vae.likelihood.num_outputs(), getattr(vae, "width", 0)]
    sizes += [m.out_features for m in vae.modules() if isinstance(m, torch.nn.Linear)]
    return max(sizes)


@torch.no_grad()
def evaluate(
    vae: Any,
    data: Any,
    *,
    num_samples: int = 1000,
    max_elements: int = 2**24,
    seed: int = 0,
    y: Any = None,
) -> dict[str, Any]:
    """Evaluate a trained VAE on ``data`` (array, tensor or :class:`~pyrovae.data.Dataset`).

    Returns means per example in nats: ``elbo``, ``reconstruction``, ``kl``,
    ``log_likelihood`` (IWAE with K = ``num_samples``) and ``log_likelihood_se``
    (standard error of that mean over examples; the per-example spread already
    holds the Monte Carlo error); and ``per_example`` numpy arrays (``elbo``, ``reconstruction``,
    ``kl``, ``log_likelihood``, ``log_likelihood_mc_se``, ``ess``).

    Random draws use their own seeded stream; the global RNG is left untouched.
    ``y``: the context of a conditional VAE, one row per example.
    """
    from pyrovae.errors import PyrovaeError

    for name, value, lo, hi in (("num_samples", num_samples, 1, None),
                                ("max_elements", max_elements, 1, None),
                                ("seed", seed, 0, 2**63 - 1)):
        if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                or value < lo or (hi is not None and value > hi)):
            raise PyrovaeError(f"{name}: expected an integer >= {lo}, got {value!r}"
                               + (f" (at most {hi})" if hi is not None else ""))
    x_all = as_tensor(data)
    if y is not None:
        y = torch.as_tensor(y)
        if len(y) != len(x_all):
            raise PyrovaeError(f"y: expected {len(x_all)} rows (one per example), got {len(y)}")
    if hasattr(vae, "as_event"):  # flat data for an image VAE and back
        x_all = vae.as_event(x_all, "data")
    vae.likelihood.check_data(x_all)
    device = _device(vae)
    K = int(num_samples)
    width = _width(vae)
    per_draw = max(1, max_elements // width)  # (sample, example) pairs per chunk
    data_chunk = max(1, min(len(x_all), per_draw))
    sample_chunk = max(1, min(K, per_draw // data_chunk))

    cols: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("elbo", "reconstruction", "kl", "log_likelihood", "ess")
    }
    used_closed_form = True
    devices = [device] if device.type == "cuda" else []
    was_training = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False):
            torch.manual_seed(seed)
            for start in range(0, len(x_all), data_chunk):
                x = x_all[start : start + data_chunk].to(device)
                yb = None if y is None else y[start : start + data_chunk].to(device)
                q = vae.encode(x) if yb is None else vae.encode(x, yb)
                prior = vae.prior_dist()
                kl_cf = closed_form_kl(q, prior)
                used_closed_form &= kl_cf is not None
                lse = torch.full((x.shape[0],), -math.inf, device=device)
                lse2 = lse.clone()
                sum_recon = torch.zeros(x.shape[0], device=device)
                sum_ratio = torch.zeros(x.shape[0], device=device)
                for s0 in range(0, K, sample_chunk):
                    s = min(sample_chunk, K - s0)
                    z = q.sample((s,))
                    d = vae.decode(z, x) if yb is None else vae.decode(z, x, y=yb)
                    log_px = d.log_prob(x)
                    log_ratio = q.log_prob(z) - prior.log_prob(z)
                    log_w = log_px - log_ratio
                    lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
                    lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * log_w, 0))
                    sum_recon += log_px.sum(0)
                    sum_ratio += log_ratio.sum(0)
                recon = sum_recon / K
                kl = kl_cf if kl_cf is not None else sum_ratio / K
                cols["reconstruction"].append(recon)
                cols["kl"].append(kl)
                cols["elbo"].append(recon - kl)
                cols["log_likelihood"].append(lse - math.log(K))
                cols["ess"].append(torch.exp(2 * lse - lse2))
    finally:
        vae.train(was_training)

    per = {k: torch.cat(v).cpu().double().numpy() for k, v in cols.items()}
    per["log_likelihood_mc_se"] = np.sqrt(np.clip(1.0 / per["ess"] - 1.0 / K, 0.0, None))
    n = len(per["elbo"])
    ll = per["log_likelihood"]
    spread = ll.std(ddof=1) if n > 1 else 0.0
    se = spread / math.sqrt(n)
    return {
        "elbo": float(per["elbo"].mean()),
        "reconstruction": float(per["reconstruction"].mean()),
        "kl": float(per["kl"].mean()),
        "log_likelihood": float(ll.mean()),
        "log_likelihood_se": se,
        "num_samples": K,
        "num_examples": n,
        "kl_closed_form": bool(used_closed_form),
        "per_example": per,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result of :func:`evaluate` without the per-example arrays (JSON-able)."""
    return {k: v for k, v in result.items() if k != "per_example"}
