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

from pyrovae.errors import PyrovaeError


@dataclass(frozen=True)
class Batch:
    """One minibatch: observations ``x`` (batch first) and optional context ``y``."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device), None if self.y is None else self.y.to(device))


class DataSource:
    """Base class of data sources; see the module docstring."""

    num_data: int
    event_shape: tuple[int, ...]

    @property
    def has_context(self) -> bool:
        return False

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(self.num_data / batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Minibatches covering the data once: a permutation drawn from ``generator``,
        or in order when it is ``None``.  The last batch may be smaller."""
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
        return TensorSource(self.x.to(device), None if self.y is None else self.y.to(device))

    def _take(self, idx: torch.Tensor | slice) -> Batch:
        return Batch(self.x[idx], None if self.y is None else self.y[idx])

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        if generator is None:
            for start in range(0, self.num_data, batch_size):
                yield self._take(slice(start, start + batch_size))
            return
        perm = torch.randperm(self.num_data, generator=generator).to(self.x.device)
        for start in range(0, self.num_data, batch_size):
            yield self._take(perm[start : start + batch_size])

    def head(self, n: int) -> Batch:
        return self._take(slice(0, min(n, self.num_data)))

    def fingerprint(self) -> str:
        """SHA-256 of the observations' shape and float32 bytes."""
        h = hashlib.sha256(str(tuple(self.x.shape)).encode())
        h.update(self.x.detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
        return h.hexdigest()


def as_source(data: Any, y: Any = None, what: str = "data") -> DataSource:
    """A :class:`DataSource` for a tensor, array, :class:`~pyrovae.data.datasets.Dataset`
    (its labels become ``y`` only when ``y`` is given as ``"labels"``) or a source."""
    from pyrovae.data.datasets import Dataset, as_tensor

    if isinstance(data, DataSource):
        return data
    if isinstance(data, Dataset):
        labels = data.y if isinstance(y, str) and y == "labels" else y
        return TensorSource(data.x, None if labels is None else torch.as_tensor(labels))
    x = as_tensor(data, what)
    return TensorSource(x, None if y is None else torch.as_tensor(y))
