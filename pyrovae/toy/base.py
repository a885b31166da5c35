"""The common shape of a toy problem: a Pyro model with known θ and exact answers.

Every toy is a latent-variable model written the way :class:`pyrovae.VAE` writes
its model, so every check in :mod:`pyrovae.posterior` runs on it unchanged::

    z_i ~ p(z)            (site "z", event shape (latent_dim,))
    x_i ~ p_θ(x | z_i)    (site "x", observed)         for i in plate "data"

A toy adds what a real VAE lacks: ``log_marginal(x)`` (exact, or by quadrature with
a reported error bound) and ``posterior(x)`` (a distribution, or a grid).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints


class ToyProblem:
    """Base class of the toy problems (see the module docstring).

    Subclasses set ``name``, ``latent_dim``, ``data_dim`` and ``support`` (the
    constraint of z), and implement :meth:`prior`, :meth:`likelihood` and
    :meth:`log_marginal`.  Computation is in ``float64`` unless ``dtype`` says
    otherwise: closed forms are compared against brute force to 1e-6.
    """

    name: str = ""
    latent_dim: int = 1
    data_dim: int = 1
    support: constraints.Constraint = constraints.real_vector
    #: True when ``posterior(x)`` is a closed-form distribution (not a grid).
    exact_posterior: bool = False

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype

    # ---------------------------------------------------------- the model
    def prior(self) -> dist.TorchDistribution:
        """p(z) with event shape ``(latent_dim,)`` and empty batch shape."""
        raise NotImplementedError

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p_θ(x|z) with event shape ``(data_dim,)`` and batch shape ``z.shape[:-1]``."""
        raise NotImplementedError

    def model(self, x: torch.Tensor | None = None, *, batch_size: int = 1) -> torch.Tensor:
        """The Pyro model: plate "data", latent site "z", observed site "x"."""
        n = batch_size if x is None else x.shape[0]
        with pyro.plate("data", n):
            z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(z), obs=x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z); ``x`` (N, D), ``z`` (..., N, d) -> (..., N)."""
        return self.prior().log_prob(z) + self.likelihood(z).log_prob(x)

    # ------------------------------------------------------ exact answers
    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p_θ(x) per data point, shape (N,)."""
        raise NotImplementedError

    def posterior(self, x: torch.Tensor):
        """p_θ(z|x): a distribution with batch shape (N,) when ``exact_posterior``,
        otherwise a list of :class:`~pyrovae.quadrature.GridPosterior` (one per point)."""
        raise NotImplementedError

    def grid_box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A box in the unconstrained space of z that holds the posterior mass."""
        return (
            -7.0 * torch.ones(self.latent_dim, dtype=self.dtype),
            7.0 * torch.ones(self.latent_dim, dtype=self.dtype),
        )

    # ------------------------------------------------------------- data
    def sample(self, n: int, seed: int | None = 0) -> torch.Tensor:
        """``n`` draws of x from the model, shape (n, data_dim)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.random.fork_rng(devices=[]):
            if g is not None:
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
            z = self.prior().sample((n,))
            return self.likelihood(z).sample()

    def describe(self) -> dict:
        """A JSON-able description of θ (for reports)."""
        return {"name": self.name, "latent_dim": self.latent_dim, "data_dim": self.data_dim}


class LinearGaussian(ToyProblem):
    """A toy whose posterior is Gaussian with a precision Λ that does not depend on x
    (pPCA, the two-layer linear-Gaussian model): subclasses give
    ``posterior_precision`` and ``posterior(x)``; the mean-field floor follows.
    """

    exact_posterior = True

    @property
    def posterior_precision(self) -> torch.Tensor:
        """Λ, the precision of p(z|x), the same for every x."""
        raise NotImplementedError

    def meanfield_floor(self) -> float:
        """min over diagonal Gaussians q of KL(q ‖ p(z|x)) = ``½ (Σ log Λᵢᵢ − log |Λ|)``."""
        prec = self.posterior_precision
        return float(0.5 * (prec.diagonal().log().sum() - torch.logdet(prec)))

    def optimal_meanfield(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The mean-field Gaussian that reaches the floor: N(posterior mean, diag 1/Λᵢᵢ)."""
        mean = self.posterior(x).mean
        scale = self.posterior_precision.diagonal().rsqrt().expand_as(mean)
        return dist.Normal(mean, scale).to_event(1)
