"""The divergence guard: non-finite anything stops training with
:class:`DivergenceError`, the trainer back at its last good state, never a traceback.

After each epoch one check (a single host sync) confirms that the epoch's loss and
terms, the parameters, buffers and optimiser state are finite.  If not, the epoch is
replayed from the state kept at its start through :class:`CheckedEngine`, an engine
wrapper that checks after every step, which names the first bad step.  The held-out
evaluation and the history record are checked too (a record never holds NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.training.state import tensors

#: What went non-finite -> how the message says it.
WHAT = {
    "loss": "non-finite loss",
    "gradient": "non-finite gradient",
    "parameters": "non-finite parameters after an update",
    "optimiser state": "non-finite optimiser state",
    "evaluation": "non-finite held-out evaluation",
}


class DivergenceError(PyrovaeError):
    """Training produced a non-finite loss, gradient, parameter, optimiser state or
    evaluation.

    Attributes: ``epoch`` (the epoch that failed, 1-based), ``step`` (the first bad
    step, counted like ``History`` steps from the start of training, or ``None``
    when it could not be pinned down), ``what`` (``"loss"``, ``"gradient"``,
    ``"parameters"``, ``"optimiser state"`` or ``"evaluation"``), ``good_epoch``
    (the epoch boundary whose state the trainer holds again) and ``detail`` (what
    happened and where, one phrase).
    """

    def __init__(self, message: str, *, epoch: int, step: int | None, what: str,
                 good_epoch: int, detail: str) -> None:
        super().__init__(message)
        self.epoch, self.step, self.what = epoch, step, what
        self.good_epoch, self.detail = good_epoch, detail


class Found(Exception):
    """Raised by :class:`CheckedEngine` at the first non-finite step."""

    def __init__(self, what: str, step: int) -> None:
        super().__init__(what, step)
        self.what, self.step = what, step


def all_finite(ts: Iterable[torch.Tensor]) -> bool:
    """Whether every floating tensor is finite: one pass over each, one host sync per device.

    A tensor is finite iff its float64 sum is (a NaN or ±inf propagates; float32
    values, at most 3.4e38 each, cannot overflow a float64 sum).
    """
    sums: dict[torch.device, list[torch.Tensor]] = {}
    for t in ts:
        if t.is_floating_point() and t.numel():
            sums.setdefault(t.device, []).append(t.detach().sum(dtype=torch.float64))
        elif t.is_complex() and t.numel():
            sums.setdefault(t.device, []).append(torch.view_as_real(t.detach()).sum(
                dtype=torch.float64))
    return all(bool(torch.isfinite(torch.stack(f)).all()) for f in sums.values())


def nonfinite(values: Iterable[float], vae: torch.nn.Module, engine: Any) -> str | None:
    """What is non-finite after an epoch (``None``: all good); one host sync."""
    if not all(math.isfinite(v) for v in values):
        return "loss"
    params = list(vae.state_dict().values())
    opt = list(tensors(engine.state_dict()))
    if all_finite(params + opt):
        return None
    return "parameters" if not all_finite(params) else "optimiser state"


class CheckedEngine:
    """An engine whose ``step`` checks loss, gradients, parameters and optimiser state
    after every step and raises :class:`Found` at the first non-finite one.

    ``first_step`` is the global step number of the next step (1-based).
    """

    def __init__(self, engine: Any, vae: torch.nn.Module, first_step: int) -> None:
        self.engine, self.vae, self.next_step = engine, vae, first_step
        self.name = engine.name

    @property
    def last_terms(self) -> Any:
        return self.engine.last_terms

    @property
    def kl_closed_form(self) -> Any:
        return self.engine.kl_closed_form

    def state_dict(self) -> Any:
        return self.engine.state_dict()

    def step(self, x: torch.Tensor, num_data: int, kl_weight: float,
             y: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.engine.step(x, num_data, kl_weight, y=y)
        step, self.next_step = self.next_step, self.next_step + 1
        terms = list((self.engine.last_terms or {}).values())
        if not bool(torch.isfinite(torch.stack([loss.reshape(()), *terms])).all()):
            raise Found("loss", step)
        grads = [p.grad for p in self.vae.parameters() if p.grad is not None]
        if not all_finite(grads):
            raise Found("gradient", step)
        if not all_finite(self.vae.state_dict().values()):
            raise Found("parameters", step)
        if not all_finite(tensors(self.engine.state_dict())):
            raise Found("optimiser state", step)
        return loss


def divergence(*, what: str, epoch: int, first: int, steps_per_epoch: int,
               found: Found | None, good_epoch: int, lr: float,
               note: str = "") -> DivergenceError:
    """The :class:`DivergenceError` for a failed epoch (``first``: its first step)."""
    if found is not None:
        what = found.what
        where = (f"at epoch {epoch}, step {found.step} (step {found.step - first + 1} "
                 f"of {steps_per_epoch} in the epoch)")
    else:
        where = f"in epoch {epoch} (steps {first}-{first + steps_per_epoch - 1})"
    detail = f"{WHAT[what]} {where}{note}"
    return DivergenceError(
        f"training diverged: {detail}; the trainer holds the last good state (end of "
        f"epoch {good_epoch}); try a smaller learning rate (lr={lr:g}), gradient "
        "clipping (clip_norm), a KL warm-up, or check the scale of the data",
        epoch=epoch, step=None if found is None else found.step, what=what,
        good_epoch=good_epoch, detail=detail,
    )
