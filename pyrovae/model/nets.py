"""MLP builders for encoders and decoders.

``mlp(d_in, [h1, h2], d_out)`` is ``Linear → act → Linear → act → Linear``; an
empty hidden list gives a single affine map ``x ↦ Wx + b`` (a linear VAE, the
model that probabilistic PCA solves in closed form).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


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
