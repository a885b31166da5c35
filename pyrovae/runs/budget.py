"""The size budget of a spec: parameters, activation memory and layers, estimated from
the spec alone (sums of products of its sizes) and refused above a limit before
anything is built or allocated.

Each family declares which of its parameters count and how (``Param(size=...)``:
widths, kernel, repeat, count, outputs, width; :class:`pyrovae.registry.Param`).
For each network of the model (encoder, decoder, a flow prior's or guide's
layers) the estimate walks the chain of widths ``[in, *widths, out]`` (for a
convolutional network, ``[image channels, *channels]`` times ``kernel²``, then the
fully connected chain from the feature maps, each shrunk by ``stride²``):

    parameters  ≈ Σ_sections repeats · Σ_i (w_i + 1) · w_{i+1}   (+ K·(D + 2L + 1) for K components)
    activations ≈ 4 bytes · batch_size · num_particles · 3 · Σ_sections repeats · Σ_i w_i
    layers      = Σ_sections repeats · (number of hidden / channels entries)

with D the data dimension, L the latent dimension, ``repeats`` the product of a
section's ``repeat`` values (flow layers; a flow's widths are at least L), K the
``count`` values (mixture components, pseudo-inputs).  The estimate is an
upper bound's order of magnitude, not an exact count; it exists so that ``latent_dim: 1000000000``,
``hidden: [100000000]``, 30,000 layers or 10⁷ mixture components end in one line
within a second instead of allocating gigabytes.  The limits
(:data:`MAX_PARAMETERS`, :data:`MAX_ACTIVATION_BYTES`, :data:`MAX_LAYERS`) are
multiplied by ``scale`` (``pyrovae train --size-limit X``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.registry import REGISTRIES

#: Most parameters a spec may describe (≈ 0.8 GB with gradients and Adam's state).
MAX_PARAMETERS = 50_000_000
#: Most activation memory one training step may need (bytes).
MAX_ACTIVATION_BYTES = 4 << 30
#: Most hidden layers (all networks together).
MAX_LAYERS = 256

@dataclass(frozen=True)
class SizeEstimate:
    """What a spec costs: ``parameters``, ``activation_bytes`` per step and ``layers``."""

    parameters: int
    activation_bytes: int
    layers: int


def _roles(key: str, entry: Any) -> dict[str, list[int]]:
    """The values of a spec section's family parameters, grouped by the part their
    declaration says they play in the model's size (``Param(size=...)``)."""
    if not isinstance(entry, Mapping) or "family" not in entry:
        return {}
    registry = REGISTRIES.get(key)
    try:
        params = registry.get(entry["family"]).params if registry is not None else {}
    except PyrovaeError:
        return {}
    out: dict[str, list[int]] = {}
    for name, param in params.items():
        value = entry.get(name)
        if param.size is None or value is None:
            continue
        values = value if isinstance(value, list) else [value]
        out.setdefault(param.size, []).extend(
            int(v) for v in values if isinstance(v, int) and not isinstance(v, bool))
    return out


def _chain(widths: list[int], kernel2: int = 1) -> tuple[int, int]:
    """``(parameters, activations)`` of a chain of layers of these widths."""
    params = sum((a * kernel2 + 1) * b for a, b in itertools.pairwise(widths))
    return params, sum(widths[1:])


def estimate_size(spec: Mapping[str, Any], data_dim: int | None = None) -> SizeEstimate:
    """The :class:`SizeEstimate` of a normalized spec (``data_dim``: when the spec's is
    not known yet; 1 if neither is).  Pure arithmetic on the spec's integers, each
    read where its family's declaration (``Param(size=...)``) says it counts."""
    d = spec.get("data_dim") or data_dim or 1
    latent = spec.get("latent_dim") or 1
    roles = {k: _roles(k, spec.get(k))
             for k in ("encoder", "decoder", "prior", "guide", "likelihood", "context")}
    ctx = sum(roles["context"].get("width", []))
    guide_ctx = sum(roles["guide"].get("width", []))
    outputs = math.prod(roles["likelihood"].get("outputs", [2]))
    ends = {"encoder": (d + ctx, 2 * latent + guide_ctx), "decoder": (latent + ctx, d * outputs),
            "prior": (latent, 2 * latent), "guide": (latent + guide_ctx, 2 * latent)}
    shape = spec.get("event_shape") or [d]
    c_img = shape[0] if len(shape) == 3 else 1
    params = acts = layers = 0
    for name, (w_in, w_out) in ends.items():
        r = roles[name]
        inner = r.get("widths", [])
        if name in ("prior", "guide"):
            if not inner:
                continue  # no network in this family
            inner = [max(w, latent) for w in inner]  # a flow's layers are widened to L
        repeats = math.prod(r.get("repeat", [1]))
        chans = r.get("channels", [])
        if chans:  # convolutions between the image and the fully connected layers
            k2 = math.prod(r.get("kernel", [1])) ** 2
            s2 = math.prod(r.get("stride", [1])) ** 2
            maps = [max(1, (d // c_img) // s2 ** (i + 1)) for i in range(len(chans))]
            cp, _ = _chain([c_img, *chans], k2)
            feat = chans[-1] * maps[-1]
            fc = [w_in, *inner, feat] if name == "decoder" else [feat + w_in - d, *inner, w_out]
            p, a = _chain(fc)
            p, a = p + cp, a + sum(c * m for c, m in zip(chans, maps, strict=True)) + d
        else:
            p, a = _chain([w_in, *inner, w_out])
        params += repeats * p
        acts += repeats * a
        layers += repeats * (len(inner) + len(chans))
    for count in (c for r in roles.values() for c in r.get("count", [])):
        params += count * (d + 2 * latent + 1)
        acts += count * (2 * latent + 1)
    train = spec.get("train") if isinstance(spec.get("train"), Mapping) else {}
    objective = spec.get("objective") if isinstance(spec.get("objective"), Mapping) else {}
    per_step = (train.get("batch_size") or 1) * (objective.get("num_particles") or 1)
    return SizeEstimate(params, 4 * 3 * per_step * acts, layers)


def check_size(spec: Mapping[str, Any], *, scale: float = 1.0,
               data_dim: int | None = None) -> SizeEstimate:
    """Refuse a spec whose :func:`estimate_size` is above the limits times ``scale``
    (a PyrovaeError with the estimate and the limit); else return the estimate."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise PyrovaeError(f"--size-limit: expected a positive number, got {scale!r}")
    est = estimate_size(spec, data_dim)
    how = "raise the limit with `pyrovae train --size-limit X` (X times the limits)"
    if est.layers > MAX_LAYERS * scale:
        raise PyrovaeError(f"spec: {est.layers} hidden layers estimated, above the limit of "
                           f"{int(MAX_LAYERS * scale)}; {how}")
    if est.parameters > MAX_PARAMETERS * scale:
        raise PyrovaeError(f"spec: about {est.parameters:.3g} parameters estimated, above the "
                           f"limit of {MAX_PARAMETERS * scale:.3g}; {how}")
    if est.activation_bytes > MAX_ACTIVATION_BYTES * scale:
        raise PyrovaeError(f"spec: about {est.activation_bytes / 2**30:.3g} GiB of activations "
                           f"per training step estimated, above the limit of "
                           f"{MAX_ACTIVATION_BYTES * scale / 2**30:.3g} GiB; {how}")
    return est
