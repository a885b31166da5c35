"""Name -> family registries, in the style of ``torch.distributions.kl.register_kl``.

Adding a family is one class plus one registration::

    from pyrovae.registry import PRIORS, Param
    from pyrovae.model.priors import Prior

    @PRIORS.register("laplace")
    class LaplacePrior(Prior):
        '''p(z) = prod_d Laplace(z_d; 0, b).'''
        params = {"scale": Param("positive_float", 1.0, doc="b")}
        def __init__(self, latent_dim, scale=1.0): ...

A family entry in a spec is ``{"family": NAME, **params}``; a bare string is
shorthand for ``{"family": NAME}``.  :meth:`Registry.normalize` fills in defaults
and validates every parameter, naming the key path on error
(``prior.components: expected a positive integer, got 0``).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pyrovae.errors import PyrovaeError

_REQUIRED = object()

#: The one seed range, [0, SEED_MAX] (torch, NumPy and the shuffle generator all accept
#: it): every seed a user gives (``train.seed``, ``data.split_seed``, ``--seed``) is
#: checked by :func:`check_seed` (the ``Param`` kind ``"seed"``).
SEED_MAX = 2**32 - 1

_KINDS: dict[str, str] = {
    "int": "an integer",
    "positive_int": "a positive integer",
    "nonneg_int": "a non-negative integer",
    "seed": f"an integer in [0, {SEED_MAX}]",
    "float": "a finite number",
    "positive_float": "a positive number",
    "nonneg_float": "a non-negative number",
    "unit_float": "a number in [0, 1]",
    "bool": "true or false",
    "str": "a string",
    "int_list": "a list of positive integers",
    "unit_pair": "two numbers in [0, 1)",
    "choice": "one of {choices}",
    "device": "a torch device name (cpu, cuda, cuda:N or mps)",
}

#: The device names a ``device`` Param accepts (whether it exists on this machine is
#: checked where it is used: :func:`pyrovae.training.config.parse_device`).
_DEVICE = re.compile(r"(cpu|cuda|mps)(:[0-9]{1,4})?")


#: The parts a declared value may play in a model's size (``Param(size=...)``).
SIZE_ROLES = (None, "widths", "channels", "kernel", "stride", "repeat", "count", "outputs",
              "width")


class Param:
    """A declared parameter of a family (or of a spec section).

    Args:
        kind: one of ``int, positive_int, nonneg_int, seed, float, positive_float,
            nonneg_float, unit_float, bool, str, int_list, unit_pair, choice, device``
            (``unit_pair``: two numbers in [0, 1), e.g. Adam's betas; a list once
            validated).
        default: the default value; omit it for a required parameter.
        doc: one line shown by ``pyrovae families``.
        choices: the allowed values when ``kind == "choice"``.
        nullable: whether ``None`` (YAML ``null``) is allowed.
        size: the part the value plays in the model's size, read by the size budget
            (:mod:`pyrovae.runs.budget`): ``"widths"`` (hidden layer sizes),
            ``"channels"``, ``"kernel"`` and ``"stride"`` (convolutions), ``"repeat"`` (the
            family's network is repeated this many times, e.g. flow layers),
            ``"count"`` (components, each of about data_dim + 2·latent_dim numbers),
            ``"outputs"`` (decoder outputs per data dimension) or ``"width"`` (added
            to the networks' input width, e.g. a context's size); None: no part.
    """

    def __init__(
        self,
        kind: str,
        default: Any = _REQUIRED,
        *,
        doc: str = "",
        choices: tuple | list | None = None,
        nullable: bool = False,
        size: str | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise PyrovaeError(f"unknown Param kind {kind!r}; known: {', '.join(sorted(_KINDS))}")
        if kind == "choice" and not choices:
            raise PyrovaeError("Param(kind='choice') needs choices")
        self.kind = kind
        self.default = default
        self.doc = doc
        self.choices = tuple(choices) if choices else None
        self.nullable = nullable
        if size not in SIZE_ROLES:
            raise PyrovaeError(f"unknown Param size role {size!r}")
        self.size = size

    @property
    def required(self) -> bool:
        """True when the parameter has no default (it must be given)."""
        return self.default is _REQUIRED

    def expected(self) -> str:
        """What a valid value is, in words (``a positive integer or null``)."""
        text = _KINDS[self.kind]
        if self.kind == "choice":
            text = text.format(choices=", ".join(repr(c) for c in self.choices))
        if self.nullable:
            text += " or null"
        return text

    def validate(self, value: Any, path: str) -> Any:
        """Return ``value`` converted to the parameter's type, or raise PyrovaeError."""
        if value is None and self.nullable:
            return None
        ok, out = _convert(self.kind, value, self.choices)
        if not ok:
            raise PyrovaeError(f"{path}: expected {self.expected()}, got {value!r}")
        return out

    def describe(self) -> dict[str, Any]:
        """``{"type", "doc", "default", "required"}``: the listing of ``pyrovae families``."""
        d: dict[str, Any] = {"type": self.expected(), "doc": self.doc}
        d["default"] = None if self.required else self.default
        d["required"] = self.required
        return d


def _convert(kind: str, v: Any, choices: tuple | None) -> tuple[bool, Any]:
    if kind in ("int", "positive_int", "nonneg_int", "seed"):
        if isinstance(v, bool):
            return False, None
        if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:  # exactly an int
            v = int(v)
        if not isinstance(v, int):
            return False, None
        if kind == "positive_int" and v <= 0:
            return False, None
        if kind == "nonneg_int" and v < 0:
            return False, None
        if kind == "seed" and not 0 <= v <= SEED_MAX:
            return False, None
        return True, v
    if kind in ("float", "positive_float", "nonneg_float", "unit_float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False, None
        try:
            v = float(v)
        except OverflowError:  # an int too large for a float
            return False, None
        if not math.isfinite(v):
            return False, None
        if kind == "positive_float" and v <= 0:
            return False, None
        if kind == "nonneg_float" and v < 0:
            return False, None
        if kind == "unit_float" and not 0.0 <= v <= 1.0:
            return False, None
        return True, v
    if kind == "bool":
        return (True, v) if isinstance(v, bool) else (False, None)
    if kind == "str":
        return (True, v) if isinstance(v, str) and v else (False, None)
    if kind == "int_list":
        if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
            return False, None
        out = []
        for item in v:
            ok, item = _convert("positive_int", item, None)
            if not ok:
                return False, None
            out.append(item)
        return True, out
    if kind == "unit_pair":
        if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)) or len(v) != 2:
            return False, None
        pair = [_convert("float", item, None) for item in v]
        if not all(ok and 0.0 <= item < 1.0 for ok, item in pair):
            return False, None
        return True, [item for _, item in pair]
    if kind == "device":
        return (True, v) if isinstance(v, str) and _DEVICE.fullmatch(v) else (False, None)
    if kind == "choice":
        return (True, v) if any(v == c and type(v) is type(c) for c in choices) else (False, None)
    raise AssertionError(kind)


