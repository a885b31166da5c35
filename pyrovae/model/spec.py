"""The model's part of the spec: latent and data dimensions, the networks, and the
prior, likelihood and guide families.  Declared here, by the model layer that owns
them; :mod:`pyrovae.runs.spec` assembles the full spec from this and the other
layers' sections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Importing the family modules fills the registries.
from pyrovae.errors import PyrovaeError
from pyrovae.model import context as _context  # noqa: F401
from pyrovae.model import guides as _guides  # noqa: F401
from pyrovae.model import likelihoods as _likelihoods  # noqa: F401
from pyrovae.model import priors as _priors  # noqa: F401
from pyrovae.model.nets import ACTIVATIONS
from pyrovae.registry import MODELS, NETWORKS, REGISTRIES, Param

_ACT = tuple(sorted(ACTIVATIONS))

TOP: dict[str, Param] = {
    "data_dim": Param("positive_int", None, nullable=True, doc="null: inferred from data"),
    "event_shape": Param(
        "int_list", None, nullable=True,
        doc="shape of one example, e.g. [1, 28, 28]; null: [data_dim] or inferred from data",
    ),
    "latent_dim": Param("positive_int", 2, doc="dimension of z"),
}

#: The networks: a network family entry (``pyrovae families --kind encoder``); a
#: mapping without ``family`` is an ``mlp`` with these parameters (the old form).
MODEL_SECTIONS: dict[str, dict[str, Param]] = {
    "encoder": {
        "hidden": Param("int_list", [128, 64], doc="hidden layer sizes ([] = affine)",
                        size="widths"),
        "activation": Param("choice", "relu", choices=_ACT, doc="activation"),
    },
    "decoder": {
        "hidden": Param("int_list", [64, 128], doc="hidden layer sizes ([] = affine)",
                        size="widths"),
        "activation": Param("choice", "relu", choices=_ACT, doc="activation"),
    },
}

MODEL_FAMILY_DEFAULTS: dict[str, str] = {
    "model": "vae",
    "prior": "normal",
    "likelihood": "bernoulli",
    "guide": "diagonal_normal",
    "context": "none",
}

MODEL_KEYS = ("model", "data_dim", "event_shape", "latent_dim", "encoder", "decoder", "prior",
              "likelihood", "guide", "context")


def _network(entry: Any, path: str) -> dict[str, Any]:
    if entry is None:
        entry = {}
    if isinstance(entry, Mapping) and "family" not in entry:
        entry = {"family": "mlp", **entry}
    return NETWORKS.normalize(entry, path)


def normalize_model_key(key: str, raw: Mapping[str, Any]) -> Any:
    """One model key of a raw spec, validated, with its default filled in.

    ``decoder`` defaults to the mirror image of the encoder (an MLP's hidden
    sizes reversed; a conv decoder with the encoder's parameters).
    """
    if key in TOP:
        return TOP[key].validate(raw.get(key, TOP[key].default), key)
    if key == "decoder" and raw.get("decoder") is None:
        enc = _network(raw.get("encoder"), "encoder")
        params = {k: v for k, v in enc.items() if k != "family"}
        return {"family": enc["family"], **NETWORKS.get(enc["family"]).mirror(params)}
    if key in MODEL_SECTIONS:
        return _network(raw.get(key), key)
    return REGISTRIES[key].normalize(raw.get(key, MODEL_FAMILY_DEFAULTS[key]), key)


def normalize_model_spec(
    raw: Mapping[str, Any], *, require_data_dim: bool = False
) -> dict[str, Any]:
    """The model part of a spec (``MODEL_KEYS``), validated; other keys are ignored."""
    if not isinstance(raw, Mapping):
        raise PyrovaeError(f"spec: expected a mapping, got {type(raw).__name__}")
    out = {key: normalize_model_key(key, raw) for key in MODEL_KEYS}
    check_event_shape(out)
    complete_for_kind(out)
    if require_data_dim and out["data_dim"] is None:
        raise PyrovaeError("data_dim: missing (pass data_dim or fit on data to infer it)")
    return out


def model_class(spec: Mapping[str, Any]) -> type:
    """The class of the model kind a (full or model-part) spec names in ``model``
    (registry ``MODELS``: ``vae``, ``m2``, ``hierarchical``; each kind registers itself)."""
    entry = spec.get("model") or MODEL_FAMILY_DEFAULTS["model"]
    name = entry.get("family") if isinstance(entry, Mapping) else entry
    return MODELS.get(name, "model")


def build_model(spec: Mapping[str, Any], data_dim: int | None = None) -> Any:
    """The model a spec describes, of the kind its ``model`` entry names (its
    ``from_spec``)."""
    return model_class(spec).from_spec(spec, data_dim)


def complete_for_kind(spec: dict[str, Any]) -> None:
    """Let the spec's model kind fill in or refuse what it decides (the m2 kind's label
    is the networks' context); the kind's ``complete_spec``."""
    model_class(spec).complete_spec(spec)


def check_event_shape(spec: dict[str, Any]) -> None:
    """``data_dim`` = prod(``event_shape``) (filled in from it when null)."""
    shape = spec.get("event_shape")
    if shape is None:
        return
    size = math.prod(shape)
    if spec["data_dim"] is None:
        spec["data_dim"] = size
    elif spec["data_dim"] != size:
        raise PyrovaeError(
            f"event_shape: {shape} holds {size} values, data_dim says {spec['data_dim']}"
        )
