"""A mixture of probabilistic PCAs: the exact toy with a discrete latent.

Model (sites in trace order, inside the plate "data")::

    y ~ Categorical(π)                        site "y", K classes (discrete)
    z ~ N(0, I_d)                             site "z"
    x | y, z ~ N(W_y z + μ_y, σ² I_D)          site "x", observed

For a fixed class y this is the pPCA :class:`~pyrovae.toy.ppca.PPCA` (W_y, μ_y, σ)
(:meth:`MixturePPCA.class_toy`), so everything is in closed form (Tipping & Bishop 1999):

* ``log p(x | y) = log N(x; μ_y, C_y)``, C_y = W_y W_yᵀ + σ² I;
* ``log p(x) = logsumexp_y [log π_y + log p(x | y)]``;
* ``p(y | x) = π_y p(x | y) / p(x)``;
* ``p(z | x, y) = N(M_y⁻¹ W_yᵀ (x − μ_y), σ² M_y⁻¹)``, M_y = W_yᵀ W_y + σ² I.

:class:`MixtureGuide` is the matching Pyro guide: q(y | x) (site ``"y"``, marked
``infer={"enumerate": "parallel"}`` so ``TraceEnum_ELBO`` sums it out) and q(z | x, y)
(site ``"z"``, a full Gaussian).  :meth:`MixturePPCA.guide` builds the exact guide and
deliberately wrong ones (a too flat or too sharp class posterior, a too wide q(z|x,y)).
The checks with the class summed out live in :mod:`pyrovae.posterior.enumerate`.

References:
    Tipping & Bishop (1999), *Mixtures of probabilistic principal component analyzers*.
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models* (the same graph: p(y) p(z) p(x | y, z)).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.toy.base import ToyProblem
from pyrovae.toy.ppca import PPCA

#: The deliberately wrong guides: name -> (class temperature, scale factor of q(z|x,y)).
GUIDE_VARIANTS: dict[str, tuple[float, float]] = {
    "exact": (1.0, 1.0),
    "flat_class": (3.0, 1.0),  # q(y|x) ∝ p(y|x)^(1/3): underconfident
    "sharp_class": (1.0 / 3.0, 1.0),  # q(y|x) ∝ p(y|x)^3: overconfident
    "wide_z": (1.0, 1.6),  # q(z|x,y) with 1.6× the posterior's scale
}


class MixturePPCA(ToyProblem):
    """A mixture of K pPCAs with weights ``pi`` (K,), loadings ``W`` (K, D, d), means
    ``mu`` (K, D) and a shared noise ``sigma`` > 0 (see the module docstring).

    ``latent_dim`` is d, the size of the continuous site ``"z"``; the discrete site is
    ``"y"`` with ``num_classes`` values (:attr:`discrete_site`).
    """

    name = "mixture"
    exact_posterior = True
    #: The discrete latent site and its number of values (the checks enumerate it).
    discrete_site = "y"

    def __init__(self, pi: torch.Tensor, W: torch.Tensor, mu: torch.Tensor,
                 sigma: float | torch.Tensor = 0.5, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(dtype)
        self.pi = torch.as_tensor(pi, dtype=dtype)
        self.W = torch.as_tensor(W, dtype=dtype)
        self.mu = torch.as_tensor(mu, dtype=dtype)
        if self.W.ndim != 3 or self.mu.shape != self.W.shape[:2] or self.pi.shape != (
                self.W.shape[0],):
            raise PyrovaeError(f"mixture: expected pi (K,), W (K, D, d) and mu (K, D), got "
                               f"{tuple(self.pi.shape)}, {tuple(self.W.shape)}, "
                               f"{tuple(self.mu.shape)}")
        if self.W.shape[0] < 2:
            raise PyrovaeError("mixture: expected at least 2 classes")
        if not bool((self.pi > 0).all()) or abs(float(self.pi.sum()) - 1) > 1e-9:
            raise PyrovaeError("mixture: pi must be positive and sum to 1")
        self.sigma = torch.as_tensor(sigma, dtype=dtype)
        if not float(self.sigma) > 0:
            raise PyrovaeError(f"mixture: sigma must be positive, got {float(self.sigma)}")
        self.num_classes, self.data_dim, self.latent_dim = self.W.shape
        eye = torch.eye(self.latent_dim, dtype=dtype)
        prec = self.W.transpose(-1, -2) @ self.W / self.sigma**2 + eye  # (K, d, d)
        self._post_cov = torch.linalg.inv(prec)
        self._post_tril = torch.linalg.cholesky(self._post_cov)

    @classmethod
    def example(cls, num_classes: int = 3, data_dim: int = 4, latent_dim: int = 2, *,
                sigma: float = 0.5, separation: float = 1.5, shared_loadings: bool = False,
                uniform: bool = False, seed: int = 0,
                dtype: torch.dtype = torch.float64) -> MixturePPCA:
        """A random mixture whose classes overlap (``separation`` scales the spread of the
        means μ_y against the unit-scale loadings), so p(y | x) is not one-hot.

        ``shared_loadings=True`` (one W for every class) and ``uniform=True`` (π uniform)
        give the mixture an M2 model with affine networks expresses exactly
        (:meth:`to_m2`)."""
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(num_classes, data_dim, latent_dim, generator=g, dtype=dtype)
        W = W / math.sqrt(latent_dim)
        if shared_loadings:
            W = W[:1].expand_as(W).clone()
        mu = separation * torch.randn(num_classes, data_dim, generator=g, dtype=dtype)
        pi = torch.softmax(0.5 * torch.randn(num_classes, generator=g, dtype=dtype), 0)
        if uniform:
            pi = torch.full_like(pi, 1.0 / num_classes)
        return cls(pi, W, mu, sigma, dtype)

    # ---------------------------------------------------------- the model
    def prior(self) -> dist.TorchDistribution:
        """p(z) = N(0, I_d) (the same for every class)."""
        zeros = torch.zeros(self.latent_dim, dtype=self.dtype)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def label_prior(self) -> dist.Categorical:
        """p(y) = Categorical(π)."""
        return dist.Categorical(probs=self.pi)

    def log_prior_y(self) -> torch.Tensor:
        """log π, shape (K,)."""
        return self.pi.log()

    def class_likelihood(self, y: torch.Tensor, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | y, z) = N(W_y z + μ_y, σ² I); ``y`` and ``z[..., 0]`` broadcast (an
        enumerated y of shape (K, 1) against z of shape (K, N, d) or (N, d))."""
        y = torch.as_tensor(y, dtype=torch.long)
        loc = (self.W[y] @ z.unsqueeze(-1)).squeeze(-1) + self.mu[y]
        return dist.Normal(loc, self.sigma.expand_as(loc)).to_event(1)

    def model(self, x: torch.Tensor | None = None, *, batch_size: int = 1) -> torch.Tensor:
        """Plate "data"; latent sites "y" (discrete) then "z"; observed site "x"."""
        n = batch_size if x is None else x.shape[0]
        with pyro.plate("data", n):
            y = pyro.sample("y", self.label_prior())
            z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.class_likelihood(y, z), obs=x)

    def class_toy(self, y: int) -> PPCA:
        """The model with the class fixed, p(z) p(x | y, z): the pPCA (W_y, μ_y, σ)."""
        if not 0 <= int(y) < self.num_classes:
            raise PyrovaeError(f"mixture: class {y} is not in 0..{self.num_classes - 1}")
        return PPCA(self.W[int(y)], self.mu[int(y)], self.sigma, self.dtype)

    def likelihood(self, z: torch.Tensor) -> dist.TorchDistribution:
        """Not defined without a class: use :meth:`class_likelihood` or :meth:`class_toy`."""
        raise PyrovaeError("mixture: p(x | z) needs the class y; use class_likelihood(y, z) "
                           "or class_toy(y)")

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = logsumexp_y [log π_y + log p(x | y, z)] + log p(z), the class
        summed out; ``z`` (..., N, d) -> (..., N)."""
        y = torch.arange(self.num_classes).reshape(-1, *([1] * z.dim()))[..., 0]
        lp = self.class_likelihood(y, z.unsqueeze(0)).log_prob(x.to(self.dtype))
        lp = lp + self.log_prior_y().reshape(-1, *([1] * (lp.dim() - 1)))
        return torch.logsumexp(lp, 0) + self.prior().log_prob(z)

    # ------------------------------------------------------ exact answers
    def class_log_likelihoods(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | y) = log N(x; μ_y, W_y W_yᵀ + σ² I) per class and point, (K, N)."""
        eye = torch.eye(self.data_dim, dtype=self.dtype)
        cov = self.W @ self.W.transpose(-1, -2) + self.sigma**2 * eye  # (K, D, D)
        mvn = dist.MultivariateNormal(self.mu, covariance_matrix=cov)  # batch (K,)
        return mvn.log_prob(x.to(self.dtype).unsqueeze(-2)).T

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_y [log π_y + log p(x | y)], (N,)."""
        return torch.logsumexp(self.log_prior_y().unsqueeze(-1) + self.class_log_likelihoods(x),
                               0)

    def log_class_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x), (K, N) (class first)."""
        joint = self.log_prior_y().unsqueeze(-1) + self.class_log_likelihoods(x)
        return joint - torch.logsumexp(joint, 0)

    def conditional_posterior(self, x: torch.Tensor, y: torch.Tensor | int
                              ) -> dist.MultivariateNormal:
        """p(z | x, y) = N(M_y⁻¹ W_yᵀ (x − μ_y), σ² M_y⁻¹); ``y`` an int or a tensor that
        broadcasts with the points (e.g. an enumerated (K, 1))."""
        y = torch.as_tensor(y, dtype=torch.long)
        x = x.to(self.dtype)
        r = (x - self.mu[y]).unsqueeze(-2) @ self.W[y]  # (..., N, 1, d)
        mean = (r @ self._post_cov[y]).squeeze(-2) / self.sigma**2
        tril = self._post_tril[y].expand(*mean.shape, self.latent_dim)
        return dist.MultivariateNormal(mean, scale_tril=tril)

    def posterior(self, x: torch.Tensor):
        """Not one distribution: p(y, z | x) = p(y | x) p(z | x, y), see
        :meth:`log_class_posterior` and :meth:`conditional_posterior`."""
        raise PyrovaeError("mixture: the posterior is p(y|x) p(z|x,y); use "
                           "log_class_posterior(x) and conditional_posterior(x, y)")

    # ------------------------------------------------------------- data
    def simulate(self, n: int, seed: int | None = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` joint draws (y (n,), z (n, d), x (n, D)) from the model (``seed=None``:
        the global stream)."""
        def draw():
            y = self.label_prior().sample((n,))
            z = self.prior().sample((n,))
            return y, z, self.class_likelihood(y, z).sample()

        if seed is None:
            return draw()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return draw()

    def sample(self, n: int, seed: int | None = 0) -> torch.Tensor:
        """``n`` draws of x from the model, shape (n, D)."""
        return self.simulate(n, seed)[2]

    def guide(self, variant: str = "exact") -> MixtureGuide:
        """The exact guide q(y|x) q(z|x,y) = p(y|x) p(z|x,y), or a wrong one
        (:data:`GUIDE_VARIANTS`: ``flat_class``, ``sharp_class``, ``wide_z``)."""
        if variant not in GUIDE_VARIANTS:
            raise PyrovaeError(f"mixture guide: expected one of {sorted(GUIDE_VARIANTS)}, got "
                               f"{variant!r}")
        temperature, scale = GUIDE_VARIANTS[variant]
        return MixtureGuide(self, temperature=temperature, z_scale=scale, name=variant)

    def to_m2(self, *, temperature: float = 1.0):
        """An M2 model (:class:`pyrovae.model.m2.SemiSupervisedVAE`, affine networks, a
        Gaussian likelihood with σ fixed, a full-covariance guide) whose generative model
        is this mixture and whose guide is exact: q(y | x) = p(y | x) (with
        ``temperature`` T ≠ 1: q(y | x) ∝ p(y | x)^(1/T), the ``flat_class`` /
        ``sharp_class`` guides) and q(z | x, y) = p(z | x, y).

        M2's p(x | y, z) is one decoder on (z, one-hot y), so the mixture must share its
        loadings W across classes, and M2's p(y) is uniform; then the decoder is
        ``[W, (μ_y)_y]``, the encoder ``[A, −A (μ_y)_y]`` with A = Λ⁻¹ Wᵀ / σ² plus the
        constant Cholesky factor of σ² M⁻¹, and the classifier's logits
        μ_yᵀ C⁻¹ x − ½ μ_yᵀ C⁻¹ μ_y (C = W Wᵀ + σ² I; the quadratic term is common to the
        classes and cancels).

        Raises:
            PyrovaeError: for class-specific loadings or a non-uniform π.
        """
        from pyrovae.model.guides import MIN_SCALE
        from pyrovae.model.m2 import SemiSupervisedVAE

        if not torch.allclose(self.W, self.W[:1].expand_as(self.W)):
            raise PyrovaeError("mixture.to_m2: M2 shares its decoder across classes; build "
                               "the mixture with shared loadings (example(shared_loadings="
                               "True))")
        if not torch.allclose(self.pi, torch.full_like(self.pi, 1 / self.num_classes)):
            raise PyrovaeError("mixture.to_m2: M2's p(y) is uniform; build the mixture with "
                               "uniform=True")
        if not temperature > 0:
            raise PyrovaeError(f"mixture.to_m2: temperature must be positive, got {temperature}")
        K, D, d = self.num_classes, self.data_dim, self.latent_dim
        m2 = SemiSupervisedVAE(
            D, d, classes=K, classify_weight=0.0, encoder=[], decoder=[],
            classifier_hidden=[], likelihood={"family": "gaussian", "sigma": "fixed",
                                              "sigma_init": float(self.sigma)},
            guide="full_covariance").to(self.dtype)
        W, M = self.W[0], self.mu.T  # (D, d), (D, K)
        eye = torch.eye(d, dtype=self.dtype)
        prec = W.T @ W / self.sigma**2 + eye
        A = torch.linalg.solve(prec, W.T) / self.sigma**2  # (d, D)
        tril = self._post_tril[0]
        rows, cols = torch.tril_indices(d, d, offset=-1)
        diag = tril.diagonal() - MIN_SCALE
        C = W @ W.T + self.sigma**2 * torch.eye(D, dtype=self.dtype)
        Cinv_mu = torch.linalg.solve(C, M)  # (D, K)
        with torch.no_grad():
            dec, enc, cls_ = m2.decoder[0], m2.encoder[0], m2.classifier[0]
            dec.weight.copy_(torch.cat([W, M], 1))
            dec.bias.zero_()
            enc.weight.zero_()
            enc.bias.zero_()
            enc.weight[:d] = torch.cat([A, -A @ M], 1)
            enc.bias[d:2 * d] = diag + torch.log(-torch.expm1(-diag))  # softplus⁻¹
            enc.bias[2 * d:] = tril[rows, cols]
            cls_.weight.copy_(Cinv_mu.T / temperature)
            cls_.bias.copy_(-0.5 * (M * Cinv_mu).sum(0) / temperature)
        return m2

    def describe(self) -> dict:
        return {**super().describe(), "num_classes": self.num_classes, "pi": self.pi.tolist(),
                "W": self.W.tolist(), "mu": self.mu.tolist(), "sigma": float(self.sigma)}


class _ClassGuide:
    """q(z | x, y) for one fixed class, as an object with ``dist(x)`` (what
    :func:`pyrovae.posterior.target.as_target` takes as a toy's guide)."""

    def __init__(self, guide: MixtureGuide, y: int) -> None:
        self.guide, self.y = guide, y

    def dist(self, x: torch.Tensor) -> dist.MultivariateNormal:
        return self.guide.z_dist(x, torch.tensor(self.y))


class MixtureGuide:
    """A guide q(y | x) q(z | x, y) of :class:`MixturePPCA` built from the exact posterior:
    q(y | x) ∝ p(y | x)^(1/``temperature``), q(z | x, y) = p(z | x, y) with its scale
    multiplied by ``z_scale``.  ``temperature = z_scale = 1`` is exact.

    Called as a Pyro guide, ``guide(x)``: plate "data", site "y" (marked for parallel
    enumeration) then site "z".
    """

    def __init__(self, toy: MixturePPCA, *, temperature: float = 1.0, z_scale: float = 1.0,
                 name: str = "") -> None:
        if not temperature > 0 or not z_scale > 0:
            raise PyrovaeError("mixture guide: temperature and z_scale must be positive")
        self.toy, self.temperature, self.z_scale, self.name = toy, temperature, z_scale, name

    def log_class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y | x), (K, N) (class first)."""
        return torch.log_softmax(self.toy.log_class_posterior(x) / self.temperature, 0)

    def z_dist(self, x: torch.Tensor, y: torch.Tensor | int) -> dist.MultivariateNormal:
        """q(z | x, y); ``y`` broadcasts with the points as in
        :meth:`MixturePPCA.conditional_posterior`."""
        p = self.toy.conditional_posterior(x, y)
        if self.z_scale == 1.0:
            return p
        return dist.MultivariateNormal(p.loc, scale_tril=p.scale_tril * self.z_scale)

    def class_guide(self, y: int) -> _ClassGuide:
        """q(z | x, y) for the fixed class ``y``: pair it with :meth:`MixturePPCA.class_toy`."""
        return _ClassGuide(self, int(y))

    def __call__(self, x: torch.Tensor | None = None, *, batch_size: int = 1) -> None:
        """The Pyro guide: q(y | x) (enumerable) then q(z | x, y), inside plate "data"."""
        if x is None:
            raise PyrovaeError("mixture guide: needs the data x")
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=self.log_class_probs(x).T),
                            infer={"enumerate": "parallel"})
            pyro.sample("z", self.z_dist(x, y))
