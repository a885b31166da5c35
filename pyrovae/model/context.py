"""Context families: what a conditional VAE conditions on, and how it is encoded.

A conditional VAE (Sohn et al. 2015) gives a context y to the encoder and the
decoder::

    z_i ~ p(z)                     x_i ~ p_θ(x | z_i, y_i)        q_φ(z | x_i, y_i)

The context family turns the raw y (a class label, a vector) into the numbers
``c = encode(y)`` of shape ``(batch, dim)`` that the networks receive as their
second argument.  ``none`` (the default) is the unconditional VAE.  Declared in a
spec as ``context: {family: label, classes: 10}``.

References:
    Sohn et al. (2015), *Learning Structured Output Representation using Deep
    Conditional Generative Models*.
    Kingma et al. (2014), *Semi-Supervised Learning with Deep Generative Models*.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.errors import PyrovaeError
from pyrovae.registry import CONTEXTS, Param


class Context(nn.Module):
    """Base class: ``forward(y) -> c`` of shape ``(*batch, dim)``; ``dim = 0``: no context."""

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""
    dim: int = 0
    #: dimensions of one example's y (a label 0, a vector 1): a y with no more than
    #: these is one context, shared by every draw of :meth:`VAE.sample`
    example_ndim: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@CONTEXTS.register("none")
class NoContext(Context):
    """No context: the plain (unconditional) VAE."""

    params: ClassVar[dict[str, Param]] = {}

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        raise PyrovaeError("y: this VAE has no context (spec context: none); pass y=None")


@CONTEXTS.register("label")
class LabelContext(Context):
    """A class label y ∈ {0, …, classes−1}, given to the networks one-hot (c = e_y)."""

    params: ClassVar[dict[str, Param]] = {
        "classes": Param("positive_int", 10, doc="number of classes", size="width"),
    }

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.classes = self.dim = int(classes)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y)
        if y.is_floating_point():
            y = y.round()
        y = y.long()
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.classes):
            raise PyrovaeError(
                f"y: expected class labels in 0..{self.classes - 1}, got values in "
                f"{int(y.min())}..{int(y.max())}"
            )
        return F.one_hot(y, self.classes).float()


@CONTEXTS.register("vector")
class VectorContext(Context):
    """A real vector y of length ``dim``, given to the networks as it is."""

    example_ndim: ClassVar[int] = 1

    params: ClassVar[dict[str, Param]] = {
        "dim": Param("positive_int", 1, doc="length of y", size="width"),
    }

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = int(dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y, dtype=torch.float32)
        if y.ndim == 1 and self.dim == 1:
            y = y.unsqueeze(-1)
        if y.shape[-1] != self.dim:
            raise PyrovaeError(f"y: expected vectors of length {self.dim}, got shape "
                               f"{tuple(y.shape)}")
        return y
