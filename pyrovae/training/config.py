"""The training options, declared once: the fields of :class:`TrainConfig` (what
:func:`~pyrovae.training.trainer.fit` takes, validated once), whose metadata are their
:class:`Param` declarations; :data:`TRAIN_PARAMS` reads them off, and the spec's ``train`` section,
the docs' spec reference and ``pyrovae families`` are built from it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.registry import SEED_MAX, Param, Section, check_seed, declared, params_of
from pyrovae.training.optim import LR_SCHEDULES, OPTIMIZERS

__all__ = ["SEED_MAX", "TRAIN_PARAMS", "TrainConfig", "check_seed", "num_threads",
           "parse_device"]


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


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (the intra-op pool), the
    previous count restored afterwards; ``None``: leave torch's setting alone.

    On a busy machine fewer threads than cores avoids the threads of one process
    waiting on each other (each op splits its work in ``threads`` parts and waits for
    the slowest); see ``benchmarks/bench_threads.py``."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class TrainConfig(Section):
    """The training options, each declared once, here: a field's metadata is its
    :class:`~pyrovae.registry.Param` (kind, default, doc), from which :data:`TRAIN_PARAMS`,
    the spec's ``train`` section, ``pyrovae families``/the docs' spec reference and
    :func:`~pyrovae.training.trainer.fit`'s defaults all come (a test keeps them equal).
    Validated on creation (a PyrovaeError names the option)."""

    epochs: int = declared(Param("positive_int", 300, doc="passes over the training set"))
    batch_size: int = declared(Param("positive_int", 128, doc="minibatch size"))
    lr: float = declared(Param("positive_float", 1e-3, doc="Adam learning rate"))
    seed: int = declared(Param("seed", 0, doc="random seed (init, minibatches, samples)"))
    engine: str = declared(Param(
        "choice", "fast", choices=("fast", "pyro"),
        doc="fast: the ELBO estimator computed directly; pyro: stock SVI"))
    clip_norm: float | None = declared(Param("positive_float", None, nullable=True,
                                            doc="gradient-norm clip"))
    eval_every: int | None = declared(Param(
        "nonneg_int", 1, nullable=True,
        doc="epochs between held-out ELBO evaluations (0 or null: never)"))
    device: str | torch.device | None = declared(Param(
        "device", None, nullable=True,
        doc="torch device, e.g. cpu or cuda; null: where the model's parameters are"))
    optimizer: str = declared(Param("choice", "adam", choices=tuple(OPTIMIZERS),
                                   doc="the optimiser (training.optim.OPTIMIZERS)"))
    weight_decay: float = declared(Param("nonneg_float", 0.0,
                                        doc="weight decay (AdamW: decoupled)"))
    betas: tuple[float, float] | list[float] = declared(Param(
        "unit_pair", (0.9, 0.999), doc="(β₁, β₂): decay rates of Adam's moment estimates"))
    lr_schedule: str = declared(Param(
        "choice", "constant", choices=tuple(LR_SCHEDULES),
        doc="learning rate per epoch (training.optim.LR_SCHEDULES)"))
    lr_gamma: float = declared(Param("positive_float", 0.1,
                                    doc="factor of the step and exponential schedules"))
    lr_step: int = declared(Param("positive_int", 10, doc="epochs per step of 'step'"))
    threads: int | None = declared(Param(
        "positive_int", 1, nullable=True,
        doc="CPU threads of torch's intra-op pool while training (torch.set_num_threads; "
            "restored afterwards). 1 by default: on a shared machine two threads of one "
            "process wait on each other (the default job: 8 s on 1 or 2 threads alone, "
            "12.7 s on 1 and 31.6 s on 2 beside two busy processes); raise it on a quiet "
            "machine for large models; null: torch's own count (all cores)"))

    unchecked = ("device",)  # parsed by torch (parse_device), not by its Param

    def check(self, label: Callable[[str], str]) -> None:
        """The device exists on this machine."""
        parse_device(self.device)

    @property
    def torch_device(self) -> torch.device | None:
        """``device`` parsed to a :class:`torch.device` (None: where the model is)."""
        return parse_device(self.device)

    def as_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of :func:`~pyrovae.training.trainer.fit`."""
        return self.as_dict()


#: The training options as parameters, ``name -> Param``, read off :class:`TrainConfig`.
TRAIN_PARAMS: dict[str, Param] = params_of(TrainConfig)
