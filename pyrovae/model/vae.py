"""The VAE: a Pyro model p(z)·p_θ(x|z) and a guide q_φ(z|x) in one module.

Generative model (the seed's "prior × decoder")::

    z_i ~ p(z)                      (site "z", default N(0, I))
    x_i ~ p_θ(x | z_i)              (site "x", observed)      for i in plate "data"

Guide (the encoder, independently parameterised by φ)::

    z_i ~ q_φ(z | x_i)              (site "z")                for i in plate "data"

Both are ordinary Pyro callables: they run under ``SVI`` with any ELBO,
``Predictive``, ``Importance`` and ``poutine.trace``.  Minibatches are scaled by
the plate (``num_data / batch_size``) and the KL weight β by ``poutine.scale`` on
the latent site in model *and* guide, so that Trace_ELBO estimates
``E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z))`` (Higgins et al. 2017, β-VAE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyrovae.model.guides import GuideFamily
from pyrovae.model.likelihoods import Likelihood
from pyrovae.model.nets import mlp
from pyrovae.model.priors import Prior
from pyrovae.registry import GUIDES, LIKELIHOODS, PRIORS


class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2014) as a Pyro model/guide pair.

    Args:
        data_dim: length D of each (flattened) observation.
        latent_dim: length of z.
        encoder: hidden sizes of the encoder MLP (``[]`` = affine).
        decoder: hidden sizes of the decoder MLP (default: ``encoder`` reversed).
        activation: activation name (see ``pyrovae.nets.ACTIVATIONS``).
        decoder_activation: the decoder's, when it differs from ``activation``.
        prior, likelihood, guide: a family name, a ``{"family": ..., ...}`` entry,
            or a ready module (see ``pyrovae families``).

    Example:
        >>> vae = VAE(64, latent_dim=2, likelihood="bernoulli")
        >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({}), pyro.infer.Trace_ELBO())
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        *,
        encoder: Sequence[int] = (128, 64),
        decoder: Sequence[int] | None = None,
        activation: str = "relu",
        decoder_activation: str | None = None,
        prior: str | Mapping[str, Any] | Prior = "normal",
        likelihood: str | Mapping[str, Any] | Likelihood = "bernoulli",
        guide: str | Mapping[str, Any] | GuideFamily = "diagonal_normal",
    ) -> None:
        super().__init__()
        from pyrovae.model.spec import normalize_model_spec

        decoder = list(reversed(list(encoder))) if decoder is None else list(decoder)
        self._spec = normalize_model_spec(
            {
                "data_dim": data_dim,
                "latent_dim": latent_dim,
                "encoder": {"hidden": list(encoder), "activation": activation},
                "decoder": {"hidden": decoder, "activation": decoder_activation or activation},
                "prior": _entry(prior),
                "likelihood": _entry(likelihood),
                "guide": _entry(guide),
            }
        )
        s = self._spec
        self.data_dim, self.latent_dim = s["data_dim"], s["latent_dim"]
        self.prior = prior if isinstance(prior, Prior) else PRIORS.build(
            s["prior"], "prior", latent_dim=self.latent_dim
        )
        self.likelihood = likelihood if isinstance(likelihood, Likelihood) else LIKELIHOODS.build(
            s["likelihood"], "likelihood", data_dim=self.data_dim
        )
        self.guide_family = guide if isinstance(guide, GuideFamily) else GUIDES.build(
            s["guide"], "guide", latent_dim=self.latent_dim
        )
        self.encoder = mlp(
            self.data_dim, s["encoder"]["hidden"], self.guide_family.num_outputs(),
            s["encoder"]["activation"],
        )
        self.decoder = mlp(
            self.latent_dim, s["decoder"]["hidden"], self.likelihood.num_outputs(),
            s["decoder"]["activation"],
        )
        self.prior.attach(self)

    # ------------------------------------------------------------------ spec
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], data_dim: int | None = None) -> VAE:
        """Build from a spec (a full spec or its model part; see ``pyrovae.runs.spec``).

        ``data_dim`` fills in a spec whose ``data_dim`` is null (inferred from data).
        """
        from pyrovae.model.spec import normalize_model_spec

        s = dict(spec)
        if s.get("data_dim") is None and data_dim is not None:
            s["data_dim"] = data_dim
        s = normalize_model_spec(s, require_data_dim=True)
        try:
            return cls(
                s["data_dim"],
                s["latent_dim"],
                encoder=s["encoder"]["hidden"],
                decoder=s["decoder"]["hidden"],
                activation=s["encoder"]["activation"],
                decoder_activation=s["decoder"]["activation"],
                prior=s["prior"],
                likelihood=s["likelihood"],
                guide=s["guide"],
            )
        except (RuntimeError, MemoryError, OverflowError, TypeError) as exc:
            # sizes too large to allocate (torch: "can't allocate", "Overflow when unpacking")
            text = str(exc)
            if not isinstance(exc, (MemoryError, OverflowError)) and not any(
                w in text for w in ("allocate", "Overflow", "overflow", "out of memory")
            ):
                raise
            from pyrovae.errors import PyrovaeError

            sizes = (f"data_dim {s['data_dim']}, latent_dim {s['latent_dim']}, encoder "
                     f"{s['encoder']['hidden']}, decoder {s['decoder']['hidden']}")
            raise PyrovaeError(f"cannot build a VAE of these sizes ({sizes}): too large "
                               "to allocate") from None

    @property
    def spec(self) -> dict[str, Any]:
        """The model part of the spec (a plain, JSON-able dict); round-trips via ``from_spec``."""
        import copy

        return copy.deepcopy(self._spec)

    # --------------------------------------------------------- distributions
    def prior_dist(self) -> dist.TorchDistribution:
        """p(z), event shape ``(latent_dim,)``."""
        return self.prior()

    def encode(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x), batch shape ``x.shape[:-1]``, event shape ``(latent_dim,)``."""
        return self.guide_family(self.encoder(x))

    def decode(self, z: torch.Tensor, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        """p_θ(x|z), batch shape ``z.shape[:-1]``, event shape ``(data_dim,)``."""
        return self.likelihood(self.decoder(z), x)

    # ------------------------------------------------------------ pyro pair
    def _plate(self, batch: int, num_data: int | None, device: torch.device):
        if num_data is None or num_data == batch:
            return pyro.plate("data", batch, device=device)
        return pyro.plate(
            "data", num_data, subsample=torch.arange(batch, device=device), device=device
        )

    def model(
        self,
        x: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor:
        """Generative model p(z) p_θ(x|z); ``x=None`` samples ``batch_size`` new points.

        ``num_data`` is the full data-set size when ``x`` is a minibatch: the plate
        then scales every log-density by ``num_data / len(x)``.
        """
        pyro.module("vae", self)
        batch = batch_size if x is None else x.shape[0]
        device = self.decoder[-1].weight.device
        with self._plate(batch, num_data, device):
            with _kl_scale(kl_weight):
                z = pyro.sample("z", self.prior_dist())
            return pyro.sample("x", self.decode(z, x), obs=x)

    def guide(
        self,
        x: torch.Tensor,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor:
        """Amortised guide q_φ(z|x) (the encoder)."""
        pyro.module("vae", self)
        with self._plate(x.shape[0], num_data, x.device):
            with _kl_scale(kl_weight):
                return pyro.sample("z", self.encode(x))

    # ---------------------------------------------------------- conveniences
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Mean of p_θ(x | z) at z = E_q[z|x] (or a sample of z when ``sample=True``)."""
        q = self.encode(x)
        z = q.sample() if sample else _dist_mean(q)
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        """``n`` draws from the generative model: z ~ p(z), then the mean of p_θ(x|z)
        (``mean=True``) or a draw x ~ p_θ(x|z)."""
        z = self.prior_dist().sample((n,))
        d = self.decode(z)
        return self.likelihood.mean(d) if mean else d.sample()

    def model_parameters(self) -> list[nn.Parameter]:
        """θ: decoder, likelihood and prior parameters (those the model alone uses)."""
        guide_ids = {id(p) for p in self.guide_parameters()}
        return [p for p in self.parameters() if id(p) not in guide_ids]

    def guide_parameters(self) -> list[nn.Parameter]:
        """φ: encoder and guide-family parameters."""
        return list(self.encoder.parameters()) + list(self.guide_family.parameters())


def _entry(family: Any) -> Any:
    """A spec entry for a family given as a name, an entry or a built module."""
    if isinstance(family, nn.Module):
        return dict(getattr(family, "entry", None) or {"family": family.family})
    return family


def _kl_scale(kl_weight: float):
    """``poutine.scale(β)``; β = 0 (Pyro refuses scale 0) masks the latent site instead,
    which drops log p(z) and log q(z|x) from the objective exactly as β = 0 would."""
    if isinstance(kl_weight, (int, float)) and kl_weight == 0:
        return poutine.mask(mask=False)
    return poutine.scale(scale=kl_weight)


def _dist_mean(d: dist.TorchDistribution) -> torch.Tensor:
    try:
        return d.mean
    except NotImplementedError:  # e.g. flows: average a few draws
        return d.sample((64,)).mean(0)
