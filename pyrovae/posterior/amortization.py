"""Amortization gap vs approximation gap (Cremer, Li & Duvenaud 2018).

For a data point x with the decoder θ fixed::

    log p(x) − ELBO[q_φ(·|x)]  =  (log p(x) − ELBO[q*])  +  (ELBO[q*] − ELBO[q_φ(·|x)])
         inference gap              approximation gap          amortization gap

q* is the best member of the guide's family *for this x alone*: the encoder's
output vector for x is used as a free parameter (so q* is in exactly the same
family, diagonal, full-covariance or flow) and optimised from the encoder's value.
The approximation gap is what a better family would remove; the amortization
gap is what a better encoder (or more encoder training) would remove.
"""

from __future__ import annotations

import contextlib

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.exact import elbo, kl_to_posterior, log_marginal
from pyrovae.posterior.local import maximize_elbo
from pyrovae.posterior.target import Target, VAETarget


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


def optimise_local(
    vae, x: torch.Tensor, *, steps: int = 500, lr: float = 0.02, num_particles: int = 16
):
    """q* per data point: the encoder output for ``x`` as free parameters, optimised
    for the ELBO with θ and the encoder fixed.  Returns (q*, ELBO trace)."""
    if not hasattr(vae, "encoder") or not hasattr(vae, "guide_family"):
        raise PyrovaeError("the amortization gap needs a pyrovae.VAE (encoder + guide family)")
    with torch.no_grad():
        out = vae.encoder(x).detach().clone()
    out.requires_grad_(True)
    target = VAETarget(vae)
    with frozen(vae.parameters()):
        trace = maximize_elbo(
            lambda z: target.log_joint(x, z), lambda: vae.guide_family(out), [out],
            steps=steps, lr=lr, num_particles=num_particles,
        )
    with torch.no_grad():
        q = vae.guide_family(out.detach())
    return q, trace


def amortization_gap(
    vae, x: torch.Tensor, *, steps: int = 500, lr: float = 0.02, num_particles: int = 16,
    num_samples: int = 2000, log_px=None, exact_kl: bool = True,
) -> dict:
    """Per-point log p(x), ELBO of the encoder, ELBO of q*, and the two gaps.

    log p(x) is by grid quadrature when latent_dim ≤ 2, else IWAE with K =
    ``num_samples`` drawn from q* (pass ``log_px`` to supply your own Estimate).
    With ``exact_kl`` and latent_dim ≤ 2 the gaps are also given without Monte Carlo
    error, as KL(q* ‖ p(z|x)) and KL(q_φ ‖ p(z|x)) − KL(q* ‖ p(z|x)) by quadrature
    (keys ``approximation_gap_exact``, ``amortization_gap_exact``).
    """
    q_star, trace = optimise_local(vae, x, steps=steps, lr=lr, num_particles=num_particles)
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
    return out | {
        "log_px": log_px.value, "log_px_method": log_px.method, "log_px_error": log_px.stderr,
        "elbo_amortized": amort.value, "elbo_amortized_stderr": amort.stderr,
        "elbo_optimized": local.value, "elbo_optimized_stderr": local.stderr,
        "approximation_gap": log_px.value - local.value,
        "amortization_gap": local.value - amort.value,
        "inference_gap": log_px.value - amort.value,
        "trace": trace,
    }
