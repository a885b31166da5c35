"""The training options, declared once: :class:`TrainConfig` (what :func:`fit` takes,
validated once) and :data:`TRAIN_PARAMS` (the same options as spec parameters, from
which the spec's ``train`` section is built)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.registry import Param

#: One seed range everywhere (torch, NumPy and the shuffle generator accept it).
SEED_MAX = 2**32 - 1

#: The training options as parameters: ``name -> Param`` (kind, default, doc).
TRAIN_PARAMS: dict[str, Param] = {
    "epochs": Param("positive_int", 100, doc="passes over the training set"),
    "batch_size": Param("positive_int", 128, doc="minibatch size"),
    "lr": Param("positive_float", 1e-3, doc="Adam learning rate"),
    "seed": Param("nonneg_int", 0, doc=f"random seed in [0, {SEED_MAX}] "
                                       "(init, minibatches, samples)"),
    "engine": Param(
        "choice", "fast", choices=("fast", "pyro"),
        doc="fast: the ELBO estimator computed directly; pyro: stock SVI",
    ),
    "clip_norm": Param("positive_float", None, nullable=True, doc="gradient-norm clip"),
    "eval_every": Param("nonneg_int", 1, nullable=True,
                        doc="epochs between held-out ELBO evaluations (0 or null: never)"),
    "device": Param("str", None, nullable=True, doc="torch device, e.g. cpu or cuda"),
}


def check_seed(value: Any, path: str = "seed") -> int:
    """``value`` as a seed in [0, 2**32 − 1], else PyrovaeError naming ``path``."""
    seed = TRAIN_PARAMS["seed"].validate(_plain(value), path)
    if seed > SEED_MAX:
        raise PyrovaeError(f"{path}: expected an integer in [0, {SEED_MAX}], got {seed}")
    return seed


def parse_device(device: Any) -> torch.device | None:
    """``torch.device(device)`` if it exists on this machine, else a one-line PyrovaeError."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise PyrovaeError(f"device: expected a name such as 'cpu' or 'cuda', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise PyrovaeError(
            f"device: {str(device)[:40]!r} is not a torch device; use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PyrovaeError(f"device: {str(device)!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PyrovaeError(
                f"device: {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise PyrovaeError(f"device: {str(device)!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise PyrovaeError(f"device: {str(device)!r} is not supported; use cpu, cuda or mps")
    return dev


def _plain(value: Any) -> Any:
    """NumPy / torch scalars as Python numbers (``np.int64(3)`` is a fine epoch count)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, float):
        return float(value)
    return value


@dataclass(frozen=True)
class TrainConfig:
    """The scalar options of :func:`~pyrovae.training.trainer.fit`, validated on creation
    (PyrovaeError naming the option); see :data:`TRAIN_PARAMS` for their meaning."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    engine: str = "fast"
    clip_norm: float | None = None
    eval_every: int | None = 1
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "device":
                continue
            value = _plain(getattr(self, f.name))
            if f.name == "seed":
                value = check_seed(value)
            else:
                value = TRAIN_PARAMS[f.name].validate(value, f.name)
            object.__setattr__(self, f.name, value)
        parse_device(self.device)

    @property
    def torch_device(self) -> torch.device | None:
        """``device`` parsed to a :class:`torch.device` (None: where the model is)."""
        return parse_device(self.device)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> TrainConfig:
        """From a spec's ``train`` section (keys other than the options are ignored)."""
        return cls(**{f.name: section[f.name] for f in fields(cls) if f.name in section})


def train_params(**overrides: Param) -> dict[str, Param]:
    """:data:`TRAIN_PARAMS` with some parameters replaced (the spec's own defaults)."""
    unknown = set(overrides) - set(TRAIN_PARAMS)
    if unknown:
        raise ValueError(f"unknown train parameters {sorted(unknown)}")
    return {**TRAIN_PARAMS, **overrides}
