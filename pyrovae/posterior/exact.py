"""The identity of *The Intuitive VAE*, checked per data point:

    log p(x) = ELBO + KL(q(z|x) ‖ p(z|x))

Every term is computed on its own:

* **ELBO** by Monte Carlo, E_q[log p(x, z) − log q(z|x)], with its standard error;
* **log p(x)** exactly where the model knows it (toys), by grid quadrature for any
  model with latent_dim ≤ 2 (including a trained VAE's decoder), else by the IWAE
  bound log (1/K) Σₖ p(x, zₖ)/q(zₖ|x) (Burda et al. 2016) with a delta-method
  standard error;
* **KL(q ‖ p(z|x))** in closed form between Gaussians (e.g. a Gaussian guide on
  pPCA), else by quadrature on the grid — never as log p(x) − ELBO.

:func:`check_identity` then reports the residual log p(x) − ELBO − KL and whether it
is within Monte Carlo (and quadrature) error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch.distributions import biject_to, kl_divergence

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.importance import iwae_bound
from pyrovae.posterior.target import Target, as_target
from pyrovae.quadrature import GridPosterior, grid_posterior


@dataclass
class Estimate:
    """A per-point value with its standard error (0 where exact)."""

    value: torch.Tensor
    stderr: torch.Tensor
    method: str = ""


def elbo(target, x: torch.Tensor, *, num_samples: int = 1000, chunk: int = 1000) -> Estimate:
    """Monte Carlo ELBO per data point and its standard error."""
    target = as_target(target)
    lw = _log_weights(target, x, num_samples, chunk)
    return Estimate(lw.mean(0), lw.std(0) / math.sqrt(num_samples), f"mc[{num_samples}]")


def _log_weights(target: Target, x, num_samples, chunk) -> torch.Tensor:
    out = []
    with torch.no_grad():
        left = num_samples
        while left > 0:
            s = min(chunk, left)
            out.append(target.log_weights(x, s).double())
            left -= s
    return torch.cat(out, 0)


def iwae_from_log_weights(lw: torch.Tensor) -> Estimate:
    """log (1/K) Σ exp(lw) over dim 0 and its delta-method standard error
    (:func:`pyrovae.estimators.importance.iwae_bound`)."""
    est = iwae_bound(lw, 0)
    return Estimate(est.value, est.stderr, f"iwae[{est.num_samples}]")


def iwae(target, x: torch.Tensor, *, num_samples: int = 1000, chunk: int = 1000) -> Estimate:
    """The importance-weighted bound with K = ``num_samples`` (≤ log p(x), → it as K grows)."""
    target = as_target(target)
    return iwae_from_log_weights(_log_weights(target, x, num_samples, chunk))


def grid_posteriors(
    target, x: torch.Tensor, *, with_guide: bool = True, tol: float = 1e-3, **kwargs
) -> list[GridPosterior]:
    """p(z|xᵢ) on a refined grid for every row of ``x`` (latent_dim ≤ 2), with the
    guide's density tabulated on the same grid when ``with_guide``."""
    target = as_target(target)
    transform = biject_to(target.support)
    out = []
    dtype = x.dtype
    box = kwargs.pop("box", None) or target.grid_box()
    for i in range(x.shape[0]):
        xi = x[i:i + 1]

        def lj(z, xi=xi):
            with torch.no_grad():
                return target.log_joint(xi, z.to(dtype).unsqueeze(-2)).squeeze(-1).double()

        def lq(z, i=i):  # the whole x: a guide may be local (one λᵢ per row)
            with torch.no_grad():
                zz = z.to(dtype).unsqueeze(-2).expand(-1, x.shape[0], -1)
                return target.guide_log_prob(x, zz)[:, i].double()

        out.append(grid_posterior(
            lj, target.latent_dim, box=box,
            transform=transform, log_q=lq if with_guide and target.has_guide else None,
            tol=tol, **kwargs,
        ))
    return out