def check_seed(value: Any, path: str = "seed") -> int:
    """``value`` as a seed, an integer in [0, :data:`SEED_MAX`] (NumPy and torch integer
    scalars accepted), else a one-line PyrovaeError naming ``path``: the one seed check
    (``train.seed``, ``data.split_seed``, ``evaluate(seed=)``, every ``--seed``)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and abs(value) > 10**30:
        raise PyrovaeError(f"{path}: expected {_KINDS['seed']}, got a huge number")
    return _SEED.validate(value, path)


def validate_section(
    params: Mapping[str, Param], entry: Any, path: str, *, what: str | None = None
) -> dict[str, Any]:
    """Validate a mapping against declared params, fill defaults, refuse unknown keys."""
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise PyrovaeError(f"{path}: expected a mapping, got {entry!r}")
    out: dict[str, Any] = {}
    for key in entry:
        if key not in params:
            known = ", ".join(sorted(params)) or "none"
            owner = f" for {what}" if what else ""
            raise PyrovaeError(f"{path}.{key}: unknown parameter{owner}; known parameters: {known}")
    for key, p in params.items():
        if key in entry:
            out[key] = p.validate(entry[key], f"{path}.{key}")
        elif p.required:
            raise PyrovaeError(f"{path}.{key}: missing required parameter ({p.expected()})")
        else:  # a tuple default (hashable, for a dataclass field) as the list a spec holds
            out[key] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


class Registry:
    """A name -> class registry for one kind of family (prior, likelihood, ...).

    Each registered class declares ``params: dict[str, Param]``; it is built as
    ``cls(**context, **params)`` where ``context`` holds the sizes the model
    supplies (``latent_dim``, ``data_dim``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator: ``@PRIORS.register("laplace")``."""

        def deco(cls: type) -> type:
            if name in self._classes and self._classes[name] is not cls:
                raise PyrovaeError(f"{self.kind} family {name!r} is already registered")
            if not isinstance(getattr(cls, "params", None), Mapping):
                raise PyrovaeError(f"{cls.__name__} must declare `params: dict[str, Param]`")
            cls.family = name
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def get(self, name: Any, path: str | None = None) -> type:
        """The class registered as ``name``; an unknown name lists the known ones."""
        path = path or self.kind
        if not isinstance(name, str) or name not in self._classes:
            known = ", ".join(self.names())
            raise PyrovaeError(
                f"{path}.family: unknown {self.kind} family {name!r}; known: {known}"
            )
        return self._classes[name]

    def normalize(self, entry: Any, path: str | None = None) -> dict[str, Any]:
        """``"name"`` or ``{"family": name, ...}`` -> a full, validated entry."""
        path = path or self.kind
        if isinstance(entry, str):
            entry = {"family": entry}
        if not isinstance(entry, Mapping):
            raise PyrovaeError(
                f"{path}: expected a family name or a mapping with 'family', got {entry!r}"
            )
        if "family" not in entry:
            raise PyrovaeError(f"{path}.family: missing; known: {', '.join(self.names())}")
        cls = self.get(entry["family"], path)
        rest = {k: v for k, v in entry.items() if k != "family"}
        params = validate_section(cls.params, rest, path, what=f"{self.kind} family {cls.family!r}")
        check = getattr(cls, "check_params", None)
        if check is not None:
            check(params, path)
        return {"family": cls.family, **params}

    def build(self, entry: Any, path: str | None = None, **context: Any) -> Any:
        """Instantiate the family described by ``entry`` (validated here: a raw entry)
        with the model's ``context``."""
        return self.instantiate(self.normalize(entry, path), **context)

    def instantiate(self, full: Mapping[str, Any], **context: Any) -> Any:
        """Instantiate from an entry ``normalize`` returned, without validating it
        again (a spec validated once at the door builds its families through this).
        The object keeps its entry as ``obj.entry``."""
        # plain copies (a validated entry may be a read-only view, pyrovae.frozen)
        params = {k: copy.deepcopy(v) for k, v in full.items() if k != "family"}
        obj = self._classes[full["family"]](**context, **params)
        obj.entry = copy.deepcopy(dict(full))  # the entry it was built from (VAE.spec)
        return obj

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{name: {"doc": first docstring line, "params": {...}}}`` for listings."""
        out = {}
        for name in self.names():
            cls = self._classes[name]
            doc = inspect.getdoc(cls) or ""
            out[name] = {
                "doc": doc.splitlines()[0] if doc else "",
                "params": {k: p.describe() for k, p in cls.params.items()},
            }
        return out


PRIORS = Registry("prior")
LIKELIHOODS = Registry("likelihood")
GUIDES = Registry("guide")
OBJECTIVES = Registry("objective")
SCHEDULES = Registry("kl_weight")
NETWORKS = Registry("network")
CONTEXTS = Registry("context")
#: Model kinds (the latent structure): each kind registers itself (``vae``: model/vae.py,
#: ``m2``: model/m2.py); importing :mod:`pyrovae.model` fills it.
MODELS = Registry("model")

#: Every registry by the spec key it fills.
REGISTRIES: dict[str, Registry] = {
    "prior": PRIORS,
    "likelihood": LIKELIHOODS,
    "guide": GUIDES,
    "encoder": NETWORKS,
    "decoder": NETWORKS,
    "context": CONTEXTS,
    "objective": OBJECTIVES,
    "kl_weight": SCHEDULES,
    "model": MODELS,
}


_SEED = Param("seed", 0)


# --- Typed settings: a section of options declared once, by a frozen dataclass's fields ---
#
# Each field is declared by its Param with `declared`; the Param is the field's
# metadata, so a section's schema ({key: Param}, `params_of`), the CLI flags, `pyrovae
# families` and the docs reference are read off the class, and the object a function
# receives is the validated, typed value (training.config.TrainConfig, data.config.DataConfig,
# runs.sections.EvalConfig / CheckpointPolicy / CheckBudget, training.stopping.EarlyStopping).

S = TypeVar("S", bound="Section")


def declared(param: Param) -> Any:
    """A dataclass field declared by ``param``: its default is the Param's (a list default
    through a factory) and the Param (kind, default, doc) is its metadata."""
    meta = {"param": param}
    if isinstance(param.default, list):
        default = list(param.default)
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=param.default, metadata=meta)


def params_of(cls: type) -> dict[str, Param]:
    """A section class's options as ``name -> Param``, in field order."""
    return {f.name: f.metadata["param"] for f in dataclasses.fields(cls)
            if "param" in f.metadata}


