"""Guide families q_φ(z|x) (the encoder's output distribution).

The encoder network maps x to a vector of ``num_outputs()`` numbers; the family
turns that vector into a distribution over z with ``event_shape == (latent_dim,)``
and batch shape ``out.shape[:-1]``.

Register a new family with ``@GUIDES.register("name")`` (see ``registry.py``).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.nn import functional as F

from pyrovae.model.priors import (
    FLOW_HIDDEN,
    LatentFamily,
    check_flow_hidden,
    drop_transform_caches,
)
from pyrovae.registry import GUIDES, Param


class GuideFamily(LatentFamily):
    """Base class: ``forward(out) -> q(z|x)`` from the encoder's raw output."""

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

    factorised: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {}

    def num_outputs(self) -> int:
        return 2 * self.latent_dim

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        loc, raw = out.split(self.latent_dim, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)


@GUIDES.register("full_covariance")
class FullCovarianceGuide(GuideFamily):
    """Full-covariance Gaussian q(z|x) = N(μ_φ(x), L_φ(x) L_φ(x)ᵀ).

    The encoder outputs μ (d numbers), the raw diagonal of the Cholesky factor L
    (d numbers, mapped through softplus(·) + 1e-4 so L is invertible and Σ = LLᵀ is
    positive definite) and the d(d−1)/2 strictly-lower entries of L.  Correlated
    posteriors that a diagonal guide cannot express become representable.
    """

    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        rows, cols = torch.tril_indices(self.latent_dim, self.latent_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def num_outputs(self) -> int:
        d = self.latent_dim
        return 2 * d + d * (d - 1) // 2

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        loc, raw_diag, off = out.split([d, d, d * (d - 1) // 2], dim=-1)
        strict = loc.new_zeros(*loc.shape, d)
        strict[..., self._rows, self._cols] = off
        tril = strict + torch.diag_embed(F.softplus(raw_diag) + MIN_SCALE)
        return dist.MultivariateNormal(loc, scale_tril=tril)


@GUIDES.register("flow")
class FlowGuide(GuideFamily):
    """Inverse autoregressive flow on top of the diagonal Gaussian (Kingma et al. 2016).

    u ~ N(μ_φ(x), diag σ_φ(x)²), then z = f_L ∘ … ∘ f_1(u) with Pyro's
    ``affine_autoregressive`` layers (IAF: z_i = μ_i(u_<i) + σ_i(u_<i) u_i, one
    pass to sample and to score the sample).  With ``context_dim > 0`` the encoder
    also outputs a context vector h(x) that conditions every layer
    (``conditional_affine_autoregressive``), as in the paper; with 0 the flow
    layers are shared by all x.  log q(z|x) = log N(u) − Σ_l log|det ∂f_l/∂u|.
    q has no closed-form mean or KL: the mean is estimated by samples and the
    KL term by Monte Carlo.  The layers are children of the guide, so they train.
    """

    params: ClassVar[dict[str, Param]] = {
        "num_layers": Param("positive_int", 2, doc="number of IAF layers", size="repeat"),
        "hidden": FLOW_HIDDEN,
        "context_dim": Param("nonneg_int", 8, doc="size of the context h(x) (0: unconditional)",
                             size="width"),
    }

    check_params = classmethod(check_flow_hidden)

    def __init__(
        self,
        latent_dim: int,
        num_layers: int = 2,
        hidden: tuple[int, ...] | list[int] = (32,),
        context_dim: int = 8,
    ) -> None:
        super().__init__(latent_dim)
        d = self.latent_dim
        hidden = [max(h, d) for h in hidden]
        self.context_dim = context_dim
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input_dim = 1.*")
            if context_dim:
                layers = [
                    T.conditional_affine_autoregressive(d, context_dim, hidden_dims=hidden)
                    for _ in range(num_layers)
                ]
            else:
                layers = [T.affine_autoregressive(d, hidden_dims=hidden) for _ in range(num_layers)]
        self.layers = nn.ModuleList(layers)

    def num_outputs(self) -> int:
        return 2 * self.latent_dim + self.context_dim

    def __getstate__(self) -> dict:
        drop_transform_caches(self)  # deepcopy / pickle after a training step
        return super().__getstate__()

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        loc, raw, context = out.split([d, d, self.context_dim], dim=-1)
        base = dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)
        if self.context_dim:
            transforms = [layer.condition(context) for layer in self.layers]
        else:
            transforms = list(self.layers)
        return dist.TransformedDistribution(base, transforms)