def log_marginal(
    target, x: torch.Tensor, *, method: str = "auto", num_samples: int = 5000,
    grids: list[GridPosterior] | None = None,
) -> Estimate:
    """log p(x) per point: ``exact``, ``grid`` (latent_dim ≤ 2) or ``iwae``; ``auto``
    picks the first that applies.  ``stderr`` holds the quadrature error bound for
    ``grid`` and the standard error for ``iwae``."""
    target = as_target(target)
    if method in ("auto", "exact"):
        exact = target.exact_log_marginal(x)
        if exact is not None:
            return Estimate(exact.double(), torch.zeros_like(exact, dtype=torch.float64), "exact")
        if method == "exact":
            raise PyrovaeError("this model has no exact log p(x)")
    if method in ("auto", "grid") and (grids is not None or target.latent_dim <= 2):
        grids = grids if grids is not None else grid_posteriors(target, x, with_guide=False)
        return Estimate(
            torch.tensor([g.log_marginal for g in grids], dtype=torch.float64),
            torch.tensor([g.error_bound for g in grids], dtype=torch.float64),
            "grid",
        )
    if method == "grid":
        raise PyrovaeError(f"grid quadrature needs latent_dim <= 2, got {target.latent_dim}")
    return iwae(target, x, num_samples=num_samples)


def as_mvn(d) -> dist.MultivariateNormal | None:
    """A Gaussian with event shape (d,) as a MultivariateNormal, else None."""
    td = torch.distributions
    if isinstance(d, td.MultivariateNormal):
        return d
    base, n = d, 0
    while isinstance(base, td.Independent):
        n += base.reinterpreted_batch_ndims
        base = base.base_dist
    if isinstance(base, td.Normal) and n == 1:
        return dist.MultivariateNormal(base.loc, scale_tril=torch.diag_embed(base.scale))
    return None


def gaussian_kl(q, p) -> torch.Tensor | None:
    """KL(q ‖ p) in closed form when both are Gaussian (diagonal or full), else None."""
    q_mvn, p_mvn = as_mvn(q), as_mvn(p)
    if q_mvn is None or p_mvn is None:
        return None
    return kl_divergence(q_mvn, p_mvn)


def kl_to_posterior(
    target, x: torch.Tensor, *, grids: list[GridPosterior] | None = None
) -> Estimate | None:
    """KL(q(z|x) ‖ p(z|x)) per point: closed form (Gaussians) or quadrature; None if
    neither applies (latent_dim > 2 and no Gaussian posterior)."""
    target = as_target(target)
    q, post = target.guide_dist(x), target.exact_posterior(x)
    if q is not None and post is not None:
        with torch.no_grad():
            kl = gaussian_kl(q, post)
        if kl is not None:
            kl = kl.double()
            return Estimate(kl, torch.zeros_like(kl), "closed_form")
    if grids is None and target.latent_dim <= 2:
        grids = grid_posteriors(target, x, with_guide=True)
    if grids is None:
        return None
    kl = torch.tensor([g.kl_q_p() for g in grids], dtype=torch.float64)
    err = torch.tensor([g.error_bound for g in grids], dtype=torch.float64)
    return Estimate(kl, err, "grid")


def check_identity(
    target, x: torch.Tensor, *, num_samples: int = 2000, sigmas: float = 4.0,
    grids: list[GridPosterior] | None = None,
) -> dict:
    """ELBO, log p(x), KL(q ‖ p(z|x)) and the residual log p(x) − ELBO − KL per point.

    ``ok`` is True where ``|residual|`` ≤ ``sigmas`` × the Monte Carlo standard error of
    the ELBO plus the quadrature error bounds (plus 1e-6).
    """
    target = as_target(target)
    if grids is None and target.latent_dim <= 2 and (
        target.exact_log_marginal(x) is None or _needs_grid_kl(target, x)
    ):
        grids = grid_posteriors(target, x, with_guide=True)
    lp = log_marginal(target, x, grids=grids)
    kl = kl_to_posterior(target, x, grids=grids)
    el = elbo(target, x, num_samples=num_samples)
    if kl is None:
        raise PyrovaeError("KL(q ‖ p(z|x)) is unavailable here (latent_dim > 2, non-Gaussian)")
    resid = lp.value - el.value - kl.value
    allow = sigmas * el.stderr + lp.stderr + kl.stderr + 1e-6
    return {
        "log_px": lp.value, "log_px_method": lp.method, "log_px_error": lp.stderr,
        "elbo": el.value, "elbo_stderr": el.stderr,
        "kl": kl.value, "kl_method": kl.method, "kl_error": kl.stderr,
        "gap": lp.value - el.value,
        "residual": resid, "allowed": allow, "ok": resid.abs() <= allow,
        "grids": grids,
    }


def _needs_grid_kl(target: Target, x: torch.Tensor) -> bool:
    q, post = target.guide_dist(x), target.exact_posterior(x)
    return q is None or post is None or as_mvn(q) is None or as_mvn(post) is None
