"""How well a model's q(y | x) classifies: accuracy, calibration and the confusion matrix.

For predicted class probabilities p_i (n × C) and true labels y_i:

* accuracy: mean of 1{argmax p_i = y_i};
* negative log-likelihood: −mean log p_i[y_i];
* expected calibration error (Guo et al. 2017): bin the confidences c_i = max p_i into
  B equal-width bins; ECE = Σ_b (n_b / n) abs(acc_b − conf_b), acc_b and conf_b the mean
  accuracy and confidence in bin b (the reliability diagram plots them per bin); the
  classwise ECE (Kull et al. 2019) bins all n·C pairs (p_i(y), 1{y_i = y});
* confusion matrix: counts[true, predicted].

References:
    Guo, Pleiss, Sun & Weinberger (2017), *On Calibration of Modern Neural Networks*.
    Kull et al. (2019), *Beyond Temperature Scaling: Obtaining Well-Calibrated
    Multiclass Probabilities with Dirichlet Calibration*.
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models* (q(y|x) of M2 as a classifier).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pyrovae.data import as_source
from pyrovae.data.labels import check_class_labels
from pyrovae.errors import PyrovaeError

__all__ = ["as_probs", "calibration_errors", "check_bins", "class_labels",
           "classification_metrics", "expected_calibration_error", "label_probabilities",
           "reliability_table"]


@torch.no_grad()
def label_probabilities(vae: Any, data: Any, *, chunk: int = 1024) -> torch.Tensor:
    """q(y | x) of every row of ``data`` (array, tensor, Dataset or DataSource), in order,
    as an ``(n, C)`` tensor on the CPU (``vae.label_posterior``: a model whose label is a
    latent)."""
    if not hasattr(vae, "label_posterior"):
        raise PyrovaeError(f"{type(vae).__name__} has no q(y|x) to classify with "
                           "(model: m2 has)")
    p0 = next(vae.parameters())
    was = vae.training
    vae.eval()
    try:
        out = [vae.label_posterior(b.x.to(device=p0.device, dtype=p0.dtype)).probs.cpu()
               for b in as_source(data, None, "data").batches(chunk)]
    finally:
        vae.train(was)
    return torch.cat(out)


def as_probs(probs: Any) -> torch.Tensor:
    """``probs`` as an (N, K) float64 tensor of class probabilities (rows summing to 1,
    N ≥ 1, K ≥ 2), else a PyrovaeError."""
    p = torch.as_tensor(np.asarray(probs), dtype=torch.float64).contiguous()
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise PyrovaeError(f"probs: expected an (N, K) array of class probabilities, N >= 1, "
                           f"K >= 2, got shape {tuple(p.shape)}")
    if torch.isnan(p).any() or (p < 0).any() or (p.sum(1) - 1).abs().max() > 1e-5:
        raise PyrovaeError("probs: expected rows of probabilities that sum to 1")
    return p


def class_labels(labels: Any, shape: tuple[int, int]) -> torch.Tensor:
    """``labels`` as ``shape[0]`` integer classes in 0..shape[1]−1, else a PyrovaeError."""
    y = torch.as_tensor(np.asarray(labels))
    if y.shape != (shape[0],) or y.dtype.is_floating_point or (y < 0).any() or (
            y >= shape[1]).any():
        raise PyrovaeError(f"labels: expected {shape[0]} integer class labels in "
                           f"0..{shape[1] - 1}")
    return y.long()


def check_bins(num_bins: int, kind: str = "top") -> None:
    """A PyrovaeError unless ``num_bins`` is a positive integer and ``kind`` is
    ``"top"`` or ``"classwise"``."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise PyrovaeError(f"num_bins: expected a positive integer, got {num_bins!r}")
    if kind not in ("top", "classwise"):
        raise PyrovaeError(f"calibration kind: expected 'top' or 'classwise', got {kind!r}")


