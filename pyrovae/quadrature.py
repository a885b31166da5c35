"""Exact posteriors by quadrature on a grid, for latent dimensions 1 and 2.

For one data point x the unnormalised posterior log p(x, z) is evaluated on a
uniform grid over the *unconstrained* value u of z (z = T(u), T the bijection onto
the support of z; the identity for real z), with the Jacobian included::

    log p(x) = log ∫ p(x, T(u)) |T'(u)| du  ≈  log Σ_g p(x, T(u_g)) |T'(u_g)| · Δ

The rectangle rule on a uniform grid converges faster than any power of the
spacing for smooth densities that vanish at the edges, so the grid is chosen by
doubling its resolution until two interleaved half-resolution grids agree with the
full one to ``tol``; the largest disagreement, plus the posterior mass in the
outermost ring of cells, is reported as the error bound.  The box is first widened
(by half its width on each side, at most four times) while more than 1e-12 of the
mass lies in its outermost cells, then zoomed onto the cells where log p(x, z) (and
log q(z|x), when a guide is checked) lies within 30 nats of its maximum, padded by
three cells.

KL(q ‖ p(z|x)) is computed on the same grid as
Σ_g Δ q(u_g) [log q(u_g) − log p(u_g|x)], independently of any ELBO estimate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.distributions import transforms as T

from pyrovae.errors import PyrovaeError

#: Cells within this many nats of the maximum count as holding mass.
MASS_WINDOW = 30.0


@dataclass
class GridPosterior:
    """p(z|x) for one data point on a grid over u (z = transform(u)).

    ``log_joint`` and ``log_q`` are densities with respect to u (Jacobian included),
    with shape ``(n_1,)`` or ``(n_1, n_2)``.
    """

    axes: list[torch.Tensor]
    log_joint: torch.Tensor
    log_marginal: float
    error_bound: float
    refine_error: float
    edge_mass: float
    transform: T.Transform = field(default_factory=lambda: T.identity_transform)
    log_q: torch.Tensor | None = None
    narrowest_std: float = math.nan
    truncated: bool = False
    tol: float = math.nan
    unresolved_points: int = 0

    @property
    def tol_met(self) -> bool:
        """Whether the reported error bound is within the requested ``tol``."""
        return bool(self.error_bound <= self.tol) if math.isfinite(self.tol) else True

    @property
    def latent_dim(self) -> int:
        """The number of grid axes (dimensions of u)."""
        return len(self.axes)

    @property
    def spacing(self) -> list[float]:
        """The grid step along each axis."""
        return [float(a[1] - a[0]) for a in self.axes]

    @property
    def cell_volume(self) -> float:
        """The volume of one grid cell in u (the product of the spacings)."""
        return math.prod(self.spacing)

    @property
    def shape(self) -> tuple[int, ...]:
        """The number of grid points along each axis."""
        return tuple(len(a) for a in self.axes)

    def points_u(self) -> torch.Tensor:
        """Grid points in u, shape (G, d) in C order of the grid."""
        return _mesh(self.axes)

    def points_z(self) -> torch.Tensor:
        """Grid points in z (``transform`` of :meth:`points_u`), shape (G, d)."""
        return self.transform(self.points_u())

    @property
    def log_density(self) -> torch.Tensor:
        """log p(u|x) on the grid (density in u)."""
        return self.log_joint - self.log_marginal

    def probs(self) -> torch.Tensor:
        """Posterior mass of each cell (sums to ≈ 1)."""
        return (self.log_density + math.log(self.cell_volume)).exp()

    def mean(self) -> torch.Tensor:
        """E[z|x] (in z, not u)."""
        w = self.probs().reshape(-1, 1)
        return (w * self.points_z()).sum(0) / w.sum()

    def cov(self) -> torch.Tensor:
        """Cov[z|x] (in z)."""
        w = self.probs().reshape(-1, 1)
        z = self.points_z()
        m = (w * z).sum(0) / w.sum()
        c = z - m
        return (w * c).T @ c / w.sum()

    def q_mass(self) -> float:
        """∫ q over the grid; ≈ 1 when the grid covers the guide's mass."""
        if self.log_q is None:
            raise PyrovaeError("no guide density on this grid")
        return float(torch.logsumexp(self.log_q.reshape(-1), 0).exp() * self.cell_volume)

    def kl_q_p(self) -> float:
        """KL(q ‖ p(z|x)) by quadrature: Σ_g Δ q_g (log q_g − log p_g)."""
        if self.log_q is None:
            raise PyrovaeError("no guide density on this grid")
        lq, lp = self.log_q.reshape(-1), self.log_density.reshape(-1)
        w = (lq + math.log(self.cell_volume)).exp()
        keep = w > 0
        return float((w[keep] * (lq[keep] - lp[keep])).sum())

    def kl_p_q(self) -> float:
        """KL(p(z|x) ‖ q) (the inclusive direction), for comparison."""
        if self.log_q is None:
            raise PyrovaeError("no guide density on this grid")
        lq, lp = self.log_q.reshape(-1), self.log_density.reshape(-1)
        w = (lp + math.log(self.cell_volume)).exp()
        keep = w > 0
        return float((w[keep] * (lp[keep] - lq[keep])).sum())

    def summary(self) -> dict:
        """A JSON-able summary: log p(x), its error bounds, edge mass and grid resolution."""
        return {
            "log_marginal": self.log_marginal,
            "error_bound": self.error_bound,
            "refine_error": self.refine_error,
            "edge_mass": self.edge_mass,
            "grid_shape": list(self.shape),
            "spacing": self.spacing,
            "narrowest_std": self.narrowest_std,
            "spacing_over_narrowest_std": max(self.spacing) / self.narrowest_std
            if self.narrowest_std > 0 else math.nan,
            "truncated": self.truncated,
            "tol": self.tol,
            "tol_met": self.tol_met,
            "unresolved_points": self.unresolved_points,
        }


