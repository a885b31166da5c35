"""The model's part of the spec: latent and data dimensions, the networks, and the
prior, likelihood and guide families.  Declared here, by the model layer that owns
them; :mod:`pyrovae.runs.spec` assembles the full spec from this and the other
layers' sections.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

# Importing the family modules fills the registries.
from pyrovae.errors import PyrovaeError
from pyrovae.frozen import freeze, thaw
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


def normalize_model_key(key: str, raw: Mapping[str, Any],
                        done: Mapping[str, Any] | None = None) -> Any:
    """One model key of a raw spec, validated, with its default filled in.

    ``decoder`` defaults to the mirror image of the encoder (an MLP's hidden
    sizes reversed; a conv decoder with the encoder's parameters); ``done``: keys
    already validated (the encoder is then not validated a second time).
    """
    if key in TOP:
        return TOP[key].validate(raw.get(key, TOP[key].default), key)
    if key == "decoder" and raw.get("decoder") is None:
        enc = (done or {}).get("encoder") or _network(raw.get("encoder"), "encoder")
        params = {k: v for k, v in enc.items() if k != "family"}
        return {"family": enc["family"], **NETWORKS.get(enc["family"]).mirror(params)}
    if key in MODEL_SECTIONS:
        return _network(raw.get(key), key)
    return REGISTRIES[key].normalize(raw.get(key, MODEL_FAMILY_DEFAULTS[key]), key)


def normalize_model_keys(raw: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The model keys among ``keys`` of a raw spec, each validated once, in order."""
    out: dict[str, Any] = {}
    for key in keys:
        out[key] = normalize_model_key(key, raw, out)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ModelSpec(Mapping[str, Any]):
    """The model part of a spec (:data:`MODEL_KEYS`), validated: what a model kind is
    built from.

    Made by :func:`normalize_model_spec` (a raw mapping, validated once) or read off a
    validated run spec (``pyrovae.runs.spec.Spec.model_spec``, not validated again);
    ``VAE.from_spec`` builds from it without normalising.  It
    is read-only: ``spec[key]`` returns a copy, and the equality is a dict's (a
    ``ModelSpec`` equals the plain dict of its keys).  Network entries may be
    ``{"family": "custom", "module": name}`` (a module the spec cannot rebuild).
    """

    model: dict[str, Any]
    data_dim: int | None
    event_shape: list[int] | None
    latent_dim: int
    encoder: dict[str, Any]
    decoder: dict[str, Any]
    prior: dict[str, Any]
    likelihood: dict[str, Any]
    guide: dict[str, Any]
    context: dict[str, Any]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # read-only views: validated once, never changed
            object.__setattr__(self, f.name, freeze(getattr(self, f.name), f.name))

    def __getitem__(self, key: str) -> Any:
        if key not in MODEL_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(MODEL_KEYS)

    def __len__(self) -> int:
        return len(MODEL_KEYS)

    @classmethod
    def of_validated(cls, spec: Mapping[str, Any]) -> ModelSpec:
        """The model keys of a spec that was validated as a whole (copied, not validated
        again); only the runs layer's ``Spec`` calls this."""
        return cls(**{k: spec[k] for k in MODEL_KEYS})

    @property
    def shape(self) -> tuple[int, ...]:
        """The event shape of one example (``(data_dim,)`` for flat data)."""
        if self.data_dim is None:
            raise PyrovaeError("data_dim: missing (pass data_dim or fit on data to infer it)")
        return tuple(self.event_shape or [self.data_dim])

    def with_data_dim(self, data_dim: int) -> ModelSpec:
        """This spec with a null ``data_dim`` filled in (from data); a given one stays."""
        if self.data_dim is not None:
            return self
        return dataclasses.replace(self, data_dim=TOP["data_dim"].validate(data_dim, "data_dim"))

    def as_dict(self) -> dict[str, Any]:
        """A plain, mutable, JSON-able copy (``MODEL_KEYS`` order)."""
        return {k: thaw(self[k]) for k in MODEL_KEYS}


def normalize_model_spec(
    raw: Mapping[str, Any], *, require_data_dim: bool = False
) -> ModelSpec:
    """The model part of a spec (``MODEL_KEYS``), validated once; other keys are ignored.

    Network entries ``{"family": "custom", ...}`` (modules the caller passes beside
    the spec) are kept as they are."""
    if not isinstance(raw, Mapping):
        raise PyrovaeError(f"spec: expected a mapping, got {type(raw).__name__}")
    custom = {k: dict(raw[k]) for k in MODEL_SECTIONS
              if isinstance(raw.get(k), Mapping) and raw[k].get("family") == "custom"}
    if custom:  # a placeholder for the checks; the caller's module is used
        raw = {**raw, **{k: "mlp" for k in custom}}
        if "encoder" in custom and "decoder" not in custom and raw.get("decoder") is None:
            raise PyrovaeError("decoder: a custom encoder module needs a decoder too "
                               "(pass decoder=...)")
    out = normalize_model_keys(raw, MODEL_KEYS)
    out.update(custom)
    check_event_shape(out)
    complete_for_kind(out)
    if require_data_dim and out["data_dim"] is None:
        raise PyrovaeError("data_dim: missing (pass data_dim or fit on data to infer it)")
    return ModelSpec(**out)


def model_spec_of(spec: Mapping[str, Any], data_dim: int | None = None) -> ModelSpec:
    """The validated model part of ``spec`` with its ``data_dim`` known: a
    :class:`ModelSpec` or a validated run spec (one with a ``model_spec``) as it is, a
    raw mapping validated here; a null ``data_dim`` filled in from ``data_dim``."""
    given = spec if isinstance(spec, ModelSpec) else getattr(spec, "model_spec", None)
    if isinstance(given, ModelSpec):
        s = given if data_dim is None else given.with_data_dim(data_dim)
    else:
        raw = dict(spec) if isinstance(spec, Mapping) else spec
        if isinstance(raw, dict) and raw.get("data_dim") is None and data_dim is not None:
            raw["data_dim"] = data_dim
        s = normalize_model_spec(raw)
    if s.data_dim is None:
        raise PyrovaeError("data_dim: missing (pass data_dim or fit on data to infer it)")
    return s


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
