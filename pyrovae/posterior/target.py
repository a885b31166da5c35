"""One interface to "a model and a guide" for every check.

A :class:`Target` answers, per data point, the questions the checks ask:

* ``log_joint(x, z)``: log p_θ(x, z) for z of shape (..., N, d) -> (..., N);
* ``sample_guide(x, S)``: z ~ q_φ(z|x), shape (S, N, d), with log q_φ(z|x) (S, N);
* ``guide_log_prob(x, z)``: log q_φ(z|x) at given z;
* ``guide_dist(x)``: q_φ(z|x) as a distribution with batch shape (N,), when known;
* ``exact_log_marginal(x)`` / ``exact_posterior(x)`` when the model knows them.

:func:`as_target` builds one from

* a :class:`pyrovae.VAE` (fast path: its prior, decoder and encoder directly);
* a toy problem (:mod:`pyrovae.toy`) and a guide (any Pyro guide callable, or an
  object with ``dist(x)`` such as :class:`~pyrovae.posterior.local.LocalGuide`);
* any Pyro ``model(x)`` / ``guide(x)`` pair with a latent site ``"z"`` and an
  observed site ``"x"`` in a plate ``"data"`` (generic path: ``poutine.trace`` with
  the latent conditioned on given values and an outer particle plate, so the
  log-densities come back per data point, not summed over the plate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import constraints

from pyrovae.errors import PyrovaeError

_PARTICLES = "_pyrovae_particles"


def _per_point_log_prob(trace, n: int, sites: Callable[[dict], bool]) -> torch.Tensor:
    trace.compute_log_prob()
    total = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or not sites(site):
            continue
        lp = site["log_prob"]
        if lp.dim() == 0 or lp.shape[-1] != n:
            raise PyrovaeError(
                f"site {name!r}: expected a log-density per data point (last dim {n}), "
                f"got shape {tuple(lp.shape)}; only a latent 'z' and an observed 'x' in "
                "plate 'data' are supported"
            )
        total = lp if total is None else total + lp
    if total is None:
        raise PyrovaeError("no sample sites found in the trace")
    return total


class Target:
    """Base class; see the module docstring."""

    latent_dim: int
    support: constraints.Constraint = constraints.real_vector

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_guide(self, x: torch.Tensor, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def guide_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def guide_dist(self, x: torch.Tensor):
        return None

    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def exact_posterior(self, x: torch.Tensor):
        return None

    def grid_box(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    @property
    def has_guide(self) -> bool:
        return True

    # ---- the prior p(z) and the generative process (AIS from the prior, BDMC, SBC)
    def prior_dist(self):
        """p(z) with event shape (latent_dim,), or None when only traces know it."""
        return None

    def sample_prior(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """z ~ p(z), shape (S, N, d) (``x`` only fixes N)."""
        p = self._require_prior()
        return p.sample((num_samples, x.shape[0]))

    def prior_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z of shape (..., N, d) -> (..., N)."""
        return self._require_prior().log_prob(z)

    def simulate(self, num_data: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, x) ~ p(z) p_θ(x|z): ``num_data`` exact joint draws (z (N, d), x (N, ...))."""
        raise PyrovaeError(f"{type(self).__name__} cannot simulate data from its model")

    def _require_prior(self):
        p = self.prior_dist()
        if p is None:
            raise PyrovaeError(f"{type(self).__name__} exposes no prior p(z)")
        return p

    def log_weights(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """log p(x, z) − log q(z|x) for z ~ q, shape (S, N)."""
        z, log_q = self.sample_guide(x, num_samples)
        return self.log_joint(x, z) - log_q


class _DistGuideMixin:
    """Guide given as ``dist_fn(x) -> q(z|x)`` (batch (N,), event (d,))."""

    _dist_fn: Callable[[torch.Tensor], Any]

    def guide_dist(self, x):
        return self._dist_fn(x)

    def sample_guide(self, x, num_samples):
        q = self._dist_fn(x)
        z = q.rsample((num_samples,)) if q.has_rsample else q.sample((num_samples,))
        return z, q.log_prob(z)

    def guide_log_prob(self, x, z):
        return self._dist_fn(x).log_prob(z)


class VAETarget(_DistGuideMixin, Target):
    """Fast path for :class:`pyrovae.VAE`: p(z), p_θ(x|z) and q_φ(z|x) used directly.

    ``y``: a conditional VAE's context, one row per row of the ``x`` checked (then
    p(x, z | y) and q(z | x, y); methods that score one row at a time need the
    matching single row of ``y``).
    """

    def __init__(self, vae, y=None) -> None:
        self.vae = vae
        self.y = y
        self.latent_dim = vae.latent_dim
        self._dist_fn = vae.encode if y is None else (lambda x: vae.encode(x, y))

    def log_joint(self, x, z):
        x = self.vae.as_event(x)  # flat rows for an image VAE, or images for a flat one
        d = self.vae.decode(z, x) if self.y is None else self.vae.decode(z, x, y=self.y)
        return self.vae.prior_dist().log_prob(z) + d.log_prob(x)

    def prior_dist(self):
        return self.vae.prior_dist()

    def simulate(self, num_data):
        z = self.vae.prior_dist().sample((num_data,))
        return z, self.vae.decode(z).sample()

    def grid_box(self):
        dtype = next(self.vae.parameters()).dtype
        return (torch.full((self.latent_dim,), -6.0, dtype=dtype),
                torch.full((self.latent_dim,), 6.0, dtype=dtype))


class PyroTarget(Target):
    """Generic path for any Pyro model/guide pair (see the module docstring)."""

    def __init__(
        self, model: Callable, guide: Callable | None = None, *, latent_dim: int | None = None,
        latent: str = "z", observed: str = "x", **kwargs: Any,
    ) -> None:
        self.model, self.guide, self.kwargs = model, guide, kwargs
        self.latent, self.observed = latent, observed
        self._latent_dim = latent_dim

    @property
    def latent_dim(self) -> int:  # type: ignore[override]
        if self._latent_dim is None:
            self._latent_dim = self._infer_latent_dim()
        return self._latent_dim

    def _infer_latent_dim(self) -> int:
        """One prior draw of the model, called as ``model(None, batch_size=1)``."""
        try:
            with poutine.block():
                tr = poutine.trace(self.model).get_trace(None, batch_size=1, **self.kwargs)
            return int(tr.nodes[self.latent]["value"].shape[-1])
        except Exception as e:  # any model signature may fail here
            raise PyrovaeError(
                f"latent_dim unknown and model(None, batch_size=1) could not be traced "
                f"({type(e).__name__}); pass as_target(model, guide, latent_dim=d)"
            ) from None

    @property
    def has_guide(self) -> bool:
        return self.guide is not None

    def _flat(self, z: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        batch = z.shape[:-2]
        return z.reshape(-1, n, z.shape[-1]), batch

    def _conditioned_log_prob(self, fn, x, z):
        """Σ of every site's log-density per data point, with the latent fixed at ``z``."""
        n = x.shape[0]
        flat, batch = self._flat(z, n)
        conditioned = poutine.condition(fn, data={self.latent: flat})
        with pyro.plate(_PARTICLES, flat.shape[0], dim=-2):
            tr = poutine.trace(conditioned).get_trace(x, **self.kwargs)
        lp = _per_point_log_prob(tr, n, lambda s: True)
        return lp.expand(flat.shape[0], n).reshape(*batch, n)

    def log_joint(self, x, z):
        return self._conditioned_log_prob(self.model, x, z)

    def _model_trace(self, x, num_samples: int, z: torch.Tensor | None = None):
        fn = self.model if z is None else poutine.condition(self.model, data={self.latent: z})
        with pyro.plate(_PARTICLES, num_samples, dim=-2):
            return poutine.trace(fn).get_trace(x, **self.kwargs)

    def sample_prior(self, x, num_samples):
        tr = self._model_trace(x, num_samples)
        z = tr.nodes[self.latent]["value"].expand(num_samples, x.shape[0], -1)
        self._latent_dim = z.shape[-1]
        return z

    def prior_log_prob(self, x, z):
        n = x.shape[0]
        flat, batch = self._flat(z, n)
        tr = self._model_trace(x, flat.shape[0], flat)
        lp = _per_point_log_prob(tr, n, lambda s: s["name"] == self.latent)
        return lp.expand(flat.shape[0], n).reshape(*batch, n)

    def _require_guide(self):
        if self.guide is None:
            raise PyrovaeError("this check needs a guide; none was given")

    def sample_guide(self, x, num_samples):
        self._require_guide()
        n = x.shape[0]
        with pyro.plate(_PARTICLES, num_samples, dim=-2):
            tr = poutine.trace(self.guide).get_trace(x, **self.kwargs)
        z = tr.nodes[self.latent]["value"].expand(num_samples, n, -1)
        self._latent_dim = z.shape[-1]
        lq = _per_point_log_prob(tr, n, lambda s: not s["is_observed"])
        return z, lq.expand(num_samples, n)

    def guide_log_prob(self, x, z):
        self._require_guide()
        return self._conditioned_log_prob(self.guide, x, z)


