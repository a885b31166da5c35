"""Data sets: bundled loaders, IDX files, user files, transforms, the seeded split."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from pyrovae import PyrovaeError, load_dataset, train_test_split
from pyrovae.data import as_tensor, read_idx


def test_digits_default_is_binarised():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.event_shape == (1, 8, 8) and ds.data_dim == 64 and ds.flat.shape == (1797, 64)
    assert set(ds.x.unique().tolist()) == {0.0, 1.0}
    assert ds.y.shape == (1797,) and ds.image_shape == (8, 8) and ds.max_value == 16


def test_digits_transforms():
    unit = load_dataset("digits", transform="unit")
    raw = load_dataset("digits", transform="none")
    assert unit.x.min() == 0 and unit.x.max() == 1
    assert raw.x.max() == 16 and torch.equal(raw.x / 16, unit.x)
    assert torch.equal((unit.x > 0.5).float(), load_dataset("digits").x)


def test_mnist5k_bundled():
    ds = load_dataset("mnist5k", transform="unit")
    assert ds.x.shape == (5000, 1, 28, 28) and ds.image_shape == (28, 28)
    assert 0 <= ds.x.min() and ds.x.max() <= 1


def _write_idx(path, array: np.ndarray, code: int, compress: bool) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(">u1").tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_folder(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, 0x08, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, 0x08, compress)
    ds = load_dataset("mnist", path=str(tmp_path), transform="none")
    assert ds.x.shape == (7, 1, 4, 5) and ds.image_shape == (4, 5)
    np.testing.assert_array_equal(ds.x.numpy().reshape(7, 4, 5), images)
    np.testing.assert_array_equal(ds.y.numpy(), labels)


def test_idx_errors(tmp_path):
    with pytest.raises(PyrovaeError, match="no train-images-idx3-ubyte"):
        load_dataset("mnist", path=str(tmp_path))
    with pytest.raises(PyrovaeError, match="folder not found"):
        load_dataset("mnist", path=str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(PyrovaeError, match="promises 5 bytes"):
        read_idx(bad)


def test_user_files(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(4))
    np.savetxt(tmp_path / "c.csv", x, delimiter=",")
    for name in ("a.npy", "b.npz", "c.csv"):
        ds = load_dataset(str(tmp_path / name))
        np.testing.assert_allclose(ds.x.numpy(), x)
    assert load_dataset(str(tmp_path / "b.npz")).y.tolist() == [0, 1, 2, 3]
    assert load_dataset(str(tmp_path / "a.npy"), transform="unit").x.max() == 1


def test_unknown_name_and_missing_file_name_what_was_expected(tmp_path):
    with pytest.raises(PyrovaeError, match=r"unknown data set .fashion..*digits, mnist, mnist5k"):
        load_dataset("fashion")
    with pytest.raises(PyrovaeError, match="data file not found"):
        load_dataset(str(tmp_path / "nope.npy"))


@pytest.mark.parametrize(
    "bad, match",
    [(np.zeros((0, 3)), "empty"), (np.zeros(5), "expected shape"),
     (np.array([[1.0, np.nan], [np.inf, 0]]), "1 NaN and 1 infinite"),
     (np.array([["a", "b"]]), "expected numbers")],
)
def test_as_tensor_names_the_problem(bad, match):
    with pytest.raises(PyrovaeError, match=match):
        as_tensor(bad)


def test_split_is_seeded_disjoint_and_complete():
    ds = load_dataset("digits")
    tr, te = train_test_split(ds, 0.25, seed=3)
    _, te2 = train_test_split(ds, 0.25, seed=3)
    assert torch.equal(te.x, te2.x) and len(te) == round(1797 * 0.25)
    assert len(tr) + len(te) == 1797
    _, te3 = train_test_split(ds, 0.25, seed=4)
    assert not torch.equal(te.x, te3.x)
    assert train_test_split(ds, 0.0)[1] is None
