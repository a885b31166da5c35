"""The ELBO per data point, split into its two terms, and the minibatch training loss.

For a data point x (context y optional), guide q(z|x) and draws z_1..z_P ~ q::

    reconstruction  R(x) = (1/P) Σ_p log p(x | z_p)
    KL term         KL(x) = KL(q(z|x) ‖ p(z))  (closed form or Monte Carlo; see
                    :func:`~pyrovae.estimators.kl.kl_term`)
    ELBO_β(x)       = R(x) − β·KL(x)                         (β = 1: the ELBO)

and the loss a minibatch b of B points out of N takes a gradient step on is
−(N/B) Σ_{i∈b} ELBO_β(x_i) (:func:`minibatch_loss`: the ``"data"`` plate's
subsample scale, the particles averaged).  With ``kl="mc"`` it equals Pyro's
``Trace_ELBO().differentiable_loss``; with ``kl="auto"`` ``TraceMeanField_ELBO``'s
(value and gradients, same draws).  ``log p(x|z)`` is the likelihood's
distribution's ``log_prob``: one number per example whatever the event shape.

References:
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
    Higgins et al. (2017), *β-VAE: Learning Basic Visual Concepts with a
    Constrained Variational Framework*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pyrovae.estimators.kl import kl_term

if TYPE_CHECKING:
    from pyrovae.model.vae import VAE


@dataclass(frozen=True)
class ELBOTerms:
    """Per-example ``reconstruction`` and ``kl`` (tensors of shape (B,), differentiable)
    and whether the KL was in closed form."""

    reconstruction: torch.Tensor
    kl: torch.Tensor
    kl_closed_form: bool

    def elbo(self, kl_weight: float = 1.0) -> torch.Tensor:
        """R − β·KL per example."""
        if kl_weight == 1.0:
            return self.reconstruction - self.kl
        return self.reconstruction - kl_weight * self.kl


def draw(q: torch.distributions.Distribution, num_particles: int) -> torch.Tensor:
    """Reparameterised draws: one ``rsample()`` (shape of one draw) for one particle,
    else ``rsample((P,))``: the order Pyro's vectorised particles draw in."""
    return q.rsample((num_particles,)) if num_particles > 1 else q.rsample()


def log_likelihood(vae: VAE, z: torch.Tensor, x: torch.Tensor,
                   y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x | z[, y]) per draw and row of ``x``, shape ``z.shape[:-1]``.  No rows (a
    data-parallel rank given none of a small minibatch): an empty tensor, nothing
    decoded (torch cannot sum the event dimensions of zero rows)."""
    if x.shape[0] == 0:
        return z.new_zeros(z.shape[:-1])
    px = vae.decode(z, x) if y is None else vae.decode(z, x, y=y)
    return px.log_prob(x)


def elbo_terms(
    vae: VAE,
    x: torch.Tensor,
    *,
    y: torch.Tensor | None = None,
    num_particles: int = 1,
    kl: str = "auto",
) -> ELBOTerms:
    """Reconstruction and KL per example of ``x`` from ``num_particles`` draws of the guide."""
    q = vae.encode(x) if y is None else vae.encode(x, y=y)
    return terms_from_guide(vae, q, x, y=y, num_particles=num_particles, kl=kl)


def terms_from_guide(
    vae: VAE,
    q: torch.distributions.Distribution,
    x: torch.Tensor,
    *,
    y: torch.Tensor | None = None,
    num_particles: int = 1,
    kl: str = "auto",
    rows: slice | None = None,
) -> ELBOTerms:
    """:func:`elbo_terms` given the guide distribution ``q``.

    ``rows``: ``q`` covers a larger batch (data-parallel training draws the whole
    global minibatch so that every example gets the single-process draw) and ``x``
    (and ``y``) are its rows ``rows``; the terms are those of these rows.
    """
    z = draw(q, num_particles)
    kl_value, closed = kl_term(q, vae.prior_dist(), z, kl)
    if rows is not None:
        z, kl_value = z[..., rows, :], kl_value[rows]
    log_px = log_likelihood(vae, z, x, y)
    rec = log_px.mean(0) if num_particles > 1 else log_px
    return ELBOTerms(rec, kl_value, closed)


@dataclass(frozen=True)
class MinibatchLoss:
    """A minibatch's ``loss`` (differentiable, scaled to the data set), an open record of
    named ``terms`` (each summed over the minibatch's examples, detached, unscaled) and
    whether the KL was in closed form.

    Every objective reports ``"reconstruction"`` and ``"kl"`` (at β = 1 their difference
    is the minibatch's summed ELBO); it may add more, e.g. ``"kl/z1"`` and ``"kl/z2"``
    (the KL split per latent site) or ``"classify"`` (an auxiliary loss); the history,
    the progress line and the learning curve show whatever terms it reports.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    kl_closed_form: bool

    @property
    def reconstruction(self) -> torch.Tensor:
        """Σ over the examples of E_q[log p(x|z)]."""
        return self.terms["reconstruction"]

    @property
    def kl(self) -> torch.Tensor:
        """Σ over the examples of KL(q(z|x) ‖ p(z)) (or its estimate)."""
        return self.terms["kl"]


def minibatch_loss(
    terms: ELBOTerms, *, num_data: int, batch_size: int, kl_weight: float
) -> MinibatchLoss:
    """−(N/B) Σ_i (R_i − β KL_i): the loss of a minibatch of B out of N points."""
    loss = -terms.elbo(kl_weight).sum() * (num_data / batch_size)
    return MinibatchLoss(
        loss,
        {"reconstruction": terms.reconstruction.detach().sum(), "kl": terms.kl.detach().sum()},
        terms.kl_closed_form,
    )
