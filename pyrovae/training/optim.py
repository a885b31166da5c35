"""The optimiser and the learning-rate schedule, the same in every engine.

``train.optimizer`` names a torch optimiser family (:data:`OPTIMIZERS`: ``adam``,
``adamw``, with ``train.weight_decay``); the fast and data-parallel engines build it over
all parameters with :func:`make_optimizer`, the pyro engine builds Pyro's wrapper of the
same class (one per parameter, as stock SVI does) with :func:`pyro_optimizer`.

``train.lr_schedule`` (:data:`LR_SCHEDULES`) gives the learning rate of epoch e
(counted from 0) as a closed form of the epoch, η_e = η · f(e):

* ``constant``:    f(e) = 1;
* ``step``:        f(e) = γ^⌊e / s⌋         (``lr_gamma`` γ, ``lr_step`` s epochs);
* ``exponential``: f(e) = γ^e;
* ``cosine``:      f(e) = ½ (1 + cos(π e / E))  (E = ``epochs``; Loshchilov & Hutter 2017);
* ``burda``:       f(e) = 10^(−i/7) in stage i, which runs 3^i epochs (i = 0, 1, …: epochs
  0, 1–3, 4–12, 13–39, …; stage i starts at epoch (3^i − 1)/2).  With ``lr`` 1e-3 and
  ``epochs`` 3,280 (stages 0–7) it is the schedule of Burda et al. (2016) for MNIST
  (:func:`burda_stage`, :func:`burda_epochs`).

The trainer sets it at the start of every epoch (:func:`set_lr`), in every engine;
being a function of the epoch alone, a resumed run follows it exactly.

References:
    Kingma & Ba (2015), *Adam: A Method for Stochastic Optimization*.
    Loshchilov & Hutter (2019), *Decoupled Weight Decay Regularization* (AdamW).
    Loshchilov & Hutter (2017), *SGDR: Stochastic Gradient Descent with Warm Restarts*.
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders* (§5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "OptimChoice", "burda_epochs", "burda_stage",
           "lr_at", "make_optimizer", "pyro_optimizer", "set_lr"]

#: name -> torch optimiser class (each takes ``lr`` and ``weight_decay``).
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}

def burda_stage(epoch: int) -> int:
    """The stage i of Burda et al.'s schedule that epoch ``epoch`` (from 0) belongs to:
    stage i runs 3^i epochs, so it covers epochs (3^i − 1)/2 … (3^(i+1) − 1)/2 − 1."""
    i = 0
    while (3 ** (i + 1) - 1) // 2 <= epoch:
        i += 1
    return i


def burda_epochs(stages: int) -> int:
    """The epochs (passes) of the first ``stages`` stages of Burda et al.'s schedule,
    Σ_{i<stages} 3^i = (3^stages − 1)/2 (8 stages: 3,280)."""
    return (3 ** stages - 1) // 2


#: The schedules by name, each the factor f(epoch, epochs, gamma, step) on the base rate.
LR_SCHEDULES: dict[str, Callable[[int, int, float, int], float]] = {
    "constant": lambda e, n, g, s: 1.0,
    "step": lambda e, n, g, s: g ** (e // s),
    "exponential": lambda e, n, g, s: g ** e,
    "cosine": lambda e, n, g, s: 0.5 * (1.0 + math.cos(math.pi * min(e, n) / max(n, 1))),
    "burda": lambda e, n, g, s: 10.0 ** (-burda_stage(e) / 7.0),
}


@dataclass(frozen=True)
class OptimChoice:
    """Which optimiser an engine builds: a name of :data:`OPTIMIZERS` and its weight decay."""

    name: str = "adam"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    @classmethod
    def from_config(cls, config: Any) -> OptimChoice:
        """The choice a :class:`~pyrovae.training.config.TrainConfig` makes."""
        return cls(config.optimizer, config.weight_decay, tuple(config.betas))


def make_optimizer(params: Iterable[torch.nn.Parameter], *, name: str = "adam", lr: float,
                   weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)
                   ) -> torch.optim.Optimizer:
    """One torch optimiser ``name`` over ``params`` (the fast and data-parallel engines).

    With the defaults (``adam``, no weight decay, betas (0.9, 0.999)) it is exactly
    ``torch.optim.Adam(params, lr=lr)``."""
    return OPTIMIZERS[name](params, **_optim_args(lr, weight_decay, betas))


def _optim_args(lr: float, weight_decay: float, betas: Iterable[float]) -> dict[str, Any]:
    """The optimiser's arguments, those at torch's defaults left out (so the default
    optimiser is built exactly as ``Adam(params, lr=lr)``)."""
    args: dict[str, Any] = {"lr": lr}
    if weight_decay:
        args["weight_decay"] = weight_decay
    if tuple(betas) != (0.9, 0.999):
        args["betas"] = tuple(float(b) for b in betas)
    return args


def pyro_optimizer(*, name: str = "adam", lr: float, weight_decay: float = 0.0,
                   clip_norm: float | None = None,
                   betas: tuple[float, float] = (0.9, 0.999)) -> Any:
    """Pyro's wrapper of the same optimiser for stock SVI (``pyro.optim.PyroOptim`` of the
    :data:`OPTIMIZERS` class, one per parameter, as ``pyro.optim.Adam`` / ``AdamW`` are:
    adding an optimiser to :data:`OPTIMIZERS` adds it here too); ``ClippedAdam`` when
    ``clip_norm`` is given, Pyro's own clipping."""
    import pyro.optim

    if clip_norm is not None:
        if name != "adam":
            from pyrovae.errors import PyrovaeError

            raise PyrovaeError(f"train.clip_norm: the pyro engine clips with Pyro's "
                               f"ClippedAdam, which is Adam; train.optimizer is {name!r}")
        return pyro.optim.ClippedAdam({"lr": lr, "clip_norm": clip_norm,
                                       "weight_decay": weight_decay,
                                       "betas": tuple(float(b) for b in betas)})
    return pyro.optim.PyroOptim(OPTIMIZERS[name], _optim_args(lr, weight_decay, betas))


def lr_at(epoch: int, *, lr: float, schedule: str = "constant", epochs: int = 1,
          gamma: float = 0.1, step: int = 1) -> float:
    """The learning rate of epoch ``epoch`` (from 0) under ``schedule`` (module text)."""
    return lr * LR_SCHEDULES[schedule](epoch, epochs, gamma, step)


def set_lr(optimizers: Iterable[torch.optim.Optimizer], lr: float) -> None:
    """Set ``lr`` in every parameter group of ``optimizers``."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
