"""Accuracy, ECE, NLL and the confusion matrix of predicted class probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.classification import classification_metrics


def test_perfect_confident_predictions():
    y = torch.tensor([0, 1, 2, 1])
    p = torch.nn.functional.one_hot(y, 3).double()
    m = classification_metrics(p, y)
    assert m["accuracy"] == 1.0 and m["ece"] == pytest.approx(0.0)
    assert m["nll"] == pytest.approx(0.0, abs=1e-9)
    assert m["confusion"] == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]


def test_ece_of_an_overconfident_classifier():
    """Confidence 0.9 everywhere, half right: ECE = |0.5 − 0.9| = 0.4."""
    p = torch.tensor([[0.9, 0.1]] * 4)
    y = torch.tensor([0, 1, 0, 1])
    m = classification_metrics(p, y, bins=10)
    assert m["accuracy"] == 0.5 and m["ece"] == pytest.approx(0.4)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.1)) / 2)
    assert sum(r["count"] for r in m["reliability"]) == 4
    assert m["confusion"] == [[2, 0], [2, 0]]


def test_calibrated_random_predictions_have_small_ece():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(20000, 4, generator=g) * 2, -1)
    y = torch.multinomial(probs, 1, generator=g).squeeze(-1)
    assert classification_metrics(probs, y)["ece"] < 0.02
    shuffled = y[torch.randperm(len(y), generator=g)]
    assert classification_metrics(probs, shuffled)["ece"] > 0.1


@pytest.mark.parametrize("p, y, match", [
    (torch.ones(3, 2) / 2, torch.tensor([0, 2, 1]), r"labels in 0\.\.1"),
    (torch.ones(3, 2) / 2, torch.tensor([0, 1]), "2 labels for 3 rows"),
    (torch.ones(3), torch.tensor([0, 1, 0]), "expected an \\(n, classes\\) array"),
])
def test_bad_input(p, y, match):
    with pytest.raises(PyrovaeError, match=match):
        classification_metrics(p, y)
