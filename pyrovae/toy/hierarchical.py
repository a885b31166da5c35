"""The two-layer linear-Gaussian model: the hierarchical analogue of pPCA, solved exactly.

Model (two latent sites, top-down, as a two-stochastic-layer VAE writes it)::

    z₂ ~ N(0, I_k₂)                         site "z2"
    z₁ | z₂ ~ N(A z₂ + b, diag(d₁))          site "z1"
    x | z₁ ~ N(W z₁ + c, σ² I_D)             site "x", observed

Stacked as u = (z₂, z₁) (the trace order, which is also the order of the flat latent
vector the checks use), u is Gaussian with mean m = (0, b) and covariance
``S = [[I, Aᵀ], [A, A Aᵀ + diag(d₁)]]``, and x = H u + c + ε with H = [0, W].  Hence

* marginal ``p(x) = N(W b + c, W (A Aᵀ + diag(d₁)) Wᵀ + σ² I)``;
* joint posterior ``p(z₂, z₁ | x) = N(Λ⁻¹ (S⁻¹ m + Hᵀ (x − c)/σ²), Λ⁻¹)`` with precision
  ``Λ = S⁻¹ + Hᵀ H / σ²``, the same for every x;
* the floor of KL(q ‖ p(u|x)) over mean-field Gaussians q, ``½ (Σᵢ log Λᵢᵢ − log |Λ|)``,
  exactly as for pPCA (Λ is not diagonal: the layers are coupled even when W is
  orthogonal).

References:
    Burda, Grosse & Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
    Sønderby et al. (2016). Ladder variational autoencoders. NeurIPS.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.toy.base import LinearGaussian


class HierarchicalGaussian(LinearGaussian):
    """Two-layer linear-Gaussian model with parameters ``A`` (k₁, k₂), ``b`` (k₁),
    ``d1`` (k₁, variances), ``W`` (D, k₁), ``c`` (D) and ``sigma`` > 0."""

    name = "hierarchical"
    exact_posterior = True

    def __init__(
        self, A: torch.Tensor, b: torch.Tensor, d1: torch.Tensor, W: torch.Tensor,
        c: torch.Tensor, sigma: float = 0.5, dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(dtype)
        self.A, self.b, self.d1 = (torch.as_tensor(t, dtype=dtype) for t in (A, b, d1))
        self.W, self.c = torch.as_tensor(W, dtype=dtype), torch.as_tensor(c, dtype=dtype)
        if self.A.ndim != 2 or self.W.ndim != 2 or self.W.shape[1] != self.A.shape[0]:
            raise PyrovaeError(
                f"hierarchical: A must be (k1, k2) and W (D, k1), got {tuple(self.A.shape)} "
                f"and {tuple(self.W.shape)}")
        if not bool((self.d1 > 0).all()) or not sigma > 0:
            raise PyrovaeError("hierarchical: the variances d1 and sigma must be positive")
        self.k1, self.k2 = self.A.shape
        self.data_dim = self.W.shape[0]
        self.latent_dim = self.k1 + self.k2
        self.sigma = torch.as_tensor(sigma, dtype=dtype)

    @classmethod
    def example(
        cls, data_dim: int = 4, k1: int = 1, k2: int = 1, *, sigma: float = 0.5, seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> HierarchicalGaussian:
        """A random instance (``k1 = k2 = 1`` by default: a 2-d latent the grid can draw)."""
        g = torch.Generator().manual_seed(seed)

        def r(*s):
            return torch.randn(*s, generator=g, dtype=dtype)

        A = 1.5 * r(k1, k2) / math.sqrt(k2)
        d1 = 0.2 + 0.3 * torch.rand(k1, generator=g, dtype=dtype)
        return cls(A, 0.5 * r(k1), d1, r(data_dim, k1) / math.sqrt(k1), r(data_dim), sigma, dtype)

    # ---------------------------------------------------------- the model
    def model(self, x: torch.Tensor | None = None, *, batch_size: int = 1) -> torch.Tensor:
        """Plate "data"; latent sites "z2" then "z1"; observed site "x"."""
        n = batch_size if x is None else x.shape[0]
        with pyro.plate("data", n):
            zeros = torch.zeros(self.k2, dtype=self.dtype)
            z2 = pyro.sample("z2", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            z1 = pyro.sample("z1", self.conditional(z2))
            return pyro.sample("x", self.likelihood(torch.cat([z2, z1], -1)), obs=x)

    def conditional(self, z2: torch.Tensor) -> dist.TorchDistribution:
        """p(z₁ | z₂) = N(A z₂ + b, diag(d₁))."""
        loc = z2 @ self.A.T + self.b
        return dist.Normal(loc, self.d1.sqrt().expand_as(loc)).to_event(1)

    @property
    def prior_mean(self) -> torch.Tensor:
        """The mean m = (0, b) of u = (z₂, z₁)."""
        return torch.cat([torch.zeros(self.k2, dtype=self.dtype), self.b])

    @property
    def prior_covariance(self) -> torch.Tensor:
        """S = [[I, Aᵀ], [A, A Aᵀ + diag(d₁)]]."""
        k1, k2 = self.k1, self.k2
        S = torch.zeros(k1 + k2, k1 + k2, dtype=self.dtype)
        S[:k2, :k2] = torch.eye(k2, dtype=self.dtype)
        S[:k2, k2:] = self.A.T
        S[k2:, :k2] = self.A
        S[k2:, k2:] = self.A @ self.A.T + torch.diag(self.d1)
        return S

    def prior(self) -> dist.TorchDistribution:
        """p(z₂, z₁) on the flat vector (z₂, z₁): a Gaussian."""
        return dist.MultivariateNormal(self.prior_mean, covariance_matrix=self.prior_covariance)

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z₁), with z the flat (…, k₂ + k₁) vector."""
        loc = z[..., self.k2:] @ self.W.T + self.c
        return dist.Normal(loc, self.sigma.expand_as(loc)).to_event(1)

    # ------------------------------------------------------ exact answers
    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(W b + c, W (A Aᵀ + diag(d₁)) Wᵀ + σ² I)."""
        cov1 = self.A @ self.A.T + torch.diag(self.d1)
        cov = self.W @ cov1 @ self.W.T + self.sigma**2 * torch.eye(self.data_dim, dtype=self.dtype)
        return dist.MultivariateNormal(self.W @ self.b + self.c, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        return self.marginal().log_prob(x.to(self.dtype))

    @property
    def _H(self) -> torch.Tensor:
        return torch.cat([torch.zeros(self.data_dim, self.k2, dtype=self.dtype), self.W], 1)

    @property
    def posterior_precision(self) -> torch.Tensor:
        """Λ = S⁻¹ + Hᵀ H / σ², the same for every x."""
        return torch.linalg.inv(self.prior_covariance) + self._H.T @ self._H / self.sigma**2

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z₂, z₁ | x), batch shape (N,)."""
        prec = self.posterior_precision
        cov = torch.linalg.inv(prec)
        s_inv_m = torch.linalg.solve(self.prior_covariance, self.prior_mean)
        rhs = s_inv_m + (x.to(self.dtype) - self.c) @ self._H / self.sigma**2
        mean = rhs @ cov.T
        return dist.MultivariateNormal(mean, covariance_matrix=cov.expand(*mean.shape, -1))

    def describe(self) -> dict:
        return {
            **super().describe(), "k1": self.k1, "k2": self.k2, "A": self.A.tolist(),
            "b": self.b.tolist(), "d1": self.d1.tolist(), "W": self.W.tolist(),
            "c": self.c.tolist(), "sigma": float(self.sigma),
            "meanfield_floor": self.meanfield_floor(),
        }
