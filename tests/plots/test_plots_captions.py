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


def test_khat_figure_says_what_khat_does_not_grade():
    import torch

    from pyrovae.plots.posterior import KHAT_CAVEAT, khat_figure

    fig = khat_figure(torch.tensor([0.1, 0.9, 1.2, 0.3]))
    assert fig.legends[0].get_title().get_text() == KHAT_CAVEAT
    assert "IWAE" in KHAT_CAVEAT and "AIS" in KHAT_CAVEAT


def _sbc(num_sims: int, failed: list[bool], p: list[float]) -> dict:
    grid = np.linspace(0, 1, 20)
    return {"num_sims": num_sims, "grid": grid, "ecdf_diff": np.zeros((len(failed), 20)),
            "band_lower": -0.1 + 0 * grid, "band_upper": 0.1 + 0 * grid, "failed": failed,
            "p_value": p, "alpha_familywise": 0.05, "labels": None}


@pytest.mark.parametrize("num_sims, smoke", [(50, True), (500, False)])
def test_sbc_figure_flags_by_the_band_not_the_p_value_and_names_a_smoke_test(num_sims, smoke):
    """p = 0.01 inside the band is drawn passed and p = 0.07 outside it failed: each panel
    says which side of the band it is on, the title says the flag is the band."""
    from pyrovae.plots.diagnostics import sbc_figure

    fig = sbc_figure(_sbc(num_sims, [False, True], [0.01, 0.07]))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("z[0]: inside band (p=0.01)")
    assert titles[1].startswith("z[1]: outside band (p=0.07)")
    sup = fig._suptitle.get_text()
    assert "the flag is the band" in sup and "simultaneous band" in sup
    assert ("smoke test" in sup) is smoke


def test_gaps_bars_carry_their_total_and_say_why_it_can_differ():
    from pyrovae.plots.posterior import gaps_figure

    fig = gaps_figure({"diagonal": {"approximation_gap": np.array([0.1, 0.096]),
                                    "amortization_gap": np.array([0.3, 0.324])}})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["0.410"]
    assert "own Monte Carlo log p(x)" in ax.get_title()


def test_every_figure_a_run_or_check_writes_has_a_caption():
    """Each file name the training run and the checks write (and a toy's prefixed ones)
    resolves to a caption; an unknown name has none."""
    from pyrovae.plots.captions import CAPTIONS, caption, captions_for

    for name in ("learning_curve.png", "reconstructions.png", "samples.png", "latent_map.png",
                 "latent_manifold.png", "reliability.png", "confusion.png", "style.png",
                 "posterior.png", "khat.png", "gaps.png", "bdmc.png", "sbc.png", "collapse.png",
                 "banana_posterior.png", "ppca_theta_fixed.png", "banana_khat.png",
                 "gaussian_mle.png", "reliability_exact", "mixture_reliability_flat_class.png"):
        assert caption(name), name
    assert caption("ppca_theta_fixed.png") == CAPTIONS["theta_fixed"]
    assert caption("nothing_like_it.png") is None
    assert captions_for({"khat": "x/khat.png", "sbc": None}) == {"khat": CAPTIONS["khat"]}


def test_a_training_run_writes_the_caption_of_each_figure_beside_it(tmp_path):
    """``figures/captions.json``: one caption per PNG the run wrote, the registry's own."""
    import json

    from pyrovae.plots.captions import caption
    from pyrovae.runs import folder as runs
    from pyrovae.runs import pipeline

    spec = {"data": {"name": "digits"}, "latent_dim": 3, "encoder": {"hidden": [16]},
            "train": {"epochs": 1, "batch_size": 256}, "eval": {"num_samples": 2}}
    pipeline.train_run(spec, tmp_path / "run", progress=False)
    figures = tmp_path / "run" / runs.FIGURES_DIR
    caps = json.loads((figures / runs.FIGURE_CAPTIONS_FILE).read_text(encoding="utf-8"))
    pngs = {p.stem for p in figures.glob("*.png")}
    assert {"learning_curve", "latent_map", "samples"} <= pngs
    assert caps == {stem: caption(stem) for stem in pngs}
