"""Amortization gap vs approximation gap (Cremer et al. 2018) on pPCA."""

from __future__ import annotations

import torch

from pyrovae.posterior.amortization import amortization_gap
from pyrovae.toy import PPCA


def test_gaps_on_ppca():
    torch.manual_seed(0)
    p = PPCA.example(5, 2, correlation=0.8, sigma=0.5)
    x = p.sample(6, seed=2)
    floor = p.meanfield_floor()
    # a random (untrained) affine encoder: large amortization gap
    bad = p.to_linear_vae()
    r = amortization_gap(bad, x, steps=600, lr=0.05, num_samples=4000)
    assert r["log_px_method"] == "grid"
    assert torch.allclose(r["log_px"], p.log_marginal(x), atol=1e-6)
    assert bool((r["amortization_gap"] > 0.5).all())
    assert bool((r["amortization_gap_exact"] > 0.5).all())
    # q* is the best diagonal Gaussian per point: its gap is the mean-field floor
    assert bool(((r["approximation_gap_exact"] - floor).abs() < 0.01).all()), r
    # the Monte Carlo gaps agree with the exact ones within their standard errors
    se = (r["elbo_optimized_stderr"] ** 2 + r["elbo_amortized_stderr"] ** 2).sqrt()
    approx_diff = (r["approximation_gap"] - r["approximation_gap_exact"]).abs()
    assert bool((approx_diff < 4 * r["elbo_optimized_stderr"] + 1e-3).all())
    assert bool(((r["amortization_gap"] - r["amortization_gap_exact"]).abs() < 4 * se).all())
    total = r["approximation_gap"] + r["amortization_gap"]
    assert torch.allclose(total, r["inference_gap"])
    # the optimal encoder: nothing left to gain per point
    good = p.to_linear_vae(optimal_encoder=True)
    r = amortization_gap(good, x, steps=300, lr=0.01, num_samples=4000)
    assert bool((r["amortization_gap_exact"].abs() < 0.01).all()), r["amortization_gap_exact"]
    assert bool(((r["approximation_gap_exact"] - floor).abs() < 0.01).all())


def test_lbfgs_reaches_the_meanfield_floor_and_reports_gradient():
    p = PPCA.example(5, 2, correlation=0.8, sigma=0.5)
    x = p.sample(6, seed=2)
    r = amortization_gap(p.to_linear_vae(), x, num_samples=500)  # default: L-BFGS
    assert r["optimizer"] == "lbfgs" and r["converged"] is True
    assert bool((r["grad_norm"] < 1e-3).all()), r["grad_norm"]
    excess = r["approximation_gap_exact"] - p.meanfield_floor()
    assert bool((excess.abs() < 2e-3).all()), excess
    assert bool((r["approximation_gap_stderr"] > 0).all())
