"""The experiment of *The Intuitive VAE*: keep θ fixed and maximise the ELBO over φ only.

    log p_θ(x)  =  ELBO ↑  +  KL(q_φ(z|x) ‖ p_θ(z|x)) ↓

With the decoder frozen, log p_θ(x) is a flat line; every nat the ELBO gains is a
nat of KL lost.  The KL cannot go below the *floor* of the guide family (zero only
if the family contains p_θ(z|x)); for probabilistic PCA with a mean-field guide the
floor is ½(Σ log Λᵢᵢ − log|Λ|) (see :mod:`pyrovae.toy.ppca`).

:func:`theta_fixed` records, per step, the ELBO (Monte Carlo), the exact log p(x)
and the exact KL, averaged over the data points, each computed independently.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.amortization import frozen
from pyrovae.posterior.exact import gaussian_kl, grid_posteriors
from pyrovae.posterior.target import VAETarget

ExactFn = Callable[[object, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ThetaFixedResult:
    """Curves of the θ-fixed experiment (means over the data points)."""

    steps: list[int] = field(default_factory=list)
    elbo: list[float] = field(default_factory=list)
    elbo_stderr: list[float] = field(default_factory=list)
    log_px: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    floor: float | None = None
    seconds: float = 0.0

    @property
    def final_kl(self) -> float:
        return self.kl[-1]

    @property
    def final_kl_above_floor(self) -> float:
        return self.kl[-1] - (self.floor or 0.0)

    @property
    def final_residual(self) -> float:
        """log p(x) − ELBO − KL at the last record (Monte Carlo error only)."""
        return self.log_px[-1] - self.elbo[-1] - self.kl[-1]

    def as_dict(self) -> dict:
        return {
            "steps": self.steps, "elbo": self.elbo, "elbo_stderr": self.elbo_stderr,
            "log_px": self.log_px, "kl": self.kl, "floor": self.floor,
            "final_kl": self.final_kl, "final_kl_above_floor": self.final_kl_above_floor,
            "final_residual": self.final_residual, "seconds": self.seconds,
        }


def ppca_exact(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact log p(x) and KL(q ‖ p(z|x)) for a linear-Gaussian VAE (closed forms)."""
    from pyrovae.toy.ppca import PPCA

    ppca = PPCA.from_linear_vae(vae)
    with torch.no_grad():
        q = vae.encode(x)
        kl = gaussian_kl(q, ppca.posterior(x).__class__(
            ppca.posterior(x).loc.to(x.dtype),
            covariance_matrix=ppca.posterior(x).covariance_matrix.to(x.dtype),
        ))
    if kl is None:
        raise PyrovaeError("ppca_exact needs a Gaussian guide")
    return ppca.log_marginal(x).double(), kl.double()


def ppca_floor(vae) -> float:
    """The mean-field floor of a linear-Gaussian VAE's current θ."""
    from pyrovae.toy.ppca import PPCA

    return PPCA.from_linear_vae(vae).meanfield_floor()


def grid_exact(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x) and KL(q ‖ p(z|x)) by grid quadrature (latent_dim ≤ 2)."""
    grids = grid_posteriors(VAETarget(vae), x, with_guide=True)
    return (
        torch.tensor([g.log_marginal for g in grids], dtype=torch.float64),
        torch.tensor([g.kl_q_p() for g in grids], dtype=torch.float64),
    )


def _default_exact(vae) -> ExactFn:
    try:
        ppca_floor(vae)
        return ppca_exact
    except PyrovaeError:  # not a linear-Gaussian VAE
        if vae.latent_dim <= 2:
            return grid_exact
        raise PyrovaeError("no exact KL: pass exact= for latent_dim > 2") from None


def theta_fixed(
    vae,
    x: torch.Tensor,
    *,
    steps: int = 2000,
    lr: float = 0.02,
    num_particles: int = 8,
    record_every: int = 20,
    eval_particles: int = 256,
    exact: ExactFn | None = None,
    floor: float | None = None,
    seed: int | None = 0,
    init_seed: int | None = None,
) -> ThetaFixedResult:
    """Optimise only the guide parameters φ of ``vae`` on ``x`` (θ frozen), with Adam
    and a cosine-decayed learning rate on the reparameterised ELBO.

    ``exact(vae, x) -> (log p(x), KL)`` per point; by default the pPCA closed forms
    for a linear-Gaussian VAE, else grid quadrature (latent_dim ≤ 2).  ``floor`` is
    reported alongside (default: the pPCA mean-field floor when it applies and the
    guide is diagonal).

    ``init_seed``: when given, the encoder is re-initialised under that seed first,
    so the starting KL does not depend on the random state in which the VAE was
    built (documented numbers use ``init_seed=0``); ``seed`` seeds the optimisation.
    """
    if init_seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            for m in vae.encoder.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    if seed is not None:
        torch.manual_seed(seed)
    exact = exact or _default_exact(vae)
    if floor is None and exact is ppca_exact and vae.spec["guide"]["family"] == "diagonal_normal":
        floor = ppca_floor(vae)
    target = VAETarget(vae)
    phi = vae.guide_parameters()
    phi_ids = {id(p) for p in phi}
    theta = [p for p in vae.parameters() if id(p) not in phi_ids]
    opt = torch.optim.Adam(phi, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 1e-3)
    result = ThetaFixedResult(floor=floor)
    t0 = time.perf_counter()

    def record(step: int) -> None:
        with torch.no_grad():
            lw = target.log_weights(x, eval_particles).double()
            lp, kl = exact(vae, x)
        per_point = lw.mean(0)
        result.steps.append(step)
        result.elbo.append(float(per_point.mean()))
        result.elbo_stderr.append(float(lw.std(0).mean() / math.sqrt(eval_particles * len(x))))
        result.log_px.append(float(lp.mean()))
        result.kl.append(float(kl.mean()))

    with frozen(theta):
        for step in range(steps):
            if step % record_every == 0:
                record(step)
            opt.zero_grad()
            q = vae.encode(x)
            z = q.rsample((num_particles,))
            loss = -(target.log_joint(x, z) - q.log_prob(z)).mean()
            loss.backward()
            opt.step()
            sched.step()
        record(steps)
    result.seconds = time.perf_counter() - t0
    return result


def theta_fixed_local(
    toy,
    x: torch.Tensor,
    *,
    steps: int = 1000,
    lr: float = 0.05,
    num_particles: int = 8,
    record_every: int = 20,
    eval_particles: int = 256,
    seed: int = 0,
) -> ThetaFixedResult:
    """The θ-fixed experiment on a toy with a Gaussian posterior, for any latent structure.

    θ is the toy's own (fixed); φ is a mean-field Gaussian per data point over the flat
    latent vector (:class:`~pyrovae.posterior.local.LocalGuide`), optimised by Adam on
    the reparameterised ELBO.  At every record: the ELBO (Monte Carlo), the exact
    log p(x) and the exact KL(q ‖ p(z|x)) (closed form between Gaussians), each
    computed on its own; ``floor`` is the toy's ``meanfield_floor()`` when it has one.
    Works for pPCA and for the two-layer :class:`~pyrovae.toy.HierarchicalGaussian`
    (two latent sites), where the floor is ``½ (Σ log Λᵢᵢ − log |Λ|)`` again.

    Args:
        toy: a toy problem with ``exact_posterior`` (a Gaussian p(z|x)).
        x: the data points, one per row.
        steps, lr, num_particles: the optimisation of φ.
        record_every: record the curves every this many steps.
        eval_particles: draws for each recorded ELBO.
        seed: the random seed of the initialisation and the optimisation.

    Raises:
        PyrovaeError: for a toy whose posterior is not a closed-form Gaussian.
    """
    from pyrovae.posterior.local import LocalGuide, maximize_elbo
    from pyrovae.posterior.target import as_target

    if not getattr(toy, "exact_posterior", False):
        raise PyrovaeError(f"theta_fixed_local needs a closed-form posterior; "
                           f"{type(toy).__name__} has none")
    torch.manual_seed(seed)
    x = x.to(toy.dtype)
    target = as_target(toy)
    guide = LocalGuide(x.shape[0], toy.latent_dim, dtype=toy.dtype)
    floor = toy.meanfield_floor() if hasattr(toy, "meanfield_floor") else None
    result = ThetaFixedResult(floor=floor)
    log_px = toy.log_marginal(x).double()
    post = toy.posterior(x)
    t0 = time.perf_counter()

    def record(step: int) -> None:
        with torch.no_grad():
            q = guide.dist(x)
            z = q.sample((eval_particles,))
            lw = (target.log_joint(x, z) - q.log_prob(z)).double()
            kl = gaussian_kl(q, post)
        if kl is None:
            raise PyrovaeError("theta_fixed_local: the exact posterior is not Gaussian")
        result.steps.append(step)
        result.elbo.append(float(lw.mean()))
        result.elbo_stderr.append(float(lw.std(0).mean() / math.sqrt(eval_particles * len(x))))
        result.log_px.append(float(log_px.mean()))
        result.kl.append(float(kl.double().mean()))

    maximize_elbo(lambda z: target.log_joint(x, z), lambda: guide.dist(x),
                  list(guide.parameters()), steps=steps, lr=lr, num_particles=num_particles,
                  callback=lambda step: record(step) if step % record_every == 0 else None)
    record(steps)
    result.seconds = time.perf_counter() - t0
    return result