def calibration_errors(p: torch.Tensor, y: torch.Tensor, num_bins: int,
                       kind: str = "top") -> torch.Tensor:
    """The ECE of probabilities ``p`` (N, K) for each row of labels ``y`` (R, N): (R,)
    (vectorised over label sets, e.g. the resampled labels of a calibration test)."""
    n, k = p.shape
    edges = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64)
    if kind == "top":
        conf, pred = p.max(-1)  # (N,)
        hit = (y == pred).double()  # (R, N)
        cell = torch.clamp(torch.bucketize(conf, edges) - 1, 0, num_bins - 1)
        gap = (hit - conf) @ torch.nn.functional.one_hot(cell, num_bins).double()
    else:  # classwise: bins per class, averaged over the classes
        which = torch.clamp(torch.bucketize(p, edges) - 1, 0, num_bins - 1)  # (N, K)
        cell = (which + num_bins * torch.arange(k)).reshape(-1)  # (N·K,)
        hit = torch.nn.functional.one_hot(y, k).double().reshape(y.shape[0], n * k)
        onehot = torch.nn.functional.one_hot(cell, num_bins * k).double()
        gap = (hit - p.reshape(-1)) @ onehot / k
    return gap.abs().sum(-1) / n


def expected_calibration_error(probs: Any, labels: Any, *, num_bins: int = 10,
                               kind: str = "top") -> float:
    """The expected calibration error of predicted class probabilities ``probs`` (N, K)
    for ``labels`` (N,).

    ``kind="top"`` (Guo et al. 2017): bin the confidences c_i = max_y p_i(y) into
    ``num_bins`` equal-width bins, ECE = Σ_b (n_b / N) abs(acc_b − conf_b).
    ``kind="classwise"``: the same over all N·K pairs (p_i(y), 1{y_i = y}), which sees
    miscalibration in the classes that are not predicted.

    References:
        Guo, Pleiss, Sun & Weinberger (2017), *On Calibration of Modern Neural Networks*;
        Kull et al. (2019), *Beyond temperature scaling* (classwise ECE).
    """
    p = as_probs(probs)
    y = class_labels(labels, p.shape)
    check_bins(num_bins, kind)
    return float(calibration_errors(p, y.unsqueeze(0), num_bins, kind)[0])


def reliability_table(p: torch.Tensor, y: torch.Tensor, num_bins: int
                      ) -> tuple[float, list[dict[str, Any]]]:
    """``(accuracy, table)``: per equal-width confidence bin, its edges, count, mean
    confidence and accuracy (``None`` for an empty bin): the reliability diagram."""
    conf, pred = p.max(-1)
    edges = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64)
    which = torch.clamp(torch.bucketize(conf, edges) - 1, 0, num_bins - 1)
    hit = (pred == y).double()
    table = []
    for b in range(num_bins):
        m = which == b
        c = int(m.sum())
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": c,
                      "confidence": float(conf[m].mean()) if c else None,
                      "accuracy": float(hit[m].mean()) if c else None})
    return float(hit.mean()), table


def classification_metrics(probs: torch.Tensor | np.ndarray, labels: Any, *,
                           bins: int = 15) -> dict[str, Any]:
    """Accuracy, NLL, ECE (``bins`` equal-width confidence bins), the reliability
    table and the confusion matrix of predicted probabilities ``probs`` (n × C) against
    ``labels`` (n,), as plain Python (JSON-able)."""
    p = torch.as_tensor(np.asarray(probs), dtype=torch.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise PyrovaeError(f"probs: expected an (n, classes) array with n >= 1, got shape "
                           f"{tuple(p.shape)}")
    n, C = p.shape
    y = check_class_labels(labels, C, "labels", allow_unlabelled=False)
    if len(y) != n:
        raise PyrovaeError(f"labels: {len(y)} labels for {n} rows of probabilities")
    check_bins(bins)
    pred = p.argmax(-1)
    nll = -p[torch.arange(n), y].clamp_min(1e-300).log().mean()
    ece = float(calibration_errors(p, y.unsqueeze(0), bins)[0])
    accuracy, table = reliability_table(p, y, bins)
    confusion = torch.zeros(C, C, dtype=torch.long)
    confusion.index_put_((y, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    return {"accuracy": accuracy, "nll": float(nll), "ece": ece,
            "num_examples": n, "classes": C, "reliability": table,
            "confusion": confusion.tolist()}
