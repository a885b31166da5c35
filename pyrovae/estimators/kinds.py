"""The direct estimators of model kinds that bring their own (``VAE.own_loss``), by key.

A model kind whose latent structure is not the single site ``"z"`` names its estimator
in the class attribute ``own_loss``; the objectives (``_ELBOObjective.loss_fn``), the
engines (``make_engine``: the fast engine runs :attr:`KindEstimator.loss`, the pyro
engine the kind's ``stock_elbo()``) and :func:`~pyrovae.estimators.evaluate.evaluate`
(:attr:`KindEstimator.log_weights`) look it up here, never by the kind's name.

* ``"enumerated"`` (M2): the label summed out exactly (:mod:`pyrovae.estimators.enumerated`),
  equal to Pyro's ``TraceEnum_ELBO`` on the same draws;
* ``"hierarchical"``: several stochastic layers, KL per site by Monte Carlo
  (:mod:`pyrovae.estimators.hierarchical`), equal to Pyro's ``Trace_ELBO``; its
  reparameterised importance weights (:attr:`KindEstimator.particle_weights`) train
  it with ``renyi_elbo`` too (the two-layer IWAE of Burda et al.), equal to Pyro's
  ``RenyiELBO`` (vectorised particles) on the same draws.

Which objectives train a kind is the objective's call on these capabilities
(``Objective.trains_kind``), never a list of kind names.

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyrovae.estimators.enumerated import enumerated_log_weights, label_minibatch_loss
from pyrovae.estimators.hierarchical import (
    layer_log_weights,
    layer_minibatch_loss,
    layer_particle_weights,
    layer_shard_loss,
)

__all__ = ["KIND_ESTIMATORS", "KindEstimator", "kind_estimator"]


@dataclass(frozen=True)
class KindEstimator:
    """What a model kind's own estimator provides (one field each, below)."""

    #: ``(vae, x, y, num_data, kl_weight, *, num_particles, kl) -> MinibatchLoss``, the
    #: minibatch loss −(N/B) Σ bound_β (the fast engine's), with its open record of terms.
    loss: Callable[..., Any]
    #: ``(vae, x, num_samples) -> (log_w (S', n), reconstruction (n,), kl (n,))``, the
    #: importance weights of log p(x) and the ELBO's terms (``evaluate``).
    log_weights: Callable[..., Any]
    #: How many weights one of ``num_samples`` gives per example (the classes of a
    #: summed-out label; 1 otherwise), for ``evaluate``'s chunks.
    draws_per_sample: Callable[[Any], int]
    #: The kind's structure in a few words (error messages).
    what: str
    #: Whether ``objective.kl: analytic`` applies (False where every KL term is
    #: conditional on other sites' draws, so Monte Carlo only).
    closed_form_kl: bool = True
    #: Whether ``loss`` takes ``free_bits=λ`` (per dimension of every site).
    free_bits: bool = False
    #: ``(vae, x, num_particles) -> (log p(x|z) (K, n), log q(z|x) − log p(z) (K, n))``
    #: from K reparameterised draws of the guide, differentiable (log w = the first −
    #: β · the second), or ``None``: with it the kind trains with the importance-weighted
    #: objectives (``renyi_elbo``, α = 0 the IWAE bound); without it they are refused.
    particle_weights: Callable[..., Any] | None = None
    #: ``(vae, q1, x, y, rows, num_data, batch_size, kl_weight, total, *, num_particles,
    #: kl, free_bits) -> MinibatchLoss``: the share of the rows ``rows`` of a global
    #: minibatch in ``loss`` (data-parallel training, see
    #: :meth:`pyrovae.training.objectives.Objective.shard_loss`; ``q1`` the first
    #: site's guide over the whole minibatch), or ``None``: the kind then trains in one
    #: process only.  Where it is given, ``particle_weights`` (if any) takes ``guide=q1,
    #: rows=rows`` likewise.
    shard_loss: Callable[..., Any] | None = None


#: ``VAE.own_loss`` key -> its estimator.
KIND_ESTIMATORS: dict[str, KindEstimator] = {
    "enumerated": KindEstimator(label_minibatch_loss, enumerated_log_weights,
                                lambda vae: int(vae.classes), "a model whose label is a latent"),
    "hierarchical": KindEstimator(layer_minibatch_loss, layer_log_weights, lambda vae: 1,
                                  "a model with several stochastic layers",
                                  closed_form_kl=False, free_bits=True,
                                  particle_weights=layer_particle_weights,
                                  shard_loss=layer_shard_loss),
}


def kind_estimator(vae: Any) -> KindEstimator | None:
    """The estimator ``vae``'s kind brings (its ``own_loss``), or ``None`` for the VAE's."""
    key = getattr(vae, "own_loss", None)
    return None if key is None else KIND_ESTIMATORS[key]
