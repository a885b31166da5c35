"""Figures of the latent space and the figure polish of issue 13: the decoded manifold
written by a training run, a mixture prior's components, square sample grids, legends
and labels on posterior panels, integer k̂ ticks, no 0 drawn on a log axis."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from pyrovae.model.vae import VAE
from pyrovae.plots import latent
from pyrovae.plots import posterior as P
from pyrovae.plots.training import samples
from pyrovae.runs import pipeline


def test_train_writes_latent_manifold_of_the_right_size(tmp_path):
    spec = {"data": {"name": "digits"}, "latent_dim": 2, "encoder": {"hidden": [16]},
            "prior": {"family": "mixture", "components": 3},
            "train": {"epochs": 1, "batch_size": 256}, "eval": {"num_samples": 2}}
    pipeline.train_run(spec, tmp_path / "run", progress=False)
    figures = tmp_path / "run" / "figures"
    png = mpimg.imread(figures / "latent_manifold.png")
    assert png.shape[:2] == (round(6.2 * 110), round(6.0 * 110))  # new_figure(6.0, 6.2), dpi 110
    assert png[..., :3].std() > 0.05  # not blank: decoded digits on white
    assert (figures / "latent_map.png").is_file()


def test_manifold_grid_spans_prior_quantiles_top_row_first():
    s = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    z, a1, a2 = latent.manifold_grid(s, n=5, lo=0.1, hi=0.9)
    assert z.shape == (25, 2)
    assert a1[0] == pytest.approx(-1.2816, abs=0.05) and a1[-1] == pytest.approx(1.2816, abs=0.05)
    assert a1[2] == pytest.approx(0.0, abs=0.05)
    # row-major image order: first row has the largest z₂, z₁ increases along a row
    assert torch.all(z[:5, 1] == z[0, 1]) and z[0, 1] == pytest.approx(a2[-1])
    assert torch.all(z[1:5, 0] > z[:4, 0])
    with pytest.raises(ValueError, match="2-d latent"):
        latent.manifold_grid(torch.randn(10, 3))


def test_prior_components_of_mixture_and_vamp_and_none_for_normal():
    torch.manual_seed(0)
    mix = VAE(6, 2, encoder=[4], prior={"family": "mixture", "components": 4})
    c = latent.prior_components(mix.prior_dist())
    assert c["weights"].shape == (4,) and c["weights"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(c["means"], mix.prior.locs.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.diagonal(c["covariances"], axis1=1, axis2=2),
                               (2 * mix.prior.log_scales).exp().detach().numpy(), rtol=1e-5)
    vamp = VAE(6, 2, encoder=[4], prior={"family": "vamp", "components": 5})
    c = latent.prior_components(vamp.prior_dist())
    expected = vamp.encode(vamp.prior.pseudo_inputs).mean.detach().numpy()
    np.testing.assert_allclose(c["means"], expected, rtol=1e-5)
    assert latent.prior_components(VAE(6, 2, encoder=[4]).prior_dist()) is None


def test_latent_map_draws_one_ellipse_per_component():
    from matplotlib.patches import Ellipse

    from pyrovae.plots.training import latent_map

    comps = {"weights": np.array([0.5, 0.5]), "means": np.zeros((2, 2)),
             "covariances": np.stack([np.eye(2), 4 * np.eye(2)])}
    fig = latent_map(torch.randn(30, 2), list(range(10)) * 3, comps)
    ells = [p for p in fig.axes[0].patches if isinstance(p, Ellipse)]
    assert sorted(e.width for e in ells) == pytest.approx([2.0, 4.0])  # 1σ: 2·σ wide


@pytest.mark.parametrize(("n", "side"), [(64, 8), (100, 10), (10, 4)])
def test_samples_are_laid_out_square(n, side):
    fig = samples(torch.rand(n, 64), (8, 8))
    h, w = fig.axes[0].images[0].get_array().shape
    assert w == side * 9 - 1 and h == int(np.ceil(n / side)) * 9 - 1


def _grid(shift: float) -> SimpleNamespace:
    u = torch.linspace(-4, 4, 41, dtype=torch.float64)
    uu, vv = torch.meshgrid(u, u, indexing="ij")
    logp = -0.5 * (uu**2 + vv**2 - 1.6 * uu * vv) / 0.36
    logq = -0.5 * ((uu - shift) ** 2 + vv**2) / 0.5
    return SimpleNamespace(axes=(u, u), log_density=logp, log_q=logq)


def test_posterior_panels_have_legend_and_axis_labels():
    fig = P.posterior_grid_figure([_grid(0.0), _grid(0.5)], titles=["a", "b"])
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("exact posterior" in t for t in texts) and any("guide" in t for t in texts)
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert [ax.get_xlabel() for ax in panels] == ["z₁", "z₁"]
    assert all(ax.get_ylabel().endswith("z₂") for ax in panels)


def test_khat_ticks_are_integers():
    fig = P.khat_figure(torch.tensor([0.1, 0.6, 0.8, 0.3]))
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_theta_fixed_floor_zero_is_stated_not_drawn_on_the_log_axis():
    s = np.arange(0, 101, 10)
    kl = 0.01 + np.exp(-s / 10)
    res = SimpleNamespace(steps=s, elbo=-1 - kl, log_px=np.full(len(s), -1.0), kl=kl,
                          floor=0.0, final_kl_above_floor=0.01)
    fig = P.theta_fixed_figure(res)
    ax2 = fig.axes[1]
    labels = [t.get_text() for t in ax2.get_legend().get_texts()]
    assert any("floor of the family = 0 " in t for t in labels)
    assert not any("0.0000" in t for t in labels)
    drawn = [ln for ln in ax2.get_lines() if len(ln.get_xdata())]
    assert len(drawn) == 1  # only the KL curve; no dashed line at a fake 1e-6 floor
    res.floor = 0.25
    labels = [t.get_text() for t in P.theta_fixed_figure(res).axes[1].get_legend().get_texts()]
    assert any("= 0.25" in t for t in labels)
