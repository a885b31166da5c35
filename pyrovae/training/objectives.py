"""Training objectives (which ELBO estimator) and KL-weight schedules.

Each objective has ONE estimator, :meth:`Objective.differentiable_loss`
``(vae, x, *, y=None, num_data, kl_weight)``: the negative objective of the
minibatch ``x`` scaled to the data set, built from
:mod:`pyrovae.estimators.elbo` (the ``fast`` engine and data-parallel training
call it; :meth:`Objective.loss_fn` picks the tensor-algebra specialisation of
:mod:`pyrovae.estimators.standard` for the stock families).  :meth:`Objective.elbo`
is the stock Pyro loss with the same value and gradients on the same draws (the
``pyro`` engine; ``tests/training/test_objectives.py``).  Objectives without a
direct form (``tracegraph_elbo``) train through stock SVI.

The KL term (``kl`` parameter of the ELBO objectives): ``auto`` (the default of
``trace_elbo``) uses the closed-form KL(q ‖ p) wherever one is registered for the
(guide, prior) pair and Monte Carlo otherwise, as Pyro's ``TraceMeanField_ELBO``
does; ``mc`` is the pure Monte Carlo estimator of Pyro's ``Trace_ELBO``
(``trace_elbo_mc``); ``analytic`` insists on the closed form.

KL weight β (the "weighting factor … schedule the weight dynamically" of "The
Intuitive VAE"): the VAE applies ``poutine.scale(β)`` to the latent site in model
and guide, so the objective is E_q[log p(x|z)] − β·KL(q ‖ p) exactly.  Schedules
(``constant``, ``linear`` warm-up, ``cyclical``) give β per step.

Free bits replace β·KL by β·Σ_j max(λ, KL_j); a max over a batch-mean is not a
rescaling of log-densities, so ``poutine.scale`` cannot express it: it is the
``free_bits`` parameter of the ELBO objectives, computed by the fast engine only
(the pyro engine refuses it with a clear error), and it needs a factorised guide
and prior.

References:
    Higgins et al. (2017), *β-VAE: Learning Basic Visual Concepts with a Constrained
    Variational Framework*.
    Kingma et al. (2016), *Improved Variational Inference with Inverse Autoregressive
    Flow* (free bits).
    Li & Turner (2016), *Rényi Divergence Variational Inference*.
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import pyro.distributions as dist
import pyro.infer
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.elbo import (
    MinibatchLoss,
    draw,
    log_likelihood,
    minibatch_loss,
    terms_from_guide,
)
from pyrovae.estimators.kinds import kind_estimator
from pyrovae.estimators.kl import KL_KINDS, closed_form_kl_or_none, kl_term
from pyrovae.estimators.standard import standard_families, standard_loss
from pyrovae.registry import GUIDES, OBJECTIVES, PRIORS, SCHEDULES, Param

if TYPE_CHECKING:
    from pyrovae.estimators.kinds import KindEstimator
    from pyrovae.model.vae import VAE

#: ``(vae, x, y, num_data, kl_weight) -> MinibatchLoss``: a direct estimator.
LossFn = Callable[[Any, torch.Tensor, "torch.Tensor | None", int, float], MinibatchLoss]

#: ``total(t)``: the sum over the data-parallel ranks of a detached tensor ``t``
#: (the identity in one process); see :meth:`Objective.shard_loss`.
SumOverRanks = Callable[[torch.Tensor], torch.Tensor]


def one_process(t: torch.Tensor) -> torch.Tensor:
    """:data:`SumOverRanks` of a single process: ``t`` itself."""
    return t


class Objective:
    """Base class of objectives: ``elbo()`` for Pyro, ``loss_fn(vae)`` for the fast engine."""

    params: ClassVar[dict[str, Param]] = {
        "num_particles": Param("positive_int", 1, doc="Monte Carlo samples per step"),
    }
    family: ClassVar[str] = ""
    #: Whether data-parallel training (:mod:`pyrovae.training.distributed`) reproduces
    #: this objective: it implements :meth:`shard_loss`, whose shares over the ranks add
    #: up to the single-process loss (value and gradients) on the same draws.
    supports_ddp: ClassVar[bool] = False

    def __init__(self, num_particles: int = 1) -> None:
        self.num_particles = num_particles

    def elbo(self) -> pyro.infer.ELBO:
        raise NotImplementedError

    @classmethod
    def trains_kind(cls, estimator: KindEstimator) -> bool:
        """Whether this objective can train a model kind that brings its own estimator
        (``VAE.own_loss``), from the capabilities ``estimator`` declares: none here."""
        return False

    def kind_elbo(self, vae: Any) -> pyro.infer.ELBO:
        """The stock Pyro loss of this objective on such a kind's model/guide (the pyro
        engine); only for objectives whose :meth:`trains_kind` says yes."""
        raise NotImplementedError

    def describe(self) -> str:
        """Which estimator is in force, one phrase (the spec and ``pyrovae families``)."""
        return f"Pyro {type(self.elbo()).__name__}"

    def loss_fn(self, vae: Any) -> LossFn | None:
        """The direct estimator for this VAE (specialised once), or ``None`` (stock SVI only)."""
        return None

    def shard_loss(self, vae: Any, q: dist.Distribution, x: torch.Tensor,
                   y: torch.Tensor | None, rows: slice, num_data: int, batch_size: int,
                   kl_weight: float, total: SumOverRanks) -> MinibatchLoss:
        """One rank's share of the loss of a global minibatch of ``batch_size`` rows.

        ``q`` is the guide over the *whole* global minibatch (this rank's rows encoded,
        constants elsewhere), so that drawing from it consumes the random stream exactly
        as one process does and row i gets the single-process draw; ``x`` (context
        ``y``) are the rows ``rows`` of that minibatch, the only data this rank reads.
        The shares of all ranks add up to the single-process loss, value and gradients
        (every term is scaled by the global ``batch_size``); ``total(t)`` is Σ over the
        ranks of a detached tensor (a collective: every rank calls it the same number
        of times, an empty shard included).  Only objectives that declare
        :attr:`supports_ddp` implement it; with ``rows = slice(None)`` and
        ``batch_size = len(x)`` it is the objective's own single-process estimator.
        """
        raise NotImplementedError

    def check(self, vae: Any, sample: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise PyrovaeError if this objective cannot train ``vae`` (a few rows given,
        with their context ``y`` for a conditional VAE)."""

    def differentiable_loss(
        self,
        vae: VAE,
        x: torch.Tensor,
        *,
        y: torch.Tensor | None = None,
        num_data: int,
        kl_weight: float = 1.0,
    ) -> torch.Tensor:
        """−ELBO_β of the minibatch ``x`` scaled by N/B (differentiable; one draw set).

        Objectives without a direct form use the stock Pyro loss.
        """
        fn = self.loss_fn(vae)
        if fn is None:
            args = (x,) if y is None else (x, y)
            return self.elbo().differentiable_loss(
                vae.model, vae.guide, *args, num_data=num_data, kl_weight=kl_weight
            )
        return fn(vae, x, y, num_data, kl_weight).loss


