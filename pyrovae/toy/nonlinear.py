"""Nonlinear decoders with 1-D or 2-D latents: banana-shaped and bimodal posteriors.

z ~ N(0, I_d), x | z ~ N(f(z), σ² I) with a fixed, known f:

* ``banana``:   d = 2, x = z₂ + z₁² + ε            (a curved ridge)
* ``bimodal``:  d = 2, x = (z₁², z₂) + ε           (two modes ±√x₁ in z₁)
* ``square``:   d = 1, x = z² + ε                  (two modes in 1-D)

There is no closed form; log p(x) and p(z|x) come from grid quadrature
(:mod:`pyrovae.quadrature`) with the grid refined until its error is below
1e-3 nats, and the error bound is returned with every answer.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.quadrature import GridPosterior, grid_posterior
from pyrovae.toy.base import ToyProblem


def _banana(z: torch.Tensor) -> torch.Tensor:
    return (z[..., 1] + z[..., 0] ** 2).unsqueeze(-1)


def _bimodal(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z[..., 0] ** 2, z[..., 1]], -1)


def _square(z: torch.Tensor) -> torch.Tensor:
    return z**2


DECODERS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int, int, str]] = {
    "banana": (_banana, 2, 1, "x = z2 + z1^2 + eps"),
    "bimodal": (_bimodal, 2, 2, "x = (z1^2, z2) + eps"),
    "square": (_square, 1, 1, "x = z^2 + eps"),
}


class NonlinearToy(ToyProblem):
    """z ~ N(0, I), x ~ N(f(z), σ² I) for one of :data:`DECODERS`."""

    exact_posterior = False

    def __init__(
        self, kind: str = "banana", sigma: float = 0.3, *, tol: float = 1e-3,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(dtype)
        if kind not in DECODERS:
            raise PyrovaeError(f"unknown nonlinear toy {kind!r}; known: {', '.join(DECODERS)}")
        self.kind = kind
        self.name = kind
        self.f, self.latent_dim, self.data_dim, self.formula = DECODERS[kind]
        self.sigma = torch.tensor(float(sigma), dtype=dtype)
        self.tol = tol

    def prior(self) -> dist.TorchDistribution:
        zeros = torch.zeros(self.latent_dim, dtype=self.dtype)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        loc = self.f(z)
        return dist.Normal(loc, self.sigma.expand_as(loc)).to_event(1)

    def grid(
        self, x_i: torch.Tensor, log_q: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tol: float | None = None,
    ) -> GridPosterior:
        """p(z|xᵢ) for one data point ``x_i`` (D,) on a refined grid."""
        x1 = x_i.reshape(1, -1).to(self.dtype)
        return grid_posterior(
            lambda z: self.log_joint(x1, z.unsqueeze(-2)).squeeze(-1),
            self.latent_dim, box=self.grid_box(), log_q=log_q,
            tol=self.tol if tol is None else tol,
        )

    def posterior(self, x: torch.Tensor) -> list[GridPosterior]:
        return [self.grid(xi) for xi in x]

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([g.log_marginal for g in self.posterior(x)], dtype=self.dtype)

    def log_marginal_with_error(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x) per point and its quadrature error bound."""
        grids = self.posterior(x)
        return (
            torch.tensor([g.log_marginal for g in grids], dtype=self.dtype),
            torch.tensor([g.error_bound for g in grids], dtype=self.dtype),
        )

    def describe(self) -> dict:
        return {**super().describe(), "decoder": self.formula, "sigma": float(self.sigma)}
