"""Conjugate models whose posteriors are not Gaussian.

Each data point xᵢ is a vector of D conditionally independent observations that
share one latent zᵢ, so p(z|xᵢ) is known in closed form:

* **Beta–Bernoulli**: zᵢ ~ Beta(a, b), xᵢd | zᵢ ~ Bernoulli(zᵢ).
  p(z|x) = Beta(a + k, b + D − k) with k = Σ_d x_d, and
  log p(x) = log B(a + k, b + D − k) − log B(a, b).
* **Gamma–Poisson**: zᵢ ~ Gamma(α, β) (rate β), xᵢd | zᵢ ~ Poisson(zᵢ).
  p(z|x) = Gamma(α + S, β + D) with S = Σ_d x_d, and
  log p(x) = α log β − log Γ(α) + log Γ(α + S) − (α + S) log(β + D) − Σ_d log x_d!.

z lives in (0, 1) or (0, ∞): a Gaussian guide on the unconstrained value (logit z
or log z) pushed through the bijection can come close but is never exact, so these
toys have a strictly positive KL floor for Gaussian guide families.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyrovae.toy.base import ToyProblem


def _lbeta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


class BetaBernoulli(ToyProblem):
    """zᵢ ~ Beta(a, b); xᵢ ∈ {0, 1}^D i.i.d. Bernoulli(zᵢ)."""

    name = "beta_bernoulli"
    exact_posterior = True
    support = constraints.independent(constraints.unit_interval, 1)

    def __init__(
        self, a: float = 2.0, b: float = 2.0, data_dim: int = 10,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(dtype)
        self.a = torch.tensor(float(a), dtype=dtype)
        self.b = torch.tensor(float(b), dtype=dtype)
        self.data_dim = int(data_dim)
        self.latent_dim = 1

    def prior(self) -> dist.TorchDistribution:
        one = torch.ones(1, dtype=self.dtype)
        return dist.Beta(self.a * one, self.b * one).to_event(1)

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        probs = z.expand(*z.shape[:-1], self.data_dim)
        return dist.Bernoulli(probs=probs).to_event(1)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        k = x.to(self.dtype).sum(-1)
        return _lbeta(self.a + k, self.b + self.data_dim - k) - _lbeta(self.a, self.b)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        k = x.to(self.dtype).sum(-1, keepdim=True)
        return dist.Beta(self.a + k, self.b + self.data_dim - k).to_event(1)

    def grid_box(self):
        return -12.0 * torch.ones(1, dtype=self.dtype), 12.0 * torch.ones(1, dtype=self.dtype)

    def describe(self) -> dict:
        return {**super().describe(), "a": float(self.a), "b": float(self.b)}


class GammaPoisson(ToyProblem):
    """zᵢ ~ Gamma(α, rate β); xᵢ ∈ ℕ^D i.i.d. Poisson(zᵢ)."""

    name = "gamma_poisson"
    exact_posterior = True
    support = constraints.independent(constraints.positive, 1)

    def __init__(
        self, alpha: float = 3.0, beta: float = 1.0, data_dim: int = 5,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(dtype)
        self.alpha = torch.tensor(float(alpha), dtype=dtype)
        self.beta = torch.tensor(float(beta), dtype=dtype)
        self.data_dim = int(data_dim)
        self.latent_dim = 1

    def prior(self) -> dist.TorchDistribution:
        one = torch.ones(1, dtype=self.dtype)
        return dist.Gamma(self.alpha * one, self.beta * one).to_event(1)

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        rate = z.expand(*z.shape[:-1], self.data_dim)
        return dist.Poisson(rate).to_event(1)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        s = x.sum(-1)
        a, b, d = self.alpha, self.beta, self.data_dim
        return (
            a * b.log() - torch.lgamma(a) + torch.lgamma(a + s)
            - (a + s) * torch.log(b + d) - torch.lgamma(x + 1).sum(-1)
        )

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        s = x.to(self.dtype).sum(-1, keepdim=True)
        return dist.Gamma(self.alpha + s, (self.beta + self.data_dim).expand_as(s)).to_event(1)

    def grid_box(self):
        return -12.0 * torch.ones(1, dtype=self.dtype), 6.0 * torch.ones(1, dtype=self.dtype)

    def describe(self) -> dict:
        return {**super().describe(), "alpha": float(self.alpha), "beta": float(self.beta)}
