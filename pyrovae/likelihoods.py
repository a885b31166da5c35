"""Likelihood families p_θ(x|z) (the decoder's output distribution).

The decoder network maps z to a vector of ``num_outputs()`` numbers; the family
turns it into a distribution over x with ``event_shape == (data_dim,)``.  Each
family also owns the check of its support (:meth:`Likelihood.check_data`), run
once on the whole data set before training, so per-step distribution validation
can stay off without ever scoring data outside the support.

Register a new family with ``@LIKELIHOODS.register("name")`` (see ``registry.py``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.registry import LIKELIHOODS, Param


class Likelihood(nn.Module):
    """Base class: ``forward(out, x=None) -> p(x|z)`` from the decoder's raw output.

    ``x`` is passed when the observation is known (training, evaluation); families
    such as the calibrated Gaussian use it, the others ignore it.
    """

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""
    #: Words for the support, used in error messages.
    support: ClassVar[str] = "real numbers"

    def __init__(self, data_dim: int) -> None:
        super().__init__()
        self.data_dim = int(data_dim)

    def num_outputs(self) -> int:
        """Length of the decoder output vector this family consumes."""
        return self.data_dim

    def forward(
        self, out: torch.Tensor, x: torch.Tensor | None = None
    ) -> dist.TorchDistribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the finite values of ``x`` outside the support."""
        return torch.zeros_like(x, dtype=torch.bool)

    def check_data(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise :class:`PyrovaeError` naming how many values are NaN/Inf or off-support."""
        if x.ndim != 2 or x.shape[-1] != self.data_dim:
            raise PyrovaeError(
                f"{what}: expected shape (n, {self.data_dim}), got {tuple(x.shape)}"
            )
        bad = ~torch.isfinite(x)
        if bad.any():
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(bad.sum()) - n_nan
            raise PyrovaeError(
                f"{what}: {n_nan} NaN and {n_inf} infinite values out of {x.numel()}"
            )
        off = self.outside_support(x)
        if off.any():
            n = int(off.sum())
            example = x[off][0].item()
            raise PyrovaeError(
                f"{what}: {n} of {x.numel()} values are outside the support of the "
                f"{self.family!r} likelihood ({self.support}), e.g. {example:g}"
            )

    def mean(self, d: dist.TorchDistribution) -> torch.Tensor:
        """E[x|z] used for reconstructions and samples shown as images."""
        return d.mean

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step transform of a training batch (e.g. dynamic binarisation)."""
        return x


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """p(x|z) = ∏_d Bernoulli(x_d; sigmoid(f_θ(z)_d)), for binary data."""

    params: ClassVar[dict[str, Param]] = {}
    support = "values in {0, 1}"

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=out).to_event(1)

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x != 0) & (x != 1)


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """p(x|z) = N(x; μ_θ(z), σ² I).

    ``sigma="fixed"`` keeps σ at ``sigma_init``; ``sigma="shared"`` learns one σ
    for all dimensions (as log σ).  σ matters: with σ fixed the reconstruction
    term is −‖x − μ‖²/(2σ²) − D log σ − (D/2) log 2π, so σ sets the weight of
    reconstruction against the KL term (Rybkin et al. 2021, "Simple and Effective
    VAE Training with Calibrated Decoders").
    """

    params: ClassVar[dict[str, Param]] = {
        "sigma": Param("choice", "shared", choices=("fixed", "shared"), doc="how σ is set"),
        "sigma_init": Param("positive_float", 1.0, doc="initial (or fixed) σ"),
    }

    def __init__(self, data_dim: int, sigma: str = "shared", sigma_init: float = 1.0) -> None:
        super().__init__(data_dim)
        self.sigma_mode = sigma
        log_sigma = torch.tensor(math.log(sigma_init))
        if sigma == "fixed":
            self.register_buffer("log_sigma", log_sigma)
        else:
            self.log_sigma = nn.Parameter(log_sigma)

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        return dist.Normal(out, self.log_sigma.exp().expand_as(out)).to_event(1)
