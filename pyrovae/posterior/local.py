"""Per-data-point (non-amortised) guides and the loop that fits them.

The amortised guide q_φ(z|x) shares φ across all x; a *local* guide has its own
parameters λᵢ for every data point.  Fitting local guides with θ fixed gives the
best member of a family for each xᵢ, which is what the approximation gap and the
amortization gap of Cremer et al. (2018) are measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import biject_to, constraints
from torch.nn import functional as F

from pyrovae.errors import PyrovaeError


class LocalGuide(nn.Module):
    """qᵢ(z) = T#N(locᵢ, diag scaleᵢ²): a diagonal Gaussian per data point on the
    unconstrained value of z, pushed onto the support of z by T = biject_to(support).

    Use ``dist(x)`` for q with batch shape (N,), or the module itself as a Pyro guide.
    """

    def __init__(
        self, num_data: int, latent_dim: int, *,
        support: constraints.Constraint = constraints.real_vector,
        loc: torch.Tensor | None = None, scale: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        shape = (num_data, latent_dim)
        loc = torch.zeros(shape, dtype=dtype) if loc is None else loc.to(dtype).clone()
        scale = torch.full(shape, 0.5, dtype=dtype) if scale is None else scale.to(dtype)
        self.loc = nn.Parameter(loc.expand(shape).clone())
        self.raw_scale = nn.Parameter(torch.log(torch.expm1(scale.expand(shape).clone())))
        self.support = support

    def dist(self, x: torch.Tensor | None = None) -> dist.TorchDistribution:
        """The per-point guide q(z) with batch shape (N,); ``x`` only checks N."""
        if x is not None and x.shape[0] != self.loc.shape[0]:
            raise PyrovaeError(f"LocalGuide holds {self.loc.shape[0]} points, got {x.shape[0]}")
        base = dist.Normal(self.loc, F.softplus(self.raw_scale) + 1e-6).to_event(1)
        if self.support is constraints.real_vector:
            return base
        return dist.TransformedDistribution(base, [biject_to(self.support)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.dist(x))


def maximize_elbo(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    make_q: Callable[[], dist.TorchDistribution],
    params: Sequence[torch.Tensor],
    *,
    steps: int = 1000,
    lr: float = 0.02,
    num_particles: int = 16,
    decay: bool = True,
    callback: Callable[[int], None] | None = None,
) -> list[float]:
    """Maximise the mean over data points of the reparameterised ELBO
    E_q[log p(x, z) − log q(z)] over ``params`` with Adam (cosine-decayed ``lr``).

    ``log_joint`` maps z (S, N, d) -> (S, N) with θ held fixed; ``make_q()`` builds q
    (batch (N,)) from ``params``.  Returns the ELBO estimate (mean per point) per step.
    """
    opt = torch.optim.Adam(list(params), lr=lr)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 1e-3)
        if decay else None
    )
    trace: list[float] = []
    for step in range(steps):
        opt.zero_grad()
        q = make_q()
        z = q.rsample((num_particles,))
        elbo = (log_joint(z) - q.log_prob(z)).mean()
        (-elbo).backward()
        opt.step()
        if sched is not None:
            sched.step()
        trace.append(elbo.item())
        if callback is not None:
            callback(step)
    return trace


def fit_local_guide(
    target, x: torch.Tensor, *, steps: int = 1000, lr: float = 0.05,
    num_particles: int = 16, init: LocalGuide | None = None,
) -> LocalGuide:
    """Fit a :class:`LocalGuide` to every row of ``x`` for ``target`` (θ fixed)."""
    from pyrovae.posterior.target import as_target

    target = as_target(target)
    dtype = x.dtype
    guide = init or LocalGuide(
        x.shape[0], target.latent_dim, support=target.support, dtype=dtype
    )
    maximize_elbo(
        lambda z: target.log_joint(x, z), lambda: guide.dist(x), list(guide.parameters()),
        steps=steps, lr=lr, num_particles=num_particles,
    )
    return guide
