"""Figures for the posterior checks (matplotlib object API, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure`; save it with
``fig.savefig(path)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

GOOD, OK = 0.5, 0.7


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def theta_fixed_figure(result, title: str = "θ fixed, φ optimised") -> Figure:
    """Left: log p(x) (flat) and the ELBO rising to it, the gap shaded.  Right: the
    exact KL(q ‖ p(z|x)) falling to the guide family's floor (log scale).

    Legends sit below the axes so they never hide a curve; a floor of 0 (which a log
    axis cannot show) is stated in the legend instead of drawn."""
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    s = np.asarray(result.steps)
    elbo, lp, kl = map(np.asarray, (result.elbo, result.log_px, result.kl))
    ax1.plot(s, lp, color="k", lw=2, label="log p(x) (exact)")
    ax1.plot(s, elbo, color="C0", lw=1.5, label="ELBO (Monte Carlo)")
    ax1.fill_between(s, elbo, lp, color="C1", alpha=0.25, label="gap = KL(q‖p(z|x))")
    lo = min(elbo[len(elbo) // 10:].min(), lp.min())
    span = lp.max() - lo + 1e-3
    ax1.set_ylim(lo - 0.1 * span, lp.max() + 0.1 * span)
    ax1.set_xlabel("step")
    ax1.set_ylabel("nats per point")
    ax1.set_title(title, fontsize=10)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ax2.semilogy(s, np.maximum(kl, 1e-6), color="C1", lw=1.5, label="KL(q‖p(z|x)) (exact)")
    if result.floor is not None and result.floor > 1e-6:
        ax2.axhline(result.floor, color="k", ls="--",
                    label=f"floor of the family = {result.floor:.4g}")
    elif result.floor is not None:  # a log axis has no 0: say it instead of drawing it
        ax2.plot([], [], " ", label="floor of the family = 0 (not drawn on a log axis)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("nats per point (log scale)")
    ax2.set_title(f"final KL − floor = {result.final_kl_above_floor:.2e}", fontsize=10)
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    return fig


def gaussian_mle_figure(x, closed, fitted) -> Figure:
    """Histogram of x with the closed-form and the Pyro-optimised Gaussian fits."""
    x = _np(x).reshape(-1)
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.hist(x, bins=40, density=True, color="0.8", label="data")
    t = np.linspace(x.min() - 1, x.max() + 1, 400)
    for fit, style, name in ((closed, "-", "closed form"), (fitted, "--", "Pyro + Adam")):
        pdf = np.exp(-0.5 * ((t - fit.mu) / fit.sigma) ** 2) / (math.sqrt(2 * math.pi) * fit.sigma)
        ax.plot(t, pdf, style, lw=2,
                label=f"{name}: μ={fit.mu:.4f}, σ={fit.sigma:.4f}, ℓ={fit.log_likelihood:.5f}")
    ax.set_title("Maximum likelihood for one Gaussian")
    ax.legend(fontsize=7)
    return fig


def _levels(d: np.ndarray) -> np.ndarray:
    """Contour levels at fixed fractions of the peak (never the empty zero level)."""
    return d.max() * np.array([0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 1.0])


def _limits(g, window: float = 7.0, pad: float = 0.15):
    """Axis limits around the cells where p(z|x) or q is within ``window`` nats of its peak."""
    keep = _np(g.log_density) > _np(g.log_density).max() - window
    if g.log_q is not None and np.isfinite(_np(g.log_q)).any():
        keep |= _np(g.log_q) > np.nanmax(_np(g.log_q)) - window
    lims = []
    for dim, ax in enumerate(g.axes):
        line = keep.any(axis=1 - dim) if keep.ndim == 2 else keep
        idx = np.nonzero(line)[0]
        a, b = float(ax[idx.min()]), float(ax[idx.max()])
        lims.append((a, b))
    if len(lims) == 1:
        (a, b), = lims
        return [(a - pad * (b - a), b + pad * (b - a))]
    half = max(b - a for a, b in lims) * (0.5 + pad)
    return [((a + b) / 2 - half, (a + b) / 2 + half) for a, b in lims]


def _fine(axes: Sequence[np.ndarray], log_d: np.ndarray, lims, n: int = 200):
    """``log_d`` on an ``n`` × ``n`` grid over ``lims`` by cubic interpolation of the
    log density (smooth where the density is: no blocky contours from a coarse grid)."""
    from scipy.interpolate import RectBivariateSpline

    u0, u1 = axes
    floor = np.nanmax(log_d) - 60.0
    ld = np.where(np.isfinite(log_d), np.maximum(log_d, floor), floor)
    k0, k1 = min(3, len(u0) - 1), min(3, len(u1) - 1)
    f0 = np.linspace(max(lims[0][0], u0[0]), min(lims[0][1], u0[-1]), n)
    f1 = np.linspace(max(lims[1][0], u1[0]), min(lims[1][1], u1[-1]), n)
    fine = RectBivariateSpline(u0, u1, ld, kx=k0, ky=k1)(f0, f1)
    return f0, f1, np.minimum(fine, np.nanmax(log_d))


def _contour_pair(ax, g, show_guide: bool = True):
    """Filled contours of p(z|x) (grey) and line contours of q (red) on one 2-D grid,
    interpolated onto a fine grid over the panel's limits."""
    axes = [_np(a) for a in g.axes]
    lims = _limits(g)
    f0, f1, ld = _fine(axes, _np(g.log_density), lims)
    p = np.exp(ld - ld.max())
    levels = _levels(p)
    ax.contourf(f0, f1, p.T, levels=levels, colors=[str(c) for c in np.linspace(0.88, 0.3, 6)])
    ax.contour(f0, f1, p.T, levels=levels[:-1], colors="0.35", linewidths=0.5)
    if show_guide and g.log_q is not None:
        lq = _np(g.log_q)
        if np.isfinite(lq).any():
            f0, f1, lq = _fine(axes, lq, lims)
            q = np.exp(lq - lq.max())
            ax.contour(f0, f1, q.T, levels=_levels(q)[:-1], colors="C3", linewidths=0.9)
    (x0, x1), (y0, y1) = lims
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")


