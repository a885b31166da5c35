"""Latent sites as a mapping, and the flat vector the vector-valued checks need.

A model's latents are named sample sites, as in a Pyro trace: ``{"top": (N, 3),
"bottom": (N, 5)}``.  The checks that work on one vector per data point (AIS/HMC,
the grid, SBC, the per-point local guides) see the continuous sites concatenated
in trace order, ``z = [top₁, top₂, top₃, bottom₁, …]``, shape ``(..., N, D)`` with
D = Σ over sites of the site's event size; :func:`ravel` and :func:`unravel` convert
between the two, the idea of NumPyro's ``ravel_pytree``.

References:
    Phan et al. (2019). Composable effects for flexible and accelerated probabilistic
    programming in NumPyro. NeurIPS Workshop on Program Transformations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.distributions import constraints

from pyrovae.errors import PyrovaeError


@dataclass(frozen=True)
class SiteInfo:
    """One latent sample site: its name, event shape per data point and support.

    ``discrete`` sites (a finite support) cannot be placed in the flat vector;
    ``cardinality`` is their number of values when known.
    """

    name: str
    event_shape: tuple[int, ...]
    support: constraints.Constraint = constraints.real
    discrete: bool = False
    cardinality: int | None = None

    @property
    def size(self) -> int:
        """Number of scalars of one data point's value (the product of the event shape)."""
        return math.prod(self.event_shape)

    @property
    def is_real(self) -> bool:
        """True for an unconstrained real site (``real`` or ``real_vector``-like)."""
        base = self.support
        while isinstance(base, constraints.independent):
            base = base.base_constraint
        return base is constraints.real


def site_info(name: str, fn, event_shape: tuple[int, ...]) -> SiteInfo:
    """A :class:`SiteInfo` from a trace site's distribution ``fn``."""
    discrete = bool(getattr(fn.support, "is_discrete", False))
    card = None
    if discrete and hasattr(fn, "enumerate_support"):
        try:
            card = int(fn.enumerate_support(expand=False).shape[0])
        except (NotImplementedError, RuntimeError):
            card = None
    return SiteInfo(name, tuple(int(s) for s in event_shape), fn.support, discrete, card)


def total_size(sites: Mapping[str, SiteInfo]) -> int:
    """D: the length of the flat vector of ``sites``."""
    return sum(s.size for s in sites.values())


def require_continuous(sites: Mapping[str, SiteInfo], what: str) -> None:
    """Refuse discrete sites for a check that needs one real vector per point.

    Raises:
        PyrovaeError: naming the first discrete site.
    """
    for s in sites.values():
        if s.discrete:
            raise PyrovaeError(
                f"latent site {s.name!r} is discrete ({s.cardinality or 'finite'} values): "
                f"{what} works on continuous latents only; sum a discrete site out with "
                "pyrovae.posterior.enumerate (split_pair: one target per value of the "
                "site, then enumerated_log_marginal, enumerated_elbo, enumerated_sbc)"
            )


def ravel(z: Mapping[str, torch.Tensor], sites: Mapping[str, SiteInfo]) -> torch.Tensor:
    """Concatenate ``z[name]`` of shape ``(..., N, *event)`` over ``sites`` into ``(..., N, D)``."""
    parts = []
    for name, s in sites.items():
        v = z[name]
        lead = v.shape[: v.dim() - len(s.event_shape)]
        parts.append(v.reshape(*lead, s.size))
    if not parts:
        raise PyrovaeError("no latent sites to ravel")
    lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*lead, p.shape[-1]) for p in parts], dim=-1)


def unravel(v: torch.Tensor, sites: Mapping[str, SiteInfo]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`ravel`: (..., N, D) -> ``{name: (..., N, *event)}``."""
    d = total_size(sites)
    if v.shape[-1] != d:
        raise PyrovaeError(f"expected a flat latent of size {d}, got shape {tuple(v.shape)}")
    out, lo = {}, 0
    for name, s in sites.items():
        out[name] = v[..., lo: lo + s.size].reshape(*v.shape[:-1], *s.event_shape)
        lo += s.size
    return out


def dimension_labels(sites: Mapping[str, SiteInfo]) -> list[str]:
    """One label per flat dimension: ``"top[0]"``, … (``"z[3]"`` for the one-site VAE)."""
    return [f"{name}[{i}]" for name, s in sites.items() for i in range(s.size)]


def site_slices(sites: Mapping[str, SiteInfo]) -> dict[str, slice]:
    """The slice of the flat vector that holds each site."""
    out, lo = {}, 0
    for name, s in sites.items():
        out[name] = slice(lo, lo + s.size)
        lo += s.size
    return out