def _mesh(axes: Sequence[torch.Tensor]) -> torch.Tensor:
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], -1)


def evaluate_on_grid(
    fn: Callable[[torch.Tensor], torch.Tensor],
    axes: Sequence[torch.Tensor],
    transform: T.Transform = T.identity_transform,
    chunk: int = 32768,
) -> torch.Tensor:
    """fn(z) + log|dz/du| at every grid point u, shaped like the grid.

    ``fn`` maps z of shape (G, d) to log-densities of shape (G,).  Where z = T(u)
    is not resolved in floating point (T⁻¹(T(u)) ≠ u, e.g. the sigmoid beyond
    |u| ≈ 36 in float64, where z rounds to 1 and log(1 − z) is −inf or wrong) the
    density is unknown: it is set to −inf there, and :func:`unresolved_mask` says
    where.
    """
    u = _mesh(axes)
    out = []
    with torch.no_grad():
        for start in range(0, u.shape[0], chunk):
            ub = u[start:start + chunk]
            zb = transform(ub)
            lj = fn(zb)
            if transform is not T.identity_transform:
                ladj = transform.log_abs_det_jacobian(ub, zb)
                if ladj.dim() == ub.dim():  # elementwise transform: sum the event dim
                    ladj = ladj.sum(-1)
                lj = lj + ladj
                lj = torch.where(_unresolved(transform, ub, zb), -math.inf, lj)
            out.append(torch.nan_to_num(lj, nan=-math.inf))
    return torch.cat(out).reshape(tuple(len(a) for a in axes))


