"""The VAE: a Pyro model p(z)·p_θ(x|z) and a guide q_φ(z|x) in one module.

Generative model ("prior × decoder" in "The Intuitive VAE", Break Yang, 2024)::

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

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.model.context import Context
from pyrovae.model.guides import GuideFamily
from pyrovae.model.likelihoods import Likelihood
from pyrovae.model.nets import Network
from pyrovae.model.priors import Prior
from pyrovae.model.spec import ModelSpec
from pyrovae.model.weights import load_pretrained, save_vae
from pyrovae.registry import CONTEXTS, GUIDES, LIKELIHOODS, MODELS, NETWORKS, PRIORS


@MODELS.register("vae")
class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2014) as a Pyro model/guide pair.

    Args:
        data_dim: the shape of one observation: an int D for vectors, or an event
            shape such as ``(1, 28, 28)`` for images (the likelihood's event shape).
        latent_dim: length of z.
        encoder: hidden sizes of an MLP encoder (``[]`` = affine), a network family
            entry (``{"family": "conv", "channels": [32, 64]}``), or any
            ``torch.nn.Module`` meeting the contract in :mod:`pyrovae.model.nets`
            (x of shape ``(batch, *event_shape)`` in, ``(batch, guide.num_outputs())`` out).
        decoder: the same for the decoder (z in, ``(batch, likelihood.num_outputs())``
            out); default: the encoder's mirror image (an MLP's hidden list reversed).
        activation: activation of an MLP given by its hidden sizes.
        decoder_activation: the decoder's, when it differs from ``activation``.
        prior, likelihood, guide: a family name, a ``{"family": ..., ...}`` entry,
            or a ready module (see ``pyrovae families``).
        context: what a conditional VAE conditions on: ``None`` (unconditional),
            a context family (``{"family": "label", "classes": 10}``,
            ``{"family": "vector", "dim": 3}``) or a ready module.  The encoded
            context is the networks' second argument.

    Example:
        >>> vae = VAE(64, latent_dim=2, likelihood="bernoulli")
        >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({}), pyro.infer.Trace_ELBO())
        >>> conv = VAE((1, 28, 28), 16, encoder={"family": "conv", "channels": [32, 64]})

    References:
        Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
        Sohn et al. (2015), *Learning Structured Output Representation using Deep
        Conditional Generative Models* (the conditional VAE).
    """

    #: The model kind's parameters (the spec's ``model`` entry; see
    #: :func:`pyrovae.model.spec.model_class`): the plain VAE has none.
    params: ClassVar[dict[str, Any]] = {}
    #: Whether a discrete label site is summed out by enumeration (a capability; the M2 kind).
    label_latent: ClassVar[bool] = False
    #: The kind's own direct estimator, a key of ``pyrovae.estimators.kinds.KIND_ESTIMATORS``
    #: (``None``: the VAE's, :mod:`pyrovae.estimators.elbo`); read by the objectives,
    #: the engines and ``evaluate``, never the class name.
    own_loss: ClassVar[str | None] = None
    #: Whether the checks see this kind through its Pyro pair (``PyroTarget``: latent
    #: sites found from a trace) rather than the single-``"z"`` fast path.
    pyro_target: ClassVar[bool] = False

    def __init__(
        self,
        data_dim: int | Sequence[int],
        latent_dim: int = 2,
        *,
        encoder: Sequence[int] | Mapping[str, Any] | nn.Module = (128, 64),
        decoder: Sequence[int] | Mapping[str, Any] | nn.Module | None = None,
        activation: str = "relu",
        decoder_activation: str | None = None,
        prior: str | Mapping[str, Any] | Prior = "normal",
        likelihood: str | Mapping[str, Any] | Likelihood = "bernoulli",
        guide: str | Mapping[str, Any] | GuideFamily = "diagonal_normal",
        context: str | Mapping[str, Any] | Context | None = None,
    ) -> None:
        super().__init__()
        spec, ready = spec_from_args(
            data_dim, latent_dim, encoder=encoder, decoder=decoder, activation=activation,
            decoder_activation=decoder_activation, prior=prior, likelihood=likelihood,
            guide=guide, context=context)
        self._assemble(spec, ready)

    # ---------------------------------------------------------------- build
    def _layer_dim(self, spec: ModelSpec) -> int:
        """The size of the z the networks and the guide see (the VAE's one latent)."""
        return spec.latent_dim

    def _prior_dim(self, spec: ModelSpec) -> int:
        """The size of the latent the prior is on."""
        return spec.latent_dim

    def _assemble(self, s: ModelSpec, ready: Mapping[str, nn.Module]) -> None:
        """Build the families a validated :class:`ModelSpec` names (none is validated
        again: ``Registry.instantiate``), using the ``ready`` modules where given.  The
        one place a VAE is put together: ``__init__`` and ``from_spec`` both end here;
        a kind with more parts extends it."""
        self.kind_entry: dict[str, Any] = copy.deepcopy(s.model)  # a plain dict
        self.data_dim, self.event_shape = s.data_dim, s.shape
        self.latent_dim = self._layer_dim(s)  # the kind may widen it after the networks
        self.prior = ready["prior"] if "prior" in ready else PRIORS.instantiate(
            s.prior, latent_dim=self._prior_dim(s))
        self.likelihood = ready["likelihood"] if "likelihood" in ready else \
            LIKELIHOODS.instantiate(s.likelihood, event_shape=self.event_shape)
        if tuple(self.likelihood.event_shape) != self.event_shape:
            raise PyrovaeError(f"likelihood: built for event shape {self.likelihood.event_shape}, "
                               f"the VAE's is {self.event_shape}")
        self.guide_family = ready["guide"] if "guide" in ready else GUIDES.instantiate(
            s.guide, latent_dim=self.latent_dim)
        self.context = ready["context"] if "context" in ready else CONTEXTS.instantiate(
            s.context)
        for key, module in (("prior", self.prior), ("likelihood", self.likelihood),
                            ("guide", self.guide_family), ("context", self.context)):
            if getattr(module, "entry", None) is None:  # a ready family: its validated entry
                module.entry = copy.deepcopy(getattr(s, key))
        if self.context.dim and self.prior.encodes_inputs:
            raise PyrovaeError(f"prior.family: {self.prior.family!r} encodes pseudo-inputs "
                               "without a context; it cannot be used with a conditional VAE "
                               "(context)")
        sizes = {"event_shape": self.event_shape, "latent_dim": self.latent_dim,
                 "context_dim": self.context.dim}
        nets = {k: ready[k] for k in ("encoder", "decoder") if k in ready}
        for key, entry in (("encoder", s.encoder), ("decoder", s.decoder)):
            if key not in nets and entry.get("family") == "custom":
                raise PyrovaeError(
                    f"{key}.family: 'custom' ({entry.get('module')}) is a Python module that "
                    "a spec cannot rebuild; build VAE(..., encoder=..., decoder=...) in Python")
        # (a module given is used even when it is falsy, e.g. an nn.Sequential)
        self.encoder = nets["encoder"] if "encoder" in nets else NETWORKS.instantiate(
            s.encoder, role="encoder", out_features=self.guide_family.num_outputs(), **sizes)
        self.decoder = nets["decoder"] if "decoder" in nets else NETWORKS.instantiate(
            s.decoder, role="decoder", out_features=self.likelihood.num_outputs(), **sizes)
        self.prior.attach(self)
        for key in nets:
            self._probe(key)
        self.latent_dim = s.latent_dim

    def _probe(self, role: str) -> None:
        """Call a network passed in as a module once on zeros (eval mode, no grad: no
        state changes) so that a wrong input or output shape is reported now, in one line."""
        net = getattr(self, role)
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                if role == "encoder":
                    inp = torch.zeros(2, *self.event_shape)
                else:
                    inp = torch.zeros(2, self.latent_dim)
                c = torch.zeros(2, self.context.dim) if self.context.dim else None
                try:
                    out = net(inp) if c is None else net(inp, c)
                except PyrovaeError:
                    raise
                except Exception as exc:  # the module's own failure on the contract's input
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    args = f"x of shape {tuple(inp.shape)}" + (
                        f" and a context of shape {tuple(c.shape)}" if c is not None else "")
                    raise PyrovaeError(f"{role}: calling it with {args} failed ({first})") from None
                family = self.guide_family if role == "encoder" else self.likelihood
                want = (family.num_outputs(),)
                _checked(out, (2, *want), role, family)
        finally:
            net.train(was)

    # ------------------------------------------------------------------ spec
    @classmethod
    def complete_spec(cls, spec: dict[str, Any]) -> None:
        """Fill in or refuse, in a normalized spec, what this kind decides (nothing for
        the VAE; the M2 kind sets the label context)."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], data_dim: int | None = None, *,
                  encoder: nn.Module | None = None, decoder: nn.Module | None = None) -> VAE:
        """Build the model kind a spec names (a full spec or its model part; see
        ``pyrovae.runs.spec``), e.g. an ``m2`` spec gives a ``SemiSupervisedVAE``.

        A validated spec (a :class:`~pyrovae.model.spec.ModelSpec` or a run's ``Spec``)
        is built from as it is; a raw mapping is validated here, once.  ``data_dim``
        fills in a spec whose ``data_dim`` is null (inferred from data).
        ``encoder``/``decoder``: your modules for networks the spec records as
        ``{family: custom}`` (a spec cannot rebuild Python code).
        """
        from pyrovae.model.spec import model_spec_of

        s = model_spec_of(spec, data_dim)
        kind = MODELS.get(s.model["family"], "model")
        if not issubclass(kind, cls):
            raise PyrovaeError(f"model.family: expected {cls.family!r}, got {kind.family!r}")
        ready = {k: m for k, m in (("encoder", encoder), ("decoder", decoder)) if m is not None}
        obj = kind.__new__(kind)
        nn.Module.__init__(obj)
        try:
            obj._assemble(s, ready)
        except (RuntimeError, MemoryError, OverflowError, TypeError) as exc:
            # sizes too large to allocate (torch: "can't allocate", "Overflow when unpacking")
            text = str(exc)
            if not isinstance(exc, (MemoryError, OverflowError)) and not any(
                w in text for w in ("allocate", "Overflow", "overflow", "out of memory")
            ):
                raise
            sizes = (f"data_dim {s.data_dim}, latent_dim {s.latent_dim}, encoder "
                     f"{_sizes(s.encoder)}, decoder {_sizes(s.decoder)}")
            raise PyrovaeError(f"cannot build a VAE of these sizes ({sizes}): too large "
                               "to allocate") from None
        return obj

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the weights (``model.safetensors``, nothing pickled) and the spec
        (``spec.yaml``) to ``folder``; :func:`load_vae` or :meth:`from_pretrained` read
        them back (the format: :mod:`pyrovae.model.weights`).

        Args:
            folder: the folder to write (created if needed).
            overwrite: replace a ``model.safetensors``/``spec.yaml`` already there.

        Returns:
            The folder.

        Raises:
            PyrovaeError: the files exist without ``overwrite``, or a weight is not finite.
        """
        return save_vae(self, folder, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, encoder: nn.Module | type | None = None,
                        decoder: nn.Module | type | None = None) -> VAE:
        """The VAE saved in ``folder`` by :meth:`save` or ``pyrovae export``
        (:func:`load_vae`, which documents the arguments)."""
        return load_pretrained(cls, folder, encoder=encoder, decoder=decoder)

    @property
    def spec(self) -> dict[str, Any]:
        """The model part of the spec (a plain, JSON-able dict), read off the built parts:
        each family's validated entry, a custom network module recorded as ``{"family":
        "custom", "module": its class name}``; round-trips via ``from_spec`` (the custom
        modules passed again)."""
        out: dict[str, Any] = {
            "model": copy.deepcopy(self.kind_entry), "data_dim": self.data_dim,
            "event_shape": list(self.event_shape) if len(self.event_shape) > 1 else None,
            "latent_dim": self.latent_dim,
        }
        for key, part in (("encoder", self.encoder), ("decoder", self.decoder),
                          ("prior", self.prior), ("likelihood", self.likelihood),
                          ("guide", self.guide_family), ("context", self.context)):
            entry = getattr(part, "entry", None) if key not in ("encoder", "decoder") \
                or isinstance(part, Network) else None
            out[key] = copy.deepcopy(entry) if entry is not None else {
                "family": "custom", "module": type(part).__qualname__}
        return out

    @property
    def width(self) -> int:
        """The largest per-example activation of the networks (evaluation sizes chunks by it)."""
        return max(getattr(self.encoder, "width", 0), getattr(self.decoder, "width", 0),
                   self.data_dim, self.likelihood.num_outputs())

    # ------------------------------------------------------------- shapes
    def as_event(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        """``x`` as a batch of examples of the VAE's event shape: ``(n, *event_shape)``.

        Data of another shape with the same number of values per example (a flat
        ``(n, D)`` for an image VAE, ``(n, 1, 8, 8)`` for a flat one) is reshaped;
        anything else is a :class:`PyrovaeError` naming both shapes.
        """
        shape = self.event_shape
        if tuple(x.shape[x.ndim - len(shape):]) == shape and x.ndim > len(shape):
            return x
        if x.ndim >= 2 and math.prod(x.shape[1:]) == self.data_dim:
            return x.reshape(x.shape[0], *shape)
        want = ", ".join(str(s) for s in ("n", *shape))
        raise PyrovaeError(f"{what}: expected shape ({want}), got {tuple(x.shape)}")

    def encode_context(self, y: Any) -> torch.Tensor | None:
        """The networks' context c for raw ``y`` (``None`` for an unconditional VAE)."""
        if y is None:
            if self.context.dim:
                raise PyrovaeError(f"y: this VAE is conditional (context "
                                   f"{self.context.family!r}); pass y")
            return None
        return self.context(y)

    def encoder_out(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        """The encoder's raw output for ``x`` (and context ``y``), its shape checked:
        ``(batch, guide.num_outputs())``."""
        x = self.as_event(x)
        c = self.encode_context(y)
        out = self.encoder(x) if c is None else self.encoder(x, c)
        return _checked(out, (*x.shape[: x.ndim - len(self.event_shape)],
                              self.guide_family.num_outputs()), "encoder", self.guide_family)

    def decoder_out(self, z: torch.Tensor, y: Any = None) -> torch.Tensor:
        """The decoder's raw output for ``z`` (and context ``y``), its shape checked:
        ``(*z.shape[:-1], likelihood.num_outputs())``."""
        c = self.encode_context(y)
        out = self.decoder(z) if c is None else self.decoder(z, c)
        return _checked(out, (*z.shape[:-1], self.likelihood.num_outputs()), "decoder",
                        self.likelihood)

    # --------------------------------------------------------- distributions
    def prior_dist(self) -> dist.TorchDistribution:
        """p(z), event shape ``(latent_dim,)``."""
        return self.prior()

    def encode(self, x: torch.Tensor, y: Any = None) -> dist.TorchDistribution:
        """q_φ(z|x[, y]), batch shape ``(len(x),)``, event shape ``(latent_dim,)``."""
        return self.guide_family(self.encoder_out(x, y))

    def decode(
        self, z: torch.Tensor, x: torch.Tensor | None = None, *, y: Any = None
    ) -> dist.TorchDistribution:
        """p_θ(x|z[, y]), batch shape ``z.shape[:-1]``, event shape ``event_shape``."""
        return self.likelihood(self.decoder_out(z, y), x)

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
        y: Any = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor:
        """Generative model p(z) p_θ(x|z[, y]); ``x=None`` samples ``batch_size`` new points
        (or one per row of ``y``).

        ``num_data`` is the full data-set size when ``x`` is a minibatch: the plate
        then scales every log-density by ``num_data / len(x)``.
        """
        pyro.module("vae", self)
        if x is not None:
            x = self.as_event(x)
            batch = x.shape[0]
        else:
            batch = batch_size if y is None else len(y)
        device = self.param_device()
        with self._plate(batch, num_data, device):
            with _kl_scale(kl_weight):
                z = pyro.sample("z", self.prior_dist())
            d = self.decode(z, x) if y is None else self.decode(z, x, y=y)
            return pyro.sample("x", d, obs=x)

    def guide(
        self,
        x: torch.Tensor,
        y: Any = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor:
        """Amortised guide q_φ(z|x[, y]) (the encoder)."""
        pyro.module("vae", self)
        with self._plate(x.shape[0], num_data, x.device):
            with _kl_scale(kl_weight):
                return pyro.sample("z", self.encode(x) if y is None else self.encode(x, y))

    def param_device(self) -> torch.device:
        """The device of the parameters (where the model creates its tensors)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    # ---------------------------------------------------------- conveniences
    @torch.no_grad()
    def reconstruct(
        self, x: torch.Tensor, y: Any = None, *, sample: bool = False
    ) -> torch.Tensor:
        """Mean of p_θ(x | z[, y]) at z = E_q[z|x] (or a sample of z when ``sample=True``),
        shape ``(len(x), *event_shape)``."""
        q = self.encode(x, y)
        z = q.sample() if sample else _dist_mean(q)
        return self.likelihood.mean(self.decode(z, y=y))

    @torch.no_grad()
    def sample(self, n: int, *, y: Any = None, mean: bool = True) -> torch.Tensor:
        """``n`` draws from the generative model, shape ``(n, *event_shape)``: z ~ p(z),
        then the mean of p_θ(x|z[, y]) (``mean=True``) or a draw x ~ p_θ(x|z[, y]).

        ``y``: the context of every draw (one label, e.g. ``y=3`` draws n threes, or
        one vector), or one per draw (``n`` rows).
        """
        if y is not None:
            y = torch.as_tensor(y, device=self.param_device())
            if y.ndim <= self.context.example_ndim:
                y = y.unsqueeze(0).expand(n, *y.shape)
            elif len(y) != n:
                raise PyrovaeError(f"y: expected one context or {n} (one per draw), "
                                   f"got {len(y)}")
        z = self.prior_dist().sample((n,))
        d = self.decode(z, y=y)
        return self.likelihood.mean(d) if mean else d.sample()

    def model_parameters(self) -> list[nn.Parameter]:
        """θ: decoder, likelihood and prior parameters (those the model alone uses)."""
        guide_ids = {id(p) for p in self.guide_parameters()}
        return [p for p in self.parameters() if id(p) not in guide_ids]

    def guide_parameters(self) -> list[nn.Parameter]:
        """φ: encoder and guide-family parameters."""
        return list(self.encoder.parameters()) + list(self.guide_family.parameters())


def load_vae(folder: str | Path, *, encoder: nn.Module | type | None = None,
             decoder: nn.Module | type | None = None) -> VAE:
    """The VAE saved in ``folder`` (by :meth:`VAE.save` or ``pyrovae export``), its
    weights loaded; nothing is unpickled (safetensors: a JSON header and raw bytes).

    Args:
        folder: a weights folder (``model.safetensors`` and ``spec.yaml``).
        encoder, decoder: your own network modules (or their classes, built with no
            arguments) for networks the spec records as ``{family: custom}``; ``None``
            for registered families, which the spec rebuilds.

    Returns:
        The :class:`VAE`, in evaluation mode, holding the saved parameters and buffers
        bit for bit (in their saved dtype).

    Raises:
        PyrovaeError: the folder, its spec or its weights are missing, damaged or do
            not belong together; a custom network is missing or of another class; the
            weights do not fit the model.

    Example:
        >>> vae.save("my-vae")
        >>> again = pyrovae.load_vae("my-vae", encoder=MyEncoder(), decoder=MyDecoder())
    """
    return VAE.from_pretrained(folder, encoder=encoder, decoder=decoder)


def spec_from_args(
    data_dim: int | Sequence[int],
    latent_dim: int | None,
    *,
    encoder: Sequence[int] | Mapping[str, Any] | nn.Module,
    decoder: Sequence[int] | Mapping[str, Any] | nn.Module | None,
    activation: str,
    decoder_activation: str | None,
    prior: str | Mapping[str, Any] | Prior,
    likelihood: str | Mapping[str, Any] | Likelihood,
    guide: str | Mapping[str, Any] | GuideFamily,
    context: str | Mapping[str, Any] | Context | None,
    model: Mapping[str, Any] | None = None,
) -> tuple[ModelSpec, dict[str, nn.Module]]:
    """A kind's constructor arguments as ``(validated ModelSpec, ready modules)``: the
    arguments are turned into a raw spec and validated once; modules passed in (networks,
    families) are returned to be used as they are.  ``latent_dim`` None: the kind
    decides it (``complete_spec``); ``model``: the kind's ``model`` entry."""
    from pyrovae.model.spec import normalize_model_spec

    event_shape = _event_shape(data_dim)
    ready = {k: v for k, v in (("encoder", encoder), ("decoder", decoder), ("prior", prior),
                               ("likelihood", likelihood), ("guide", guide),
                               ("context", context)) if isinstance(v, nn.Module)}
    custom = {k for k in ("encoder", "decoder")
              if k in ready and not isinstance(ready[k], Network)}
    raw: dict[str, Any] = {
        "model": dict(model) if model is not None else "vae",
        "data_dim": math.prod(event_shape),
        "event_shape": list(event_shape) if len(event_shape) > 1 else None,
        "encoder": _net_entry(encoder, activation),
        "prior": _entry(prior),
        "likelihood": _entry(likelihood),
        "guide": _entry(guide),
        "context": "none" if context is None else _entry(context),
    }
    if latent_dim is not None:
        raw["latent_dim"] = latent_dim
    if decoder is None and decoder_activation is not None and "encoder" not in custom \
            and not isinstance(encoder, (str, Mapping, nn.Module)):
        decoder = list(reversed(list(encoder)))
    if decoder is not None:
        raw["decoder"] = _net_entry(decoder, decoder_activation or activation)
    for key in custom:
        raw[key] = {"family": "custom", "module": type(ready[key]).__qualname__}
    return normalize_model_spec(raw), ready


def _event_shape(data_dim: Any) -> tuple[int, ...]:
    if isinstance(data_dim, int) and not isinstance(data_dim, bool):
        return (data_dim,)
    try:
        shape = tuple(data_dim)
    except TypeError:
        raise PyrovaeError(
            f"data_dim: expected an int or an event shape, got {data_dim!r}"
        ) from None
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                            for s in shape):
        raise PyrovaeError(f"data_dim: expected positive sizes, got {data_dim!r}")
    return shape


def _net_entry(net: Any, activation: str) -> Any:
    """A spec entry for a network given as hidden sizes, an entry or a built family."""
    if isinstance(net, Network):
        return dict(getattr(net, "entry", None) or {"family": net.family})
    if isinstance(net, (str, Mapping)):
        return net
    if isinstance(net, nn.Module):
        return None
    return {"family": "mlp", "hidden": list(net), "activation": activation}


def _sizes(entry: Mapping[str, Any]) -> Any:
    return entry.get("hidden", entry.get("channels"))


def _checked(out: Any, expected: tuple[int, ...], role: str, family: Any) -> torch.Tensor:
    """``out`` if it has the ``expected`` shape, else a one-line PyrovaeError."""
    if isinstance(out, torch.Tensor) and tuple(out.shape) == expected:
        return out
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    kind = "guide" if role == "encoder" else "likelihood"
    raise PyrovaeError(
        f"{role}: expected output shape {expected} (the {family.family!r} {kind} needs "
        f"{expected[-1]} numbers per example), got {got}"
    )


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