@runtime_checkable
class ExactProblem(Protocol):
    """What a problem with exact answers provides (the toys in :mod:`pyrovae.toy` do).

    The posterior layer never imports the toys: anything with these members is
    checked as one.
    """

    latent_dim: int
    support: Any
    exact_posterior: bool

    def model(self, x: torch.Tensor | None = None, *, batch_size: int = 1) -> torch.Tensor: ...
    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...
    def log_marginal(self, x: torch.Tensor) -> torch.Tensor: ...
    def posterior(self, x: torch.Tensor) -> Any: ...
    def grid_box(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class ToyTarget(Target):
    """A toy problem (exact answers known) with an optional guide."""

    def __init__(self, toy, guide: Any = None) -> None:
        self.toy = toy
        self.latent_dim = toy.latent_dim
        self.support = toy.support
        self._guide = guide
        if guide is None:
            self._impl = None
        elif hasattr(guide, "dist") and callable(guide.dist):
            self._impl = _DistGuideTarget(guide.dist)
        else:
            self._impl = PyroTarget(toy.model, guide, latent_dim=toy.latent_dim)

    @property
    def has_guide(self) -> bool:
        return self._impl is not None

    def _require(self):
        if self._impl is None:
            raise PyrovaeError("this check needs a guide; none was given")
        return self._impl

    def log_joint(self, x, z):
        return self.toy.log_joint(x, z)

    def prior_dist(self):
        return self.toy.prior()

    def simulate(self, num_data):
        z = self.toy.prior().sample((num_data,))
        return z, self.toy.likelihood(z).sample()

    def sample_guide(self, x, num_samples):
        return self._require().sample_guide(x, num_samples)

    def guide_log_prob(self, x, z):
        return self._require().guide_log_prob(x, z)

    def guide_dist(self, x):
        return None if self._impl is None else self._impl.guide_dist(x)

    def exact_log_marginal(self, x):
        if self.toy.exact_posterior:
            return self.toy.log_marginal(x)
        return None

    def exact_posterior(self, x):
        return self.toy.posterior(x) if self.toy.exact_posterior else None

    def grid_box(self):
        return self.toy.grid_box()


class _DistGuideTarget(_DistGuideMixin, Target):
    def __init__(self, dist_fn) -> None:
        self._dist_fn = dist_fn


def as_target(model: Any, guide: Any = None, **kwargs: Any) -> Target:
    """A :class:`Target` for a VAE, a toy problem (+ guide) or a Pyro model/guide pair.

    For a Pyro pair, keyword arguments go to :class:`PyroTarget`: ``latent_dim=``
    (inferred when omitted, from the first guide or prior draw, or by tracing
    ``model(None, batch_size=1)``), ``latent=`` / ``observed=`` site names, and any
    further keyword arguments are passed to ``model`` and ``guide`` on every call.
    """
    from pyrovae.model.vae import VAE

    if isinstance(model, Target):
        return model
    if isinstance(model, VAE):
        if guide is not None:
            raise PyrovaeError("a VAE carries its own guide; do not pass another")
        return VAETarget(model, kwargs.get("y"))
    if isinstance(model, ExactProblem):
        return ToyTarget(model, guide)
    if callable(model):
        return PyroTarget(model, guide, **kwargs)
    raise PyrovaeError(f"cannot check {type(model).__name__}: expected a VAE, a toy or a model")
