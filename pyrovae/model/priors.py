"""Prior families p(z).

Each family is an ``nn.Module`` whose ``forward()`` returns p(z) as a Pyro
distribution with ``event_shape == (latent_dim,)`` and an empty batch shape; the
model broadcasts it over the ``"data"`` plate.  Learnable priors keep their
parameters as ordinary ``nn.Parameter`` so they train with the rest of the VAE.

Register a new family with ``@PRIORS.register("name")`` (see ``registry.py``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.registry import PRIORS, Param


def drop_transform_caches(module: nn.Module) -> None:
    """Forget the (x, y) caches of the Pyro/torch transforms inside ``module``.

    Flow layers cache their last input/output (non-leaf tensors) so that scoring a
    fresh sample costs no inverse; ``copy.deepcopy`` and pickling refuse such
    tensors, so families holding flow layers call this from ``__getstate__``.
    """
    for m in module.modules():
        if isinstance(m, torch.distributions.Transform):
            m._cached_x_y = (None, None)
            for key, value in list(vars(m).items()):
                if "cache" in key and isinstance(value, torch.Tensor):
                    setattr(m, key, None)


#: Hidden sizes of the networks inside each flow layer (flow priors and flow guides).
FLOW_HIDDEN = Param(
    "int_list", [32], doc="hidden sizes of each layer's network (widened to >= latent_dim)",
    size="widths",
)


def check_flow_hidden(cls: type, params: dict, path: str) -> None:
    """A flow needs at least one hidden layer in each layer's network."""
    if not params["hidden"]:
        raise PyrovaeError(f"{path}.hidden: expected at least one hidden layer, got []")


class LatentFamily(nn.Module):
    """Base of the families over z (priors and guides): the registered name, the declared
    parameters and the latent dimension."""

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""
    #: whether the distribution factorises over latent dimensions into one univariate
    #: distribution per dimension (free bits needs it of the prior and of the guide)
    factorised: ClassVar[bool] = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)


class Prior(LatentFamily):
    """Base class: ``forward() -> p(z)`` with event shape ``(latent_dim,)``."""

    #: whether p(z) is built by passing inputs through the VAE's encoder (the VampPrior),
    #: which a conditional, semi-supervised or hierarchical model cannot do
    encodes_inputs: ClassVar[bool] = False

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
    """Standard normal p(z) = N(0, I), the default prior of "The Intuitive VAE"
    (Break Yang, 2024)."""

    factorised: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.ones(self.latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


@PRIORS.register("normal_learned")
class LearnedNormalPrior(Prior):
    """Learnable diagonal Gaussian p(z) = N(μ, diag σ²), μ and log σ trained with the VAE.

    Starts at N(0, σ₀² I) (``scale_init`` = σ₀).  A learned location/scale only
    shifts and rescales the latent space (the decoder can absorb it), so it mostly
    changes the KL term's geometry, not the model class.
    """

    factorised: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        "scale_init": Param("positive_float", 1.0, doc="initial σ of every dimension"),
    }

    def __init__(self, latent_dim: int, scale_init: float = 1.0) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.full((self.latent_dim,), math.log(scale_init)))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


@PRIORS.register("laplace")
class LaplacePrior(Prior):
    """Laplace p(z) = ∏_d Laplace(z_d; 0, b) = ∏_d exp(−|z_d|/b) / (2b).

    Heavier tails than N(0, I) and a peak at 0, which favours sparse codes.
    """

    factorised: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        "scale": Param("positive_float", 1.0, doc="b (variance 2b²)"),
    }

    def __init__(self, latent_dim: int, scale: float = 1.0) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.full((self.latent_dim,), float(scale)))

    def forward(self) -> dist.TorchDistribution:
        return dist.Laplace(self.loc, self.scale).to_event(1)


