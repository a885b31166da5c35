"""Figures of a classifier q(y | x): the reliability diagram, the confusion matrix, and
the "style" grid of a semi-supervised VAE (one style z decoded with every label,
Kingma et al. 2014, Fig. 1).  Each takes plain arrays or the dict of
:func:`pyrovae.estimators.classification.classification_metrics` and returns a
:class:`matplotlib.figure.Figure`.

References:
    Guo, Pleiss, Sun & Weinberger (2017), *On Calibration of Modern Neural Networks*.
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pyrovae.plots.common import new_figure


def reliability_diagram(metrics: dict[str, Any], title: str = "Reliability of q(y|x)") -> Figure:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration,
    the ECE and accuracy in the title."""
    fig = new_figure(4.6, 4.2)
    ax = fig.subplots()
    rows = [r for r in metrics["reliability"] if r["count"]]
    lo = np.array([r["low"] for r in rows])
    width = np.array([r["high"] - r["low"] for r in rows])
    acc = np.array([r["accuracy"] for r in rows])
    conf = np.array([r["confidence"] for r in rows])
    ax.bar(lo, acc, width=width, align="edge", edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot(conf, acc, "o", ms=3, color="k", label="(confidence, accuracy) per bin")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence max q(y|x)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\naccuracy {metrics['accuracy']:.3f}, ECE {metrics['ece']:.3f}",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def confusion_figure(metrics: dict[str, Any], title: str = "Confusion matrix") -> Figure:
    """Counts of (true, predicted) classes, rows normalised to one for the colours."""
    m = np.asarray(metrics["confusion"], dtype=float)
    rows = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig = new_figure(4.8, 4.4)
    ax = fig.subplots()
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    C = m.shape[0]
    if C <= 12:
        for i in range(C):
            for j in range(C):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(C))
    ax.set_yticks(range(C))
    ax.set_title(f"{title} (accuracy {metrics['accuracy']:.3f})", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


def style_figure(images: Any, image_shape: tuple[int, int],
                 title: str = "One style z per row, decoded with every label") -> Figure:
    """``images`` (rows, classes, H·W or H, W): row r is one held-out image's style z
    decoded with each label (columns)."""
    a = np.asarray(images, dtype=float)
    rows, classes = a.shape[:2]
    a = a.reshape(rows, classes, *image_shape)
    fig = new_figure(0.6 * classes + 0.6, 0.6 * rows + 0.6)
    axes = fig.subplots(rows, classes, squeeze=False)
    for r in range(rows):
        for c in range(classes):
            ax = axes[r][c]
            ax.imshow(a[r, c], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(c), fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig
