"""The run layer's typed sections, each declared once by its fields' Params
(:class:`~pyrovae.registry.Section`): the spec's ``eval`` and ``checkpoint`` sections,
and the budget of ``pyrovae check``, whose CLI flags, defaults and help are read off
:class:`CheckBudget` (and :func:`~pyrovae.runs.check.check_vae`'s defaults are its
fields')."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.registry import Param, Section, declared, params_of

__all__ = ["CHECK_PARAMS", "MAX_NUM_SAMPLES", "CheckBudget", "CheckpointPolicy", "EvalConfig",
           "check_num_samples"]

#: The one bound on importance / Monte Carlo samples per example, the same for
#: ``eval.num_samples``, ``evaluate -k`` and ``check --samples`` (checked before any work).
MAX_NUM_SAMPLES = 1_000_000


def check_num_samples(value: Any, what: str, low: int = 1) -> int:
    """``value`` if it is an integer in [low, :data:`MAX_NUM_SAMPLES`], else a PyrovaeError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_NUM_SAMPLES:
        raise PyrovaeError(f"{what}: expected an integer in [{low}, {MAX_NUM_SAMPLES}], "
                           f"got {pio.short(value)}")
    return value


@dataclass(frozen=True)
class EvalConfig(Section):
    """The spec's ``eval`` section: how the final evaluation of a run scores it."""

    section = "eval"

    num_samples: int = declared(Param("positive_int", 1000, doc="K of the IWAE log-likelihood"))

    def check(self, label: Callable[[str], str]) -> None:
        """``num_samples`` within :data:`MAX_NUM_SAMPLES`."""
        check_num_samples(self.num_samples, label("num_samples"))


@dataclass(frozen=True)
class CheckpointPolicy(Section):
    """The spec's ``checkpoint`` section: what a run folder keeps beside ``checkpoint.pt``
    (written every ``train.checkpoint_every`` epochs)."""

    section = "checkpoint"

    every: int = declared(Param("nonneg_int", 0, doc="epochs between the periodic checkpoints "
                                                     "kept in checkpoints/ (0: none)"))
    keep: int = declared(Param("positive_int", 3, doc="periodic checkpoints kept (the last k)"))
    keep_best: bool = declared(Param("bool", True, doc="keep best.pt, the best held-out epoch's "
                                                       "state (needs held-out data)"))


@dataclass(frozen=True)
class CheckBudget(Section):
    """How much ``pyrovae check`` spends on a run or toy problem: one field per flag
    (``--ais-steps`` is ``ais_steps``), validated once where the flags enter.

    The certified mode (``certified``) runs AIS and BDMC with frozen kernels at a number
    of intermediate distributions T chosen by the BDMC width
    (:func:`~pyrovae.posterior.certified.certified_ais`): T starts at ``ais_steps`` and
    doubles until the width on ``bdmc_points`` simulated points is under
    ``target_width``, or T passes ``max_ais_steps``, or the search would pass
    ``ais_time_limit`` seconds."""

    points: int = declared(Param("positive_int", 6,
                                 doc="number of (held-out) data points to check"))
    samples: int = declared(Param("positive_int", 2000,
                                  doc="Monte Carlo / importance samples per point (>= 100)"))
    seed: int = declared(Param("seed", 0, doc="random seed"))
    quick: bool = declared(Param("bool", False, doc="fewer optimisation steps and samples, "
                                                    "no NUTS (a smoke test)"))
    ais_steps: int = declared(Param("positive_int", 200,
                                    doc="AIS intermediate distributions"))
    ais_chains: int = declared(Param("positive_int", 32, doc="AIS chains per data point"))
    bdmc_points: int = declared(Param("nonneg_int", 16, doc="simulated points for the BDMC "
                                                            "sandwich, 0 to skip"))
    sbc_sims: int = declared(Param("nonneg_int", 200,
                                   doc="simulations for SBC of the guide (0 to skip, else >= 10)"))
    collapse_points: int = declared(Param("positive_int", 500, doc="held-out points for the "
                                                                   "collapse diagnostics (>= 2)"))
    certified: bool = declared(Param(
        "bool", False, doc="run folders: AIS and BDMC in the two-round frozen-kernel mode "
                           "(unbiased weights), T starting at ais_steps and doubled until the "
                           "BDMC width on simulated data is under target_width"))
    target_width: float = declared(Param("positive_float", 0.2,
                                         doc="certified: the BDMC width to reach, nats"))
    max_ais_steps: int = declared(Param("positive_int", 6400,
                                        doc="certified: the largest T tried"))
    ais_time_limit: float | None = declared(Param(
        "positive_float", None, nullable=True,
        doc="certified: seconds for the budget search (null: none)"))

    def check(self, label: Callable[[str], str]) -> None:
        """The bounds a Param kind cannot say: at least 100 samples, SBC 0 or >= 10
        simulations, 2 collapse points, and in the certified mode a T range and BDMC."""
        check_num_samples(self.samples, label("samples"), low=100)
        if 0 < self.sbc_sims < 10:
            raise PyrovaeError(f"{label('sbc_sims')}: expected 0 or an integer >= 10, "
                               f"got {self.sbc_sims}")
        if self.collapse_points < 2:
            raise PyrovaeError(f"{label('collapse_points')}: expected an integer >= 2, "
                               f"got {self.collapse_points}")
        if self.certified:
            if self.max_ais_steps < self.ais_steps:
                raise PyrovaeError(f"{label('max_ais_steps')}: expected an integer >= "
                                   f"{label('ais_steps')} ({self.ais_steps}), got "
                                   f"{self.max_ais_steps}")
            if self.bdmc_points < 1:
                raise PyrovaeError(f"{label('certified')}: the budget is chosen by BDMC; "
                                   f"{label('bdmc_points')} must be >= 1")


#: The check budget's options as parameters, ``name -> Param``.
CHECK_PARAMS: dict[str, Param] = params_of(CheckBudget)
