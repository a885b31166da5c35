"""Likelihood families p_θ(x|z) (the decoder's output distribution).

The decoder network maps z to a flat vector of ``num_outputs()`` numbers; the
family reshapes it to the data's event shape (``(D,)`` for vectors, ``(C, H, W)``
for images) and returns a distribution over x with that ``event_shape``
(``.to_event(len(event_shape))``), so ``log_prob(x)`` is one number per example.  Each
family also owns the check of its support (:meth:`Likelihood.check_data`), run
once on the whole data set before training, so per-step distribution validation
can stay off without ever scoring data outside the support.

Register a new family with ``@LIKELIHOODS.register("name")`` (see ``registry.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

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

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        self.event_shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.data_dim = math.prod(self.event_shape)

    def num_outputs(self) -> int:
        """Length of the decoder output vector this family consumes."""
        return self.data_dim

    def view(self, out: torch.Tensor) -> torch.Tensor:
        """A flat ``(*batch, data_dim)`` tensor reshaped to ``(*batch, *event_shape)``."""
        return out.reshape(*out.shape[:-1], *self.event_shape)

    def event(self, d: dist.TorchDistribution) -> dist.TorchDistribution:
        """``d.to_event(len(event_shape))``: one log-density per example."""
        return d.to_event(len(self.event_shape))

    def forward(
        self, out: torch.Tensor, x: torch.Tensor | None = None
    ) -> dist.TorchDistribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the finite values of ``x`` outside the support."""
        return torch.zeros_like(x, dtype=torch.bool)

    def check_data(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise :class:`PyrovaeError` naming how many values are NaN/Inf or off-support."""
        if tuple(x.shape[1:]) != self.event_shape:
            want = ", ".join(str(s) for s in ("n", *self.event_shape))
            raise PyrovaeError(f"{what}: expected shape ({want}), got {tuple(x.shape)}")
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


def _is_integer(x: torch.Tensor) -> torch.Tensor:
    return x == torch.round(x)


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """p(x|z) = ∏_d Bernoulli(x_d; sigmoid(f_θ(z)_d)), for binary data.

    ``dynamic_binarization=True`` accepts data in [0, 1] and, at every training
    step, replaces each batch by a fresh draw x' ~ Bernoulli(x) (the usual
    treatment of MNIST-like intensities, e.g. Burda et al. 2016).  Held-out data
    passed to ``forward`` is scored as given, so evaluate on binarised data.
    """

    params: ClassVar[dict[str, Param]] = {
        "dynamic_binarization": Param(
            "bool", False, doc="accept [0, 1] data; resample binary x ~ Bernoulli(x) each step"
        ),
    }
    support = "values in {0, 1}"

    def __init__(
        self, event_shape: int | Sequence[int], dynamic_binarization: bool = False
    ) -> None:
        super().__init__(event_shape)
        self.dynamic_binarization = dynamic_binarization
        if dynamic_binarization:
            self.support = "values in [0, 1] (binarised at each step)"

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        return self.event(dist.Bernoulli(logits=self.view(out)))

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_binarization:
            return (x < 0) | (x > 1)
        return (x != 0) & (x != 1)

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(x) if self.dynamic_binarization else x


@LIKELIHOODS.register("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli p(x|z) = ∏_d C(λ_d) λ_d^{x_d} (1−λ_d)^{1−x_d}, x ∈ [0, 1].

    λ = sigmoid(f_θ(z)); C(λ) = 2 artanh(1−2λ)/(1−2λ) is the normaliser that the
    plain Bernoulli-on-[0,1] "likelihood" leaves out (Loaiza-Ganem & Cunningham
    2019, "The continuous Bernoulli: fixing a pervasive error in VAEs").  Its mean
    is not λ; :meth:`mean` returns the true E[x|z].
    """

    params: ClassVar[dict[str, Param]] = {}
    support = "values in [0, 1]"

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        return self.event(dist.ContinuousBernoulli(logits=self.view(out)))

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | (x > 1)


#: Floor added to predicted / calibrated σ, for numerical safety.
MIN_SIGMA = 1e-3

