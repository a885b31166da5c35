"""Early stopping on a held-out metric, decided from the history alone.

:class:`EarlyStopping` holds no state of its own: whether to stop, the best epoch
and the evaluations since it are read from the :class:`~pyrovae.training.history.History`
each time.  The history is part of the trainer's resumable state, so a resumed
run stops at the same epoch as an uninterrupted one, bit for bit.

Rule (as Keras' and Lightning's ``EarlyStopping``): an evaluation *improves* when
the monitored value beats the reference by more than ``min_delta`` (higher for
``mode="max"``, lower for ``"min"``); the reference is the value of the last
improvement.  Training stops after ``patience`` evaluations in a row without an
improvement.  Epochs without the monitored key (``eval_every > 1``) do not count.
The *best* epoch is the one with the best monitored value (the first, on ties),
whatever ``min_delta``: it is the epoch whose weights ``best.pt`` keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.registry import Param, Section, declared, params_of


@dataclass(frozen=True)
class Decision:
    """What the history says: the best epoch and value, the evaluations since the last
    improvement, and whether to stop."""

    best_epoch: int | None
    best_value: float | None
    since_improvement: int
    stop: bool


@dataclass(frozen=True)
class EarlyStopping(Section):
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` evaluations (see the module's rule).

    Args:
        monitor: the history key watched (default ``"test_elbo"``, the held-out ELBO;
            it needs ``test_data``).
        patience: evaluations in a row without improvement before stopping.
        min_delta: the smallest change that counts as an improvement (nats for an ELBO).
        mode: ``"max"`` (higher is better, the ELBO) or ``"min"`` (a loss).

    Raises:
        PyrovaeError: an option out of range.

    Example:
        >>> fit(vae, x, test_data=x_test, epochs=300, early_stopping=EarlyStopping(patience=20))

    References:
        Prechelt (1998). Early Stopping — But When? Neural Networks: Tricks of the Trade.
    """

    section = "early_stopping"

    monitor: str = declared(Param("str", "test_elbo",
                                  doc="history key watched (test_elbo: held-out ELBO)"))
    patience: int = declared(Param(
        "positive_int", 10, doc="evaluations in a row without improvement before stopping"))
    min_delta: float = declared(Param("nonneg_float", 0.0,
                                      doc="smallest change that counts as improvement"))
    mode: str = declared(Param("choice", "max", choices=("max", "min"),
                               doc="max: higher is better"))

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> EarlyStopping | None:  # type: ignore[override]
        """From the spec's ``early_stopping`` section; None when it is not enabled."""
        if not section.get("enabled"):
            return None
        return cls(**{k: v for k, v in section.items() if k in EARLY_STOPPING_PARAMS
                      and k != "enabled"})

    def _better(self, value: float, than: float, delta: float) -> bool:
        return value > than + delta if self.mode == "max" else value < than - delta

    def decide(self, records: Sequence[Mapping[str, Any]]) -> Decision:
        """The decision after the given history records (oldest first)."""
        best_epoch = best_value = ref = None
        since = 0
        for r in records:
            v = r.get(self.monitor)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                continue
            if best_value is None or self._better(v, best_value, 0.0):
                best_epoch, best_value = r.get("epoch"), float(v)
            if ref is None or self._better(v, ref, self.min_delta):
                ref, since = float(v), 0
            else:
                since += 1
        return Decision(best_epoch, best_value, since, since >= self.patience)


#: The options as spec parameters (the spec's ``early_stopping`` section): ``enabled``
#: and the fields of :class:`EarlyStopping`, which declare them.
EARLY_STOPPING_PARAMS: dict[str, Param] = {
    "enabled": Param("bool", False, doc="stop when the monitored metric stops improving"),
    **params_of(EarlyStopping),
}


def as_early_stopping(value: Any) -> EarlyStopping | None:
    """``fit``'s ``early_stopping`` argument as an :class:`EarlyStopping` (or None):
    one, a mapping of its options (a spec section: ``enabled`` decides), or None."""
    if value is None or isinstance(value, EarlyStopping):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - set(EARLY_STOPPING_PARAMS)
        if unknown:
            raise PyrovaeError(f"early_stopping.{sorted(unknown)[0]}: unknown option; known: "
                               f"{', '.join(EARLY_STOPPING_PARAMS)}")
        return EarlyStopping.from_section({"enabled": True, **value})
    raise PyrovaeError(f"early_stopping: expected an EarlyStopping, a mapping of its options "
                       f"or None, got {type(value).__name__}")