def _unresolved(transform: T.Transform, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    back = transform.inv(z)
    return ~((back - u).abs() <= 1e-6 * (1 + u.abs())).all(-1)


def unresolved_mask(axes: Sequence[torch.Tensor], transform: T.Transform) -> torch.Tensor:
    """True at the grid points where z = T(u) does not round-trip (see
    :func:`evaluate_on_grid`), shaped like the grid."""
    u = _mesh(axes)
    with torch.no_grad():
        bad = _unresolved(transform, u, transform(u))
    return bad.reshape(tuple(len(a) for a in axes))


def _logsumexp(t: torch.Tensor) -> float:
    return float(torch.logsumexp(t.reshape(-1), 0))


def _refine_error(lj: torch.Tensor, log_vol: float) -> tuple[float, float]:
    """log Z on the full grid and the largest gap to the interleaved half grids."""
    full = _logsumexp(lj) + log_vol
    d = lj.dim()
    err = 0.0
    for off in range(2):
        sub = lj[(slice(off, None, 2),) * d]
        half = _logsumexp(sub) + log_vol + d * math.log(2.0)
        err = max(err, abs(half - full))
    return full, err


def _mass_box(
    logs: Sequence[torch.Tensor], axes: Sequence[torch.Tensor], pad: int = 3
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Bounding box of the cells within MASS_WINDOW of the max of any of ``logs``."""
    keep = torch.zeros_like(logs[0], dtype=torch.bool)
    for lg in logs:
        keep |= lg > lg.max() - MASS_WINDOW
    lo, hi, touches = [], [], False
    for dim, ax in enumerate(axes):
        other = tuple(i for i in range(keep.dim()) if i != dim)
        line = keep.any(dim=other) if other else keep
        idx = torch.nonzero(line).reshape(-1)
        i0, i1 = int(idx.min()), int(idx.max())
        touches |= i0 == 0 or i1 == len(ax) - 1
        lo.append(ax[max(i0 - pad, 0)])
        hi.append(ax[min(i1 + pad, len(ax) - 1)])
    return torch.stack(lo), torch.stack(hi), touches


def _edge_mass(lj: torch.Tensor, log_z: float, log_vol: float) -> float:
    """Posterior mass in the outermost ring of cells."""
    mask = torch.zeros_like(lj, dtype=torch.bool)
    for dim in range(lj.dim()):
        idx = [slice(None)] * lj.dim()
        idx[dim] = 0
        mask[tuple(idx)] = True
        idx[dim] = -1
        mask[tuple(idx)] = True
    return float((lj[mask] - log_z + log_vol).exp().sum())


def _narrowest_std(lj: torch.Tensor, spacing: Sequence[float]) -> float:
    """Smallest Laplace standard deviation at the grid mode (finite differences)."""
    d = lj.dim()
    idx = list(torch.unravel_index(torch.argmax(lj), lj.shape))
    idx = [min(max(int(i), 1), n - 2) for i, n in zip(idx, lj.shape, strict=True)]
    H = torch.zeros(d, d, dtype=torch.float64)

    def f(*offsets):
        return float(lj[tuple(i + o for i, o in zip(idx, offsets, strict=True))])

    for a in range(d):
        e = [0] * d
        e[a] = 1
        H[a, a] = (f(*e) - 2 * f(*([0] * d)) + f(*[-v for v in e])) / spacing[a] ** 2
        for b in range(a + 1, d):
            def off(sa, sb, a=a, b=b):
                o = [0] * d
                o[a], o[b] = sa, sb
                return f(*o)
            h = (off(1, 1) - off(1, -1) - off(-1, 1) + off(-1, -1)) / (4 * spacing[a] * spacing[b])
            H[a, b] = H[b, a] = h
    if not torch.isfinite(H).all():
        return math.nan
    evals = torch.linalg.eigvalsh(-H)
    top = float(evals.max())
    return 1.0 / math.sqrt(top) if top > 0 else math.nan


def grid_posterior(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    latent_dim: int,
    *,
    box: tuple[torch.Tensor, torch.Tensor] | None = None,
    transform: T.Transform = T.identity_transform,
    log_q: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tol: float = 1e-3,
    points: int | None = None,
    max_points: int | None = None,
    zoom: bool = True,
    dtype: torch.dtype = torch.float64,
    on_unmet: str = "warn",
) -> GridPosterior:
    """Quadrature of one data point's posterior (see the module docstring).

    Args:
        log_joint: z (G, d) -> log p(x, z) (G,) for the data point.
        latent_dim: 1 or 2.
        box: (lo, hi) in u; default ±7 per dimension.
        transform: u -> z onto the support of z.
        log_q: z (G, d) -> log q(z|x) (G,): also tabulated, and its mass region kept
            inside the grid, so ``kl_q_p()`` is available.
        tol: target error of log p(x) in nats (the reported bound is checked
            against ``tol``; the resolution doubles until refine error ≤ tol / 10).
        points: points per dimension to start with (default 801 in 1-D, 161 in 2-D).
        max_points: cap per dimension (default 100001 in 1-D, 1281 in 2-D).
        zoom: zoom onto the mass region before refining.
        on_unmet: when the error bound exceeds ``tol`` (the resolution cap was
            reached, mass sits on the edge, or z = T(u) is unresolved in floating
            point inside the box): ``"warn"`` (a UserWarning), ``"raise"``
            (:class:`~pyrovae.errors.PyrovaeError`) or ``"ignore"``; the result's
            ``tol_met`` says it either way.

    The bound is a heuristic: a narrow mode that falls between grid points is
    invisible to it.  An independent estimate (AIS, :mod:`pyrovae.posterior.ais`)
    is the cross-check that sees such mass; ``pyrovae check`` reports both.
    """
    if on_unmet not in ("warn", "raise", "ignore"):
        raise PyrovaeError(f"grid on_unmet: expected 'warn', 'raise' or 'ignore', got {on_unmet!r}")
    if latent_dim not in (1, 2):
        raise PyrovaeError(f"grid quadrature needs latent_dim 1 or 2, got {latent_dim}")
    n = points or (801 if latent_dim == 1 else 161)
    cap = max_points or (100001 if latent_dim == 1 else 1281)
    if box is None:
        lo = torch.full((latent_dim,), -7.0, dtype=dtype)
        hi = torch.full((latent_dim,), 7.0, dtype=dtype)
    else:
        lo, hi = (torch.as_tensor(b, dtype=dtype).reshape(latent_dim) for b in box)
    truncated = False
    zooms = widened = 0
    while True:
        axes = [
            torch.linspace(float(a), float(b), n, dtype=dtype)
            for a, b in zip(lo, hi, strict=True)
        ]
        lj = evaluate_on_grid(lambda z: log_joint(z).to(dtype), axes, transform)
        lq = (
            evaluate_on_grid(lambda z: log_q(z).to(dtype), axes, transform)
            if log_q is not None else None
        )
        if not torch.isfinite(lj).any():
            raise PyrovaeError("log p(x, z) is -inf everywhere on the grid; widen the box")
        logs = [lj] + ([lq] if lq is not None and torch.isfinite(lq).any() else [])
        blo, bhi, _ = _mass_box(logs, axes)
        if zooms == 0:  # mass on the edge of the box: widen it (a few times at most)
            sp0 = [float(a[1] - a[0]) for a in axes]
            lv0 = sum(math.log(s) for s in sp0)
            truncated = _edge_mass(lj, _logsumexp(lj) + lv0, lv0) > 1e-12
            if truncated and widened < 4:
                width = hi - lo
                lo, hi = lo - width / 2, hi + width / 2
                widened += 1
                continue
        shrink = (bhi - blo) / (hi - lo)
        if zoom and zooms < 4 and bool((shrink < 0.5).any()):
            lo, hi = blo, bhi
            zooms += 1
            continue
        spacing = [float(a[1] - a[0]) for a in axes]
        log_vol = sum(math.log(s) for s in spacing)
        log_z, err = _refine_error(lj, log_vol)
        if err <= tol / 10 or 2 * n - 1 > cap:
            break
        n = 2 * n - 1
    edge = _edge_mass(lj, log_z, log_vol)
    unresolved = (int(unresolved_mask(axes, transform).sum())
                  if transform is not T.identity_transform else 0)
    bound = err + edge if unresolved == 0 else max(err + edge, _unresolved_edge(lj))
    out = GridPosterior(
        axes=axes, log_joint=lj, log_marginal=log_z, error_bound=bound,
        refine_error=err, edge_mass=edge, transform=transform, log_q=lq,
        narrowest_std=_narrowest_std(lj, spacing), truncated=truncated, tol=tol,
        unresolved_points=unresolved,
    )
    if not out.tol_met and on_unmet != "ignore":
        msg = (f"grid quadrature: error bound {out.error_bound:.2g} nats exceeds tol {tol:g} "
               f"(grid {list(out.shape)}, edge mass {edge:.1g}, {unresolved} unresolved "
               "points); widen the box, raise max_points, or cross-check with AIS")
        if on_unmet == "raise":
            raise PyrovaeError(msg)
        warnings.warn(msg, stacklevel=2)
    return out


def _unresolved_edge(lj: torch.Tensor) -> float:
    """With unresolved points in the box, the relative density at the last finite
    cells next to them bounds nothing: report it as the error (it is ~0 when the
    posterior has no mass there, and large when it is cut off)."""
    finite = torch.isfinite(lj)
    if finite.all():
        return 0.0
    m = lj[finite].max()
    border = torch.zeros_like(finite)
    for dim in range(lj.dim()):
        for shift in (1, -1):
            border |= finite & ~torch.roll(finite, shift, dim)
    if not border.any():
        return 0.0
    return float((lj[border] - m).exp().max())
