"""The ELBO of the stock families as tensor algebra: the fast specialisation of
:func:`~pyrovae.estimators.elbo.elbo_terms` for the ``diagonal_normal`` guide,
``normal`` prior and ``bernoulli`` likelihood.

Per data point i and draw ε_i ~ N(0, I) (drawn exactly as ``Normal.rsample``
draws it: one ``normal_`` call of shape (particles,) B × L)::

    z_i = μ_i + σ_i ε_i
    R_i = log Bernoulli(x_i | logits = decoder(z_i))
    KL_i = Σ_j [log(σ_pj/σ_ij) + (σ_ij² + (μ_ij − μ_pj)²)/(2σ_pj²) − ½]   (closed form)
         or log q(z_i|x_i) − log p(z_i)                                   (Monte Carlo)

with log q(z_i|x_i) = Σ_j −ε_ij²/2 − log σ_ij − log√(2π) (the number
``Normal(μ, σ).log_prob(z)`` gives; its z-path gradient cancels exactly).  Value
and gradients equal those of the distribution-object path up to float rounding,
without building distribution objects or checking arguments each step.

References:
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from pyrovae.estimators.elbo import MinibatchLoss

if TYPE_CHECKING:
    from pyrovae.model.vae import VAE


def standard_families(vae: Any) -> bool:
    """Whether ``vae`` is a stock :class:`~pyrovae.model.vae.VAE` (``encode``, ``decode``,
    ``prior_dist`` not overridden) with the ``diagonal_normal`` guide, ``normal`` prior
    and ``bernoulli`` likelihood: the case :func:`standard_loss` computes."""
    from pyrovae.model.guides import DiagonalNormalGuide
    from pyrovae.model.likelihoods import BernoulliLikelihood
    from pyrovae.model.priors import StandardNormalPrior
    from pyrovae.model.vae import VAE

    if not isinstance(vae, VAE):
        return False
    cls = type(vae)
    if any(getattr(cls, m) is not getattr(VAE, m) for m in ("encode", "decode", "prior_dist")):
        return False
    return (
        type(vae.guide_family) is DiagonalNormalGuide
        and type(vae.prior) is StandardNormalPrior
        and type(vae.likelihood) is BernoulliLikelihood
        and not getattr(getattr(vae, "context", None), "dim", 0)
    )


def standard_loss(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_data: int,
    kl_weight: float,
    num_particles: int = 1,
    analytic_kl: bool = False,
    eps: torch.Tensor | None = None,
) -> MinibatchLoss:
    """−(N/B) Σ_i (R_i − β KL_i) / particles for the stock families (module docstring).

    ``eps`` may be given (shape of z) instead of drawing it.
    """
    from pyrovae.model.guides import MIN_SCALE

    latent = vae.latent_dim
    loc, raw = vae.encoder_out(x).split(latent, dim=-1)  # any network, shape-checked
    scale = F.softplus(raw) + MIN_SCALE
    shape = loc.shape if num_particles == 1 else (num_particles, *loc.shape)
    if eps is None:
        eps = torch.empty(shape, dtype=loc.dtype, device=loc.device).normal_()
    z = loc + eps * scale
    logits = vae.decoder_out(z)
    x = x.reshape(x.shape[0], -1)  # flat, as the decoder's output (any event shape)
    target = x if num_particles == 1 else x.expand(logits.shape)
    rec = -F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / num_particles
    prior = vae.prior
    if analytic_kl:  # torch's kl_normal_normal, summed
        var_ratio = (scale / prior.scale).square()
        t1 = ((loc - prior.loc) / prior.scale).square()
        kl = 0.5 * (var_ratio + t1 - 1 - var_ratio.log()).sum()
    else:  # log q(z|x) − log p(z); the log√(2π) terms cancel
        u = (z - prior.loc) / prior.scale
        kl = -(0.5 * (eps.square() - u.square()).sum() / num_particles
               + scale.log().sum() - prior.scale.log().sum() * loc.shape[0])
    total = rec - kl if kl_weight == 1.0 else rec - kl_weight * kl
    loss = -total * (num_data / x.shape[0])
    return MinibatchLoss(loss, {"reconstruction": rec.detach(), "kl": kl.detach()}, analytic_kl)