_SIGMA_MODES = ("fixed", "shared", "per_dim", "predicted", "calibrated")


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """p(x|z) = ∏_d N(x_d; μ_θ(z)_d, σ_d²).

    σ matters: the reconstruction term is −Σ_d (x_d − μ_d)²/(2σ_d²) − Σ_d log σ_d −
    (D/2) log 2π, so σ sets the weight of reconstruction against the KL term
    (footnote 3 of "The Intuitive VAE", Break Yang, 2024; Rybkin et al. (2021),
    *Simple and Effective VAE Training with Calibrated Decoders*).  ``sigma`` chooses how σ is set:

    - ``fixed``: σ = ``sigma_init`` for every dimension, not trained;
    - ``shared``: one learned σ for all dimensions (stored as log σ);
    - ``per_dim``: one learned σ_d per dimension;
    - ``predicted``: the decoder outputs 2·D numbers, μ and σ = softplus(·) + 1e-3;
    - ``calibrated``: σ* = sqrt(mean over the batch and dimensions of (x − μ)²), the
      maximiser of the Gaussian log-likelihood for a shared σ (Rybkin et al. 2021).
      In training mode σ* is computed from each batch (and folded into a running
      average with ``momentum``); in eval mode, or when x is unknown (sampling),
      the running value is used, so held-out data never sets its own σ.
    """

    params: ClassVar[dict[str, Param]] = {
        "sigma": Param("choice", "shared", choices=_SIGMA_MODES, doc="how σ is set"),
        "sigma_init": Param("positive_float", 1.0, doc="initial (or fixed) σ"),
        "momentum": Param(
            "unit_float", 0.9, doc="calibrated: weight of the old running σ in each update"
        ),
    }

    def __init__(
        self,
        event_shape: int | Sequence[int],
        sigma: str = "shared",
        sigma_init: float = 1.0,
        momentum: float = 0.9,
    ) -> None:
        super().__init__(event_shape)
        self.sigma_mode = sigma
        self.momentum = momentum
        log_sigma = torch.tensor(math.log(sigma_init))
        if sigma in ("fixed", "calibrated"):
            self.register_buffer("log_sigma", log_sigma)
        elif sigma == "shared":
            self.log_sigma = nn.Parameter(log_sigma)
        elif sigma == "per_dim":
            self.log_sigma = nn.Parameter(log_sigma.repeat(self.event_shape))
        #: the σ used by the last call (a tensor), for inspection and tests
        self.last_sigma: torch.Tensor | None = None

    def num_outputs(self) -> int:
        return 2 * self.data_dim if self.sigma_mode == "predicted" else self.data_dim

    def _loc_scale(
        self, out: torch.Tensor, x: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sigma_mode == "predicted":
            loc, raw = out.split(self.data_dim, dim=-1)
            return self.view(loc), self.view(F.softplus(raw) + MIN_SIGMA)
        out = self.view(out)
        if self.sigma_mode == "calibrated" and x is not None and self.training:
            sigma = ((x - out) ** 2).mean().sqrt().clamp_min(MIN_SIGMA)
            with torch.no_grad():
                m = self.momentum
                self.log_sigma.copy_(torch.log(m * self.log_sigma.exp() + (1 - m) * sigma))
            return out, sigma.expand_as(out)
        return out, self.log_sigma.exp().expand_as(out)

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        loc, scale = self._loc_scale(out, x)
        self.last_sigma = scale.detach()
        return self.event(dist.Normal(loc, scale))


@LIKELIHOODS.register("laplace")
class LaplaceLikelihood(Likelihood):
    """p(x|z) = ∏_d Laplace(x_d; μ_θ(z)_d, b) = ∏_d exp(−|x_d − μ_d|/b)/(2b): an L1 reconstruction.

    ``scale="fixed"`` keeps b at ``scale_init``; ``"shared"`` learns one b (as log b).
    """

    params: ClassVar[dict[str, Param]] = {
        "scale": Param("choice", "shared", choices=("fixed", "shared"), doc="how b is set"),
        "scale_init": Param("positive_float", 1.0, doc="initial (or fixed) b"),
    }

    def __init__(
        self, event_shape: int | Sequence[int], scale: str = "shared", scale_init: float = 1.0
    ) -> None:
        super().__init__(event_shape)
        self.scale_mode = scale
        log_scale = torch.tensor(math.log(scale_init))
        if scale == "fixed":
            self.register_buffer("log_scale", log_scale)
        else:
            self.log_scale = nn.Parameter(log_scale)

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        out = self.view(out)
        return self.event(dist.Laplace(out, self.log_scale.exp().expand_as(out)))


@LIKELIHOODS.register("binomial")
class BinomialLikelihood(Likelihood):
    """p(x|z) = ∏_d Binomial(x_d; N, sigmoid(f_θ(z)_d)), x_d ∈ {0, …, N}.

    For counts out of a known total, e.g. the digits data (pixel values 0..16,
    ``total_count: 16``).  E[x|z] = N·p.
    """

    params: ClassVar[dict[str, Param]] = {
        "total_count": Param("positive_int", 16, doc="N: the largest value"),
    }

    def __init__(self, event_shape: int | Sequence[int], total_count: int = 16) -> None:
        super().__init__(event_shape)
        self.total_count = total_count
        self.support = f"integers 0..{total_count}"

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        return self.event(dist.Binomial(total_count=self.total_count, logits=self.view(out)))

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | (x > self.total_count) | ~_is_integer(x)


@LIKELIHOODS.register("categorical")
class CategoricalLikelihood(Likelihood):
    """p(x|z) = ∏_d Categorical(x_d; softmax(f_θ(z)_{d,·})), x_d ∈ {0, …, L−1}.

    The decoder outputs D·L logits (L = ``levels``); each pixel gets its own
    distribution over the L levels with no ordering assumed (cf. the 256-way
    softmax of PixelRNN, van den Oord et al. 2016).  E[x|z] = Σ_l l·p_l.
    """

    params: ClassVar[dict[str, Param]] = {
        "levels": Param("positive_int", 17, doc="L: number of values, 0..L-1", size="outputs"),
    }

    def __init__(self, event_shape: int | Sequence[int], levels: int = 17) -> None:
        super().__init__(event_shape)
        self.levels = levels
        self.support = f"integers 0..{levels - 1}"

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        if params["levels"] < 2:
            raise PyrovaeError(f"{path}.levels: expected an integer >= 2, got {params['levels']}")

    def num_outputs(self) -> int:
        return self.data_dim * self.levels

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        logits = out.reshape(*out.shape[:-1], *self.event_shape, self.levels)
        return self.event(dist.Categorical(logits=logits))

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | (x > self.levels - 1) | ~_is_integer(x)

    def mean(self, d: dist.TorchDistribution) -> torch.Tensor:
        probs = d.base_dist.probs
        return probs @ torch.arange(self.levels, dtype=probs.dtype, device=probs.device)


@LIKELIHOODS.register("poisson")
class PoissonLikelihood(Likelihood):
    """p(x|z) = ∏_d Poisson(x_d; λ_d), λ = softplus(f_θ(z)) + 1e-6: for unbounded counts."""

    params: ClassVar[dict[str, Param]] = {}
    support = "non-negative integers"

    def forward(self, out: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        return self.event(dist.Poisson(F.softplus(self.view(out)) + 1e-6))

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | ~_is_integer(x)
