"""Toy problems with exact answers: log p(x) and p(z|x) known in closed form or by
quadrature, so a learned guide can be checked against the truth.

====================  =================================================  ===============
name                  model                                              exact by
====================  =================================================  ===============
``gaussian_mle``      x ~ N(μ, σ²) (no latent; the article's MLE)        closed form
``ppca``              z ~ N(0, I), x ~ N(Wz + μ, σ²I), correlated W       closed form
``ppca_orthogonal``   the same with orthogonal columns of W               closed form
``beta_bernoulli``    z ~ Beta(a, b), x_d ~ Bernoulli(z)                  closed form
``gamma_poisson``     z ~ Gamma(α, β), x_d ~ Poisson(z)                   closed form
``hierarchical``      z₂ ~ N(0, I), z₁ ~ N(Az₂ + b, D₁), x ~ N(Wz₁ + c, σ²I)  closed form
``banana``            z ~ N(0, I₂), x ~ N(z₂ + z₁², σ²)                   grid quadrature
``bimodal``           z ~ N(0, I₂), x ~ N((z₁², z₂), σ²I)                 grid quadrature
``square``            z ~ N(0, 1), x ~ N(z², σ²)                          grid quadrature
``mixture``           y ~ Cat(π), z ~ N(0, I), x ~ N(W_y z + μ_y, σ²I)     closed form
====================  =================================================  ===============

``mixture`` has a discrete latent (the class y): its checks sum y out exactly
(:mod:`pyrovae.posterior.enumerate`), one pPCA per class (``class_toy(y)``).
"""

from __future__ import annotations

from pyrovae.errors import PyrovaeError
from pyrovae.toy.base import ToyProblem
from pyrovae.toy.conjugate import BetaBernoulli, GammaPoisson
from pyrovae.toy.gaussian import closed_form_mle, fit_mle_pyro
from pyrovae.toy.hierarchical import HierarchicalGaussian
from pyrovae.toy.mixture import MixtureGuide, MixturePPCA
from pyrovae.toy.nonlinear import NonlinearToy
from pyrovae.toy.ppca import PPCA

#: Toy latent-variable models by name (``gaussian_mle`` has no latent and is separate).
TOYS = {
    "ppca": lambda: PPCA.example(5, 2, correlation=0.8),
    "ppca_orthogonal": lambda: PPCA.example(5, 2, orthogonal=True),
    "beta_bernoulli": BetaBernoulli,
    "gamma_poisson": GammaPoisson,
    "hierarchical": HierarchicalGaussian.example,
    "banana": lambda: NonlinearToy("banana"),
    "bimodal": lambda: NonlinearToy("bimodal"),
    "square": lambda: NonlinearToy("square"),
    "mixture": MixturePPCA.example,
}


def get_toy(name: str) -> ToyProblem:
    """Build the toy problem called ``name`` (see :data:`TOYS`)."""
    if name not in TOYS:
        known = ", ".join(["gaussian_mle", *TOYS])
        raise PyrovaeError(f"unknown toy problem {name!r}; known: {known}")
    return TOYS[name]()


__all__ = [
    "PPCA",
    "TOYS",
    "BetaBernoulli",
    "GammaPoisson",
    "HierarchicalGaussian",
    "MixtureGuide",
    "MixturePPCA",
    "NonlinearToy",
    "ToyProblem",
    "closed_form_mle",
    "fit_mle_pyro",
    "get_toy",
]
