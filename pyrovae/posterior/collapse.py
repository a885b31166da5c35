"""Posterior-collapse diagnostics: which latent dimensions carry information about x.

For a guide q_φ(z|x), a prior p(z) and data x₁..x_N (the empirical p_d(x)):

* **active units** (Burda et al. 2016): dimension d is active when
  A_d = Cov_x(E_q[z_d | x]) > 0.01; a collapsed dimension has q(z_d|x) ≈ p(z_d)
  for every x, so its posterior mean does not move with x;
* **KL per dimension**: E_x KL(q(z_d|x) ‖ p(z_d)) (closed form when both factorise
  into registered pairs, else Monte Carlo); they sum to the rate when q and p
  factorise;
* **rate** R = E_x KL(q(z|x) ‖ p(z)) and **distortion** D = −E_x E_q[log p_θ(x|z)],
  so that −ELBO = R + D (Alemi et al. 2018);
* **mutual information** I_q(x; z) under the joint q(z|x) p_d(x), from the "ELBO
  surgery" split R = I_q(x; z) + KL(q(z) ‖ p(z)) with q(z) = (1/N) Σₙ q(z|xₙ) the
  aggregate posterior (Hoffman & Johnson 2016).  It is estimated as
  E_x E_{q(z|x)}[log q(z|x) − log q(z)] with log q(z) by the mixture over all N
  points, so it is at most log N.

:func:`collapse_diagnostics` returns them all; :func:`collapse_callback` makes a
training callback (``fit(..., callbacks=[collapse_callback(x_val)])``) that adds
them to each epoch's history record under ``"collapse"``.

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance weighted autoencoders*.
    Hoffman & Johnson (2016), *ELBO surgery: yet another way to carve up the
    variational evidence lower bound*.
    Alemi et al. (2018), *Fixing a broken ELBO*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Independent, kl_divergence

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.target import as_target

#: The activity threshold of Burda et al. (2016).
ACTIVE_THRESHOLD = 0.01


def _factors(d):
    """The per-dimension distribution of a factorised event-(d,) distribution, or None."""
    if isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1:
        return d.base_dist
    return None


def _kl_per_dim(q, p, num_samples: int) -> torch.Tensor | None:
    """(N, d): KL(q(z_d|x) ‖ p(z_d)) per point and dimension, or None (not factorised)."""
    qf, pf = _factors(q), _factors(p)
    if qf is None or pf is None:
        return None
    try:
        return kl_divergence(qf, pf)
    except NotImplementedError:
        z = qf.sample((num_samples,))
        return (qf.log_prob(z) - pf.log_prob(z)).mean(0)


def _mutual_information(q, num_samples: int) -> torch.Tensor:
    """E_x E_q[log q(z|x) − log (1/N) Σ_m q(z|x_m)] for q with batch shape (N,)."""
    n = q.batch_shape[0]
    z = q.sample((num_samples,))  # (S, N, d)
    log_q_own = q.log_prob(z)  # (S, N)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):  # z drawn for x_i under every q(·|x_m): (S, N)
        cross = q.log_prob(z[:, i:i + 1, :].expand(-1, n, -1)).double()
        total = total + (log_q_own[:, i].double()
                         - (torch.logsumexp(cross, -1) - math.log(n))).mean()
    return total / n


def collapse_diagnostics(
    model,
    x: torch.Tensor,
    *,
    guide=None,
    num_samples: int = 64,
    threshold: float = ACTIVE_THRESHOLD,
    mi_points: int = 512,
) -> dict[str, Any]:
    """Active units, KL per dimension, rate, distortion and I_q(x; z) on rows of ``x``.

    Args:
        model: a :class:`pyrovae.VAE` (or a toy/Pyro model with a guide that
            exposes ``guide_dist``).
        x: data (N, ...), e.g. a held-out set.
        num_samples: Monte Carlo draws per point for the distortion (and for
            KLs without a closed form and the mutual information).
        threshold: the activity threshold on Cov_x(E_q[z_d]).
        mi_points: the mutual information uses the first ``mi_points`` rows (its
            cost is quadratic in them).

    Returns:
        a dict with ``active_units`` (count), ``active`` (per-dimension bools),
        ``activity`` (Cov_x(E_q[z_d]) per dimension), ``kl_per_dim`` (or None),
        ``rate``, ``distortion``, ``elbo`` (= −rate − distortion),
        ``mutual_information``, ``marginal_kl`` (= rate − MI, KL(q(z) ‖ p(z)) on
        the ``mi_points`` rows), ``mi_max`` (= log of the rows used) and
        ``latent_dim``.

    References:
        Burda et al. (2016), *Importance weighted autoencoders*; Hoffman & Johnson
        (2016), *ELBO surgery*.
    """
    target = as_target(model, guide)
    if x.shape[0] < 2:
        raise PyrovaeError(f"collapse diagnostics need at least 2 data points, got {x.shape[0]}")
    with torch.no_grad():
        q, p = target.guide_dist(x), target.prior_dist()
        if q is None or p is None:  # a guide or prior known only through traces
            return _collapse_from_draws(target, x, num_samples, threshold, mi_points)
        z = q.sample((num_samples,))
        log_q = q.log_prob(z)
        log_pz = p.log_prob(z)
        log_lik = target.log_joint(x, z) - log_pz
        try:
            mean = q.mean
        except NotImplementedError:
            mean = z.mean(0)
        activity = mean.double().var(0, unbiased=True)
        kl_dims = _kl_per_dim(q, p, num_samples)
        kl_total = None
        try:
            kl_total = kl_divergence(q, p).double()
        except NotImplementedError:
            kl_total = (log_q - log_pz).double().mean(0)
        m = min(mi_points, x.shape[0])
        qm = target.guide_dist(x[:m])
        mi = float(_mutual_information(qm, num_samples))
    kl_dims = None if kl_dims is None else kl_dims.double().mean(0).tolist()
    return _result(target, x, activity, threshold, kl_total, log_lik, mi, m, kl_dims, None)


def _result(target, x, activity, threshold, kl_points, log_lik, mi, m, kl_per_dim,
            kl_per_site) -> dict[str, Any]:
    """The report of both paths; ``kl_points`` (N,) is KL(q(z|xₙ) ‖ p(z)) per point."""
    from pyrovae.posterior.sites import site_slices

    active = activity > threshold
    rate = float(kl_points.mean())
    distortion = float(-log_lik.double().mean())
    sites = target.sites
    return {
        "latent_dim": int(activity.shape[0]),
        "active_units": int(active.sum()),
        "active": active.tolist(),
        "activity": activity.tolist(),
        "active_units_per_site": {k: int(active[sl].sum())
                                  for k, sl in site_slices(sites).items()},
        "threshold": threshold,
        "kl_per_dim": kl_per_dim,
        "kl_per_site": kl_per_site,
        "rate": rate,
        "distortion": distortion,
        "elbo": -rate - distortion,
        "mutual_information": mi,
        "marginal_kl": float(kl_points[:m].mean()) - mi,
        "mi_max": math.log(m),
        "num_points": int(x.shape[0]),
        "dimension_labels": target.dimension_labels(),
    }


def _collapse_from_draws(target, x, num_samples: int, threshold: float,
                         mi_points: int) -> dict[str, Any]:
    """The same diagnostics for any target (e.g. a user's Pyro pair with several latent
    sites), from guide draws and trace densities: activity from the Monte Carlo
    posterior means (less their Monte Carlo variance, so it is unbiased), the rate by
    Monte Carlo, the KL split per latent site
    (E_q[log q(site | …) − log p(site | parents)], which sums to the rate) and
    I_q(x; z) on at most 128 rows (its cost is quadratic in them)."""
    if not target.has_guide:
        raise PyrovaeError("collapse diagnostics need a guide; none was given")
    with torch.no_grad():
        z, log_q = target.sample_guide(x, num_samples)
        log_pz = target.prior_log_prob(x, z)
        log_lik = target.log_joint(x, z) - log_pz
        # Var_x(E_q[z|x]) from S draws per point: the variance of the Monte Carlo means
        # also holds each mean's own noise, Var_q(z|x)/S; subtract its unbiased estimate
        # (else a collapsed unit, Var_q = 1, reads as active for S < 1/threshold)
        zd = z.double()
        activity = zd.mean(0).var(0, unbiased=True)
        if num_samples > 1:
            activity = activity - zd.var(0, unbiased=True).mean(0) / num_samples
        kl_points = (log_q - log_pz).double().mean(0)
        sites = target.sites
        kl_per_site = None
        if hasattr(target, "site_log_probs"):
            lq = target.site_log_probs(x, z, guide=True)
            lp = target.site_log_probs(x, z)
            kl_per_site = {k: float((lq[k] - lp[k]).double().mean()) for k in sites}
        m = min(mi_points, 128, x.shape[0])
        s = min(num_samples, 16)
        zm = z[:s, :m]  # (s, m, D); log q(z_i | x_j) for every pair (i, j)
        cross = target.guide_log_prob(
            x[:m], zm.unsqueeze(2).expand(s, m, m, zm.shape[-1])).double()  # (s, i, j)
        own = torch.diagonal(cross, dim1=1, dim2=2)  # (s, m)
        mi = float((own - (torch.logsumexp(cross, -1) - math.log(m))).mean())
    return _result(target, x, activity, threshold, kl_points, log_lik, mi, m, None,
                   kl_per_site)


def collapse_callback(
    x: torch.Tensor, *, every: int = 1, num_samples: int = 16, key: str = "collapse",
    threshold: float = ACTIVE_THRESHOLD, mi_points: int = 256,
) -> Callable[[Any, dict], None]:
    """A training callback: every ``every`` epochs, put :func:`collapse_diagnostics`
    of the trainer's VAE on ``x`` into the epoch's history record under ``key``.

    Example:
        >>> history = fit(vae, train_x, epochs=20, callbacks=[collapse_callback(val_x)])
        >>> [r["collapse"]["active_units"] for r in history.records]
    """
    if every < 1:
        raise PyrovaeError(f"collapse_callback every: expected a positive integer, got {every}")

    def callback(trainer: Any, record: dict) -> None:
        if record.get("epoch", 0) % every:
            return
        vae = trainer.vae
        was_training = vae.training
        vae.eval()
        try:
            out = collapse_diagnostics(vae, x, num_samples=num_samples, threshold=threshold,
                                       mi_points=mi_points)
        finally:
            vae.train(was_training)
        record[key] = {k: out[k] for k in ("active_units", "activity", "kl_per_dim", "rate",
                                           "distortion", "mutual_information")}

    return callback
