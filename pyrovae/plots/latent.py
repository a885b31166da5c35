"""Figures of the latent space: the decoded manifold and the prior's components.

* :func:`manifold_grid` / :func:`latent_manifold`: a 2-d latent decoded on a grid,
  the picture of Kingma & Welling (2014), Fig. 4 — the grid's points are quantiles of
  the prior's marginals (for p(z) = N(0, I) exactly their inverse-CDF grid), so every
  tile is a typical code, whatever the prior.
* :func:`prior_components` / :func:`draw_components`: the Gaussians of a mixture
  prior (learned mixture of Gaussians, VampPrior) as ellipses on the latent map.

Decoding happens in the caller (these functions see tensors and distributions
only, no model).

References
----------
Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
Tomczak & Welling (2018), *VAE with a VampPrior*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import distributions as D

from pyrovae.errors import PyrovaeError
from pyrovae.plots.common import new_figure


def manifold_grid(
    prior_samples: torch.Tensor, n: int = 15, lo: float = 0.03, hi: float = 0.97
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """An ``n`` × ``n`` grid of 2-d codes at the quantiles ``lo..hi`` of each marginal.

    Returns ``(z, axis1, axis2)``: ``z`` of shape ``(n * n, 2)`` in row-major image
    order (top row = largest z₂, left column = smallest z₁) and the two axes.
    """
    s = prior_samples.detach().cpu().double()
    if s.ndim != 2 or s.shape[1] != 2:
        raise PyrovaeError("manifold_grid needs samples of a 2-d latent, got shape "
                           f"{tuple(s.shape)}")
    q = torch.linspace(lo, hi, n, dtype=s.dtype)
    a1 = torch.quantile(s[:, 0], q).numpy()
    a2 = torch.quantile(s[:, 1], q).numpy()
    z1, z2 = np.meshgrid(a1, a2[::-1])  # rows from the top: z₂ decreasing
    z = torch.as_tensor(np.stack([z1.ravel(), z2.ravel()], axis=1), dtype=torch.float32)
    return z, a1, a2


def latent_manifold(
    images: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int],
    axis1: np.ndarray,
    axis2: np.ndarray,
    title: str = "decoded latent manifold, E[x|z] on a grid of z",
) -> Figure:
    """The images decoded from :func:`manifold_grid`'s codes, tiled as one picture
    with the z₁ / z₂ values of the grid on the axes."""
    imgs = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    n1, n2 = len(axis1), len(axis2)
    h, w = image_shape
    gap = max(1, h // 8)  # a thin light line between tiles keeps small images apart
    top = max(1.0, float(np.max(imgs)))
    canvas = np.full((n2 * (h + gap) - gap, n1 * (w + gap) - gap), 0.12 * top)
    for k, img in enumerate(np.asarray(imgs).reshape(n1 * n2, h, w)):
        r, c = divmod(k, n1)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    fig = new_figure(6.0, 6.2)
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=top, interpolation="nearest")
    step = max(1, n1 // 5)
    ax.set_xticks([c * (w + gap) + (w - 1) / 2 for c in range(0, n1, step)],
                  [f"{axis1[c]:.2f}" for c in range(0, n1, step)], fontsize=7)
    ax.set_yticks([r * (h + gap) + (h - 1) / 2 for r in range(0, n2, step)],
                  [f"{axis2[::-1][r]:.2f}" for r in range(0, n2, step)], fontsize=7)
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.set_title(title, fontsize=9)
    return fig


def prior_components(prior: D.Distribution, draws: int = 512) -> dict[str, np.ndarray] | None:
    """Weights, means and covariances of a mixture prior's components, or ``None``
    when ``prior`` is not a mixture (``MixtureSameFamily``).

    Covariances come from the component family when it has them (diagonal or full
    Gaussians) and from ``draws`` samples otherwise (e.g. a flow guide in a VampPrior).
    """
    if not isinstance(prior, D.MixtureSameFamily):
        return None
    comps = prior.component_distribution
    weights = prior.mixture_distribution.probs.detach()
    base = comps
    while isinstance(base, D.Independent):
        base = base.base_dist
    with torch.no_grad():
        if isinstance(base, D.MultivariateNormal):
            mean, cov = base.mean, base.covariance_matrix
        elif isinstance(base, D.Normal):
            mean, cov = base.mean, torch.diag_embed(base.variance)
        else:
            s = comps.sample((draws,))  # (draws, K, d)
            mean = s.mean(0)
            c = s - mean
            cov = torch.einsum("skd,ske->kde", c, c) / (draws - 1)
    return {
        "weights": weights.cpu().double().numpy(),
        "means": mean.detach().cpu().double().numpy(),
        "covariances": cov.detach().cpu().double().numpy(),
    }


def draw_components(ax: Any, components: dict[str, np.ndarray], label: str = "prior") -> None:
    """Each component as its 1-σ ellipse (line width ∝ weight) and a cross at its mean."""
    from matplotlib.patches import Ellipse

    w = components["weights"]
    rel = w / w.max()
    alpha = 0.8 if len(w) <= 12 else 0.45  # many components (VampPrior): lighter
    for k, (m, c) in enumerate(zip(components["means"], components["covariances"], strict=True)):
        vals, vecs = np.linalg.eigh(c[:2, :2])
        angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
        width, height = 2 * np.sqrt(np.maximum(vals[::-1], 0))
        ax.add_patch(Ellipse((m[0], m[1]), width, height, angle=angle, fill=False,
                             ec="k", lw=0.3 + 1.4 * rel[k], alpha=alpha))
    ax.plot(components["means"][:, 0], components["means"][:, 1], "k+", ms=6, mew=1.2,
            label=f"{len(w)} {label} components (1σ ellipses, line width ∝ weight)")
