"""Training objectives (which ELBO estimator) and KL-weight schedules.

An objective gives (a) the stock Pyro loss for the ``pyro`` engine and (b) the
same estimator computed directly from the VAE's distributions for the ``fast``
engine (same value and gradients on the same random draws; see
``tests/test_objectives.py``).  Objectives without a direct form return ``None``
from :meth:`Objective.fast_loss` and always train through stock SVI.

KL weight β (the seed's "weighting factor … schedule the weight dynamically"):
the VAE applies ``poutine.scale(β)`` to the latent site in model and guide, so
the objective is E_q[log p(x|z)] − β·KL(q ‖ p) exactly (Higgins et al. 2017).
Schedules (``constant``, ``linear`` warm-up, ``cyclical``) give β per step.

Free bits (Kingma et al. 2016) replace β·KL by β·Σ_j max(λ, KL_j); a max over
a batch-mean is not a rescaling of log-densities, so ``poutine.scale`` cannot
express it: it is the ``free_bits`` parameter of ``trace_elbo`` and
``trace_meanfield_elbo``, computed by the fast engine only (the pyro engine
refuses it with a clear error), and it needs a factorised guide and prior.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import pyro.distributions as dist
import pyro.infer
import torch
from torch.distributions import kl_divergence

from pyrovae.errors import PyrovaeError
from pyrovae.registry import OBJECTIVES, SCHEDULES, Param

if TYPE_CHECKING:
    from pyrovae.model.vae import VAE


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


#: Families whose distributions factorise over latent dimensions (free bits needs both).
FREE_BITS_PRIORS = ("normal", "normal_learned", "laplace", "student_t")
FREE_BITS_GUIDES = ("diagonal_normal",)
#: What free bits needs from the guide and the prior (see ``free_bits_term``).
FREE_BITS_NEEDS = (
    "a guide and a prior that factorise over latent dimensions "
    "(guide diagonal_normal; prior normal, normal_learned, laplace or student_t)"
)


def _per_dim(d: dist.Distribution) -> dist.Distribution | None:
    """The per-dimension distribution of a factorised p(z) or q(z|x), else None."""
    if isinstance(d, dist.Independent) and d.reinterpreted_batch_ndims == 1:
        base = d.base_dist
        if not isinstance(base, (dist.Independent, dist.TransformedDistribution)):
            return base
    return None


def free_bits_term(
    q: dist.Distribution,
    prior: dist.Distribution,
    z: torch.Tensor,
    free_bits: float,
    closed_form: bool,
) -> torch.Tensor:
    """Σ_j max(λ, KL_j) with KL_j the batch-mean KL of latent dimension j (Kingma et al. 2016).

    KL_j is averaged over the minibatch (and particles) before the floor, as in the
    free-bits objective of "Improved Variational Inference with Inverse Autoregressive
    Flow" (one group per dimension): dimensions using more than λ nats are penalised
    as usual; the others get no gradient from the KL term, so they are not pushed to
    collapse onto the prior.
    ``closed_form`` uses the analytic per-dimension KL where torch registers one.
    """
    q1, p1 = _per_dim(q), _per_dim(prior)
    if q1 is None or p1 is None:
        raise PyrovaeError(f"objective.free_bits: needs {FREE_BITS_NEEDS}")
    kl = None
    if closed_form:
        try:
            kl = kl_divergence(q1, p1)  # (batch, latent_dim)
        except NotImplementedError:
            kl = None
    if kl is None:
        kl = q1.log_prob(z) - p1.log_prob(z)  # (particles?, batch, latent_dim)
    kl_per_dim = kl.reshape(-1, kl.shape[-1]).mean(0)
    return torch.clamp(kl_per_dim, min=free_bits).sum()


class _FreeBitsMixin:
    """Shared ``free_bits`` handling of the two ELBO objectives."""

    free_bits: float

    def _check_engine(self) -> None:
        if self.free_bits > 0:
            raise PyrovaeError(
                "objective.free_bits: needs train.engine: fast (the pyro engine applies β by "
                "poutine.scale, which cannot express max(λ, KL_j) per latent dimension)"
            )

    def _free_bits_loss(self, vae, x, num_data, kl_weight, closed_form):
        q, z, log_px = _mc_terms(vae, x, self.num_particles)
        prior = vae.prior_dist()
        rec = log_px.sum() * (num_data / x.shape[0]) / self.num_particles
        kl = free_bits_term(q, prior, z, self.free_bits, closed_form) * num_data
        return -(rec - kl_weight * kl)


_FREE_BITS = Param(
    "nonneg_float", 0.0,
    doc="λ nats per latent dimension (Kingma et al. 2016); fast engine only; 0 = off",
)


@OBJECTIVES.register("trace_elbo")
class TraceELBOObjective(_FreeBitsMixin, Objective):
    """Monte Carlo ELBO, Pyro's ``Trace_ELBO``: log p(x|z) + β(log p(z) − log q(z|x)), z ~ q.

    With ``free_bits: λ > 0`` (fast engine only) the KL part becomes
    β·Σ_j max(λ, KL_j), KL_j the minibatch-mean Monte Carlo KL of dimension j.
    """

    params: ClassVar[dict[str, Param]] = {**Objective.params, "free_bits": _FREE_BITS}

    def __init__(self, num_particles: int = 1, free_bits: float = 0.0) -> None:
        super().__init__(num_particles)
        self.free_bits = free_bits

    def elbo(self) -> pyro.infer.ELBO:
        self._check_engine()
        return pyro.infer.Trace_ELBO(num_particles=self.num_particles)

    def fast_loss(self, vae, x, num_data, kl_weight):
        if self.free_bits > 0:
            return self._free_bits_loss(vae, x, num_data, kl_weight, closed_form=False)
        q, z, log_px = _mc_terms(vae, x, self.num_particles)
        log_ratio = vae.prior_dist().log_prob(z) - q.log_prob(z)
        total = log_px.sum() + kl_weight * log_ratio.sum() if kl_weight != 1.0 else (
            log_px + log_ratio
        ).sum()
        return -total * (num_data / x.shape[0]) / self.num_particles


@OBJECTIVES.register("trace_meanfield_elbo")
class TraceMeanFieldObjective(_FreeBitsMixin, Objective):
    """Pyro's ``TraceMeanField_ELBO``: E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)) with the KL
    in closed form where one is registered (else the Monte Carlo term, as Pyro does).

    With ``free_bits: λ > 0`` (fast engine only) the KL part becomes β·Σ_j max(λ, KL_j),
    KL_j the minibatch-mean (closed-form where registered) KL of dimension j.
    """

    params: ClassVar[dict[str, Param]] = {**Objective.params, "free_bits": _FREE_BITS}

    def __init__(self, num_particles: int = 1, free_bits: float = 0.0) -> None:
        super().__init__(num_particles)
        self.free_bits = free_bits

    def elbo(self) -> pyro.infer.ELBO:
        self._check_engine()
        return pyro.infer.TraceMeanField_ELBO(num_particles=self.num_particles)

    def fast_loss(self, vae, x, num_data, kl_weight):
        if self.free_bits > 0:
            return self._free_bits_loss(vae, x, num_data, kl_weight, closed_form=True)
        q, z, log_px = _mc_terms(vae, x, self.num_particles)
        prior = vae.prior_dist()
        try:
            kl = kl_divergence(q, prior.expand(q.batch_shape)).sum() * self.num_particles
        except NotImplementedError:
            kl = (q.log_prob(z) - prior.log_prob(z)).sum()
        total = log_px.sum() - kl_weight * kl
        return -total * (num_data / x.shape[0]) / self.num_particles


@OBJECTIVES.register("renyi_elbo")
class RenyiObjective(Objective):
    """Rényi bound (Li & Turner 2016); ``alpha: 0`` is the IWAE bound (Burda et al. 2016).

    Per data point, with K = ``num_particles`` draws z_k ~ q(z|x) and
    w_k = log p(x|z_k) + β(log p(z_k) − log q(z_k|x)):
    L_α = 1/(1−α) · log (1/K) Σ_k exp((1−α) w_k).  α → 1 is the ELBO; α = 0 is
    log (1/K) Σ_k p(x, z_k)/q(z_k|x) (IWAE), tighter as K grows.

    The ``pyro`` engine uses Pyro's ``RenyiELBO``.  Caveat: Pyro scales each
    log-density by the plate's ``num_data / batch_size`` *inside* the log-sum-exp,
    so with minibatches (num_data ≠ batch size) the stock loss is not the IWAE
    bound scaled up.  The ``fast`` engine computes the bound per data point and
    scales it outside the log-sum-exp; both agree exactly (same draws) on full batches.
    """

    params: ClassVar[dict[str, Param]] = {
        "num_particles": Param("positive_int", 8, doc="K: importance samples per data point"),
        "alpha": Param("float", 0.0, doc="α (≠ 1); 0 = IWAE"),
    }

    def __init__(self, num_particles: int = 8, alpha: float = 0.0) -> None:
        super().__init__(num_particles)
        self.alpha = alpha

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        if params["alpha"] == 1.0:
            raise PyrovaeError(f"{path}.alpha: expected a number other than 1 (use trace_elbo)")

    def elbo(self) -> pyro.infer.ELBO:
        return pyro.infer.RenyiELBO(alpha=self.alpha, num_particles=self.num_particles)

    def fast_loss(self, vae, x, num_data, kl_weight):
        q = vae.encode(x)
        prior = vae.prior_dist()
        # one draw per particle, in the order Pyro's particle loop draws them
        z = torch.stack([q.rsample() for _ in range(self.num_particles)])
        w = vae.decode(z, x).log_prob(x) + kl_weight * (prior.log_prob(z) - q.log_prob(z))
        a = 1.0 - self.alpha
        bound = (torch.logsumexp(a * w, dim=0) - math.log(self.num_particles)) / a
        return -bound.sum() * (num_data / x.shape[0])


@OBJECTIVES.register("tracegraph_elbo")
class TraceGraphObjective(Objective):
    """Pyro's ``TraceGraph_ELBO``: the ELBO with Rao-Blackwellised score-function terms.

    Same value as ``trace_elbo``; it differs only in the gradient of
    non-reparameterisable sites (none in the stock families), so it always runs
    through stock SVI (no fast form).
    """

    def elbo(self) -> pyro.infer.ELBO:
        return pyro.infer.TraceGraph_ELBO(num_particles=self.num_particles)


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


@SCHEDULES.register("linear")
class LinearSchedule(KLSchedule):
    """Linear warm-up: β goes from ``start`` to ``end`` over ``warmup_epochs``, then stays.

    β(t) = start + (end − start)·min(1, t / (warmup_epochs · steps_per_epoch)) at
    global step t (Bowman et al. 2016; Sønderby et al. 2016).
    """

    params: ClassVar[dict[str, Param]] = {
        "start": Param("nonneg_float", 0.0, doc="β at step 0"),
        "end": Param("nonneg_float", 1.0, doc="β after the warm-up"),
        "warmup_epochs": Param("positive_float", 10.0, doc="epochs to go from start to end"),
    }

    def __init__(self, start: float = 0.0, end: float = 1.0, warmup_epochs: float = 10.0) -> None:
        self.start, self.end, self.warmup_epochs = start, end, warmup_epochs

    def weight(self, step: int, steps_per_epoch: int) -> float:
        frac = min(1.0, step / (self.warmup_epochs * max(1, steps_per_epoch)))
        return self.start + (self.end - self.start) * frac


@SCHEDULES.register("cyclical")
class CyclicalSchedule(KLSchedule):
    """Cyclical annealing (Fu et al. 2019, "Cyclical Annealing Schedule").

    Training is cut into cycles of ``period_epochs``; within a cycle, at fraction
    τ ∈ [0, 1) of it, β = start + (end − start)·min(1, τ / ``ratio``): a linear ramp
    over the first ``ratio`` of the cycle (R in the paper), then β = end.  With
    ``cycles: M`` the schedule stops after M cycles and β stays at ``end`` (the
    paper's M cycles over T steps is ``cycles: M`` with ``period_epochs: T/M``);
    ``cycles: null`` repeats for ever.
    """

    params: ClassVar[dict[str, Param]] = {
        "period_epochs": Param("positive_float", 10.0, doc="epochs per cycle (T/M)"),
        "ratio": Param("unit_float", 0.5, doc="R: fraction of a cycle spent increasing β"),
        "cycles": Param("positive_int", 4, nullable=True, doc="M: cycles, then β = end; null = ∞"),
        "start": Param("nonneg_float", 0.0, doc="β at the start of each cycle"),
        "end": Param("nonneg_float", 1.0, doc="β at the end of each ramp"),
    }

    def __init__(
        self,
        period_epochs: float = 10.0,
        ratio: float = 0.5,
        cycles: int | None = 4,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        self.period_epochs, self.ratio, self.cycles = period_epochs, ratio, cycles
        self.start, self.end = start, end

    def weight(self, step: int, steps_per_epoch: int) -> float:
        period = self.period_epochs * max(1, steps_per_epoch)
        position = step / period
        if self.cycles is not None and position >= self.cycles:
            return self.end
        tau = position - math.floor(position)
        frac = 1.0 if self.ratio == 0 else min(1.0, tau / self.ratio)
        return self.start + (self.end - self.start) * frac
