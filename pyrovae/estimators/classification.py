"""How well a model's q(y | x) classifies: accuracy, calibration and the confusion matrix.

For predicted class probabilities p_i (n × C) and true labels y_i:

* accuracy: mean of 1{argmax p_i = y_i};
* negative log-likelihood: −mean log p_i[y_i];
* expected calibration error (Guo et al. 2017): bin the confidences c_i = max p_i into
  B equal-width bins; ECE = Σ_b (n_b / n) |acc_b − conf_b|, acc_b and conf_b the mean
  accuracy and confidence in bin b (the reliability diagram plots them per bin);
* confusion matrix: counts[true, predicted].

References:
    Guo, Pleiss, Sun & Weinberger (2017), *On Calibration of Modern Neural Networks*.
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

__all__ = ["classification_metrics", "label_probabilities"]


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
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise PyrovaeError(f"bins: expected a positive integer, got {bins!r}")
    conf, pred = p.max(-1)
    correct = (pred == y).double()
    nll = -p[torch.arange(n), y].clamp_min(1e-300).log().mean()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.clamp(torch.bucketize(conf, edges, right=False) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        k = int(m.sum())
        acc_b = float(correct[m].mean()) if k else None
        conf_b = float(conf[m].mean()) if k else None
        if k:
            ece += k / n * abs(acc_b - conf_b)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": k,
                      "accuracy": acc_b, "confidence": conf_b})
    confusion = torch.zeros(C, C, dtype=torch.long)
    confusion.index_put_((y, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    return {"accuracy": float(correct.mean()), "nll": float(nll), "ece": float(ece),
            "num_examples": n, "classes": C, "reliability": table,
            "confusion": confusion.tolist()}
