"""A VAE with several stochastic layers (Burda et al. 2016, §5): model kind
``hierarchical``.

Generative model (top-down; L = ``len(latent_dims)`` ≥ 2 layers, sites of the Pyro
model)::

    z_L ~ p(z_L)                            (the prior family)        site "zL"
    z_l | z_{l+1} ~ N(μ_θ(z_{l+1}), diag σ_θ(z_{l+1})²)   l = L−1 … 1  site "zl"
    x | z_1 ~ p_θ(x | z_1)                  (the likelihood family)   site "x"

Guide (bottom-up, as in Burda et al. 2016)::

    z_1 ~ q_φ(z_1 | x)                      (encoder + guide family)  site "z1"
    z_{l+1} | z_l ~ N(μ_φ(z_l), diag σ_φ(z_l)²)           l = 1 … L−1  site "z(l+1)"

all inside the plate ``"data"`` (scaled by ``num_data / batch`` for a minibatch) and
each latent site under ``poutine.scale(β)`` in model and guide, so Pyro's
``Trace_ELBO`` estimates

    ELBO_β(x) = E_q[log p(x | z_1)] − β Σ_l E_q[log q(z_l | ·) − log p(z_l | z_{l+1})]

(the per-site terms ``kl/z1`` … ``kl/zL``; Monte Carlo, since q(z_{l+1} | z_l) and
p(z_l | z_{l+1}) are conditional: no closed form applies).  The fast engine computes
the same estimator from the same draws (:mod:`pyrovae.estimators.hierarchical`, equal
to ``Trace_ELBO`` in value and gradients, ``tests/model/test_hierarchical.py``).

The spec: ``model: {family: hierarchical, latent_dims: [z1, z2, ...], layer_hidden: [...],
layer_activation: ...}``; ``encoder`` and ``decoder`` are the networks of q(z_1 | x) and
p(x | z_1), ``layer_hidden`` those between stochastic layers (Burda et al.: two tanh layers
of 100 units for 784-100-50).  ``latent_dim`` is derived: the **sum** of
``latent_dims``, the length of the flat latent vector the checks see
(:mod:`pyrovae.posterior.sites`: the sites z1, z2, … raveled in trace order of the model,
top layer first).

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*, §5
    (the two-stochastic-layer architecture).
    Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), *Ladder Variational
    Autoencoders* (hierarchical VAEs and their inactive top units).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.model.guides import MIN_SCALE
from pyrovae.model.nets import ACTIVATIONS, mlp
from pyrovae.model.spec import ModelSpec
from pyrovae.model.vae import VAE, _kl_scale, spec_from_args
from pyrovae.registry import MODELS, PRIORS, Param

__all__ = ["HierarchicalVAE"]


class _GaussianLayer(nn.Module):
    """An MLP ``d_in → hidden → 2·d_out`` giving N(μ, diag σ²), σ = softplus(·) + 1e-4
    (the parameterisation of the ``diagonal_normal`` guide family)."""

    def __init__(self, d_in: int, hidden: Sequence[int], d_out: int, activation: str) -> None:
        super().__init__()
        self.d_out = d_out
        self.net = mlp(d_in, list(hidden), 2 * d_out, activation)

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc, raw = self.net(h).split(self.d_out, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)


@MODELS.register("hierarchical")
class HierarchicalVAE(VAE):
    """A VAE with L ≥ 2 stochastic layers z_L → … → z_1 → x and a bottom-up guide
    (Burda et al. 2016, §5); sites ``"z1"`` … ``"zL"`` and ``"x"``.

    p(z_L) ∏_l p_θ(z_l | z_{l+1}) p_θ(x | z_1), guide q_φ(z_1 | x) ∏_l q_φ(z_{l+1} | z_l).

    Args:
        data_dim: as for :class:`~pyrovae.model.vae.VAE`.
        latent_dims: the sizes [d_1, …, d_L] of the layers, bottom (next to x) first.
        layer_hidden, layer_activation: the MLPs between stochastic layers
            (p(z_l | z_{l+1}) and q(z_{l+1} | z_l), each ``d_in → layer_hidden → 2·d_out``).
        encoder, decoder, activation: the networks of q(z_1 | x) and p(x | z_1) (as for
            the VAE).
        prior: the family of the top prior p(z_L) (not ``vamp``).
        likelihood: p(x | z_1).
        guide: the family of q(z_1 | x) (the upper layers are diagonal Gaussians).

    ``latent_dim`` is the sum of ``latent_dims`` (the flat vector of every site).

    Example:
        >>> h = HierarchicalVAE(784, [100, 50], encoder=[200, 200], layer_hidden=[100, 100])
        >>> fit(h, x, epochs=10)      # the fast engine: Trace_ELBO's estimator, per-site KL
        >>> pyrovae.posterior.ais(h, x_test)

    References:
        Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
    """

    params: ClassVar[dict[str, Param]] = {
        "latent_dims": Param("int_list", [32, 16],
                             doc="sizes of the stochastic layers z1 (next to x), z2, ... "
                                 "(at least 2); latent_dim becomes their sum", size="widths"),
        "layer_hidden": Param("int_list", [64], doc="hidden sizes of the MLPs between "
                              "stochastic layers (p(z_l|z_l+1) and q(z_l+1|z_l))",
                              size="widths"),
        "layer_activation": Param("choice", "tanh", choices=tuple(sorted(ACTIVATIONS)),
                                  doc="activation of those MLPs (Burda et al.: tanh)"),
    }
    #: The kind's own direct estimator (:mod:`pyrovae.estimators.kinds`): read by the
    #: objectives, engines and ``evaluate``, never the class name.
    own_loss: ClassVar[str | None] = "hierarchical"
    #: The checks see this kind through its Pyro pair (``PyroTarget``: several sites).
    pyro_target: ClassVar[bool] = True

    def __init__(
        self,
        data_dim: int | Sequence[int],
        latent_dims: Sequence[int] = (32, 16),
        *,
        layer_hidden: Sequence[int] = (64,),
        layer_activation: str = "tanh",
        encoder: Sequence[int] | Mapping[str, Any] | nn.Module = (128, 64),
        decoder: Sequence[int] | Mapping[str, Any] | nn.Module | None = None,
        activation: str = "relu",
        prior: Any = "normal",
        likelihood: Any = "bernoulli",
        guide: Any = "diagonal_normal",
    ) -> None:
        nn.Module.__init__(self)
        spec, ready = spec_from_args(
            data_dim, None, encoder=encoder, decoder=decoder, activation=activation,
            decoder_activation=None, prior=prior, likelihood=likelihood, guide=guide,
            context=None, model={"family": "hierarchical", "latent_dims": list(latent_dims),
                                 "layer_hidden": list(layer_hidden),
                                 "layer_activation": layer_activation})
        self._assemble(spec, ready)

    def _layer_dim(self, spec: ModelSpec) -> int:
        """The networks and the guide see z1, the layer next to x."""
        return spec.model["latent_dims"][0]

    def _prior_dim(self, spec: ModelSpec) -> int:
        """The prior is on the top layer z_L."""
        return spec.model["latent_dims"][-1]

    def _assemble(self, s: ModelSpec, ready: Mapping[str, nn.Module]) -> None:
        """The VAE's parts for z1 (``latent_dim`` becomes the sum of the layers) and the
        Gaussian layers between the stochastic layers."""
        super()._assemble(s, ready)
        dims = s.model["latent_dims"]
        self.latent_dims: tuple[int, ...] = tuple(dims)
        act, h = s.model["layer_activation"], s.model["layer_hidden"]
        #: q(z_{l+1} | z_l), l = 1 … L−1
        self.up = nn.ModuleList(_GaussianLayer(a, h, b, act)
                                for a, b in itertools.pairwise(dims))
        #: p(z_l | z_{l+1}), l = 1 … L−1
        self.down = nn.ModuleList(_GaussianLayer(b, h, a, act)
                                  for a, b in itertools.pairwise(dims))

    @staticmethod
    def check_params(params: Mapping[str, Any], path: str) -> None:
        """At least two stochastic layers (the registry calls it)."""
        if len(params["latent_dims"]) < 2:
            raise PyrovaeError(f"{path}.latent_dims: expected at least 2 layers, got "
                               f"{params['latent_dims']} (one layer: model: vae)")

    @classmethod
    def complete_spec(cls, spec: dict[str, Any]) -> None:
        """``latent_dim`` becomes the sum of ``latent_dims``; a context and the ``vamp``
        prior are refused."""
        ctx = spec.get("context") or {"family": "none"}
        if ctx.get("family") != "none":
            raise PyrovaeError(f"context: model: hierarchical is unconditional; leave context "
                               f"out, got {ctx}")
        if PRIORS.get(spec["prior"]["family"]).encodes_inputs:
            raise PyrovaeError(f"prior.family: {spec['prior']['family']!r} cannot be used with "
                               "model: hierarchical "
                               "(it encodes pseudo-inputs to z1, the prior is on the top layer)")
        spec["latent_dim"] = sum(spec["model"]["latent_dims"])

    # --------------------------------------------------------- distributions
    @property
    def site_names(self) -> tuple[str, ...]:
        """The latent sites ``("z1", …, "zL")``, bottom first."""
        return tuple(f"z{i + 1}" for i in range(len(self.latent_dims)))

    def prior_dist(self) -> dist.TorchDistribution:
        """p(z_L), the top layer's prior, event shape ``(latent_dims[-1],)``."""
        return self.prior()

    def layer_prior(self, layer: int, z_above: torch.Tensor) -> dist.TorchDistribution:
        """p_θ(z_layer | z_{layer+1}) for ``layer`` in 1 … L−1 (batch ``z_above.shape[:-1]``)."""
        return self.down[layer - 1](z_above)

    def layer_guide(self, layer: int, z_below: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z_{layer+1} | z_layer) for ``layer`` in 1 … L−1."""
        return self.up[layer - 1](z_below)

    def _no_context(self, y: Any) -> None:
        if y is not None:
            raise PyrovaeError("y: model: hierarchical is unconditional (no context); "
                               "pass no y")

    # ------------------------------------------------------------ pyro pair
    def model(
        self,
        x: torch.Tensor | None = None,
        y: Any = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor:
        """p(z_L) ∏ p(z_l | z_{l+1}) p_θ(x | z_1); ``x=None`` samples ``batch_size`` points."""
        self._no_context(y)
        pyro.module("vae", self)
        if x is not None:
            x = self.as_event(x)
        batch = batch_size if x is None else x.shape[0]
        names = self.site_names
        with self._plate(batch, num_data, self.param_device()):
            with _kl_scale(kl_weight):
                z = pyro.sample(names[-1], self.prior_dist())
                for layer in range(len(names) - 1, 0, -1):
                    z = pyro.sample(names[layer - 1], self.layer_prior(layer, z))
            return pyro.sample("x", self.decode(z, x), obs=x)

    def guide(
        self,
        x: torch.Tensor,
        y: Any = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor:
        """q_φ(z_1 | x) ∏ q_φ(z_{l+1} | z_l) (bottom-up); returns z_1."""
        self._no_context(y)
        pyro.module("vae", self)
        x = self.as_event(x)
        names = self.site_names
        with self._plate(x.shape[0], num_data, x.device), _kl_scale(kl_weight):
            z1 = z = pyro.sample(names[0], self.encode(x))
            for layer in range(1, len(names)):
                z = pyro.sample(names[layer], self.layer_guide(layer, z))
        return z1

    def stock_elbo(self, num_particles: int = 1) -> pyro.infer.ELBO:
        """Pyro's loss for this pair: ``Trace_ELBO`` (Monte Carlo KL per site; particles
        vectorised)."""
        return pyro.infer.Trace_ELBO(num_particles=num_particles, max_plate_nesting=1,
                                     vectorize_particles=num_particles > 1)

    # ---------------------------------------------------------- conveniences
    @torch.no_grad()
    def sample(self, n: int, *, y: Any = None, mean: bool = True) -> torch.Tensor:
        """``n`` ancestral draws z_L → … → z_1 → x, shape ``(n, *event_shape)``: the mean
        of p_θ(x | z_1) (``mean=True``) or a draw."""
        self._no_context(y)
        z = self.prior_dist().sample((n,))
        for layer in range(len(self.latent_dims) - 1, 0, -1):
            z = self.layer_prior(layer, z).sample()
        d = self.decode(z)
        return self.likelihood.mean(d) if mean else d.sample()

    def guide_parameters(self) -> list[nn.Parameter]:
        """φ: the encoder, the guide family of q(z_1 | x) and the upward layers."""
        return super().guide_parameters() + list(self.up.parameters())