def free_bits_families() -> tuple[list[str], list[str]]:
    """The registered prior and guide families whose distributions factorise over latent
    dimensions (their class declares ``factorised = True``): free bits needs both."""
    return ([n for n in PRIORS.names() if PRIORS.get(n).factorised],
            [n for n in GUIDES.names() if GUIDES.get(n).factorised])


def free_bits_needs() -> str:
    """What free bits needs from the guide and the prior, one phrase naming the families."""
    priors, guides = free_bits_families()

    def either(names: list[str]) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    return ("a guide and a prior that factorise over latent dimensions "
            f"(guide {either(guides)}; prior {either(priors)})")


def _per_dim(d: dist.Distribution) -> dist.Distribution | None:
    """The per-dimension distribution of a factorised p(z) or q(z|x), else None."""
    if isinstance(d, dist.Independent) and d.reinterpreted_batch_ndims == 1:
        base = d.base_dist
        if not isinstance(base, (dist.Independent, dist.TransformedDistribution)):
            return base
    return None


def kl_per_dimension(q: dist.Distribution, prior: dist.Distribution, z: torch.Tensor,
                     closed_form: bool) -> torch.Tensor:
    """KL(q ‖ p) of each latent dimension of a factorised guide and prior: ``(batch,
    latent_dim)`` in closed form where torch registers one (with ``closed_form``), else
    its Monte Carlo estimate from the draws ``z``, ``(particles?, batch, latent_dim)``."""
    q1, p1 = _per_dim(q), _per_dim(prior)
    if q1 is None or p1 is None:
        raise PyrovaeError(f"objective.free_bits: needs {free_bits_needs()}")
    kl = closed_form_kl_or_none(q1, p1) if closed_form else None
    return kl if kl is not None else q1.log_prob(z) - p1.log_prob(z)


_FREE_BITS = Param(
    "nonneg_float", 0.0,
    doc="λ nats per latent dimension (Kingma et al. 2016); fast engine only; 0 = off",
)


