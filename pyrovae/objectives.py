"""Training objectives (which ELBO estimator) and KL-weight schedules.

An objective gives (a) the stock Pyro loss for the ``pyro`` engine and (b) the
same estimator computed directly from the VAE's distributions for the ``fast``
engine (same value and gradients on the same random draws; see
``tests/test_objectives.py``).  Objectives without a direct form return ``None``
from :meth:`Objective.fast_loss` and always train through stock SVI.

KL weight β (the seed's "weighting factor … schedule the weight dynamically"):
the VAE applies ``poutine.scale(β)`` to the latent site in model and guide, so
the objective is E_q[log p(x|z)] − β·KL(q ‖ p) exactly (Higgins et al. 2017).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pyro.infer
import torch
from torch.distributions import kl_divergence

from pyrovae.registry import OBJECTIVES, SCHEDULES, Param

if TYPE_CHECKING:
    from pyrovae.vae import VAE


class Objective:
    """Base class of objectives: ``elbo()`` for Pyro, ``fast_loss`` for the fast engine."""

    params: ClassVar[dict[str, Param]] = {
        "num_particles": Param("positive_int", 1, doc="Monte Carlo samples per step"),
    }
    family: ClassVar[str] = ""

    def __init__(self, num_particles: int = 1) -> None:
        self.num_particles = num_particles

    def elbo(self) -> pyro.infer.ELBO:
        raise NotImplementedError

    def fast_loss(
        self, vae: VAE, x: torch.Tensor, num_data: int, kl_weight: float
    ) -> torch.Tensor | None:
        """Negative objective for the minibatch ``x``, scaled to the full data set."""
        return None


def _mc_terms(vae: VAE, x: torch.Tensor, particles: int):
    q = vae.encode(x)
    z = q.rsample((particles,)) if particles > 1 else q.rsample()
    log_px = vae.decode(z, x).log_prob(x)
    return q, z, log_px


@OBJECTIVES.register("trace_elbo")
class TraceELBOObjective(Objective):
    """Monte Carlo ELBO, Pyro's ``Trace_ELBO``: log p(x|z) + β(log p(z) − log q(z|x)), z ~ q."""

    def elbo(self) -> pyro.infer.ELBO:
        return pyro.infer.Trace_ELBO(num_particles=self.num_particles)

    def fast_loss(self, vae, x, num_data, kl_weight):
        q, z, log_px = _mc_terms(vae, x, self.num_particles)
        log_ratio = vae.prior_dist().log_prob(z) - q.log_prob(z)
        total = log_px.sum() + kl_weight * log_ratio.sum() if kl_weight != 1.0 else (
            log_px + log_ratio
        ).sum()
        return -total * (num_data / x.shape[0]) / self.num_particles


@OBJECTIVES.register("trace_meanfield_elbo")
class TraceMeanFieldObjective(Objective):
    """Pyro's ``TraceMeanField_ELBO``: E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)) with the KL
    in closed form where one is registered (else the Monte Carlo term, as Pyro does)."""

    def elbo(self) -> pyro.infer.ELBO:
        return pyro.infer.TraceMeanField_ELBO(num_particles=self.num_particles)

    def fast_loss(self, vae, x, num_data, kl_weight):
        q, z, log_px = _mc_terms(vae, x, self.num_particles)
        prior = vae.prior_dist()
        try:
            kl = kl_divergence(q, prior.expand(q.batch_shape)).sum() * self.num_particles
        except NotImplementedError:
            kl = (q.log_prob(z) - prior.log_prob(z)).sum()
        total = log_px.sum() - kl_weight * kl
        return -total * (num_data / x.shape[0]) / self.num_particles


class KLSchedule:
    """Base class: ``weight(step, steps_per_epoch) -> β`` at a global step (0-based)."""

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""

    def weight(self, step: int, steps_per_epoch: int) -> float:
        raise NotImplementedError


@SCHEDULES.register("constant")
class ConstantSchedule(KLSchedule):
    """β constant (β = 1 is the plain ELBO; β > 1 is the β-VAE of Higgins et al. 2017)."""

    params: ClassVar[dict[str, Param]] = {
        "value": Param("nonneg_float", 1.0, doc="β"),
    }

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def weight(self, step: int, steps_per_epoch: int) -> float:
        return self.value
