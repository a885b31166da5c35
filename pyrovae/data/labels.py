"""Partly labelled data: which training rows keep their class label.

Semi-supervised models (the M2 kind) read a label of ``-1`` as "unknown": the label is
then a latent summed out exactly.  :func:`mask_labels` keeps a fraction or a count of
the labels, balanced over the classes and chosen by a seed, so that a run's labelled
set is reproducible (the protocol of Kingma et al. 2014 and Pyro's ss-vae tutorial:
100, 600, 1,000 or 3,000 MNIST labels, the same number per class).

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.
"""

from __future__ import annotations

import numpy as np
import torch

from pyrovae.errors import PyrovaeError

__all__ = ["UNLABELLED", "check_class_labels", "mask_labels"]

#: The label of a row whose class is unknown.
UNLABELLED = -1


def check_class_labels(y: torch.Tensor | np.ndarray, classes: int, what: str = "y",
                       *, allow_unlabelled: bool = True) -> torch.Tensor:
    """``y`` as a 1-d long tensor of class indices in 0..classes−1 (and −1 where
    ``allow_unlabelled``), else a one-line PyrovaeError naming ``what``."""
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if t.ndim != 1:
        raise PyrovaeError(f"{what}: expected one class label per row, got shape "
                           f"{tuple(t.shape)}")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise PyrovaeError(f"{what}: expected integer class labels, got fractions or "
                               "non-finite values")
    t = t.long()
    lo = UNLABELLED if allow_unlabelled else 0
    if t.numel() and (int(t.min()) < lo or int(t.max()) >= classes):
        raise PyrovaeError(f"{what}: expected class labels in 0..{classes - 1}"
                           + (f" (or {UNLABELLED} for unlabelled)" if allow_unlabelled else "")
                           + f", got values in {int(t.min())}..{int(t.max())}")
    return t


def mask_labels(y: torch.Tensor | np.ndarray, classes: int, *, fraction: float | None = None,
                count: int | None = None, seed: int = 0) -> torch.Tensor:
    """A copy of the labels ``y`` with all but a chosen subset set to −1.

    Args:
        y: the class labels of the training rows (0..classes−1).
        classes: the number of classes.
        fraction: keep this fraction of the labels, in (0, 1] (balanced over classes,
            rounded per class, at least one per class present).
        count: keep this many labels, ``count // classes`` per class and the
            remainder spread over the first classes (replaces ``fraction``).
        seed: which rows keep their label (NumPy's PCG64 stream, per class in order).

    Returns:
        A long tensor: the kept labels, −1 elsewhere.

    Raises:
        PyrovaeError: labels outside 0..classes−1, a fraction outside (0, 1], a count
            larger than the data (or than a class holds), or neither given.
    """
    t = check_class_labels(y, classes, "labels", allow_unlabelled=False)
    n = len(t)
    if count is None and fraction is None:
        raise PyrovaeError("labels: give a fraction or a count of labels to keep")
    if count is None:
        if not 0.0 < float(fraction) <= 1.0:
            raise PyrovaeError(f"labelled_fraction: expected a fraction in (0, 1], got {fraction}")
        if fraction == 1.0:
            return t.clone()
    elif isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n:
        raise PyrovaeError(f"labelled_count: expected an integer in 1..{n} (the training "
                           f"rows), got {count!r}")
    rng = np.random.default_rng(seed)
    keep = np.zeros(n, dtype=bool)
    present = [c for c in range(classes) if bool((t == c).any())]
    for i, c in enumerate(present):
        rows = np.flatnonzero(t.numpy() == c)
        if count is None:
            k = max(1, round(fraction * len(rows)))
        else:
            k = count // len(present) + (1 if i < count % len(present) else 0)
        if k > len(rows):
            raise PyrovaeError(f"labelled_count: {count} labels need {k} of class {c}, the "
                               f"data hold {len(rows)}")
        keep[rng.choice(rows, size=k, replace=False)] = True
    out = t.clone()
    out[torch.from_numpy(~keep)] = UNLABELLED
    return out
