"""The spec: one plain mapping that describes a model and how to train it.

It is the single source of truth: a run folder holds its spec, and
``VAE.from_spec(spec)`` rebuilds the model.  Built from a dict, a YAML file or a
TOML file; ``--set key.path=value`` overrides apply on top.  Example (YAML)::

    latent_dim: 2
    encoder: {hidden: [128, 64], activation: relu}
    prior: {family: mixture, components: 10}   # a bare name is {family: name}
    likelihood: bernoulli
    guide: diagonal_normal
    objective: trace_elbo
    kl_weight: {family: linear, start: 0.0, warmup_epochs: 10}
    train: {epochs: 100, batch_size: 128, lr: 0.001, seed: 0}
    data: {name: digits, transform: binarize, test_fraction: 0.2}

:func:`normalize_spec` fills in every default and validates every value,
raising :class:`~pyrovae.errors.PyrovaeError` with the key path on error.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pyrovae.errors import PyrovaeError
from pyrovae.model.spec import (
    MODEL_FAMILY_DEFAULTS,
    MODEL_KEYS,
    MODEL_SECTIONS,
    TOP,
    check_event_shape,
    normalize_model_key,
)
from pyrovae.registry import REGISTRIES, Param, validate_section

# Importing the objectives module fills the objective and schedule registries.
from pyrovae.training import objectives as _objectives  # noqa: F401

__all__ = ["MODEL_KEYS", "SECTIONS", "apply_overrides", "dump_spec", "load_spec",
           "normalize_spec"]


#: Plain (non-family) sections and their parameters.
RUN_SECTIONS: dict[str, dict[str, Param]] = {
    "train": {
        "epochs": Param("positive_int", 300, doc="passes over the training set"),
        "batch_size": Param("positive_int", 128, doc="minibatch size"),
        "lr": Param("positive_float", 1e-3, doc="Adam learning rate"),
        "seed": Param("nonneg_int", 0, doc="random seed (init, minibatches, samples)"),
        "engine": Param(
            "choice", "fast", choices=("fast", "pyro"),
            doc="fast: the ELBO estimator computed directly; pyro: stock SVI",
        ),
        "clip_norm": Param("positive_float", None, nullable=True, doc="gradient-norm clip"),
        "eval_every": Param("positive_int", 1, doc="epochs between held-out ELBO evaluations"),
        "checkpoint_every": Param("positive_int", 10, doc="epochs between checkpoints"),
        "device": Param("str", "cpu", doc="torch device, e.g. cpu or cuda"),
    },
    "data": {
        "name": Param("str", "digits", doc="digits, mnist5k, mnist (IDX folder) or a file path"),
        "path": Param("str", None, nullable=True, doc="folder or file for mnist / file data"),
        "transform": Param(
            "choice", None, nullable=True, choices=("binarize", "unit", "none"),
            doc="binarize (x/max > 0.5), unit (x/max), none; null = the data set's default",
        ),
        "header": Param("bool", False, doc="a .csv file's first row holds column names"),
        "test_fraction": Param("unit_float", 0.2, doc="held-out fraction"),
        "split_seed": Param("nonneg_int", 0, doc="seed of the train/test split"),
    },
    "eval": {
        "num_samples": Param("positive_int", 1000, doc="K of the IWAE log-likelihood"),
    },
}

SECTIONS: dict[str, dict[str, Param]] = {**MODEL_SECTIONS, **RUN_SECTIONS}

FAMILY_DEFAULTS: dict[str, str] = {
    **MODEL_FAMILY_DEFAULTS,
    "objective": "trace_elbo",
    "kl_weight": "constant",
}

ALL_KEYS = tuple(TOP) + tuple(SECTIONS) + tuple(FAMILY_DEFAULTS)


def _normalize_key(key: str, raw: Mapping[str, Any]) -> Any:
    if key in TOP or key in MODEL_SECTIONS or key in MODEL_FAMILY_DEFAULTS:
        return normalize_model_key(key, raw)
    if key in SECTIONS:
        return validate_section(SECTIONS[key], raw.get(key), key)
    return REGISTRIES[key].normalize(raw.get(key, FAMILY_DEFAULTS[key]), key)


def normalize_spec(raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A complete, validated spec: every section present, every default filled in."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise PyrovaeError(f"spec: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in ALL_KEYS:
            raise PyrovaeError(f"{key}: unknown spec key; known keys: {', '.join(ALL_KEYS)}")
    spec = {key: _normalize_key(key, raw) for key in ALL_KEYS}
    check_event_shape(spec)
    check_combinations(spec)
    return spec


def check_combinations(spec: Mapping[str, Any]) -> None:
    """Cross-section checks of a normalized spec (each error names the key path)."""
    from pyrovae.training.objectives import FREE_BITS_GUIDES, FREE_BITS_NEEDS, FREE_BITS_PRIORS

    free_bits = spec["objective"].get("free_bits") or 0.0
    if free_bits > 0:
        if spec["train"]["engine"] != "fast":
            raise PyrovaeError(
                "objective.free_bits: needs train.engine: fast (poutine.scale, used by the "
                "pyro engine, cannot express max(λ, KL_j) per latent dimension)"
            )
        if (
            spec["prior"]["family"] not in FREE_BITS_PRIORS
            or spec["guide"]["family"] not in FREE_BITS_GUIDES
        ):
            raise PyrovaeError(
                f"objective.free_bits: needs {FREE_BITS_NEEDS}; got prior "
                f"{spec['prior']['family']!r} and guide {spec['guide']['family']!r}"
            )


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a raw spec from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise PyrovaeError(f"config file {path}: expected .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()
        raise PyrovaeError(f"config file {path} is malformed: {' '.join(first)}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PyrovaeError(f"config file {path}: expected a mapping at the top level")
    return dict(data)


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a raw spec.

    ``prior.components=10`` on ``prior: mixture`` expands the shorthand first;
    ``objective.free_bits=0.5`` with no ``objective`` starts from the default family.
    """
    out = copy.deepcopy(dict(raw or {}))
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise PyrovaeError(f"--set {item!r}: expected KEY.PATH=VALUE")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise PyrovaeError(f"--set {item!r}: empty key in {key!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part in REGISTRIES:
                child = {"family": child}
            if child is None:  # a family section not in the file: start from its default
                child = {"family": FAMILY_DEFAULTS[part]} if i == 0 and part in FAMILY_DEFAULTS else {}
            if not isinstance(child, dict):
                raise PyrovaeError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is not a mapping")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def dump_spec(spec: Mapping[str, Any], path: str | Path) -> None:
    """Write a spec as YAML (the format read back by :func:`load_spec`)."""
    from pyrovae.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(dict(spec), sort_keys=False))