def plain(value: Any) -> Any:
    """NumPy / torch scalars as Python numbers (``np.int64(3)`` is a fine epoch count)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, float):
        return float(value)
    return value


class Section:
    """Base of the typed sections (frozen dataclasses whose fields are :func:`declared`).

    Subclasses set ``section`` (the spec key, for messages: ``"data"`` gives
    ``data.split_seed: ...``; empty: the bare field name) and may override :meth:`check`
    for rules that involve several fields. Fields listed in ``unchecked`` are left to
    the subclass (e.g. a device, parsed by torch)."""

    section: ClassVar[str] = ""
    unchecked: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self._validate(self._label)

    @classmethod
    def _label(cls, name: str) -> str:
        return f"{cls.section}.{name}" if cls.section else name

    def _validate(self, label: Callable[[str], str]) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if "param" not in f.metadata or f.name in self.unchecked:
                continue
            value = f.metadata["param"].validate(plain(getattr(self, f.name)), label(f.name))
            object.__setattr__(self, f.name, value)
        self.check(label)

    def check(self, label: Callable[[str], str]) -> None:
        """Rules across fields (a PyrovaeError naming ``label(field)``); none by default."""

    @classmethod
    def build(cls: type[S], values: Mapping[str, Any],
              label: Callable[[str], str] | None = None) -> S:
        """The section from ``values`` (absent keys: their defaults), validated once, the
        errors naming each option as ``label(name)`` (default: ``section.name``);
        an unknown key is an error too."""
        label = label or cls._label
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for key in values:
            if key not in names:
                raise PyrovaeError(f"{label(str(key))}: unknown option; known options: "
                                   f"{', '.join(names)}")
        obj = object.__new__(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in values:
                value = values[f.name]
            elif f.default is not dataclasses.MISSING:
                value = f.default
            else:
                value = f.default_factory()  # type: ignore[misc]
            object.__setattr__(obj, f.name, value)
        obj._validate(label)
        return obj

    @classmethod
    def from_section(cls: type[S], section: Mapping[str, Any]) -> S:
        """From a spec's section (keys that are not options of this class are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in section.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        """The options as ``name -> value`` (keyword arguments of the consumer)."""
        return {f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]
