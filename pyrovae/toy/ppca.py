"""Probabilistic PCA (Tipping & Bishop 1999): the linear-Gaussian VAE solved exactly.

Model::

    z ~ N(0, I_k),    x | z ~ N(W z + μ, σ² I_D)

Exact answers:

* marginal ``log p(x) = log N(x; μ, C)`` with ``C = W Wᵀ + σ² I``;
* posterior ``p(z|x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹)`` with ``M = Wᵀ W + σ² I``;
  its precision ``Λ = M / σ²`` does not depend on x;
* the maximum-likelihood θ for a data set: ``μ̂`` the mean, ``σ̂²`` the mean of the
  D − k smallest eigenvalues of the sample covariance S, ``Ŵ = U_k (L_k − σ̂² I)^{1/2}``
  (any rotation R on the right is an equal maximum);
* the floor of KL(q ‖ p(z|x)) over mean-field Gaussians q, reached at
  ``q = N(posterior mean, diag(1/Λᵢᵢ))``: ``½ (Σᵢ log Λᵢᵢ − log |Λ|)``; it is zero
  exactly when Λ is diagonal (the columns of W orthogonal).

A VAE with affine encoder and decoder and a Gaussian likelihood *is* this model;
:meth:`PPCA.from_linear_vae` reads θ off such a VAE so its exact log p(x) and KL can
be computed, and :meth:`PPCA.to_linear_vae` builds one with the decoder set to θ.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.toy.base import LinearGaussian


class PPCA(LinearGaussian):
    """Probabilistic PCA with parameters ``W`` (D, k), ``mu`` (D,), ``sigma`` > 0."""

    name = "ppca"
    exact_posterior = True

    def __init__(
        self,
        W: torch.Tensor,
        mu: torch.Tensor | None = None,
        sigma: float | torch.Tensor = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(dtype)
        self.W = torch.as_tensor(W, dtype=dtype)
        if self.W.ndim != 2:
            raise PyrovaeError(f"ppca: W must be a (D, k) matrix, got shape {tuple(self.W.shape)}")
        self.data_dim, self.latent_dim = self.W.shape
        self.mu = (
            torch.zeros(self.data_dim, dtype=dtype) if mu is None
            else torch.as_tensor(mu, dtype=dtype)
        )
        self.sigma = torch.as_tensor(sigma, dtype=dtype)
        if not float(self.sigma) > 0:
            raise PyrovaeError(f"ppca: sigma must be positive, got {float(self.sigma)}")

    @classmethod
    def example(
        cls, data_dim: int = 5, latent_dim: int = 2, *, orthogonal: bool = False,
        correlation: float | None = None, sigma: float = 0.5, seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> PPCA:
        """A random pPCA.  ``orthogonal=True`` gives W with orthogonal columns, so the
        posterior precision is diagonal and the mean-field floor is zero;
        ``correlation=c`` gives unit columns whose pairwise cosine is c (for a clear,
        positive floor)."""
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(data_dim, latent_dim, generator=g, dtype=dtype)
        if orthogonal or correlation is not None:
            Q, _ = torch.linalg.qr(W)
            if correlation is None:
                W = Q * torch.linspace(2.0, 1.0, latent_dim, dtype=dtype)
            else:  # columns = Cholesky rows of the all-c correlation matrix, in Q's basis
                C = torch.full((latent_dim, latent_dim), float(correlation), dtype=dtype)
                C.fill_diagonal_(1.0)
                W = Q @ torch.linalg.cholesky(C).T
        mu = torch.randn(data_dim, generator=g, dtype=dtype)
        return cls(W, mu, sigma, dtype)

    # ---------------------------------------------------------- the model
    def prior(self) -> dist.TorchDistribution:
        zeros = torch.zeros(self.latent_dim, dtype=self.dtype)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        loc = z @ self.W.T + self.mu
        return dist.Normal(loc, self.sigma.expand_as(loc)).to_event(1)

    # ------------------------------------------------------ exact answers
    @property
    def covariance(self) -> torch.Tensor:
        """C = W Wᵀ + σ² I, the covariance of the marginal p(x)."""
        return self.W @ self.W.T + self.sigma**2 * torch.eye(self.data_dim, dtype=self.dtype)

    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(μ, W Wᵀ + σ² I)."""
        return dist.MultivariateNormal(self.mu, covariance_matrix=self.covariance)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        return self.marginal().log_prob(x.to(self.dtype))

    @property
    def posterior_precision(self) -> torch.Tensor:
        """Λ = (Wᵀ W + σ² I) / σ² = Wᵀ W / σ² + I, the same for every x."""
        eye = torch.eye(self.latent_dim, dtype=self.dtype)
        return self.W.T @ self.W / self.sigma**2 + eye

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z|x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹), batch shape (N,)."""
        prec = self.posterior_precision
        cov = torch.linalg.inv(prec)
        mean = (x.to(self.dtype) - self.mu) @ self.W @ cov.T / self.sigma**2
        return dist.MultivariateNormal(mean, covariance_matrix=cov.expand(*mean.shape, -1))

    # --------------------------------------------------- maximum likelihood
    @staticmethod
    def mle(x: torch.Tensor, latent_dim: int) -> PPCA:
        """Closed-form maximum-likelihood pPCA for data ``x`` (N, D) (Tipping & Bishop 1999)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        n, d = x.shape
        if not 0 < latent_dim < d:
            raise PyrovaeError(f"ppca.mle: latent_dim must be in 1..{d - 1}, got {latent_dim}")
        mu = x.mean(0)
        S = (x - mu).T @ (x - mu) / n
        evals, evecs = torch.linalg.eigh(S)
        evals, evecs = evals.flip(0), evecs.flip(1)
        sigma2 = evals[latent_dim:].mean()
        W = evecs[:, :latent_dim] * (evals[:latent_dim] - sigma2).clamp_min(0).sqrt()
        return PPCA(W, mu, sigma2.sqrt())

    @staticmethod
    def max_log_likelihood(x: torch.Tensor, latent_dim: int) -> float:
        """The maximum of (1/N) Σ log p(xᵢ) over pPCA models with ``latent_dim`` factors:
        −½ (D log 2π + Σ_{j≤k} log λⱼ + (D − k) log σ̂² + D)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        d = x.shape[1]
        S = torch.cov(x.T, correction=0)
        evals = torch.linalg.eigvalsh(S).flip(0)
        sigma2 = evals[latent_dim:].mean()
        logdet = evals[:latent_dim].log().sum() + (d - latent_dim) * sigma2.log()
        return float(-0.5 * (d * math.log(2 * math.pi) + logdet + d))

    # ------------------------------------------------------ linear VAEs
    @classmethod
    def from_linear_vae(cls, vae) -> PPCA:
        """θ of a VAE with an affine decoder, N(0, I) prior and Gaussian likelihood."""
        layers = list(vae.decoder)
        if len(layers) != 1 or not isinstance(layers[0], torch.nn.Linear):
            raise PyrovaeError("ppca: the VAE's decoder is not affine (build it with decoder=[])")
        if vae.spec["likelihood"]["family"] != "gaussian":
            raise PyrovaeError("ppca: the VAE's likelihood is not 'gaussian'")
        if vae.spec["prior"]["family"] != "normal":
            raise PyrovaeError("ppca: the VAE's prior is not the standard 'normal'")
        lin = layers[0]
        with torch.no_grad():
            return cls(
                lin.weight.detach().double(), lin.bias.detach().double(),
                vae.likelihood.log_sigma.detach().double().exp(),
            )

    def to_linear_vae(self, *, sigma: str = "fixed", optimal_encoder: bool = False):
        """A VAE (affine encoder and decoder, Gaussian likelihood) whose decoder is θ.

        ``optimal_encoder=True`` also sets the diagonal-Gaussian encoder to the
        mean-field optimum (:meth:`optimal_meanfield`), so KL(q ‖ p(z|x)) is the floor.
        """
        from pyrovae.model.guides import MIN_SCALE
        from pyrovae.model.vae import VAE

        vae = VAE(
            self.data_dim, self.latent_dim, encoder=[],
            likelihood={"family": "gaussian", "sigma": sigma, "sigma_init": float(self.sigma)},
        ).to(self.dtype)
        with torch.no_grad():
            dec = vae.decoder[0]
            dec.weight.copy_(self.W)
            dec.bias.copy_(self.mu)
            if optimal_encoder:
                enc = vae.encoder[0]
                A = torch.linalg.solve(self.posterior_precision, self.W.T) / self.sigma**2
                k = self.latent_dim
                enc.weight.zero_()
                enc.bias.zero_()
                enc.weight[:k] = A
                enc.bias[:k] = -A @ self.mu
                scale = self.posterior_precision.diagonal().rsqrt() - MIN_SCALE
                enc.bias[k:] = scale + torch.log(-torch.expm1(-scale))  # softplus⁻¹
        return vae

    def describe(self) -> dict:
        return {
            **super().describe(), "W": self.W.tolist(), "mu": self.mu.tolist(),
            "sigma": float(self.sigma), "meanfield_floor": self.meanfield_floor(),
        }
