"""Guide families q_φ(z|x) (the encoder's output distribution).

The encoder network maps x to a vector of ``num_outputs()`` numbers; the family
turns that vector into a distribution over z with ``event_shape == (latent_dim,)``
and batch shape ``out.shape[:-1]``.

Register a new family with ``@GUIDES.register("name")`` (see ``registry.py``).
"""

from __future__ import annotations

from typing import ClassVar

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.registry import GUIDES, Param


class GuideFamily(nn.Module):
    """Base class: ``forward(out) -> q(z|x)`` from the encoder's raw output."""

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)

    def num_outputs(self) -> int:
        """Length of the encoder output vector this family consumes."""
        raise NotImplementedError

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError


#: Lower bound added to every predicted scale, for numerical safety.
MIN_SCALE = 1e-4


@GUIDES.register("diagonal_normal")
class DiagonalNormalGuide(GuideFamily):
    """Mean-field Gaussian q(z|x) = N(μ_φ(x), diag σ_φ(x)²), σ = softplus(·) + 1e-4.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes".
    """

    params: ClassVar[dict[str, Param]] = {}

    def num_outputs(self) -> int:
        return 2 * self.latent_dim

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        loc, raw = out.split(self.latent_dim, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)
