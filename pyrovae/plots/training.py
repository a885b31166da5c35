"""Figures of a training run: learning curve, reconstructions, samples, latent map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from pyrovae.plots.common import new_figure


def learning_curve(history: Any) -> Figure:
    """Train and held-out ELBO per example against epoch (and β if it varies).

    The train curve is the running mean over each epoch's minibatches, taken while the
    parameters moved (and on dynamically binarised or otherwise augmented batches); the
    held-out curve is computed once at the end of the epoch.  The train curve can
    therefore lie below the held-out one without any underfitting; the figure says so."""
    fig = new_figure(6.5, 4.0)
    ax = fig.add_subplot()
    recs = [r for r in history.records if "train_elbo" in r]
    epochs = [r["epoch"] for r in recs]
    ax.plot(epochs, [r["train_elbo"] for r in recs],
            label="train ELBO (running mean over the epoch)")
    if any("test_elbo" in r for r in recs):
        ax.plot(epochs, [r.get("test_elbo", np.nan) for r in recs],
                label="held-out ELBO (end of epoch)")
        ax.text(0.99, 0.03, "train averages the minibatches while the parameters\nmoved, "
                "so it can lie below held-out", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=7, color="0.35")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per example (nats)")
    ax.grid(alpha=0.3)
    betas = history["kl_weight"]
    if betas and len(set(betas)) > 1:
        ax2 = ax.twinx()
        ax2.plot(history["epoch"], betas, color="0.6", ls="--", lw=1, label="β (KL weight)")
        ax2.set_ylabel("β")
        ax2.legend(loc="lower right")
    ax.legend(loc="center right")
    ax.set_title("Learning curve")
    return fig


def _grid(images: np.ndarray, shape: tuple[int, int], ncol: int) -> np.ndarray:
    n = len(images)
    nrow = int(np.ceil(n / ncol))
    h, w = shape
    out = np.full((nrow * (h + 1) - 1, ncol * (w + 1) - 1), 0.12)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = img.reshape(h, w)
    return out


def _as_np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def reconstructions(
    originals: torch.Tensor, recon: torch.Tensor, image_shape: tuple[int, int], ncol: int = 10
) -> Figure:
    """Originals (top block) above their reconstructions E[x|z=E_q z] (bottom block)."""
    fig = new_figure(7.0, 3.6)
    for i, (imgs, title) in enumerate(
        [(originals, "originals (held-out)"), (recon, "reconstructions")]
    ):
        ax = fig.add_subplot(2, 1, i + 1)
        ax.imshow(_grid(_as_np(imgs), image_shape, ncol), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return fig


def samples(
    images: torch.Tensor, image_shape: tuple[int, int], ncol: int | None = None,
    title: str | None = None,
) -> Figure:
    """Draws from the generative model: z ~ p(z), shown as E[x|z]; a square grid
    (``ncol`` = ⌈√n⌉: 64 samples are 8 × 8) unless ``ncol`` is given; ``title``
    replaces the default one (e.g. a conditional model's "p(x | y = 3)")."""
    ncol = ncol or max(1, int(np.ceil(np.sqrt(len(images)))))
    fig = new_figure(6.0, 6.0 * np.ceil(len(images) / ncol) / ncol + 0.4)
    ax = fig.add_subplot()
    ax.imshow(_grid(_as_np(images), image_shape, ncol), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title or "samples from the prior, E[x|z], z ~ p(z)", fontsize=9)
    ax.axis("off")
    return fig


def class_samples(images: torch.Tensor, image_shape: tuple[int, int], classes: int,
                  title: str | None = None) -> Figure:
    """Draws of a class-conditional model, one row per class: row y holds the
    ``len(images) / classes`` draws E[x | z, y], z ~ p(z) (``images`` ordered by class),
    each row labelled ``y = k`` on the left."""
    per = len(images) // classes
    h = image_shape[0]
    fig = new_figure(6.0, 6.0 * classes / per + 0.4)
    ax = fig.add_subplot()
    ax.imshow(_grid(_as_np(images), image_shape, per), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title or "samples per class, E[x|z, y], z ~ p(z); one row per class y",
                 fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([k * (h + 1) + (h - 1) / 2 for k in range(classes)])
    ax.set_yticklabels([f"y = {k}" for k in range(classes)], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return fig


def latent_map(
    z: torch.Tensor,
    labels: Sequence[int] | None = None,
    components: dict[str, np.ndarray] | None = None,
) -> Figure:
    """E_q[z|x] of each example coloured by label; principal components if dim z > 2.

    ``components`` (from :func:`pyrovae.plots.latent.prior_components`) draws a
    mixture prior's Gaussians over the map (2-d latents only)."""
    z = _as_np(z)
    title = "latent means E_q[z|x]"
    if z.shape[1] > 2:
        zc = z - z.mean(0)
        _, _, vt = np.linalg.svd(zc, full_matrices=False)
        z = zc @ vt[:2].T
        title += f"\n{zc.shape[1]} dimensions projected on their first two principal components"
        axes = ("PC₁ of E_q[z|x]", "PC₂ of E_q[z|x]")
    else:
        axes = ("z₁", "z₂")
    if z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], axis=1)
        axes = ("z₁", "")
    fig = new_figure(5.5, 4.8)
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.6)
    else:
        labels = _as_np(labels)
        sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=5, alpha=0.8)
        fig.colorbar(sc, ax=ax, label="label")
    if components is not None and z.shape[1] == 2 and len(components["means"][0]) == 2:
        from pyrovae.plots.latent import draw_components

        draw_components(ax, components)
        ax.legend(fontsize=7, loc="upper right")
        title += " and the prior's components"
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    return fig
