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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pyrovae import io as pio
from pyrovae.data.config import DATA_PARAMS, DataConfig
from pyrovae.errors import PyrovaeError
from pyrovae.frozen import FrozenDict, freeze, thaw
from pyrovae.model.spec import (
    MODEL_FAMILY_DEFAULTS,
    MODEL_KEYS,
    MODEL_SECTIONS,
    TOP,
    ModelSpec,
    check_event_shape,
    complete_for_kind,
    model_class,
    normalize_model_key,
)
from pyrovae.registry import REGISTRIES, Param, params_of, validate_section
from pyrovae.runs.sections import (
    MAX_NUM_SAMPLES,
    CheckpointPolicy,
    EvalConfig,
    check_num_samples,
)

# Importing the objectives module fills the objective and schedule registries.
from pyrovae.training import objectives as _objectives  # noqa: F401
from pyrovae.training.config import SEED_MAX, TRAIN_PARAMS, TrainConfig
from pyrovae.training.stopping import EARLY_STOPPING_PARAMS, EarlyStopping
from pyrovae.training.tracking import TRACKERS

__all__ = ["MAX_NUM_SAMPLES", "MAX_SEED", "MODEL_KEYS", "SECTIONS", "Spec", "apply_overrides",
           "bound_spec_hash", "changed_sections", "check_num_samples", "dump_spec", "load_spec",
           "normalize_spec", "section_hashes", "spec_hash"]

#: The most Monte Carlo particles per training step (``objective.num_particles``).
MAX_NUM_PARTICLES = 10_000
#: Largest seed (``train.seed``, ``data.split_seed``): seeds are 32-bit (the one constant,
#: :data:`pyrovae.training.config.SEED_MAX`).
MAX_SEED = SEED_MAX
#: Largest value of any other integer in a spec (sizes, counts, epochs).
MAX_COUNT = 2**31 - 1


#: Plain (non-family) sections and their parameters.
RUN_SECTIONS: dict[str, dict[str, Param]] = {
    # the training options are declared once (training.config.TRAIN_PARAMS); the spec
    # keeps its own defaults for a few and adds checkpointing
    "train": {
        **TRAIN_PARAMS,  # declared once, by the fields of training.config.TrainConfig
        "checkpoint_every": Param("positive_int", 10, doc="epochs between checkpoints"),
    },
    "data": DATA_PARAMS,  # declared by the fields of data.config.DataConfig
    "eval": params_of(EvalConfig),
    # stop when the held-out ELBO stops improving (training.stopping.EarlyStopping)
    "early_stopping": EARLY_STOPPING_PARAMS,
    # what the run folder keeps beside checkpoint.pt (written every train.checkpoint_every)
    "checkpoint": params_of(CheckpointPolicy),
}

#: ``track``: the trackers a run logs to as it trains (training.tracking.TRACKERS).
TRACK_DEFAULT = ["csv"]

#: Sections added after run folders were first written: left out of the spec hash
#: when they hold their defaults, so the checkpoints of older runs still verify.
_LATER_DEFAULTS = ("early_stopping", "checkpoint", "track", "model")
#: Options of the ``train`` section added later: left out of the hash at their defaults.
_LATER_TRAIN = ("optimizer", "weight_decay", "betas", "lr_schedule", "lr_gamma", "lr_step",
                "threads")
#: Later options whose default changed since: left out of the hash at each value it has
#: been (``threads``: null, torch's own count, until 1 became the default), so the runs
#: written before and in between still verify (the thread count changes the last bits of
#: a result, not what the run is; a resume with another count warns).
_HASH_OMITTED_AT: dict[str, tuple[Any, ...]] = {"threads": (None, 1)}

#: Every plain section of a spec, model and run, as ``section -> {key: Param}``.
SECTIONS: dict[str, dict[str, Param]] = {**MODEL_SECTIONS, **RUN_SECTIONS}

FAMILY_DEFAULTS: dict[str, str] = {
    **MODEL_FAMILY_DEFAULTS,
    "objective": "trace_elbo",
    "kl_weight": "constant",
}

ALL_KEYS = tuple(TOP) + tuple(SECTIONS) + tuple(FAMILY_DEFAULTS) + ("track",)


