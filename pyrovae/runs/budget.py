"""The size budget of a spec: parameters, activation memory and layers, estimated from
the spec alone (sums of products of its sizes) and refused above a limit before
anything is built or allocated.

For each network of the model (encoder, decoder, a flow prior's or guide's
layers) the estimate walks the chain of widths ``[in, *hidden, out]`` (a conv
network's ``channels`` too, each product times ``kernel²``):

    parameters  ≈ Σ_sections repeats · Σ_i (w_i + 1) · w_{i+1}   (+ K·(D + 2L + 1) for K components)
    activations ≈ 4 bytes · batch_size · num_particles · 3 · Σ_sections repeats · Σ_i w_i
    layers      = Σ_sections repeats · (number of hidden / channels entries)

with D the data dimension, L the latent dimension, ``repeats`` a section's
``num_layers`` (flows; a flow's widths are at least L).  The estimate is an
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

#: Most parameters a spec may describe (≈ 0.8 GB with gradients and Adam's state).
MAX_PARAMETERS = 50_000_000
#: Most activation memory one training step may need (bytes).
MAX_ACTIVATION_BYTES = 4 << 30
#: Most hidden layers (all networks together).
MAX_LAYERS = 256

_LISTS = ("hidden", "channels")


@dataclass(frozen=True)
class SizeEstimate:
    """What a spec costs: ``parameters``, ``activation_bytes`` per step and ``layers``."""

    parameters: int
    activation_bytes: int
    layers: int


def _ints(section: Mapping[str, Any], key: str) -> list[int]:
    v = section.get(key)
    return [int(x) for x in v if isinstance(x, int)] if isinstance(v, list) else []


def _num(section: Mapping[str, Any], key: str, default: int) -> int:
    v = section.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default


def _chain(widths: list[int], kernel2: int = 1) -> tuple[int, int]:
    """``(parameters, activations)`` of a chain of layers of these widths."""
    params = sum((a * kernel2 + 1) * b for a, b in itertools.pairwise(widths))
    return params, sum(widths[1:])


def estimate_size(spec: Mapping[str, Any], data_dim: int | None = None) -> SizeEstimate:
    """The :class:`SizeEstimate` of a normalized spec (``data_dim``: when the spec's is
    not known yet; 1 if neither is).  Pure arithmetic on the spec's integers."""
    d = spec.get("data_dim") or data_dim or 1
    latent = _num(spec, "latent_dim", 1)
    sections = {k: spec.get(k) if isinstance(spec.get(k), Mapping) else {}
                for k in ("encoder", "decoder", "prior", "guide", "likelihood", "context")}
    ctx = _num(sections["context"], "classes", 0) + _num(sections["context"], "dim", 0)
    lik_out = _num(sections["likelihood"], "levels", 2)
    guide_ctx = _num(sections["guide"], "context_dim", 0)
    ends = {"encoder": (d + ctx, 2 * latent + guide_ctx), "decoder": (latent + ctx, d * lik_out),
            "prior": (latent, 2 * latent), "guide": (latent + guide_ctx, 2 * latent)}
    params = acts = layers = 0
    for name, (w_in, w_out) in ends.items():
        sec = sections[name]
        inner = [w for key in _LISTS for w in _ints(sec, key)]
        if name in ("prior", "guide"):
            if not inner:
                continue  # no network in this family
            inner = [max(w, latent) for w in inner]  # a flow's layers are widened to L
        repeats = _num(sec, "num_layers", 1)
        kernel2 = _num(sec, "kernel", 1) ** 2
        p, a = _chain([w_in, *inner, w_out], kernel2)
        conv = sum(_ints(sec, "channels")) * d  # activation maps, stride ignored (a bound)
        params += repeats * p
        acts += repeats * (a + conv)
        layers += repeats * len(inner)
    k = _num(sections["prior"], "components", 0)
    params += k * (d + 2 * latent + 1)
    acts += k * (2 * latent + 1)
    train = spec.get("train") if isinstance(spec.get("train"), Mapping) else {}
    objective = spec.get("objective") if isinstance(spec.get("objective"), Mapping) else {}
    per_step = _num(train, "batch_size", 1) * _num(objective, "num_particles", 1)
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
