"""The ELBO and the importance weights of a VAE with several stochastic layers (the
``hierarchical`` kind, :mod:`pyrovae.model.hierarchical`).

With the bottom-up guide q(z_1 | x) ∏_l q(z_{l+1} | z_l) and the model
p(z_L) ∏_l p(z_l | z_{l+1}) p(x | z_1), one draw (z_1, …, z_L) ~ q per particle gives

    reconstruction   R(x)      = log p(x | z_1)
    KL of site l     KL_l(x)   = log q(z_l | z_{l−1} or x) − log p(z_l | z_{l+1})
                                 (z_{L+1} absent: log p(z_L), the top prior)
    ELBO_β(x)        = R(x) − β Σ_l KL_l(x)

each averaged over the particles.  The KL terms are Monte Carlo (per site, since
q(z_{l+1} | z_l) and p(z_l | z_{l+1}) are conditional on other sites' draws they have no
closed form); their sum is a Monte Carlo estimate of KL(q(z | x) ‖ p(z)) over all sites.
The minibatch loss −(N/B) Σ_i ELBO_β(x_i) draws z_1, then z_2, … in the order the guide
does, so it equals Pyro's ``Trace_ELBO`` on the same draws (value and gradients;
``tests/model/test_hierarchical.py``).  The record of terms: ``reconstruction``,
``kl`` (the sum) and ``kl/z1`` … ``kl/zL``.

Importance weights of log p(x) draw (z_1, …, z_L) jointly from the guide:
log w = log p(x, z_1, …, z_L) − log q(z_1, …, z_L | x); their mean is an unbiased
estimate of p(x), so the IWAE bound, ESS and k̂ of :mod:`pyrovae.estimators.importance`
apply unchanged.

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders* (§5, the
    two-stochastic-layer model and its bounds).
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.elbo import MinibatchLoss, draw

__all__ = ["LayerTerms", "layer_log_weights", "layer_minibatch_loss", "layer_terms"]


@dataclass(frozen=True)
class LayerTerms:
    """Per-example terms of a hierarchical minibatch (shape (B,), differentiable):
    ``reconstruction`` and ``kl`` per site name (``{"z1": …, "z2": …}``)."""

    reconstruction: torch.Tensor
    kl_sites: dict[str, torch.Tensor]

    @property
    def kl(self) -> torch.Tensor:
        """Σ_l KL_l per example."""
        return sum(self.kl_sites.values())  # type: ignore[return-value]

    def elbo(self, kl_weight: float = 1.0) -> torch.Tensor:
        """R − β Σ_l KL_l per example."""
        return self.reconstruction - kl_weight * self.kl


def _draws(vae: Any, x: torch.Tensor, sample: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                             dict[str, torch.Tensor]]:
    """One pass down the guide and up the model: ``(log p(x|z_1), log q per site,
    log p per site)``, each of shape ``(*particles, n)``; ``sample(q)`` draws z_1."""
    names = vae.site_names
    q = vae.encode(x)
    z = sample(q)
    zs, log_q = [z], {names[0]: q.log_prob(z)}
    for layer in range(1, len(names)):
        q = vae.layer_guide(layer, zs[-1])
        z = q.rsample() if q.has_rsample else q.sample()
        zs.append(z)
        log_q[names[layer]] = q.log_prob(z)
    log_p = {names[-1]: vae.prior_dist().log_prob(zs[-1])}
    for layer in range(len(names) - 1, 0, -1):
        log_p[names[layer - 1]] = vae.layer_prior(layer, zs[layer]).log_prob(zs[layer - 1])
    log_px = vae.decode(zs[0], x).log_prob(x)
    return log_px, log_q, log_p


def layer_terms(vae: Any, x: torch.Tensor, *, num_particles: int = 1) -> LayerTerms:
    """The terms of each row of ``x`` from ``num_particles`` reparameterised draws of
    the guide (z_1 first, then up the layers, as the guide draws them)."""
    x = vae.as_event(x)
    log_px, log_q, log_p = _draws(vae, x, lambda q: draw(q, num_particles))

    def mean(t: torch.Tensor) -> torch.Tensor:
        return t.mean(0) if num_particles > 1 else t

    kl = {name: mean(log_q[name] - log_p[name]) for name in vae.site_names}
    return LayerTerms(mean(log_px), kl)


def layer_minibatch_loss(vae: Any, x: torch.Tensor, y: torch.Tensor | None, num_data: int,
                         kl_weight: float, *, num_particles: int = 1,
                         kl: str = "mc") -> MinibatchLoss:
    """−(N/B) Σ_i ELBO_β(x_i): the loss of a minibatch of B rows out of N; equal to
    Pyro's ``Trace_ELBO`` on the same draws.  The KL terms are Monte Carlo whatever
    ``kl`` says (``"analytic"`` is refused: the conditional sites have no closed form)."""
    if y is not None:
        raise PyrovaeError("y: model: hierarchical is unconditional (no context); pass no y")
    if kl == "analytic":
        raise PyrovaeError("objective.kl: 'analytic' is not available for model: hierarchical "
                           "(its KL terms are conditional on other sites: Monte Carlo; use "
                           "auto or mc)")
    t = layer_terms(vae, x, num_particles=num_particles)
    loss = -t.elbo(kl_weight).sum() * (num_data / x.shape[0])
    terms = {"reconstruction": t.reconstruction.detach().sum(), "kl": t.kl.detach().sum()}
    terms.update({f"kl/{name}": v.detach().sum() for name, v in t.kl_sites.items()})
    return MinibatchLoss(loss, terms, False)


def layer_log_weights(vae: Any, x: torch.Tensor, num_samples: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_w, reconstruction, kl)``: importance log-weights ``(num_samples, n)`` of
    log p(x) with (z_1, …, z_L) drawn jointly from the guide, and the ELBO's terms per
    example (Monte Carlo over the same draws), so that ``reconstruction − kl`` is the
    ELBO estimate."""
    x = vae.as_event(x)
    log_px, log_q, log_p = _draws(vae, x, lambda q: q.sample((num_samples,)))
    ratio = sum(log_q[name] - log_p[name] for name in vae.site_names)
    return log_px - ratio, log_px.mean(0), ratio.mean(0)  # type: ignore[union-attr]
