"""The first section of "The Intuitive VAE" (Break Yang, 2024): maximum likelihood for one Gaussian.

θ* = argmax_θ Σᵢ log N(xᵢ; μ, σ²) has the closed form μ̂ = mean(x), σ̂ = std(x)
(population standard deviation, ``ddof=0``, i.e. ``np.std``).  :func:`fit_mle_pyro`
finds the same θ by gradient ascent on the log-likelihood written as a Pyro model,
so the two can be shown side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine


@dataclass
class GaussianFit:
    """A fitted (μ, σ) with its average log-likelihood per point."""

    mu: float
    sigma: float
    log_likelihood: float
    steps: int = 0
    trace: list[float] | None = None

    def as_dict(self) -> dict:
        return {
            "mu": self.mu, "sigma": self.sigma,
            "log_likelihood": self.log_likelihood, "steps": self.steps,
        }


def average_log_likelihood(x: torch.Tensor, mu: float, sigma: float) -> float:
    """(1/n) Σᵢ log N(xᵢ; μ, σ²)."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    mu_t, sigma_t = (torch.tensor(float(v), dtype=torch.float64) for v in (mu, sigma))
    return float(dist.Normal(mu_t, sigma_t).log_prob(x).mean())


def closed_form_mle(x: torch.Tensor) -> GaussianFit:
    """μ̂ = mean(x), σ̂ = std(x, ddof=0); the maximum of the log-likelihood."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    mu = float(x.mean())
    sigma = float(x.std(correction=0))
    return GaussianFit(mu, sigma, average_log_likelihood(x, mu, sigma))


def gaussian_model(x: torch.Tensor) -> None:
    """The Pyro model p_θ(x) = ∏ᵢ N(xᵢ; μ, σ²) with θ = (μ, log σ) as ``pyro.param``."""
    mu = pyro.param("mu", torch.tensor(0.0, dtype=x.dtype))
    log_sigma = pyro.param("log_sigma", torch.tensor(0.0, dtype=x.dtype))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, log_sigma.exp()), obs=x)


def fit_mle_pyro(
    x: torch.Tensor, *, steps: int = 2000, lr: float = 0.05, tol: float = 1e-10
) -> GaussianFit:
    """Maximise Σᵢ log p_θ(xᵢ) over θ = (μ, log σ) with Adam, reading the
    log-likelihood off a Pyro trace of :func:`gaussian_model`.

    Stops early when the average log-likelihood changes by less than ``tol``.
    """
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    pyro.clear_param_store()
    with poutine.trace(param_only=True) as pt:
        gaussian_model(x)
    params = [site["value"].unconstrained() for site in pt.trace.nodes.values()]
    opt = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    prev = -math.inf
    step = 0
    for step in range(1, steps + 1):  # noqa: B007 - step is reported
        opt.zero_grad()
        tr = poutine.trace(gaussian_model).get_trace(x)
        ll = tr.log_prob_sum() / x.shape[0]
        (-ll).backward()
        opt.step()
        history.append(ll.item())
        if abs(history[-1] - prev) < tol:
            break
        prev = history[-1]
    mu = pyro.param("mu").item()
    sigma = pyro.param("log_sigma").exp().item()
    return GaussianFit(mu, sigma, average_log_likelihood(x, mu, sigma), step, history)
