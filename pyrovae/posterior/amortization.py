"""Amortization gap vs approximation gap (Cremer, Li & Duvenaud 2018).

For a data point x with the decoder θ fixed::

    log p(x) − ELBO[q_φ(·|x)]  =  (log p(x) − ELBO[q*])  +  (ELBO[q*] − ELBO[q_φ(·|x)])
         inference gap              approximation gap          amortization gap

q* is the best member of the guide's family *for this x alone*: the encoder's
output vector for x is used as a free parameter (so q* is in exactly the same
family, diagonal, full-covariance or flow) and optimised from the encoder's value.
The approximation gap is what a better family would remove; the amortization
gap is what a better encoder (or more encoder training) would remove.

A model kind with several stochastic layers (its estimator declares per-particle
weights, ``KindEstimator.particle_weights``) is split the same way: its guide is
q_φ(z_1 | x) ∏_l q_φ(z_{l+1} | z_l), and q* frees the encoder's output for x (the
parameters of q(z_1 | x)) per point while the upper layers' q_φ(z_{l+1} | z_l) stay as
trained, so that q* is in the guide's own family and starts at q_φ (its ELBO is never
below the amortised one at a converged optimum):
ELBO[q] = E_q[log p(x, z_1, …, z_L) − log q(z_1, …, z_L)].

References:
    Cremer, Li & Duvenaud (2018), *Inference Suboptimality in Variational
    Autoencoders*.
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders* (the
    two-stochastic-layer model).
"""

from __future__ import annotations

import contextlib

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.kinds import kind_estimator
from pyrovae.posterior.exact import Estimate, elbo, kl_to_posterior, log_marginal
from pyrovae.posterior.local import LocalGuide, fit_local_guide, maximize_elbo
from pyrovae.posterior.target import Target, VAETarget, _DistGuideMixin, as_target
from pyrovae.progress import Progress, expect, tick
from pyrovae.randomness import seeded


@contextlib.contextmanager
def frozen(params):
    """Temporarily set ``requires_grad=False`` on ``params``."""
    params = list(params)
    old = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, r in zip(params, old, strict=True):
            p.requires_grad_(r)


class _FixedQTarget(Target):
    """The VAE's model with a fixed q (the optimised per-point one)."""

    def __init__(self, vae, q) -> None:
        self.vae, self.q = vae, q
        self.latent_dim = vae.latent_dim

    def log_joint(self, x, z):
        return VAETarget(self.vae).log_joint(x, z)

    def guide_dist(self, x):
        return self.q

    def sample_guide(self, x, num_samples):
        z = self.q.sample((num_samples,))
        return z, self.q.log_prob(z)

    def guide_log_prob(self, x, z):
        return self.q.log_prob(z)


def _sample_average_elbo(target, x, make_q, num_particles: int, seed: int) -> torch.Tensor:
    """Σ over points of the ELBO estimated with the *same* base noise on every call
    (the random stream is reseeded), so the objective is deterministic and smooth:
    a sample-average approximation that L-BFGS can optimise to a gradient tolerance."""
    with seeded(seed, x, target):
        q = make_q()
        z = q.rsample((num_particles,))
        return (target.log_joint(x, z) - q.log_prob(z)).mean(0).sum()


def _layer_weights(vae):
    """The kind's reparameterised per-particle weights, or ``None`` (a one-site VAE)."""
    own = kind_estimator(vae)
    return None if own is None else own.particle_weights


def own_family_gap(vae) -> bool:
    """Whether :func:`amortization_gap` splits ``vae``'s gap with q* in its guide's own
    family: a one-site VAE, or a kind whose estimator declares per-particle weights
    (several stochastic layers); else :func:`gap_split`'s per-point diagonal Gaussian."""
    from pyrovae.model.vae import VAE

    if not isinstance(vae, VAE):
        return False
    own = kind_estimator(vae)
    if own is None:
        return not getattr(vae, "pyro_target", False)
    return own.particle_weights is not None


def _kind_sample_average(vae, weights, x, make_q, num_particles: int,
                         seed: int) -> torch.Tensor:
    """:func:`_sample_average_elbo` of a kind with several layers: q(z_1) = ``make_q()``,
    the upper layers from the guide; Σ over points of the mean over draws of log w."""
    with seeded(seed, x, vae):
        log_px, ratio = weights(vae, x, num_particles, guide=make_q())
        return (log_px - ratio).mean(0).sum()


