"""Figures for the checks at any latent dimension: the BDMC sandwich, the SBC rank
ECDFs with their simultaneous bands, and the collapse diagnostics.

Every function takes the plain dicts the checks return (``as_dict()`` of
:class:`~pyrovae.posterior.bdmc.BDMCResult` / :class:`~pyrovae.posterior.sbc.SBCResult`,
or :func:`~pyrovae.posterior.collapse.collapse_diagnostics`) and returns a
:class:`matplotlib.figure.Figure`; save it with :func:`pyrovae.plots.common.save_figure`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def _a(v) -> np.ndarray:
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return v.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(v, dtype=float)


def sandwich_figure(bdmc: dict, title: str = "BDMC sandwich of log p(x)") -> Figure:
    """Per simulated point: forward-AIS lower and reverse-AIS upper bound (with ±2
    standard errors), sorted by the lower bound; the mean width in the title."""
    lo, hi = _a(bdmc["lower"]), _a(bdmc["upper"])
    slo, shi = _a(bdmc["lower_stderr"]), _a(bdmc["upper_stderr"])
    order = np.argsort(lo)
    i = np.arange(len(lo))
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.errorbar(i - 0.1, lo[order], yerr=2 * slo[order], fmt="o", ms=3, label="forward AIS (lower)")
    ax.errorbar(i + 0.1, hi[order], yerr=2 * shi[order], fmt="s", ms=3, label="reverse AIS (upper)")
    ax.set_xlabel("simulated data point (sorted)")
    ax.set_ylabel("log p(x) [nats]")
    ax.set_title(f"{title}: mean width {float(np.mean(hi - lo)):.3f} nats")
    ax.legend(fontsize=8)
    return fig


#: Fewer simulations than this make an SBC a smoke test (``--quick``): the band is wide and
#: a flag says little either way; the figure says so.
SBC_SMOKE_SIMS = 100


def sbc_figure(sbc: dict, max_dims: int = 16, title: str = "SBC of q(z|x)") -> Figure:
    """ECDF(rank) − uniform per latent dimension with the simultaneous band (grey);
    a dimension leaving the band is drawn red.  The flag is the band (family-wise over all
    dimensions); each panel's p is that dimension's own uniformity test, shown for
    reference, so a small p inside the band is not a failure.  With fewer than
    :data:`SBC_SMOKE_SIMS` simulations the title says the run is a smoke test."""
    grid = _a(sbc["grid"])
    diff = _a(sbc["ecdf_diff"])
    lo, hi = _a(sbc["band_lower"]), _a(sbc["band_upper"])
    failed = list(sbc["failed"])
    d = min(len(diff), max_dims)
    cols = min(d, 4)
    rows = math.ceil(d / cols)
    fig = Figure(figsize=(2.4 * cols, 1.9 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for j, ax in enumerate(axes):
        if j >= d:
            ax.set_visible(False)
            continue
        ax.fill_between(grid, lo, hi, color="0.85", step="mid")
        ax.plot(grid, diff[j], color="C3" if failed[j] else "C0", lw=1.2)
        ax.axhline(0, color="k", lw=0.5)
        label = (sbc.get("labels") or [f"z[{i}]" for i in range(len(diff))])[j]
        where = "outside" if failed[j] else "inside"
        ax.set_title(f"{label}: {where} band (p={float(sbc['p_value'][j]):.2f})", fontsize=8)
    n = int(sbc.get("num_sims", SBC_SMOKE_SIMS))  # unknown: not called a smoke test
    lines = [f"{title}: {sum(failed)} of {len(failed)} dimensions outside the "
             f"{1 - sbc['alpha_familywise']:.0%} simultaneous band (red)"]
    if n < SBC_SMOKE_SIMS:
        lines.append(f"{n} simulations: a smoke test, too few to judge the guide")
    lines.append("the flag is the band over all dimensions; p is each dimension's own test")
    fig.suptitle("\n".join(lines), fontsize=8)
    fig.supxlabel("fractional rank", fontsize=8)
    fig.supylabel("ECDF − uniform", fontsize=8)
    return fig


def _integer_ticks(ax: Any, n: int) -> None:
    """Ticks at whole bar positions only (a dimension is never 0.5), at most about ten."""
    step = max(1, int(np.ceil(n / 10)))
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks, [str(t) for t in ticks])


def collapse_figure(c: dict, title: str = "Posterior collapse") -> Figure:
    """Left: activity Cov_x(E_q[z_d]) per dimension (log scale) and the 0.01 threshold.
    Right: KL(q(z_d|x) ‖ p(z_d)) per dimension, with rate, distortion and I_q(x; z)."""
    act = _a(c["activity"])
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    order = np.argsort(-act)
    ax1.bar(np.arange(len(act)), np.maximum(act[order], 1e-8), color="C0")
    ax1.axhline(c["threshold"], color="C3", ls="--", lw=1, label=f"threshold {c['threshold']}")
    ax1.set_yscale("log")
    ax1.set_xlabel("latent dimension (sorted)")
    ax1.set_ylabel("Cov_x(E_q[z_d])")
    ax1.set_title(f"{c['active_units']} of {c['latent_dim']} units active", fontsize=9)
    _integer_ticks(ax1, len(act))
    # the legend above the bars (outside the axes): it never covers one
    ax1.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.08), frameon=False)
    if c.get("kl_per_dim") is not None:
        kl = _a(c["kl_per_dim"])
        ax2.bar(np.arange(len(kl)), kl[order], color="C1")
        ax2.set_xlabel("latent dimension (same order)")
        _integer_ticks(ax2, len(kl))
        ax2.set_ylabel("KL per dimension [nats]")
    elif c.get("kl_per_site"):  # a model with several latent sites: the KL split per site
        names = list(c["kl_per_site"])
        ax2.bar(np.arange(len(names)), [c["kl_per_site"][k] for k in names], color="C1")
        ax2.set_xticks(np.arange(len(names)), names, fontsize=8)
        ax2.set_xlabel("latent site")
        ax2.set_ylabel("KL per site [nats]")
    ax2.set_title(f"rate {c['rate']:.2f}, distortion {c['distortion']:.2f}, "
                  f"I(x;z) {c['mutual_information']:.2f} (≤ {c['mi_max']:.2f})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