@PRIORS.register("student_t")
class StudentTPrior(Prior):
    """Student-t p(z) = ∏_d t_ν(z_d; 0, s): heavy tails; ν → ∞ recovers N(0, s²)."""

    factorised: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        "df": Param("positive_float", 3.0, doc="degrees of freedom ν"),
        "scale": Param("positive_float", 1.0, doc="scale s"),
    }

    def __init__(self, latent_dim: int, df: float = 3.0, scale: float = 1.0) -> None:
        super().__init__(latent_dim)
        self.register_buffer("df", torch.full((self.latent_dim,), float(df)))
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.full((self.latent_dim,), float(scale)))

    def forward(self) -> dist.TorchDistribution:
        return dist.StudentT(self.df, self.loc, self.scale).to_event(1)


@PRIORS.register("mixture")
class MixturePrior(Prior):
    """Learnable mixture of Gaussians p(z) = Σ_k π_k N(z; μ_k, diag σ_k²).

    log p(z) = logsumexp_k [log π_k + log N(z; μ_k, diag σ_k²)], π = softmax(logits);
    the means start at random N(0, ``spread``²) points, the scales at ``scale_init``.
    (Learned mixture priors: e.g. Dilokthanakul et al. 2016; Tomczak & Welling 2018, §3.)
    """

    params: ClassVar[dict[str, Param]] = {
        "components": Param("positive_int", 10, doc="number of Gaussians K", size="count"),
        "spread": Param("positive_float", 1.0, doc="std of the random initial means"),
        "scale_init": Param("positive_float", 1.0, doc="initial σ of every component"),
    }

    def __init__(
        self, latent_dim: int, components: int = 10, spread: float = 1.0, scale_init: float = 1.0
    ) -> None:
        super().__init__(latent_dim)
        k, d = components, self.latent_dim
        self.components = components
        self.logits = nn.Parameter(torch.zeros(k))
        self.locs = nn.Parameter(spread * torch.randn(k, d))
        self.log_scales = nn.Parameter(torch.full((k, d), math.log(scale_init)))

    def forward(self) -> dist.TorchDistribution:
        comps = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), comps)