def _encode(vae: Any, x: torch.Tensor, y: torch.Tensor | None) -> dist.Distribution:
    return vae.encode(x) if y is None else vae.encode(x, y=y)


class _ELBOObjective(Objective):
    """The ELBO, E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)), with the KL term per ``kl``.

    With ``free_bits: λ > 0`` (fast engine only) the KL part becomes β·Σ_j max(λ, KL_j),
    KL_j the minibatch-mean KL of dimension j (closed form where registered unless
    ``kl: mc``; Kingma et al. 2016): dimensions using more than λ nats are penalised as
    usual, the others get no gradient from the KL term, so they are not pushed to
    collapse onto the prior.
    """

    supports_ddp: ClassVar[bool] = True

    def __init__(self, num_particles: int = 1, free_bits: float = 0.0, kl: str = "auto") -> None:
        super().__init__(num_particles)
        self.free_bits = free_bits
        self.kl = kl

    @classmethod
    def trains_kind(cls, estimator: KindEstimator) -> bool:
        """Every kind's own estimator is an ELBO (its ``loss``)."""
        return True

    def kind_elbo(self, vae: Any) -> pyro.infer.ELBO:
        """The kind's own stock loss (``TraceEnum_ELBO``, ``Trace_ELBO``)."""
        return vae.stock_elbo(self.num_particles)

    def elbo(self) -> pyro.infer.ELBO:
        if self.free_bits > 0:
            raise PyrovaeError(
                "objective.free_bits: needs train.engine: fast (the pyro engine applies β by "
                "poutine.scale, which cannot express max(λ, KL_j) per latent dimension)"
            )
        if self.kl == "mc":
            return pyro.infer.Trace_ELBO(num_particles=self.num_particles)
        return pyro.infer.TraceMeanField_ELBO(num_particles=self.num_particles)

    def describe(self) -> str:
        kl = {"auto": "KL in closed form where registered for the (guide, prior) pair, "
                      "else Monte Carlo (Pyro TraceMeanField_ELBO)",
              "analytic": "KL in closed form (Pyro TraceMeanField_ELBO)",
              "mc": "Monte Carlo KL (Pyro Trace_ELBO)"}[self.kl]
        fb = f"; free bits λ = {self.free_bits:g}" if self.free_bits > 0 else ""
        return f"ELBO, {kl}{fb}"

    def check(self, vae: Any, sample: torch.Tensor, y: torch.Tensor | None = None) -> None:
        if self.kl != "analytic":
            return
        with torch.no_grad():
            q = vae.encode(sample) if y is None else vae.encode(sample, y=y)
            if closed_form_kl_or_none(q, vae.prior_dist()) is None:
                raise PyrovaeError(
                    f"objective.kl: 'analytic' needs a closed-form KL between the guide "
                    f"({type(q).__name__}) and the prior; none is registered (use auto or mc)"
                )

    def loss_fn(self, vae: Any) -> LossFn:
        particles, kind = self.num_particles, self.kl
        own = kind_estimator(vae)
        if own is not None:  # the kind's own estimator (M2's label summed out, layers)
            if self.free_bits > 0 and not own.free_bits:
                raise PyrovaeError(f"objective.free_bits: not available for {own.what} "
                                   f"(model: {vae.spec['model']['family']})")
            extra = {"free_bits": self.free_bits} if self.free_bits > 0 else {}

            def kind_loss(vae: Any, x: torch.Tensor, y: torch.Tensor | None, num_data: int,
                          kl_weight: float) -> MinibatchLoss:
                return own.loss(vae, x, y, num_data, kl_weight, num_particles=particles,
                                kl=kind, **extra)

            return kind_loss
        if self.free_bits > 0 or not standard_families(vae):
            return self._generic
        analytic = kind != "mc"  # Normal ‖ Normal always has its closed form

        def standard(vae: Any, x: torch.Tensor, y: Any, num_data: int,
                     kl_weight: float) -> MinibatchLoss:
            return standard_loss(vae, x, num_data=num_data, kl_weight=kl_weight,
                                 num_particles=particles, analytic_kl=analytic)

        return standard  # the tensor-algebra specialisation of the same estimator

    def _generic(self, vae: Any, x: torch.Tensor, y: torch.Tensor | None,
                     num_data: int, kl_weight: float) -> MinibatchLoss:
        return self.shard_loss(vae, _encode(vae, x, y), x, y, slice(None), num_data,
                               x.shape[0], kl_weight, one_process)

    def shard_loss(self, vae: Any, q: dist.Distribution, x: torch.Tensor,
                   y: torch.Tensor | None, rows: slice, num_data: int, batch_size: int,
                   kl_weight: float, total: SumOverRanks) -> MinibatchLoss:
        """−(N/B)·Σ_{i∈rows} (R_i − β·KL_i); with free bits λ, the KL part is replaced
        by this rank's share of β·N·Σ_j max(λ, KL_j): where the batch mean KL_j (summed
        over the ranks by ``total``) is above λ, the rows' own (1/B)·Σ_i KL_ij, else
        the constant λ·|rows|/B (no gradient, as the floor gives none).  A model kind
        with its own estimator: its ``shard_loss``."""
        own = kind_estimator(vae)
        if own is not None:
            if own.shard_loss is None:
                raise PyrovaeError(f"distributed: {own.what} has no sharded estimator")
            return own.shard_loss(vae, q, x, y, rows, num_data, batch_size, kl_weight, total,
                                  num_particles=self.num_particles, kl=self.kl,
                                  free_bits=self.free_bits)
        if self.free_bits <= 0:
            terms = terms_from_guide(vae, q, x, y=y, num_particles=self.num_particles,
                                     kl=self.kl, rows=rows)
            return minibatch_loss(terms, num_data=num_data, batch_size=batch_size,
                                  kl_weight=kl_weight)
        prior = vae.prior_dist()
        z = draw(q, self.num_particles)  # the whole batch's draws
        kl_ij = kl_per_dimension(q, prior, z, self.kl != "mc")
        with torch.no_grad():
            kl, closed = kl_term(q, prior, z, self.kl)
        z, kl, kl_ij = z[..., rows, :], kl[rows], kl_ij[..., rows, :]
        draws = kl_ij.shape[0] if kl_ij.dim() == 3 else 1
        share = kl_ij.reshape(-1, kl_ij.shape[-1]).sum(0) / (draws * batch_size)
        above = total(share.detach().clone()) > self.free_bits  # the batch mean KL_j > λ
        log_px = log_likelihood(vae, z, x, y)
        rec = (log_px.mean(0) if self.num_particles > 1 else log_px).sum()
        floored = torch.where(above, share, self.free_bits * x.shape[0] / batch_size).sum()
        loss = -(rec * (num_data / batch_size) - kl_weight * floored * num_data)
        return MinibatchLoss(loss, {"reconstruction": rec.detach(), "kl": kl.sum()}, closed)


