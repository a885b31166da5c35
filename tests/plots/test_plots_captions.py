"""Figures that explain themselves (issue 23): what each axis, legend and note says is read
off the matplotlib Figure: the latent map names principal components when it draws them,
the collapse figure's dimension ticks are whole numbers and its legend covers no bar, the
learning curve says its train curve is a running mean."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pyrovae.plots.diagnostics import collapse_figure
from pyrovae.plots.training import latent_map, learning_curve
from pyrovae.training.history import History


@pytest.mark.parametrize("dim, xlabel, says_pcs", [(2, "z₁", False), (6, "PC₁ of E_q[z|x]", True)])
def test_latent_map_axes_agree_with_its_title(dim, xlabel, says_pcs):
    z = np.random.default_rng(0).normal(size=(50, dim))
    ax = latent_map(z, labels=np.arange(50) % 3).axes[0]
    assert ax.get_xlabel() == xlabel
    assert ("principal components" in ax.get_title()) == says_pcs
    if says_pcs:
        assert f"{dim} dimensions" in ax.get_title() and ax.get_ylabel().startswith("PC₂")


def _collapse(d: int) -> dict:
    act = np.geomspace(1.0, 1e-5, d)
    return {"activity": act, "threshold": 0.01, "active_units": int((act > 0.01).sum()),
            "latent_dim": d, "kl_per_dim": act * 2, "rate": 1.0, "distortion": 2.0,
            "mutual_information": 0.5, "mi_max": 3.0}


@pytest.mark.parametrize("d", [3, 16, 50])
def test_collapse_figure_ticks_are_whole_dimensions_and_the_legend_covers_no_bar(d):
    fig = collapse_figure(_collapse(d))
    FigureCanvasAgg(fig).draw()
    ax1, ax2 = fig.axes[:2]
    for ax in (ax1, ax2):
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels and all(s.isdigit() for s in labels)
        assert all(0 <= int(s) < d for s in labels)
    renderer = fig.canvas.get_renderer()
    legend = ax1.get_legend().get_window_extent(renderer)
    for bar in ax1.patches:
        assert not legend.overlaps(bar.get_window_extent(renderer))


def test_learning_curve_says_train_is_a_running_mean():
    h = History([{"epoch": e, "train_elbo": -100.0 + e, "test_elbo": -99.0 + e,
                  "kl_weight": 1.0} for e in range(1, 4)])
    fig = learning_curve(h)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "train ELBO (running mean over the epoch)" in labels
    assert "held-out ELBO (end of epoch)" in labels
    assert any("can lie below held-out" in t.get_text() for t in fig.axes[0].texts)