class _BroadcastMixture(dist.MixtureSameFamily):
    """MixtureSameFamily whose ``log_prob`` expands z to every component before scoring.

    torch scores ``z.unsqueeze(-2)`` and relies on broadcasting, which conditional
    flows (whose context has the components' batch shape) do not support.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        k = self.mixture_distribution.logits.shape[-1]
        x = value.unsqueeze(-1 - len(self.event_shape))
        x = x.expand(*x.shape[: -1 - len(self.event_shape)], k, *self.event_shape)
        log_px = self.component_distribution.log_prob(x)
        log_w = torch.log_softmax(self.mixture_distribution.logits, dim=-1)
        return torch.logsumexp(log_px + log_w, dim=-1)


@PRIORS.register("vamp")
class VampPrior(Prior):
    """VampPrior p(z) = (1/K) Σ_k q_φ(z | u_k) (Tomczak & Welling 2018, "VAE with a VampPrior").

    The K pseudo-inputs u_k ∈ R^D are learned; each goes through the VAE's own
    encoder and guide family, so the prior is a mixture of variational posteriors.
    The pseudo-inputs start uniform in [0, 1) (data scaled to [0, 1]).  The prior
    shares the encoder with the guide; the reference is kept outside the module
    tree so the encoder's parameters are registered once (in the VAE).
    """

    encodes_inputs: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        "components": Param("positive_int", 50, doc="number of pseudo-inputs K", size="count"),
    }

    def __init__(self, latent_dim: int, components: int = 50) -> None:
        super().__init__(latent_dim)
        self.components = components
        self.pseudo_inputs: nn.Parameter | None = None

    def attach(self, vae: Any) -> None:
        object.__setattr__(self, "_vae", vae)
        if self.pseudo_inputs is None:
            self.pseudo_inputs = nn.Parameter(torch.rand(self.components, *vae.event_shape))

    def forward(self) -> dist.TorchDistribution:
        vae = self.__dict__.get("_vae")
        if vae is None:
            raise RuntimeError("VampPrior is used before attach(vae)")
        comps = vae.guide_family(vae.encoder_out(self.pseudo_inputs))
        weights = torch.zeros(self.components, device=self.pseudo_inputs.device)
        return _BroadcastMixture(dist.Categorical(logits=weights), comps)


#: Normalising-flow layers for :class:`FlowPrior`: name -> builder(dim, hidden).
_FLOWS: dict[str, Any] = {
    "affine_autoregressive": lambda d, h: T.affine_autoregressive(d, hidden_dims=h),
    "spline_autoregressive": lambda d, h: T.spline_autoregressive(d, hidden_dims=h),
    "affine_coupling": lambda d, h: T.affine_coupling(d, hidden_dims=h),
    "spline": lambda d, h: T.spline(d),
}


@PRIORS.register("flow")
class FlowPrior(Prior):
    """Normalising-flow prior p(z) = N(u; 0, I) |det ∂f⁻¹/∂z|, z = f_L ∘ … ∘ f_1(u).

    Built from Pyro's own transforms (``pyro.distributions.transforms``):
    ``affine_autoregressive`` (MAF-style, Papamakarios et al. 2017),
    ``spline_autoregressive`` / ``spline`` (neural spline flows, Durkan et al. 2019) or
    ``affine_coupling`` (RealNVP, Dinh et al. 2017; the halves swap between layers).
    The prior must score any z the guide proposes, so only transforms with an
    inverse are offered (no planar/radial).
    The layers are ``TransformModule`` children of the prior, so they train.
    Autoregressive layers draw a random variable order at construction (kept as a
    buffer); elementwise ``spline`` layers start at the identity, so p(z) starts at N(0, I).
    """

    params: ClassVar[dict[str, Param]] = {
        "flow": Param("choice", "affine_autoregressive", choices=tuple(_FLOWS), doc="layer type"),
        "num_layers": Param("positive_int", 2, doc="number of flow layers", size="repeat"),
        "hidden": FLOW_HIDDEN,
    }

    check_params = classmethod(check_flow_hidden)

    def __init__(
        self,
        latent_dim: int,
        flow: str = "affine_autoregressive",
        num_layers: int = 2,
        hidden: tuple[int, ...] | list[int] = (32,),
    ) -> None:
        super().__init__(latent_dim)
        if flow not in _FLOWS:
            raise PyrovaeError(f"prior.flow: expected one of {', '.join(_FLOWS)}, got {flow!r}")
        if flow == "affine_coupling" and self.latent_dim < 2:
            raise PyrovaeError("prior.flow: 'affine_coupling' needs latent_dim >= 2")
        hidden = list(hidden)
        if flow != "spline":
            hidden = [max(h, self.latent_dim) for h in hidden]  # masks need width >= dim
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input_dim = 1.*")
            self.layers = nn.ModuleList(
                _FLOWS[flow](self.latent_dim, hidden) for _ in range(num_layers)
            )
        if flow == "spline":  # start at the identity (Pyro draws random knots: spiky densities)
            for layer in self.layers:
                with torch.no_grad():
                    for name, value in layer.named_parameters():
                        # softplus(log(e − 1)) = 1: unit slopes at the knots, a straight line
                        value.fill_(math.log(math.e - 1) if name.endswith("derivatives") else 0.0)
        self.flow = flow
        self.register_buffer("base_loc", torch.zeros(self.latent_dim))
        self.register_buffer("base_scale", torch.ones(self.latent_dim))

    def __getstate__(self) -> dict[str, Any]:
        drop_transform_caches(self)  # deepcopy / pickle after a training step
        return super().__getstate__()

    def forward(self) -> dist.TorchDistribution:
        base = dist.Normal(self.base_loc, self.base_scale).to_event(1)
        transforms: list[Any] = []
        for i, layer in enumerate(self.layers):
            if i and self.flow == "affine_coupling":  # let every half be transformed
                rev = torch.arange(self.latent_dim - 1, -1, -1, device=self.base_loc.device)
                transforms.append(T.Permute(rev))
            transforms.append(layer)
        return dist.TransformedDistribution(base, transforms)