@OBJECTIVES.register("trace_elbo")
class TraceELBOObjective(_ELBOObjective):
    """The ELBO; its KL term in closed form where registered, else Monte Carlo (``kl``).

    ``kl: auto`` (the default) uses the closed form wherever one is registered for the
    (guide, prior) pair and Monte Carlo otherwise (Pyro's ``TraceMeanField_ELBO``);
    ``kl: mc`` is Pyro's ``Trace_ELBO``
    log p(x|z) + β(log p(z) − log q(z|x)), z ~ q; ``kl: analytic`` refuses pairs
    without a closed form."""

    params: ClassVar[dict[str, Param]] = {
        **Objective.params,
        "free_bits": _FREE_BITS,
        "kl": Param("choice", "auto", choices=KL_KINDS,
                    doc="KL term: auto (closed form where registered), analytic, mc"),
    }


@OBJECTIVES.register("trace_elbo_mc")
class TraceELBOMCObjective(_ELBOObjective):
    """Pyro's ``Trace_ELBO``: the ELBO with a Monte Carlo KL term (``trace_elbo``, ``kl: mc``).

    log p(x|z) + β(log p(z) − log q(z|x)), z ~ q: the KL term by Monte Carlo even
    where a closed form exists."""

    params: ClassVar[dict[str, Param]] = {**Objective.params, "free_bits": _FREE_BITS}

    def __init__(self, num_particles: int = 1, free_bits: float = 0.0) -> None:
        super().__init__(num_particles, free_bits, "mc")


