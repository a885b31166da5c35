"""Prior families p(z).

Each family is an ``nn.Module`` whose ``forward()`` returns p(z) as a Pyro
distribution with ``event_shape == (latent_dim,)`` and an empty batch shape; the
model broadcasts it over the ``"data"`` plate.  Learnable priors keep their
parameters as ordinary ``nn.Parameter`` so they train with the rest of the VAE.

Register a new family with ``@PRIORS.register("name")`` (see ``registry.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.registry import PRIORS, Param


class Prior(nn.Module):
    """Base class: ``forward() -> p(z)`` with event shape ``(latent_dim,)``."""

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)

    def forward(self) -> dist.TorchDistribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def attach(self, vae: Any) -> None:
        """Called once by the VAE after construction (VampPrior needs the encoder).

        Families that need the model must keep the reference out of their
        ``nn.Module`` children (e.g. ``object.__setattr__``) so parameters are not
        registered twice.
        """


@PRIORS.register("normal")
class StandardNormalPrior(Prior):
    """Standard normal p(z) = N(0, I), the seed's default prior."""

    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.ones(self.latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)