def _kind_estimates(vae, weights, x, q, num_samples: int) -> tuple[Estimate, Estimate]:
    """ELBO[q] and the IWAE estimate of log p(x) from ``num_samples`` draws, per point
    (q: q(z_1) per point, ``None`` for the encoder's), with their standard errors (of the
    IWAE: the delta method, sd(w) / (√S · mean w))."""
    with torch.no_grad():
        log_px, ratio = weights(vae, x, num_samples, guide=q)
        lw = (log_px - ratio).double()
    s = lw.shape[0]
    elbo_ = Estimate(lw.mean(0), lw.std(0) / s**0.5, "elbo")
    w = (lw - lw.max(0).values).exp()
    iwae = Estimate(torch.logsumexp(lw, 0) - torch.log(torch.tensor(float(s), dtype=lw.dtype)),
                    w.std(0) / (s**0.5 * w.mean(0)), f"iwae (K={s})")
    return elbo_, iwae


def optimise_local(
    vae, x: torch.Tensor, *, steps: int = 500, lr: float = 0.02, num_particles: int | None = None,
    method: str = "lbfgs", tol: float = 1e-4, seed: int = 0, rounds: int = 4,
    progress: Progress | None = None,
):
    """q* per data point: the encoder output for ``x`` as free parameters, optimised
    for the ELBO with θ and the encoder fixed.

    ``method="lbfgs"`` (default) maximises a sample-average ELBO (fixed base noise,
    ``num_particles`` = 1024 draws) with L-BFGS and a strong-Wolfe line search until the
    largest gradient entry is below ``tol`` or ``steps`` iterations, ``rounds`` times
    with fresh base noise (warm-started), and averages the optima (the optimum of one
    sample average scatters around the true one; averaging shrinks that excess KL
    about ``rounds``-fold); ``"adam"`` runs
    ``steps`` Adam steps on fresh draws (16 per step) with a cosine-decayed ``lr``.

    For a kind with several stochastic layers the free output is that of q(z_1 | x),
    the upper layers' guides kept (L-BFGS only); its ELBO is over all sites.

    Returns (q*, trace, info) with ``info = {"method", "grad_norm", "converged",
    "iterations"}``: ``grad_norm`` per point is the largest, over rounds, norm of the
    gradient of the round's sample-average ELBO at its optimum (for Adam: of a
    1024-draw one at the last iterate); ``converged`` says whether every entry met
    ``tol``.  ``progress`` is advanced once per L-BFGS round (total ``rounds``; Adam:
    one unit at the end); ``None``: silent.

    References:
        Liu & Nocedal (1989), *On the limited memory BFGS method for large scale
        optimization*.
    """
    expect(progress, rounds if method == "lbfgs" else 1)
    if not hasattr(vae, "encoder") or not hasattr(vae, "guide_family"):
        raise PyrovaeError("the amortization gap needs a pyrovae.VAE (encoder + guide family)")
    if method not in ("lbfgs", "adam"):
        raise PyrovaeError(f"amortization method: expected 'lbfgs' or 'adam', got {method!r}")
    weights = _layer_weights(vae)
    if weights is not None and method != "lbfgs":
        raise PyrovaeError(f"amortization method: {method!r} is not available for a model "
                           "with several stochastic layers (use 'lbfgs')")
    with torch.no_grad():
        out = vae.encoder_out(x).detach().clone()  # any network, any event shape
    out.requires_grad_(True)
    target = VAETarget(vae)
    if weights is None:
        def average(make_q, k: int, seed: int) -> torch.Tensor:
            return _sample_average_elbo(target, x, make_q, k, seed)
    else:
        def average(make_q, k: int, seed: int) -> torch.Tensor:
            return _kind_sample_average(vae, weights, x, make_q, k, seed)
    trace: list[float] = []
    with frozen(vae.parameters()):
        if method == "adam":
            trace = maximize_elbo(
                lambda z: target.log_joint(x, z), lambda: vae.guide_family(out), [out],
                steps=steps, lr=lr, num_particles=num_particles or 16,
            )
        else:
            k = num_particles or 1024
            solutions, norms = [], []
            start = out.detach().clone()
            for r in range(rounds):  # independent base noise per round; average the optima
                with torch.no_grad():
                    out.copy_(start)
                opt = torch.optim.LBFGS([out], lr=1.0, max_iter=steps, tolerance_grad=tol,
                                        tolerance_change=1e-12, history_size=20,
                                        line_search_fn="strong_wolfe")

                def closure(r=r, opt=opt):
                    opt.zero_grad()
                    loss = -average(lambda: vae.guide_family(out), k, seed + r)
                    loss.backward()
                    trace.append(-float(loss.detach()) / x.shape[0])
                    return loss

                opt.step(closure)
                (g,) = torch.autograd.grad(average(lambda: vae.guide_family(out), k, seed + r),
                                           out)
                norms.append(g.reshape(g.shape[0], -1).norm(dim=-1).double())
                solutions.append(out.detach().clone())
                if r == 0:
                    start = solutions[0]
                tick(progress)
            with torch.no_grad():
                out.copy_(torch.stack(solutions).mean(0))
        if method == "adam":  # the gradient of a 1024-draw ELBO at the last iterate
            (g,) = torch.autograd.grad(
                _sample_average_elbo(target, x, lambda: vae.guide_family(out), 1024, seed),
                out)
            norms = [g.reshape(g.shape[0], -1).norm(dim=-1).double()]
            tick(progress)
    grad_norm = torch.stack(norms).max(0).values
    width = out.shape[-1] ** 0.5
    info = {"method": method, "grad_norm": grad_norm, "tol": tol,
            "converged": bool(grad_norm.max() <= tol * width) if method == "lbfgs" else None,
            "iterations": len(trace)}
    with torch.no_grad():
        q = vae.guide_family(out.detach())
    return q, trace, info