@OBJECTIVES.register("trace_meanfield_elbo")
class TraceMeanFieldObjective(_ELBOObjective):
    """Pyro's ``TraceMeanField_ELBO``: the same estimator as ``trace_elbo``'s default.

    E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)) with the KL in closed form where one is
    registered (else Monte Carlo, as Pyro does), kept under Pyro's name."""

    params: ClassVar[dict[str, Param]] = {**Objective.params, "free_bits": _FREE_BITS}

    def __init__(self, num_particles: int = 1, free_bits: float = 0.0) -> None:
        super().__init__(num_particles, free_bits, "auto")


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
    The recorded reconstruction and KL terms are the Monte Carlo means over the K draws.
    """

    supports_ddp: ClassVar[bool] = True
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

    @classmethod
    def trains_kind(cls, estimator: KindEstimator) -> bool:
        """A kind whose estimator gives reparameterised per-particle importance weights
        (:attr:`~pyrovae.estimators.kinds.KindEstimator.particle_weights`)."""
        return estimator.particle_weights is not None

    def kind_elbo(self, vae: Any) -> pyro.infer.ELBO:
        """Pyro's ``RenyiELBO`` with vectorised particles (the order the kind's
        ``particle_weights`` draw in) and the plate nesting of the kind's own loss."""
        nesting = getattr(vae.stock_elbo(1), "max_plate_nesting", float("inf"))
        return pyro.infer.RenyiELBO(alpha=self.alpha, num_particles=self.num_particles,
                                    max_plate_nesting=nesting, vectorize_particles=True)

    def describe(self) -> str:
        return f"Rényi bound α = {self.alpha:g}, K = {self.num_particles} (Pyro RenyiELBO)"

    def loss_fn(self, vae: Any) -> LossFn:
        own = kind_estimator(vae)
        if own is None:
            return self._loss
        if not self.trains_kind(own):
            raise PyrovaeError(f"objective: {self.family!r} cannot train {own.what} "
                               f"(model: {vae.spec['model']['family']}); use trace_elbo or "
                               "trace_elbo_mc")
        weights = own.particle_weights

        def kind_loss(vae: Any, x: torch.Tensor, y: torch.Tensor | None, num_data: int,
                      kl_weight: float) -> MinibatchLoss:
            if y is not None:
                raise PyrovaeError(f"y: model: {vae.spec['model']['family']} is "
                                   "unconditional (no context); pass no y")
            log_px, ratio = weights(vae, x, self.num_particles)
            return self._bound(log_px, ratio, kl_weight, num_data)

        return kind_loss

    def _bound(self, log_px: torch.Tensor, ratio: torch.Tensor, kl_weight: float,
               num_data: int, batch_size: int | None = None) -> MinibatchLoss:
        """−(N/B) Σ_i L_α(x_i) from the parts of the log-weights, each ``(K, rows)``:
        w = log p(x|z) − β (log q(z|x) − log p(z)); B = ``batch_size`` (default: the
        rows given)."""
        w = log_px - kl_weight * ratio
        a = 1.0 - self.alpha
        bound = (torch.logsumexp(a * w, dim=0) - math.log(self.num_particles)) / a
        size = w.shape[1] if batch_size is None else batch_size
        return MinibatchLoss(-bound.sum() * (num_data / size),
                             {"reconstruction": log_px.detach().mean(0).sum(),
                              "kl": ratio.detach().mean(0).sum()}, False)

    def _loss(self, vae: Any, x: torch.Tensor, y: torch.Tensor | None, num_data: int,
              kl_weight: float) -> MinibatchLoss:
        return self.shard_loss(vae, _encode(vae, x, y), x, y, slice(None), num_data,
                               x.shape[0], kl_weight, one_process)

    def shard_loss(self, vae: Any, q: dist.Distribution, x: torch.Tensor,
                   y: torch.Tensor | None, rows: slice, num_data: int, batch_size: int,
                   kl_weight: float, total: SumOverRanks) -> MinibatchLoss:
        """−(N/B)·Σ_{i∈rows} L_α(x_i): the bound is a sum over examples of terms from
        each example's own K draws, so the ranks' shares add up (the N/B scale is
        outside the log-sum-exp)."""
        own = kind_estimator(vae)
        if own is not None:  # a kind's reparameterised weights (loss_fn checked them)
            if own.shard_loss is None or own.particle_weights is None:
                raise PyrovaeError(f"distributed: {own.what} has no sharded estimator")
            log_px, ratio = own.particle_weights(vae, x, self.num_particles, guide=q,
                                                 rows=rows)
            return self._bound(log_px, ratio, kl_weight, num_data, batch_size)
        prior = vae.prior_dist()
        # one draw per particle, in the order Pyro's particle loop draws them
        z = torch.stack([q.rsample() for _ in range(self.num_particles)])
        ratio = (q.log_prob(z) - prior.log_prob(z))[:, rows]
        z = z[:, rows]
        return self._bound(log_likelihood(vae, z, x, y), ratio, kl_weight, num_data,
                           batch_size)


@OBJECTIVES.register("tracegraph_elbo")
class TraceGraphObjective(Objective):
    """Pyro's ``TraceGraph_ELBO``: the ELBO with Rao-Blackwellised score-function terms.

    Same value as ``trace_elbo_mc``; it differs only in the gradient of
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
