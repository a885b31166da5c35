"""Partly labelled data: mask_labels keeps a balanced, seeded subset of the labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.data import UNLABELLED, check_class_labels, mask_labels
from pyrovae.errors import PyrovaeError

Y = torch.arange(10).repeat_interleave(30)  # 300 rows, 30 per class


def test_count_is_balanced_over_classes_and_seeded():
    a = mask_labels(Y, 10, count=100, seed=3)
    kept = a[a >= 0]
    assert len(kept) == 100
    assert torch.bincount(kept, minlength=10).tolist() == [10] * 10
    assert torch.equal(a, mask_labels(Y, 10, count=100, seed=3))
    assert not torch.equal(a, mask_labels(Y, 10, count=100, seed=4))
    assert torch.equal(a[a >= 0], Y[a >= 0])  # kept labels are the true ones


def test_fraction_rounds_per_class_and_one_keeps_all():
    a = mask_labels(Y, 10, fraction=0.1, seed=0)
    assert torch.bincount(a[a >= 0], minlength=10).tolist() == [3] * 10
    assert int((a == UNLABELLED).sum()) == 270
    assert torch.equal(mask_labels(Y, 10, fraction=1.0), Y)


def test_remainder_of_a_count_goes_to_the_first_classes():
    a = mask_labels(Y, 10, count=13, seed=0)
    assert torch.bincount(a[a >= 0], minlength=10).tolist() == [2, 2, 2] + [1] * 7


@pytest.mark.parametrize("kw, match", [
    ({"fraction": 0.0}, r"labelled_fraction: expected a fraction in \(0, 1\]"),
    ({"fraction": 1.2}, "labelled_fraction"),
    ({"count": 0}, "labelled_count: expected an integer in 1..300"),
    ({"count": 301}, "labelled_count"),
    ({}, "give a fraction or a count"),
])
def test_bad_amounts_are_refused(kw, match):
    with pytest.raises(PyrovaeError, match=match):
        mask_labels(Y, 10, **kw)


def test_a_count_a_class_cannot_hold_is_refused():
    y = torch.tensor([0] * 50 + [1] * 2)
    with pytest.raises(PyrovaeError, match="need 3 of class 1, the data hold 2"):
        mask_labels(y, 2, count=6)


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1, 10]), r"labels in 0\.\.9"),
    (np.array([0, -1]), r"labels in 0\.\.9"),
    (np.array([0.5, 1.0]), "integer class labels"),
    (np.zeros((2, 2)), "one class label per row"),
])
def test_bad_labels_are_refused(y, match):
    with pytest.raises(PyrovaeError, match=match):
        mask_labels(y, 10, fraction=0.5)


def test_check_class_labels_admits_unlabelled_marker():
    assert check_class_labels(np.array([0, -1, 3.0]), 4).tolist() == [0, -1, 3]
