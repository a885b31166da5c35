"""The model's part of the spec: latent and data dimensions, the networks, and the
prior, likelihood and guide families.  Declared here, by the model layer that owns
them; :mod:`pyrovae.runs.spec` assembles the full spec from this and the other
layers' sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Importing the family modules fills the registries.
from pyrovae.errors import PyrovaeError
from pyrovae.model import guides as _guides  # noqa: F401
from pyrovae.model import likelihoods as _likelihoods  # noqa: F401
from pyrovae.model import priors as _priors  # noqa: F401
from pyrovae.model.nets import ACTIVATIONS
from pyrovae.registry import REGISTRIES, Param, validate_section

_ACT = tuple(sorted(ACTIVATIONS))

TOP: dict[str, Param] = {
    "data_dim": Param("positive_int", None, nullable=True, doc="null: inferred from data"),
    "latent_dim": Param("positive_int", 2, doc="dimension of z"),
}

MODEL_SECTIONS: dict[str, dict[str, Param]] = {
    "encoder": {
        "hidden": Param("int_list", [128, 64], doc="hidden layer sizes ([] = affine)"),
        "activation": Param("choice", "relu", choices=_ACT, doc="activation"),
    },
    "decoder": {
        "hidden": Param("int_list", [64, 128], doc="hidden layer sizes ([] = affine)"),
        "activation": Param("choice", "relu", choices=_ACT, doc="activation"),
    },
}

MODEL_FAMILY_DEFAULTS: dict[str, str] = {
    "prior": "normal",
    "likelihood": "bernoulli",
    "guide": "diagonal_normal",
}

MODEL_KEYS = ("data_dim", "latent_dim", "encoder", "decoder", "prior", "likelihood", "guide")


def normalize_model_key(key: str, raw: Mapping[str, Any]) -> Any:
    """One model key of a raw spec, validated, with its default filled in."""
    if key in TOP:
        return TOP[key].validate(raw.get(key, TOP[key].default), key)
    if key in MODEL_SECTIONS:
        return validate_section(MODEL_SECTIONS[key], raw.get(key), key)
    return REGISTRIES[key].normalize(raw.get(key, MODEL_FAMILY_DEFAULTS[key]), key)


def normalize_model_spec(
    raw: Mapping[str, Any], *, require_data_dim: bool = False
) -> dict[str, Any]:
    """The model part of a spec (``MODEL_KEYS``), validated; other keys are ignored."""
    if not isinstance(raw, Mapping):
        raise PyrovaeError(f"spec: expected a mapping, got {type(raw).__name__}")
    out = {key: normalize_model_key(key, raw) for key in MODEL_KEYS}
    if require_data_dim and out["data_dim"] is None:
        raise PyrovaeError("data_dim: missing (pass data_dim or fit on data to infer it)")
    return out