def _split(log_px: Estimate, amort: Estimate, local: Estimate) -> dict:
    """log p(x) − ELBO[q_φ] = (log p(x) − ELBO[q*]) + (ELBO[q*] − ELBO[q_φ]), per point,
    with the standard errors of each part."""
    return {
        "log_px": log_px.value, "log_px_method": log_px.method, "log_px_error": log_px.stderr,
        "elbo_amortized": amort.value, "elbo_amortized_stderr": amort.stderr,
        "elbo_optimized": local.value, "elbo_optimized_stderr": local.stderr,
        "approximation_gap": log_px.value - local.value,
        "amortization_gap": local.value - amort.value,
        "approximation_gap_stderr": (log_px.stderr**2 + local.stderr**2).sqrt(),
        "amortization_gap_stderr": (local.stderr**2 + amort.stderr**2).sqrt(),
        "inference_gap": log_px.value - amort.value,
    }


class _LocalQTarget(_DistGuideMixin, Target):
    """A target's model with a per-point :class:`LocalGuide` as its guide."""

    def __init__(self, target: Target, q: LocalGuide) -> None:
        self.target, self.q = target, q
        self.latent_dim = target.latent_dim
        self.support = target.support
        self._dist_fn = q.dist

    @property
    def sites(self):
        return self.target.sites

    def log_joint(self, x, z):
        return self.target.log_joint(x, z)


def gap_split(
    model, x: torch.Tensor, *, guide=None, log_px: Estimate | None = None,
    steps: int = 500, lr: float = 0.05, num_particles: int = 16, num_samples: int = 2000,
) -> dict:
    """The inference gap of any target split at the best per-point Gaussian q*.

    For a :class:`pyrovae.VAE` this is :func:`amortization_gap` (q* in the guide's own
    family; for a kind with several stochastic layers, q(z_1 | x) freed per point).
    For any other target (a toy + guide, or a user's Pyro pair) the guide's
    family is not known, so q* is the best diagonal Gaussian per data point over the
    flat latent vector (a :class:`~pyrovae.posterior.local.LocalGuide` fitted by
    :func:`~pyrovae.posterior.local.fit_local_guide`, θ fixed)::

        log p(x) − ELBO[q_φ] = (log p(x) − ELBO[q*]) + (ELBO[q*] − ELBO[q_φ])

    For a guide richer than a diagonal Gaussian the second term can be negative: the
    amortised guide then beats the per-point diagonal family.

    Args:
        model: a VAE, a :class:`Target`, a toy or a Pyro model (with ``guide``).
        x: the data points, one per row.
        guide: the guide of a toy or Pyro model.
        log_px: an estimate of log p(x) per point (e.g. AIS's); default IWAE with K =
            ``num_samples`` drawn from q*.
        steps, lr, num_particles: the per-point fit of q* (Adam, reparameterised ELBO).
        num_samples: Monte Carlo draws for each ELBO.

    Returns:
        A dict with ``log_px``, ``elbo_amortized``, ``elbo_optimized``,
        ``approximation_gap``, ``amortization_gap``, ``inference_gap`` (tensors per
        point) and their standard errors.

    References:
        Cremer, Li & Duvenaud (2018). Inference suboptimality in variational
        autoencoders. ICML.
    """
    if own_family_gap(model):
        return amortization_gap(model, x, steps=steps, num_samples=num_samples, log_px=log_px)
    target = as_target(model, guide)
    q_star = fit_local_guide(target, x, steps=steps, lr=lr, num_particles=num_particles)
    local_target = _LocalQTarget(target, q_star)
    amort = elbo(target, x, num_samples=num_samples)
    local = elbo(local_target, x, num_samples=num_samples)
    if log_px is None:
        log_px = log_marginal(local_target, x, method="iwae", num_samples=num_samples)
    return _split(log_px, amort, local) | {"local_family": "diagonal Gaussian per point"}


