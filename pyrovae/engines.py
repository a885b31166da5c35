"""Training engines: how one SVI step on a minibatch is carried out.

* :class:`FastEngine` (default) evaluates the objective's estimator directly from
  the VAE's distributions (``Objective.fast_loss``: the same value and gradients
  as Pyro's ELBO on the same draws) and steps one ``torch.optim.Adam`` over all
  parameters: no per-step tracing, param-store look-ups or per-parameter
  optimisers.  Objectives without a direct form fall back to :class:`PyroEngine`.
* :class:`PyroEngine` is stock ``pyro.infer.SVI`` with ``pyro.optim.Adam``.

Both return the step's loss as a 0-d tensor (no host synchronisation per step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyro
import pyro.optim
import torch
from pyro.infer import SVI

if TYPE_CHECKING:
    from pyrovae.objectives import Objective
    from pyrovae.vae import VAE


class FastEngine:
    """Direct ELBO estimator + one torch Adam (see module docstring)."""

    name = "fast"

    def __init__(self, vae: VAE, objective: Objective, lr: float, clip_norm: float | None = None):
        self.vae, self.objective, self.clip_norm = vae, objective, clip_norm
        self.params = [p for p in vae.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def step(self, x: torch.Tensor, num_data: int, kl_weight: float) -> torch.Tensor:
        loss = self.objective.fast_loss(self.vae, x, num_data, kl_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


class PyroEngine:
    """Stock ``SVI(vae.model, vae.guide, Adam, objective.elbo())``.

    The param store is cleared first so that it holds this VAE's parameters
    (``pyro.module("vae", vae)`` registers them by name).
    """

    name = "pyro"

    def __init__(self, vae: VAE, objective: Objective, lr: float, clip_norm: float | None = None):
        pyro.clear_param_store()
        if clip_norm is None:
            self.optim = pyro.optim.Adam({"lr": lr})
        else:  # per-parameter clipping, Pyro's own
            self.optim = pyro.optim.ClippedAdam({"lr": lr, "clip_norm": clip_norm})
        self.svi = SVI(vae.model, vae.guide, self.optim, loss=objective.elbo())

    def step(self, x: torch.Tensor, num_data: int, kl_weight: float) -> torch.Tensor:
        return torch.tensor(self.svi.step(x, num_data=num_data, kl_weight=kl_weight))

    def state_dict(self) -> dict[str, Any]:
        return self.optim.get_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optim.set_state(state)


def make_engine(
    name: str, vae: VAE, objective: Objective, lr: float, clip_norm: float | None = None
) -> FastEngine | PyroEngine:
    """``"fast"`` unless the objective has no direct form, then ``"pyro"``."""
    if name == "fast" and _has_fast_form(objective, vae):
        return FastEngine(vae, objective, lr, clip_norm)
    return PyroEngine(vae, objective, lr, clip_norm)


def _has_fast_form(objective: Objective, vae: VAE) -> bool:
    from pyrovae.objectives import Objective as Base

    return type(objective).fast_loss is not Base.fast_loss