def normalize_track(value: Any) -> list[str]:
    """``track``: a list of tracker names (a single name, or null/[] for none), each
    registered (``csv``, ``jsonl``, ``tensorboard``, ``mlflow``), without repeats."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PyrovaeError(f"track: expected a list of tracker names "
                           f"({', '.join(TRACKERS.names())}), got {pio.short(value)}")
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in TRACKERS:
            raise PyrovaeError(f"track[{i}]: expected one of {', '.join(TRACKERS.names())}, "
                               f"got {pio.short(name)}")
        if name not in out:
            out.append(name)
    return out


def _normalize_key(key: str, raw: Mapping[str, Any], done: Mapping[str, Any]) -> Any:
    if key == "track":
        return normalize_track(raw.get("track", TRACK_DEFAULT))
    if key in TOP or key in MODEL_SECTIONS or key in MODEL_FAMILY_DEFAULTS:
        return normalize_model_key(key, raw, done)
    if key in SECTIONS:
        return validate_section(SECTIONS[key], raw.get(key), key)
    return REGISTRIES[key].normalize(raw.get(key, FAMILY_DEFAULTS[key]), key)


class Spec(FrozenDict):
    """A spec validated once, at the door (:func:`normalize_spec`): every section present,
    every default filled in.  It travels as this object: the VAE builder
    (``VAE.from_spec``), the trainer, the run folder and the checks accept it without
    validating it again (``normalize_spec(spec)`` returns it as it is).

    Read it as a dict (``spec["train"]["lr"]``; it and its sections are read-only views,
    ``pyrovae.frozen``, so a spec cannot be changed behind its validation: a change
    is refused in one line) or through its typed parts: ``model_spec`` (the
    ``ModelSpec`` the model kind is built from).
    ``replace`` validates a change; ``as_dict`` (or ``copy.deepcopy``) gives a
    plain, mutable dict; JSON, YAML and pickle write it as plain data.
    """

    __slots__ = ("_typed", "model_spec")

    def __init__(self, data: Mapping[str, Any], *, _validated: bool = False) -> None:
        if not _validated:  # a Spec is made by normalize_spec (or replace), never by hand
            raise PyrovaeError("Spec: made by normalize_spec(raw), which validates the spec")
        super().__init__()
        for k, v in data.items():
            dict.__setitem__(self, k, freeze(v, k))
        object.__setattr__(self, "_what", "spec")
        #: The model part, typed (read off the validated spec, not validated again).
        self.model_spec: ModelSpec = ModelSpec.of_validated(self)
        self._typed: dict[str, Any] = {}

    def _section(self, key: str, make: Callable[[Mapping[str, Any]], Any]) -> Any:
        """The typed object of section ``key``, made on first use and kept (a spec is
        read-only); its errors are named ``key.option``."""
        if key not in self._typed:
            try:
                self._typed[key] = make(self[key])
            except PyrovaeError as exc:
                raise PyrovaeError(f"{key}.{exc}") from None
        return self._typed[key]

    @property
    def train_config(self) -> TrainConfig:
        """The ``train`` section as the :class:`TrainConfig` ``fit`` takes (checked on
        first use beyond the spec's types: the device exists on this machine)."""
        return self._section("train", TrainConfig.from_section)

    @property
    def data_config(self) -> DataConfig:
        """The ``data`` section as a ``DataConfig``."""
        return self._section("data", DataConfig.from_section)

    @property
    def eval_config(self) -> EvalConfig:
        """The ``eval`` section as an ``EvalConfig``."""
        return self._section("eval", EvalConfig.from_section)

    @property
    def checkpoint_policy(self) -> CheckpointPolicy:
        """The ``checkpoint`` section as a ``CheckpointPolicy``."""
        return self._section("checkpoint", CheckpointPolicy.from_section)

    @property
    def stopping_rule(self) -> EarlyStopping | None:
        """The ``early_stopping`` section as an ``EarlyStopping`` (None when off)."""
        return self._section("early_stopping", EarlyStopping.from_section)

    def as_dict(self) -> dict[str, Any]:
        """A plain, mutable, JSON-able copy (what ``spec.yaml`` and checkpoints hold)."""
        return thaw(self)

    def replace(self, changes: Mapping[str, Any]) -> Spec:
        """This spec with the top-level ``changes`` (``{"data_dim": 64, "data": {...}}``),
        each changed key validated, then the cross-key checks of the whole spec; the
        other keys are not validated again."""
        raw = dict(changes)
        done = {k: v for k, v in self.items() if k not in raw}
        for key in raw:
            if key not in ALL_KEYS:
                raise PyrovaeError(f"{key}: unknown spec key; known keys: {', '.join(ALL_KEYS)}")
            done[key] = _normalize_key(key, raw, done)
        out = _checked({k: done[k] for k in ALL_KEYS})
        out._typed.update((k, v) for k, v in self._typed.items() if k not in raw)
        return out


yaml.SafeDumper.add_representer(Spec, yaml.SafeDumper.represent_dict)  # as a plain dict


def normalize_spec(raw: Mapping[str, Any] | None = None) -> Spec:
    """A complete, validated spec: every section present, every default filled in (a
    :class:`Spec`; given one, it is returned as it is: a spec is validated once)."""
    if isinstance(raw, Spec):
        return raw
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise PyrovaeError(f"spec: expected a mapping, got {type(raw).__name__}")
    pio.check_shape(raw, "spec")
    for key in raw:
        if key not in ALL_KEYS:
            name = key if isinstance(key, str) and len(key) < 60 else pio.short(key)
            raise PyrovaeError(f"{name}: unknown spec key; known keys: {', '.join(ALL_KEYS)}")
    spec: dict[str, Any] = {}
    for key in ALL_KEYS:
        spec[key] = _normalize_key(key, raw, spec)
    return _checked(spec)


def _checked(spec: dict[str, Any]) -> Spec:
    """The cross-key checks of a spec whose keys are each validated; the Spec."""
    check_bounds(spec)
    check_event_shape(spec)
    complete_for_kind(spec)
    check_combinations(spec)
    return Spec(spec, _validated=True)


def check_bounds(spec: Mapping[str, Any]) -> None:
    """Upper bounds on the integers of a normalized spec, so that no value is accepted
    that would fail (or run for ever) after the run folder is written: seeds up to
    :data:`MAX_SEED`, ``eval.num_samples`` up to :data:`MAX_NUM_SAMPLES`,
    ``objective.num_particles`` up to :data:`MAX_NUM_PARTICLES`, any other integer
    (sizes, counts, epochs) up to :data:`MAX_COUNT`."""
    stack: list[tuple[str, Any]] = list(spec.items())
    while stack:
        key, v = stack.pop()
        if isinstance(v, Mapping):
            stack.extend((f"{key}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{key}[{i}]", x) for i, x in enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            last = key.rsplit(".", 1)[-1]
            if key == "eval.num_samples":
                check_num_samples(v, key)
                continue
            top = (MAX_SEED if last.endswith("seed") else
                   MAX_NUM_PARTICLES if last == "num_particles" else MAX_COUNT)
            if abs(v) > top:
                raise PyrovaeError(f"{key}: expected an integer up to {top}, "
                                   f"got {pio.short(v)}")


def check_combinations(spec: Mapping[str, Any]) -> None:
    """Cross-section checks of a normalized spec (each error names the key path)."""
    from pyrovae.estimators.kinds import KIND_ESTIMATORS
    from pyrovae.training.objectives import free_bits_families, free_bits_needs

    free_bits = spec["objective"].get("free_bits") or 0.0
    own = getattr(model_class(spec), "own_loss", None)
    if own is not None:  # a kind with its own estimator (estimators/kinds.py)
        est, kind = KIND_ESTIMATORS[own], spec["model"]["family"]
        # the objective decides from the estimator's declared capabilities
        if not REGISTRIES["objective"].get(spec["objective"]["family"]).trains_kind(est):
            raise PyrovaeError(f"objective: {spec['objective']['family']!r} cannot train "
                               f"{est.what} (model: {kind}); use trace_elbo or trace_elbo_mc")
        if free_bits > 0 and not est.free_bits:
            raise PyrovaeError(f"objective.free_bits: not available for {est.what} "
                               f"(model: {kind})")
        if spec["objective"].get("kl") == "analytic" and not est.closed_form_kl:
            raise PyrovaeError(f"objective.kl: 'analytic' is not available for {est.what} "
                               f"(model: {kind}: its KL terms are conditional, Monte Carlo); "
                               "use auto or mc")
    if free_bits > 0:
        if spec["train"]["engine"] != "fast":
            raise PyrovaeError(
                "objective.free_bits: needs train.engine: fast (poutine.scale, used by the "
                "pyro engine, cannot express max(λ, KL_j) per latent dimension)"
            )
        priors, guides = free_bits_families()
        if spec["prior"]["family"] not in priors or spec["guide"]["family"] not in guides:
            raise PyrovaeError(
                f"objective.free_bits: needs {free_bits_needs()}; got prior "
                f"{spec['prior']['family']!r} and guide {spec['guide']['family']!r}"
            )


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a raw spec from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"config file not found: {path}")
    fmt = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}.get(
        path.suffix.lower())
    if fmt is None:
        raise PyrovaeError(f"config file {path}: expected .yaml, .yml, .toml or .json")
    what = f"config file {path}"
    data = pio.parse_text(pio.read_text(path, what), fmt, what)
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
            raise PyrovaeError(f"--set {pio.short(item)}: empty key in {pio.short(key)}")
        try:
            value = pio.parse_text(text, "yaml", f"--set {key}") if text.strip() else None
        except PyrovaeError as exc:
            if "malformed" not in str(exc) or "4300 digits" in str(exc):
                raise
            value = text  # not YAML: the plain string
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part in REGISTRIES:
                child = {"family": child}
            if child is None:  # a family section not in the file: start from its default
                default = FAMILY_DEFAULTS.get(part) if i == 0 else None
                child = {"family": default} if default is not None else {}
            if not isinstance(child, dict):
                raise PyrovaeError(f"--set {pio.short(item)}: {'.'.join(parts[: i + 1])} "
                                   "is not a mapping")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def _omitted(key: str, value: Any) -> bool:
    """Whether a later train option is left out of the spec hash: at its default, or at
    any default it has had (:data:`_HASH_OMITTED_AT`)."""
    return key in _LATER_TRAIN and (value in _HASH_OMITTED_AT.get(key, ())
                                    or value == _train_default(key))


