"""The one interface through which training and evaluation read data.

A :class:`DataSource` knows how many examples it holds (``num_data``, the size the
plate scales a minibatch up to), the shape of one example (``event_shape``), and
yields minibatches of :class:`Batch` ``(x, y)``: shuffled by a ``torch.Generator``
(training; reproducible for a seed, and resumable because the generator state is
saved) or in order (evaluation).  :func:`as_source` turns what a user passes
(tensor, array, :class:`~pyrovae.data.datasets.Dataset`, or a streamed source) into
one.  In-memory tensors are :class:`TensorSource`; streamed sources (a
``torch.utils.data.Dataset`` / ``DataLoader``) implement the same interface.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.data

from pyrovae.errors import PyrovaeError


@dataclass(frozen=True)
class Batch:
    """One minibatch: observations ``x`` (batch first) and optional context ``y``."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device) -> Batch:
        """This batch with its tensors on ``device``."""
        return Batch(self.x.to(device), None if self.y is None else self.y.to(device))


def shard_bounds(batch: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global minibatch of ``batch`` rows that rank ``rank`` of
    ``world`` takes (contiguous; sizes differ by at most one; may be empty)."""
    return rank * batch // world, (rank + 1) * batch // world


class DataSource:
    """Base class of data sources; see the module docstring."""

    num_data: int
    event_shape: tuple[int, ...]

    @property
    def has_context(self) -> bool:
        """Whether each batch carries a context ``y`` (labels or vectors)."""
        return False

    def num_batches(self, batch_size: int) -> int:
        """Minibatches per pass at ``batch_size`` (the last one may be short)."""
        return math.ceil(self.num_data / batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[Batch]:
        """Minibatches covering the data once: a permutation drawn from ``generator``,
        or in order when it is ``None``.  The last batch may be smaller.

        ``shard=(rank, world)``: of every global minibatch (the same permutation and
        batches as without it) only the rows :func:`shard_bounds` gives ``rank``, the
        only rows read (data-parallel training, as ``DistributedSampler``)."""
        raise NotImplementedError

    def head(self, n: int) -> Batch:
        """The first ``min(n, num_data)`` examples (structure checks, figures)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of the contents (resume refuses other data)."""
        raise NotImplementedError


class TensorSource(DataSource):
    """Data held in memory as one tensor ``x`` (and optional ``y``), on one device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        if y is not None and y.shape[0] != x.shape[0]:
            raise PyrovaeError(f"y: expected {x.shape[0]} rows (one per example), "
                               f"got {y.shape[0]}")
        self.x, self.y = x, y
        self.num_data = x.shape[0]
        self.event_shape = tuple(x.shape[1:])

    @property
    def has_context(self) -> bool:
        return self.y is not None

    def to(self, device: torch.device) -> TensorSource:
        """This source with its tensors on ``device``."""
        return TensorSource(self.x.to(device), None if self.y is None else self.y.to(device))

    def _take(self, idx: torch.Tensor | slice) -> Batch:
        return Batch(self.x[idx], None if self.y is None else self.y[idx])

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[Batch]:
        n = self.num_data
        perm = (None if generator is None
                else torch.randperm(n, generator=generator).to(self.x.device))
        for start in range(0, n, batch_size):
            lo, hi = start, min(start + batch_size, n)
            if shard is not None:
                a, b = shard_bounds(hi - lo, *shard)
                lo, hi = start + a, start + b
            yield self._take(slice(lo, hi) if perm is None else perm[lo:hi])

    def head(self, n: int) -> Batch:
        return self._take(slice(0, min(n, self.num_data)))

    def fingerprint(self) -> str:
        """SHA-256 of the observations' shape and float32 bytes."""
        h = hashlib.sha256(str(tuple(self.x.shape)).encode())
        h.update(self.x.detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
        return h.hexdigest()


class ArrayDataset(torch.utils.data.Dataset):
    """A map-style ``torch`` Dataset over rows of an array that need not fit in memory
    (e.g. ``np.load(path, mmap_mode="r")``): a batch reads only its rows.

    ``scale`` divides the values and ``binarize`` thresholds them at ½ afterwards
    (the data sets' ``unit`` / ``binarize`` transforms, applied per batch).
    """

    def __init__(self, array: Any, y: Any = None, *, scale: float = 1.0,
                 binarize: bool = False) -> None:
        if getattr(array, "ndim", 0) < 2 or len(array) == 0:
            raise PyrovaeError(f"data: expected an array of shape (n, *event_shape), got "
                               f"shape {getattr(array, 'shape', None)}")
        if y is not None and len(y) != len(array):
            raise PyrovaeError(f"y: expected {len(array)} rows (one per example), got {len(y)}")
        self.array, self.y, self.scale, self.binarize = array, y, float(scale), binarize

    def __len__(self) -> int:
        return len(self.array)

    def _rows(self, index: Any) -> Any:
        import numpy as np

        x = torch.as_tensor(np.asarray(self.array[index], dtype=np.float32))
        if self.scale != 1.0:
            x = x / self.scale
        if self.binarize:
            x = (x > 0.5).float()
        if self.y is None:
            return x
        return x, torch.as_tensor(np.asarray(self.y[index]))

    def __getitem__(self, i: int) -> Any:
        return self._rows(int(i))

    def __getitems__(self, indices: list[int]) -> list:
        """Rows in one read (sorted, as memory maps like), returned in the asked order."""
        import numpy as np

        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        rows = self._rows(idx[order])
        back = torch.as_tensor(np.argsort(order, kind="stable"))
        if isinstance(rows, tuple):
            return [(rows[0][back], rows[1][back])]
        return [rows[back]]


class LoaderSource(DataSource):
    """Streams minibatches from a map-style ``torch.utils.data.Dataset`` or a
    ``DataLoader`` over one, never holding the whole data set as one tensor.

    Items are ``x`` or ``(x, y)``; ``x`` of one shape (the event shape).  The
    order follows the :class:`DataSource` rule: a permutation of
    ``range(num_data)`` drawn from the generator (``torch.randperm``, exactly as
    :class:`TensorSource` draws it, so the same seed visits the same examples in
    the same batches), or in order.  A ``DataLoader``'s ``num_workers``,
    ``collate_fn`` and ``pin_memory`` are used; its own ``batch_size``, ``shuffle``
    and ``sampler`` are not (the trainer's batch size and generator decide; ``fit``
    refuses a ``DataLoader`` whose ``batch_size`` differs from its own).
    An :class:`ArrayDataset` is read one batch at a time.
    """

    def __init__(self, data: Any, *, num_workers: int = 0) -> None:
        from torch.utils.data import DataLoader, IterableDataset

        loader = data if isinstance(data, DataLoader) else None
        dataset = loader.dataset if loader is not None else data
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
            raise PyrovaeError("data: a streamed source needs a map-style torch Dataset "
                               f"(with __len__ and __getitem__), got {type(dataset).__name__}")
        try:
            self.num_data = len(dataset)
        except TypeError:
            raise PyrovaeError(f"data: {type(dataset).__name__} has no length") from None
        if self.num_data == 0:
            raise PyrovaeError("data: empty data set")
        self.dataset = dataset
        self._loader_kwargs: dict[str, Any] = {
            "num_workers": loader.num_workers if loader is not None else num_workers,
            "collate_fn": loader.collate_fn if loader is not None else None,
            "pin_memory": loader.pin_memory if loader is not None else False,
        }
        first = self.head(1)
        self.event_shape = tuple(first.x.shape[1:])
        self._has_context = first.y is not None

    @property
    def has_context(self) -> bool:
        return self._has_context

    def _batch(self, items: Any) -> Batch:
        if isinstance(items, (tuple, list)):
            x, y = items[0], (items[1] if len(items) > 1 else None)
        else:
            x, y = items, None
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            x = x.float()
        return Batch(x, None if y is None else torch.as_tensor(y))

    def _load(self, index_batches: list[list[int]]) -> Iterator[Batch]:
        from torch.utils.data import DataLoader

        kwargs = dict(self._loader_kwargs)
        if isinstance(self.dataset, ArrayDataset):
            # one read per batch; the dataset returns [collated batch]
            kwargs["collate_fn"] = lambda rows: rows[0]
        # a DataLoader draws its workers' base seed from the global RNG unless given a
        # generator: a private one keeps the model's random draws identical to in-memory data
        kwargs["generator"] = torch.Generator().manual_seed(0)
        loader = DataLoader(self.dataset, batch_sampler=index_batches, **kwargs)
        for items in loader:
            yield self._batch(items)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[Batch]:
        order = (torch.arange(self.num_data) if generator is None
                 else torch.randperm(self.num_data, generator=generator))
        chunks = [order[s : s + batch_size] for s in range(0, self.num_data, batch_size)]
        if shard is not None:
            chunks = [c[slice(*shard_bounds(len(c), *shard))] for c in chunks]
        return self._load([c.tolist() for c in chunks])

    def head(self, n: int) -> Batch:
        return next(iter(self._load([list(range(min(n, self.num_data)))])))

    def fingerprint(self) -> str:
        """SHA-256 of the shape and float32 bytes, read batch by batch (the same as a
        :class:`TensorSource` of the same data)."""
        h = hashlib.sha256(str((self.num_data, *self.event_shape)).encode())
        for b in self.batches(1024):
            h.update(b.x.detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
        return h.hexdigest()


def as_source(data: Any, y: Any = None, what: str = "data") -> DataSource:
    """A :class:`DataSource` for a tensor, array, :class:`~pyrovae.data.datasets.Dataset`
    (its labels become ``y`` only when ``y`` is given as ``"labels"``), a source, or a
    ``torch.utils.data.Dataset`` / ``DataLoader`` (streamed: :class:`LoaderSource`)."""
    from pyrovae.data.datasets import Dataset, as_tensor

    if isinstance(data, DataSource):
        return data
    if isinstance(data, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        if y is not None:
            raise PyrovaeError(f"y: a streamed {what} carries its own context (items (x, y))")
        return LoaderSource(data)
    if isinstance(data, Dataset):
        labels = data.y if isinstance(y, str) and y == "labels" else y
        return TensorSource(data.x, None if labels is None else torch.as_tensor(labels))
    x = as_tensor(data, what)
    return TensorSource(x, None if y is None else torch.as_tensor(y))
