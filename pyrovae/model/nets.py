"""Network families: the encoder and decoder networks of a VAE.

A network family is one class plus one registration, like the priors and
likelihoods (``@NETWORKS.register("name")``), and is declared in a spec as
``encoder: {family: conv, channels: [32, 64]}``.  A bare mapping without
``family`` (``encoder: {hidden: [128, 64]}``) is the ``mlp`` family.

The contract every network meets (registered families and any ``torch.nn.Module``
passed to :class:`~pyrovae.model.vae.VAE` as ``encoder=`` / ``decoder=``):

* **encoder**: ``net(x)`` (or ``net(x, c)`` for a conditional VAE) with ``x`` of
  shape ``(*batch, *event_shape)`` returns ``(*batch, guide.num_outputs())``:
  the numbers the guide family turns into q(z|x) (``2·latent_dim`` for
  ``diagonal_normal``).
* **decoder**: ``net(z)`` (or ``net(z, c)``) with ``z`` of shape
  ``(*batch, latent_dim)`` returns ``(*batch, likelihood.num_outputs())``: the
  numbers the likelihood family reshapes to its event shape (``prod(event_shape)``
  for ``bernoulli``, twice that for ``gaussian`` with ``sigma: predicted``, ``levels``
  times that for ``categorical``; a flat vector, channel-major when it comes from
  an image).
* ``c`` is the encoded context (shape ``(*batch, context_dim)``, e.g. a one-hot
  label), passed only when the VAE has a context.

``mlp(d_in, [h1, h2], d_out)`` is ``Linear → act → Linear → act → Linear``; an
empty hidden list gives a single affine map ``x ↦ Wx + b`` (a linear VAE, the
model that probabilistic PCA solves in closed form).

References:
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
    Radford et al. (2016), *Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks* (strided convolutions and
    transposed convolutions as learned down- and up-sampling).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.registry import NETWORKS, Param

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}

_ACT = tuple(sorted(ACTIVATIONS))


def mlp(d_in: int, hidden: Sequence[int], d_out: int, activation: str = "relu") -> nn.Sequential:
    """Fully connected ``d_in → hidden[0] → … → d_out``; affine if ``hidden`` is empty."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    d = d_in
    for h in hidden:
        layers += [nn.Linear(d, h), act()]
        d = h
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def _shape(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


class Network(nn.Module):
    """Base class of network families (see the module docstring for the contract).

    Built as ``cls(role, event_shape, latent_dim, out_features, context_dim, **params)``:
    ``role`` is ``"encoder"`` (``event_shape → out_features``) or ``"decoder"``
    (``latent_dim → out_features``).  ``width`` is the largest per-example
    activation, which evaluation uses to size its chunks.
    """

    params: ClassVar[dict[str, Param]] = {}
    family: ClassVar[str] = ""

    def __init__(
        self,
        role: str,
        event_shape: int | Sequence[int],
        latent_dim: int,
        out_features: int,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        if role not in ("encoder", "decoder"):
            raise PyrovaeError(f"role: expected 'encoder' or 'decoder', got {role!r}")
        self.role = role
        self.event_shape = _shape(event_shape)
        self.latent_dim = int(latent_dim)
        self.out_features = int(out_features)
        self.context_dim = int(context_dim)
        self.width = max(self.out_features, math.prod(self.event_shape))

    @classmethod
    def mirror(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The decoder parameters that mirror an encoder's (the decoder's default)."""
        return dict(params)


def _with_context(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``[h, c]`` along the last axis, ``c`` broadcast over ``h``'s leading axes."""
    if c is None:
        return h
    return torch.cat([h, c.to(h.dtype).expand(*h.shape[:-1], c.shape[-1])], dim=-1)


@NETWORKS.register("mlp")
class MLPNetwork(Network, nn.Sequential):
    """Fully connected network on the flattened input (the default).

    The encoder flattens x to ``prod(event_shape)`` numbers (and appends the
    context); the decoder outputs a flat vector.  ``hidden: []`` gives an affine
    map (a linear VAE).  The layers are the items of an ``nn.Sequential``
    (``net[0]`` is the first ``Linear``).
    """

    params: ClassVar[dict[str, Param]] = {
        "hidden": Param("int_list", [128, 64], doc="hidden layer sizes ([] = affine)",
                        size="widths"),
        "activation": Param("choice", "relu", choices=_ACT, doc="activation"),
    }

    def __init__(
        self,
        role: str,
        event_shape: int | Sequence[int],
        latent_dim: int,
        out_features: int,
        context_dim: int = 0,
        hidden: Sequence[int] = (128, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__(role, event_shape, latent_dim, out_features, context_dim)
        d_in = math.prod(self.event_shape) if role == "encoder" else self.latent_dim
        for layer in mlp(d_in + self.context_dim, list(hidden), self.out_features, activation):
            self.append(layer)
        self.width = max([self.width, d_in, *hidden])
        self._flat = len(self.event_shape) if role == "encoder" else 1

    @classmethod
    def mirror(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "hidden": list(reversed(params["hidden"]))}

    def forward(self, inp: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self._flat != 1:
            inp = inp.flatten(-self._flat)
        h = _with_context(inp, context)
        for layer in self:
            h = layer(h)
        return h


def _conv_sizes(
    size: tuple[int, int], n: int, kernel: int, stride: int, padding: int
) -> list[tuple[int, int]]:
    """Spatial sizes after each of ``n`` convolutions, starting with ``size``."""
    sizes = [size]
    for _ in range(n):
        h, w = ((s + 2 * padding - kernel) // stride + 1 for s in sizes[-1])
        sizes.append((h, w))
    return sizes


@NETWORKS.register("conv")
class ConvNetwork(Network):
    """Convolutional encoder / transposed-convolutional decoder for image data.

    Encoder: ``len(channels)`` strided convolutions ``Conv2d(c_in, c, kernel,
    stride, padding)`` each followed by the activation, then the flattened
    features (and the context) through fully connected ``hidden`` layers to the
    output.  Decoder: the mirror image: fully connected layers from z (and the
    context) to the last feature map, then transposed convolutions back to the
    image size (``output_padding`` chosen so each step lands exactly on the
    encoder's size), the last one giving ``out_features / (H·W)`` channels that are
    flattened channel-major.  Needs image-shaped data: event shape ``(C, H, W)``
    or ``(H, W)`` (one channel).
    """

    params: ClassVar[dict[str, Param]] = {
        "channels": Param("int_list", [32, 64], doc="channels of each convolution",
                          size="channels"),
        "kernel": Param("positive_int", 4, doc="kernel size", size="kernel"),
        "stride": Param("positive_int", 2, doc="stride of each convolution", size="stride"),
        "padding": Param("nonneg_int", 1, doc="zero padding of each convolution"),
        "hidden": Param("int_list", [], doc="fully connected layers after the convolutions",
                        size="widths"),
        "activation": Param("choice", "relu", choices=_ACT, doc="activation"),
    }

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        if not params["channels"]:
            raise PyrovaeError(f"{path}.channels: expected at least one convolution, got []")

    def __init__(
        self,
        role: str,
        event_shape: int | Sequence[int],
        latent_dim: int,
        out_features: int,
        context_dim: int = 0,
        channels: Sequence[int] = (32, 64),
        kernel: int = 4,
        stride: int = 2,
        padding: int = 1,
        hidden: Sequence[int] = (),
        activation: str = "relu",
    ) -> None:
        super().__init__(role, event_shape, latent_dim, out_features, context_dim)
        shape = self.event_shape
        if len(shape) not in (2, 3):
            raise PyrovaeError(
                f"{role}.family: 'conv' needs image-shaped data (event shape (C, H, W) or "
                f"(H, W)), got event shape {shape}"
            )
        c_img, hw = (1, shape) if len(shape) == 2 else (shape[0], shape[1:])
        sizes = _conv_sizes(hw, len(channels), kernel, stride, padding)
        if min(min(s) for s in sizes) < 1:
            raise PyrovaeError(
                f"{role}.channels: {len(channels)} convolutions (kernel {kernel}, stride "
                f"{stride}, padding {padding}) shrink a {hw[0]}x{hw[1]} image to nothing "
                f"(sizes {sizes}); use fewer channels entries or a smaller stride"
            )
        act = ACTIVATIONS[activation]
        chans = [c_img, *channels]
        feat = channels[-1] * sizes[-1][0] * sizes[-1][1]
        self.width = max(
            [self.width, feat, *hidden, *(c * h * w for c, (h, w) in zip(chans, sizes))]
        )
        self._event_ndim = len(shape)
        self._in_shape = (c_img, *hw)
        if role == "encoder":
            layers: list[nn.Module] = []
            for c_in, c_out in itertools.pairwise(chans):
                layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding), act()]
            self.convs = nn.Sequential(*layers, nn.Flatten())
            self.head = mlp(feat + self.context_dim, list(hidden), self.out_features, activation)
            return
        hw_pixels = hw[0] * hw[1]
        if self.out_features % hw_pixels:
            raise PyrovaeError(
                f"decoder.family: 'conv' outputs whole images of {hw[0]}x{hw[1]}; the "
                f"likelihood needs {self.out_features} numbers, not a multiple of {hw_pixels}"
            )
        self._top = (channels[-1], *sizes[-1])
        self.head = nn.Sequential(
            mlp(self.latent_dim + self.context_dim, list(hidden), feat, activation), act()
        )
        layers = []
        outs = [*reversed(chans[1:-1]), self.out_features // hw_pixels]
        for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs)):
            src, dst = sizes[-1 - i], sizes[-2 - i]
            extra = [d - ((s - 1) * stride - 2 * padding + kernel) for s, d in zip(src, dst)]
            if not all(0 <= e < stride for e in extra):
                raise PyrovaeError(
                    f"decoder: transposed convolutions (kernel {kernel}, stride {stride}, "
                    f"padding {padding}) cannot map {src} back to {dst}; choose kernel = "
                    "stride + 2·padding"
                )
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding,
                                             output_padding=tuple(extra)))
            if i < len(channels) - 1:
                layers.append(act())
        self.deconvs = nn.Sequential(*layers, nn.Flatten())

    def forward(self, inp: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.role == "encoder":
            batch = inp.shape[: inp.ndim - self._event_ndim]
            h = self.convs(inp.reshape(-1, *self._in_shape))
            h = h.reshape(*batch, h.shape[-1])
            return self.head(_with_context(h, context))
        batch = inp.shape[:-1]
        h = self.head(_with_context(inp, context))
        out = self.deconvs(h.reshape(-1, *self._top))
        return out.reshape(*batch, out.shape[-1])