def amortization_gap(
    vae, x: torch.Tensor, *, steps: int = 500, lr: float = 0.02,
    num_particles: int | None = None, num_samples: int = 2000, log_px=None,
    exact_kl: bool = True, method: str = "lbfgs", tol: float = 1e-4,
    progress: Progress | None = None,
) -> dict:
    """Per-point log p(x), ELBO of the encoder, ELBO of q*, and the two gaps.

    q* comes from :func:`optimise_local` (L-BFGS to a gradient tolerance by default;
    its final per-point gradient norm is reported as ``grad_norm``).  log p(x) is by
    grid quadrature when latent_dim ≤ 2, else IWAE with K = ``num_samples`` drawn
    from q* (pass ``log_px`` to supply your own Estimate, e.g. the AIS one of
    :func:`pyrovae.posterior.ais.ais`; the gaps' standard errors then combine its
    stderr with the ELBOs': ``approximation_gap_stderr``, ``amortization_gap_stderr``).
    With ``exact_kl`` and latent_dim ≤ 2 the gaps are also given without Monte Carlo
    error, as KL(q* ‖ p(z|x)) and KL(q_φ ‖ p(z|x)) − KL(q* ‖ p(z|x)) by quadrature
    (keys ``approximation_gap_exact``, ``amortization_gap_exact``).  ``progress``: the
    local optimisation's, as in :func:`optimise_local`.  A kind with several stochastic
    layers (``KindEstimator.particle_weights``): q* frees q(z_1 | x) per point, every
    ELBO is over all sites (module docstring); the default log p(x) is IWAE from q*.
    """
    q_star, trace, info = optimise_local(vae, x, steps=steps, lr=lr,
                                         num_particles=num_particles, method=method, tol=tol,
                                         progress=progress)
    weights = _layer_weights(vae)
    if weights is not None:  # several layers: every ELBO over all sites, q* for z_1
        amort, _ = _kind_estimates(vae, weights, x, None, num_samples)
        local, iwae = _kind_estimates(vae, weights, x, q_star, num_samples)
        return _split(iwae if log_px is None else log_px, amort, local) | {
            "trace": trace, "optimizer": info["method"], "grad_norm": info["grad_norm"],
            "converged": info["converged"], "iterations": info["iterations"],
            "local_family": "q(z1|x) per point, upper layers amortised"}
    amort = elbo(VAETarget(vae), x, num_samples=num_samples)
    local = elbo(_FixedQTarget(vae, q_star), x, num_samples=num_samples)
    if log_px is None:
        lp_target = VAETarget(vae) if vae.latent_dim <= 2 else _FixedQTarget(vae, q_star)
        log_px = log_marginal(lp_target, x, num_samples=num_samples)
    out = {}
    if exact_kl and vae.latent_dim <= 2:
        # the same gaps without Monte Carlo error: KL(q ‖ p(z|x)) by quadrature
        kl_amort = kl_to_posterior(VAETarget(vae), x)
        kl_star = kl_to_posterior(_FixedQTarget(vae, q_star), x)
        out = {
            "kl_amortized": kl_amort.value, "kl_optimized": kl_star.value,
            "approximation_gap_exact": kl_star.value,
            "amortization_gap_exact": kl_amort.value - kl_star.value,
        }
    return out | _split(log_px, amort, local) | {
        "trace": trace, "optimizer": info["method"], "grad_norm": info["grad_norm"],
        "converged": info["converged"], "iterations": info["iterations"],
    }
