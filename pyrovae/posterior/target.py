"""One interface to "a model and a guide" for every check.

A :class:`Target` answers, per data point, the questions the checks ask:

* ``sites``: the latent sites, name -> event shape and support, in trace order; z
  below is their flat concatenation per data point (:mod:`pyrovae.posterior.sites`);
* ``log_joint(x, z)``: log p_θ(x, z) for z of shape (..., N, d) -> (..., N);
* ``sample_guide(x, S)``: z ~ q_φ(z|x), shape (S, N, d), with log q_φ(z|x) (S, N);
* ``guide_log_prob(x, z)``: log q_φ(z|x) at given z;
* ``guide_dist(x)``: q_φ(z|x) as a distribution with batch shape (N,), when known;
* ``exact_log_marginal(x)`` / ``exact_posterior(x)`` when the model knows them.

:func:`as_target` builds one from

* a :class:`pyrovae.VAE` (fast path: its prior, decoder and encoder directly; a model
  kind with several latent sites, ``pyro_target`` such as the hierarchical VAE, through
  its Pyro pair as below);
* a toy problem (:mod:`pyrovae.toy`) and a guide (any Pyro guide callable, or an
  object with ``dist(x)`` such as :class:`~pyrovae.posterior.local.LocalGuide`);
* any Pyro ``model(x)`` / ``guide(x)`` pair, with any number of latent sites of any
  names and shapes inside the data plate (generic path: the sites are found from a
  trace; ``poutine.trace`` with the latents conditioned on given values and an outer
  particle plate, so the log-densities come back per data point, not summed over the
  plate; data simulated from the model by ``poutine.uncondition``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import constraints

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.sites import (
    SiteInfo,
    dimension_labels,
    ravel,
    require_continuous,
    site_info,
    total_size,
    unravel,
)

_PARTICLES = "_pyrovae_particles"


class Target:
    """Base class; see the module docstring."""

    latent_dim: int
    support: constraints.Constraint = constraints.real_vector

    @property
    def sites(self) -> dict[str, SiteInfo]:
        """The latent sites, name -> :class:`~pyrovae.posterior.sites.SiteInfo`, in the
        order of the flat vector; one site ``"z"`` of event shape (latent_dim,) unless
        a subclass says otherwise."""
        return {"z": SiteInfo("z", (int(self.latent_dim),), self.support)}

    def dimension_labels(self) -> list[str]:
        """One label per dimension of the flat latent vector (``"z[0]"``, ``"top[2]"``)."""
        return dimension_labels(self.sites)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z); ``x`` (N, D), ``z`` (..., N, d) -> (..., N)."""
        raise NotImplementedError

    def sample_guide(self, x: torch.Tensor, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_samples`` draws z ~ q(z|x) and their log q: ``(S, N, d)`` and ``(S, N)``."""
        raise NotImplementedError

    def guide_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x); ``z`` (..., N, d) -> (..., N)."""
        raise NotImplementedError

    def guide_dist(self, x: torch.Tensor):
        """q(z|x) as a distribution with batch shape (N,), or None when only samples are known."""
        return None

    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor | None:
        """log p(x) per point in closed form, or None when there is none."""
        return None

    def exact_posterior(self, x: torch.Tensor):
        """p(z|x) in closed form (batch shape (N,)), or None when there is none."""
        return None

    def grid_box(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A box (low, high) in u that holds the posterior mass, or None (found from draws)."""
        return None

    @property
    def has_guide(self) -> bool:
        """Whether the target has a guide q(z|x) (the guide checks need one)."""
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
    matching single row of ``y``), or one row for every point (a single context,
    also the one :meth:`simulate` draws from).
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
        y = None if self.y is None else torch.as_tensor(self.y)
        if y is not None and (y.ndim == 0 or len(y) in (1, num_data)):  # one, or one per row
            return z, self.vae.decode(z, y=y).sample()
        return z, self.vae.decode(z).sample()

    def grid_box(self):
        dtype = next(self.vae.parameters()).dtype
        return (torch.full((self.latent_dim,), -6.0, dtype=dtype),
                torch.full((self.latent_dim,), 6.0, dtype=dtype))


class PyroTarget(Target):
    """Any Pyro ``model(x)`` / ``guide(x)`` pair, its latents found from a trace.

    Every unobserved sample site of the model (not a plate's subsample site) is a
    latent site, with any name, any number of them, in trace order; every observed
    site is scored.  Each site must be local: inside one plate over the data points
    (the plate of size N at dim −1, Pyro's convention), with any ``.to_event`` shape.
    The checks see the continuous sites raveled into one vector per data point
    (:mod:`pyrovae.posterior.sites`); :attr:`sites` maps each name to its
    :class:`~pyrovae.posterior.sites.SiteInfo`.  Log-densities come back per data
    point: the model is traced under an outer particle plate with the latents
    conditioned on given values.  :meth:`simulate` draws (z, x) from the model itself
    with ``poutine.uncondition`` (observed sites sampled), so BDMC and SBC need no
    second model; the data's shape comes from ``example`` or the last ``x`` seen.
    A discrete site (a finite support, e.g. a ``Categorical`` label) is listed in
    :attr:`sites` as discrete with its number of values (``SiteInfo.discrete``,
    ``cardinality``); the checks that need the flat vector refuse it with a pointer to
    :mod:`pyrovae.posterior.enumerate`, which sums it out exactly.

    Args:
        model: a Pyro model called as ``model(x, **model_kwargs)``.
        guide: its guide, called the same way (``None``: prior-only checks).
        latent_dim: the flat size D, when it cannot be traced before data are seen.
        example: one batch of data, used to trace the structure and to shape the
            data that :meth:`simulate` draws.
        model_kwargs: keyword arguments passed to ``model`` and ``guide`` on every call.
    """

    def __init__(
        self, model: Callable, guide: Callable | None = None, *, latent_dim: int | None = None,
        example: torch.Tensor | None = None, model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.guide = model, guide
        self.kwargs = dict(model_kwargs or {})
        self._latent_dim = latent_dim
        self._sites: dict[str, SiteInfo] | None = None
        self._observed: list[str] = []
        self._nesting = 1
        self._example = example
        if example is not None:
            self._discover(example)

    # ------------------------------------------------------------- structure
    def _discover(self, x: torch.Tensor) -> None:
        self._example = x
        if self._sites is not None:
            return
        # a structural trace: it must not move the random stream the checks seeded
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), poutine.block(), torch.no_grad():
            tr = poutine.trace(self.model).get_trace(x, **self.kwargs)
        nesting = 1
        sites: dict[str, SiteInfo] = {}
        observed = []
        n = x.shape[0]
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            for f in site["cond_indep_stack"]:
                if f.dim is not None:
                    nesting = max(nesting, -f.dim)
            if site["is_observed"]:
                observed.append(name)
                continue
            fn = site["fn"]
            batch = tuple(fn.batch_shape)
            if not batch or batch[-1] != n or math.prod(batch) != n:
                raise PyrovaeError(
                    f"latent site {name!r} has batch shape {batch}: the checks need one value "
                    f"per data point, i.e. the site inside a plate of size {n} at dim -1 (a "
                    "global latent, or a site in a second plate, is not supported)"
                )
            sites[name] = site_info(name, fn, tuple(fn.event_shape))
        if not sites:
            raise PyrovaeError("the model has no latent sample site (every site is observed)")
        self._sites, self._observed, self._nesting = sites, observed, nesting
        self._latent_dim = total_size(sites)

    @property
    def sites(self) -> dict[str, SiteInfo]:  # type: ignore[override]
        if self._sites is None and self._latent_dim is None:
            _ = self.latent_dim  # traces the example, or model(None, batch_size=1)
        if self._sites is None:
            raise PyrovaeError("the latent sites are known once data are seen: pass "
                               "as_target(model, guide, example=x)")
        return self._sites

    @property
    def support(self):  # type: ignore[override]
        """The support of the raveled latent vector (one site's own, else real)."""
        sites = self.sites
        require_continuous(sites, "this check")
        if len(sites) == 1:
            (s,) = sites.values()
            if not s.is_real:
                return s.support
        elif not all(s.is_real for s in sites.values()):
            bad = next(s.name for s in sites.values() if not s.is_real)
            raise PyrovaeError(f"latent site {bad!r} is constrained; with several latent sites "
                               "only real-valued ones are supported")
        return constraints.real_vector

    @property
    def latent_dim(self) -> int:  # type: ignore[override]
        """The length of the flat latent vector (all sites raveled)."""
        if self._latent_dim is None:
            if self._example is not None:
                self._discover(self._example)
            else:
                self._latent_dim = self._infer_latent_dim()
        return self._latent_dim

    def _infer_latent_dim(self) -> int:
        """Trace ``model(None, batch_size=1)``; the data it returns fix the structure."""
        try:
            with torch.random.fork_rng(devices=[]), poutine.block(), torch.no_grad():
                tr = poutine.trace(self.model).get_trace(None, batch_size=1, **self.kwargs)
            x = tr.nodes["_RETURN"]["value"]
            if not isinstance(x, torch.Tensor):
                raise TypeError("the model returns no data")
            self._discover(x)
        except PyrovaeError:
            raise
        except Exception as e:  # any model signature may fail here
            raise PyrovaeError(
                f"latent_dim unknown and model(None, batch_size=1) could not be traced "
                f"({type(e).__name__}); pass as_target(model, guide, example=x)"
            ) from None
        return self._latent_dim

    @property
    def has_guide(self) -> bool:
        return self.guide is not None

    # ------------------------------------------------------------- helpers
    def _batched(self, z: torch.Tensor, n: int) -> tuple[dict[str, torch.Tensor], tuple, int]:
        """Flat z (..., N, D) -> ({site: (B, 1.., N, *event)}, batch shape, B)."""
        require_continuous(self.sites, "a flat latent vector")
        batch = z.shape[:-2]
        flat = z.reshape(-1, n, z.shape[-1])
        b = flat.shape[0]
        ones = (1,) * (self._nesting - 1)
        values = {name: v.reshape(b, *ones, n, *self.sites[name].event_shape)
                  for name, v in unravel(flat, self.sites).items()}
        return values, batch, b

    def _trace(self, fn, x, num_particles: int, values: dict | None = None):
        if values is not None:
            fn = poutine.condition(fn, data=values)
        with pyro.plate(_PARTICLES, num_particles, dim=-(self._nesting + 1)):
            return poutine.trace(fn).get_trace(x, **self.kwargs)

    def _per_point(self, tr, n: int, names) -> torch.Tensor:
        tr.compute_log_prob()
        total = None
        for name in names:
            lp = tr.nodes[name]["log_prob"]
            if lp.dim() == 0 or lp.shape[-1] != n:
                raise PyrovaeError(
                    f"site {name!r}: expected a log-density per data point (last dim {n}), "
                    f"got shape {tuple(lp.shape)}; put it inside the data plate (dim -1)"
                )
            lp = lp.reshape(lp.shape[0], -1, n).sum(1) if lp.dim() > 1 else lp.unsqueeze(0)
            total = lp if total is None else total + lp
        return total

    def _ravel_trace(self, tr, num: int, n: int) -> torch.Tensor:
        require_continuous(self.sites, "a flat latent vector")
        z = {name: tr.nodes[name]["value"].reshape(-1, n, *s.event_shape).expand(
            num, n, *s.event_shape) for name, s in self.sites.items()}
        return ravel(z, self.sites)

    def _guide_sites(self, tr) -> list[str]:
        names = [k for k, s in tr.nodes.items() if s["type"] == "sample"
                 and not site_is_subsample(s) and (k in self.sites or not s["is_observed"])]
        missing = [k for k in self.sites if k not in names]
        extra = [k for k in names if k not in self.sites]
        if missing or extra:
            raise PyrovaeError(
                f"the guide's sites do not match the model's latent sites "
                f"{list(self.sites)}: missing {missing}, not in the model {extra}"
            )
        return names

    # ------------------------------------------------------------- densities
    def log_joint(self, x, z):
        self._discover(x)
        n = x.shape[0]
        values, batch, b = self._batched(z, n)
        tr = self._trace(self.model, x, b, values)
        lp = self._per_point(tr, n, list(self.sites) + self._observed)
        return lp.expand(b, n).reshape(*batch, n)

    def sample_prior(self, x, num_samples):
        self._discover(x)
        tr = self._trace(self.model, x, num_samples)
        return self._ravel_trace(tr, num_samples, x.shape[0])

    def prior_log_prob(self, x, z):
        self._discover(x)
        n = x.shape[0]
        values, batch, b = self._batched(z, n)
        tr = self._trace(self.model, x, b, values)
        return self._per_point(tr, n, list(self.sites)).expand(b, n).reshape(*batch, n)

    def _require_guide(self):
        if self.guide is None:
            raise PyrovaeError("this check needs a guide; none was given")

    def sample_guide(self, x, num_samples):
        self._require_guide()
        self._discover(x)
        n = x.shape[0]
        tr = self._trace(self.guide, x, num_samples)
        names = self._guide_sites(tr)
        lq = self._per_point(tr, n, names)
        return self._ravel_trace(tr, num_samples, n), lq.expand(num_samples, n)

    def guide_log_prob(self, x, z):
        self._require_guide()
        self._discover(x)
        n = x.shape[0]
        values, batch, b = self._batched(z, n)
        tr = self._trace(self.guide, x, b, values)
        lq = self._per_point(tr, n, self._guide_sites(tr))
        return lq.expand(b, n).reshape(*batch, n)

    def site_log_probs(self, x, z, *, guide: bool = False) -> dict[str, torch.Tensor]:
        """log p(site | its parents) (or log q with ``guide=True``) per latent site, at the
        flat z (..., N, D): ``{name: (..., N)}``; they sum to log p(z) (log q(z|x))."""
        if guide:
            self._require_guide()
        self._discover(x)
        n = x.shape[0]
        values, batch, b = self._batched(z, n)
        tr = self._trace(self.guide if guide else self.model, x, b, values)
        if guide:
            self._guide_sites(tr)
        return {name: self._per_point(tr, n, [name]).expand(b, n).reshape(*batch, n)
                for name in self.sites}

    def log_q(self, x, z):
        """log q(z|x) per point for z given as flat (..., N, D); alias of guide_log_prob."""
        return self.guide_log_prob(x, z)

    def simulate(self, num_data):
        """(z, x) ~ p(z) p_θ(x|z) from the model itself (``poutine.uncondition``)."""
        if self._example is None:
            raise PyrovaeError("simulating needs the data's shape: pass "
                               "as_target(model, guide, example=x)")
        if len(self._observed) != 1:
            raise PyrovaeError(f"simulating needs exactly one observed site, the model has "
                               f"{self._observed}")
        template = self._example[:1].expand(num_data, *self._example.shape[1:]).clone()
        with torch.no_grad():
            tr = poutine.trace(poutine.uncondition(self.model)).get_trace(template, **self.kwargs)
        x = tr.nodes[self._observed[0]]["value"].reshape(num_data, *self._example.shape[1:])
        return self._ravel_trace(tr, 1, num_data)[0], x.to(self._example.dtype)


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


def as_target(
    model: Any, guide: Any = None, *, y: torch.Tensor | None = None,
    latent_dim: int | None = None, example: torch.Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Target:
    """A :class:`Target` for a VAE, a toy problem (+ guide) or any Pyro model/guide pair.

    Args:
        model: a :class:`pyrovae.VAE`, a toy problem, a :class:`Target` (returned as
            it is) or a Pyro model callable ``model(x, **model_kwargs)``.
        guide: the guide of a toy or of a Pyro model (a VAE carries its own).
        y: a conditional VAE's context, one row per data row.
        latent_dim: for a Pyro pair, the flat latent size when it cannot be traced
            before data are seen.
        example: for a Pyro pair, a batch of data: the latent sites are traced on it
            and :meth:`Target.simulate` draws data of its shape.
        model_kwargs: for a Pyro pair, keyword arguments for ``model`` and ``guide``.

    Returns:
        The target; a Pyro pair's latent sites are found from a trace
        (:class:`PyroTarget`).

    Raises:
        PyrovaeError: for an object that is none of these, or a guide given with a VAE.
    """
    from pyrovae.model.vae import VAE

    if isinstance(model, Target):
        return model
    if isinstance(model, VAE):
        if guide is not None:
            raise PyrovaeError("a VAE carries its own guide; do not pass another")
        if getattr(model, "pyro_target", False):  # several latent sites: its Pyro pair
            if y is not None:
                raise PyrovaeError(f"y: {type(model).__name__} is unconditional; pass no y")
            target = PyroTarget(model.model, model.guide)
            _ = target.latent_dim  # traces model(None, batch_size=1): the sites and x's shape
            return target
        return VAETarget(model, y)
    site = getattr(model, "discrete_site", None)
    if isinstance(model, ExactProblem) and site:
        raise PyrovaeError(
            f"toy {getattr(model, 'name', '') or type(model).__name__!r} has a discrete latent "
            f"site {site!r}: check it per class with pyrovae.posterior.enumerate (the targets "
            "as_target(toy.class_toy(y), guide.class_guide(y)))")
    if isinstance(model, ExactProblem):
        return ToyTarget(model, guide)
    if callable(model):
        return PyroTarget(model, guide, latent_dim=latent_dim, example=example,
                          model_kwargs=model_kwargs)
    raise PyrovaeError(f"cannot check {type(model).__name__}: expected a VAE, a toy or a model")