def _posterior_legend(fig: Figure, guide: bool = True) -> None:
    """One legend for every panel: grey = exact posterior, red = guide."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="0.45", label="exact posterior p(z|x) (quadrature)")]
    if guide:
        handles.append(Line2D([], [], color="C3", lw=1.2, label="guide q(z|x)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)


def posterior_grid_figure(
    grids: Sequence,
    *,
    images: Sequence[np.ndarray] | None = None,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    rows: Sequence[Sequence] | None = None,
) -> Figure:
    """Exact posterior (grey, filled) against the guide (red lines) per data point,
    each panel zoomed onto where either has mass.

    ``grids`` is one row of :class:`~pyrovae.quadrature.GridPosterior`; pass
    ``rows`` (a list of such rows, e.g. one per guide family) to stack several, with
    ``row_labels``.  ``images`` (optional) are drawn above each column.
    """
    rows = list(rows) if rows is not None else [list(grids)]
    ncol = len(rows[0])
    extra = 1 if images is not None else 0
    fig = Figure(figsize=(2.3 * ncol, 2.3 * (len(rows) + 0.6 * extra)), layout="constrained")
    axes = fig.subplots(
        len(rows) + extra, ncol, squeeze=False,
        gridspec_kw={"height_ratios": ([0.6] if extra else []) + [1] * len(rows)},
    )
    if images is not None:
        for j, img in enumerate(images):
            axes[0, j].imshow(img, cmap="gray_r")
            axes[0, j].set_axis_off()
    for r, row in enumerate(rows):
        for j, g in enumerate(row):
            ax = axes[r + extra, j]
            _contour_pair(ax, g)
            if titles is not None:
                ax.set_title(titles[r * ncol + j] if len(titles) > ncol else titles[j], fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("z₁", fontsize=8, labelpad=1)
            ax.set_ylabel("z₂", fontsize=8, labelpad=1)
        if row_labels is not None:
            axes[r + extra, 0].set_ylabel(f"{row_labels[r]}\nz₂", fontsize=9)
    _posterior_legend(fig, guide=any(g.log_q is not None for row in rows for g in row))
    return fig


def posterior_1d_figure(grids: Sequence, *, titles: Sequence[str] | None = None) -> Figure:
    """1-D posteriors: exact p(z|x) (black) against the guide q (red).

    Densities are drawn over the unconstrained value u = T⁻¹(z) the grid lives on
    (z itself when z is real; e.g. logit z for z in (0, 1)), where a Gaussian guide
    is Gaussian and densities stay finite at the edges of the support."""
    from torch.distributions import transforms as T

    fig = Figure(figsize=(2.6 * len(grids), 2.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(grids)))
    for j, g in enumerate(grids):
        u = _np(g.points_u()).reshape(-1)
        axes[j].plot(u, np.exp(_np(g.log_density.reshape(-1))), "k", lw=2,
                     label="exact p(z|x)")
        if g.log_q is not None:
            axes[j].plot(u, np.exp(_np(g.log_q.reshape(-1))), "C3", lw=1.5, label="guide q(z|x)")
        (a, b), = _limits(g)
        axes[j].set_xlim(a, b)
        if titles is not None:
            axes[j].set_title(titles[j], fontsize=8)
        t = g.transform
        while isinstance(t, T.IndependentTransform):
            t = t.base_transform
        identity = t is T.identity_transform
        axes[j].set_xlabel("z" if identity else "u = T⁻¹(z) (unconstrained)", fontsize=8)
    axes[0].set_ylabel("density", fontsize=8)
    axes[0].legend(fontsize=7)
    return fig


#: What the k̂ figure says under its legend (kept short: it sits beside the axes).
KHAT_CAVEAT = (r"$\hat{k}$ grades importance sampling"
               "\nfrom the guide (IWAE), not a\ngrid, closed-form or AIS\n"
               "log p(x): a red point next to\na tiny gap is no contradiction")


def khat_figure(
    khat, labels: Sequence[str] | None = None, title: str = r"PSIS $\hat{k}$"
) -> Figure:
    """k̂ per data point with the 0.5 and 0.7 thresholds, and the caveat under the axes:
    k̂ judges importance sampling from the guide (IWAE), not the log p(x) a grid, a closed
    form or AIS gives, so a red point next to a tiny gap is not a contradiction."""
    k = _np(khat).reshape(-1)
    fig = Figure(figsize=(5, 2.8), layout="constrained")
    ax = fig.subplots()
    colors = ["C2" if v < GOOD else "C1" if v < OK else "C3" for v in k]
    ax.scatter(np.arange(len(k)), k, c=colors, s=18)
    ax.axhline(GOOD, color="C1", ls="--", lw=1, label="0.5 (good below)")
    ax.axhline(OK, color="C3", ls="--", lw=1, label="0.7 (unreliable above)")
    if labels is not None:
        ax.set_xticks(np.arange(len(k)), labels, fontsize=7)
    else:  # point indices are integers
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("data point")
    ax.set_ylabel(r"$\hat{k}$")
    ax.set_title(title, fontsize=10)
    legend = fig.legend(fontsize=7, loc="outside right upper", frameon=False,
                        title=KHAT_CAVEAT, title_fontsize=6.5)
    legend.get_title().set_color("0.35")
    legend.get_title().set_ha("left")
    return fig


def gaps_figure(results: dict) -> Figure:
    """Mean approximation and amortization gaps per guide family (stacked bars, each
    topped by its total).

    ``results`` maps a label to :func:`pyrovae.posterior.amortization.amortization_gap`'s
    output (or any dict with ``approximation_gap`` and ``amortization_gap``)."""
    labels = list(results)
    approx = [float(_np(results[k]["approximation_gap"]).mean()) for k in labels]
    amort = [float(_np(results[k]["amortization_gap"]).mean()) for k in labels]
    fig = Figure(figsize=(max(1.6 * len(labels) + 2.5, 5.0), 3.6), layout="constrained")
    ax = fig.subplots()
    xs = np.arange(len(labels))
    ax.bar(xs, approx, color="C0", label="approximation gap  log p(x) − ELBO[q*]")
    ax.bar(xs, amort, bottom=approx, color="C1", label="amortization gap  ELBO[q*] − ELBO[q_φ]")
    for x, a, b in zip(xs, approx, amort, strict=True):  # the total each bar adds up to
        ax.annotate(f"{a + b:.3f}", (x, a + b), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(xs, labels)
    ax.set_ylabel("nats per point")
    ax.set_title("inference gap = approximation + amortization (Cremer et al. 2018)\n"
                 "totals use this split's own Monte Carlo log p(x) and ELBO, so they can "
                 "differ\nin the last digits from a mean gap printed from other estimates",
                 fontsize=8)
    ax.set_xlim(-0.75, len(labels) - 0.25)
    ax.margins(y=0.15)  # room for the totals above the bars (gaps may be negative: no 0 floor)
    fig.legend(fontsize=7, loc="outside lower center", ncol=1, frameon=False)
    return fig