def _train_default(key: str) -> Any:
    """A train option's default as the normalized spec holds it (``betas``: a list)."""
    p = TRAIN_PARAMS[key]
    return p.validate(p.default, f"train.{key}")


def spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of a normalized spec's canonical JSON (keys sorted, no spaces): two specs
    with the same hash describe the same run."""
    return _sha256(_hashed(spec))


def _hashed(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What the hashes cover: the spec without the sections and train options added
    after run folders were first written, where they hold their defaults."""
    spec = {k: v for k, v in spec.items()
            if not (k in _LATER_DEFAULTS and v == _later_default(k))}
    if isinstance(spec.get("train"), Mapping):  # train options added later, at their defaults
        spec["train"] = {k: v for k, v in spec["train"].items()
                         if not _omitted(k, v)}
    return spec


def _sha256(value: Any) -> str:
    import hashlib
    import json

    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unbound(spec: Mapping[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in (spec.get("train") or {}).items() if k != "epochs"}
    return {**spec, "train": train}


def section_hashes(spec: Mapping[str, Any]) -> dict[str, str]:
    """``{key: SHA-256 of its canonical JSON}`` for each top-level key of a normalized
    spec (``train.epochs`` left out, as in :func:`bound_spec_hash`): what a checkpoint
    holds besides the spec hash, so that an edited ``spec.yaml`` is reported by the keys
    that changed without a second copy of the spec."""
    return {k: _sha256(v) for k, v in _hashed(_unbound(spec)).items()}


def changed_sections(hashes: Any, spec: Mapping[str, Any]) -> list[str]:
    """The top-level keys of ``spec`` whose hashes are not those in ``hashes`` (a
    checkpoint's :func:`section_hashes`), in spec order; all keys when ``hashes`` is not
    a mapping."""
    now = section_hashes(spec)
    if not isinstance(hashes, Mapping):
        return list(now)
    return [k for k in dict.fromkeys([*now, *hashes]) if now.get(k) != hashes.get(k)]


def _later_default(key: str) -> Any:
    if key == "model":
        return {"family": FAMILY_DEFAULTS["model"]}
    return TRACK_DEFAULT if key == "track" else validate_section(SECTIONS[key], None, key)


def bound_spec_hash(spec: Mapping[str, Any]) -> str:
    """:func:`spec_hash` without ``train.epochs``: what binds a checkpoint to its run's
    spec (``--resume --epochs N`` raises the epochs of the same run)."""
    return spec_hash(_unbound(spec))


def dump_spec(spec: Mapping[str, Any], path: str | Path) -> None:
    """Write a spec as YAML (the format read back by :func:`load_spec`)."""
    plain = spec.as_dict() if isinstance(spec, Spec) else dict(spec)
    pio.atomic_write_text(Path(path), yaml.safe_dump(plain, sort_keys=False))


def spec_diff(a: Mapping[str, Any], b: Mapping[str, Any], *, ignore: tuple[str, ...] = (),
              names: tuple[str, str] = ("run has", "given"), limit: int = 6) -> str:
    """The keys where two specs differ, ``"train.lr: run has 0.001, given 0.01; ..."``
    (empty when they agree); ``ignore`` names keys or whole sections to skip."""
    fa, fb = _flatten(a), _flatten(b)
    missing = object()
    # a changed family makes its parameters differ too: name the family only
    families = [k[: -len(".family")] for k in fa
                if k.endswith(".family") and fa[k] != fb.get(k, missing)]
    keys = [k for k in dict.fromkeys([*fa, *fb])
            if not any(k == i or k.startswith(f"{i}.") for i in ignore)
            and not any(k.startswith(f"{f}.") and k != f"{f}.family" for f in families)]
    diffs = []
    for k in keys:
        va, vb = fa.get(k, missing), fb.get(k, missing)
        if va != vb or (type(va) is not type(vb) and not _same_number(va, vb)):
            show = [("(absent)" if v is missing else repr(v)) for v in (va, vb)]
            diffs.append(f"{k}: {names[0]} {show[0]}, {names[1]} {show[1]}")
    if len(diffs) > limit:
        diffs = [*diffs[:limit], f"and {len(diffs) - limit} more"]
    return "; ".join(diffs)


def _same_number(a: Any, b: Any) -> bool:
    num = (int, float)
    return (isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out
