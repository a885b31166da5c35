"""Two-round (frozen-kernel) AIS and BDMC, and the budget chosen by the BDMC width."""

from __future__ import annotations

import math

import pytest
import torch

import pyrovae
from pyrovae.model.guides import MIN_SCALE
from pyrovae.posterior.ais import ais, frozen_seed
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.certified import certified_ais
from pyrovae.toy import PPCA


def _ppca_vae(k: int, d: int, scale: float):
    """pPCA and a linear VAE whose guide has the mean-field optimal means and ``scale``
    times the optimal standard deviations (< 1: overconfident, a poor AIS start)."""
    toy = PPCA.example(data_dim=d, latent_dim=k, sigma=0.5, seed=1, correlation=0.3)
    vae = toy.to_linear_vae(optimal_encoder=True)
    with torch.no_grad():
        s = scale * toy.posterior_precision.diagonal().rsqrt() - MIN_SCALE
        vae.encoder[0].bias[k:] = s + torch.log(-torch.expm1(-s))  # softplus⁻¹
    return toy, vae


def test_frozen_runs_a_fresh_chain_with_the_first_runs_kernels():
    toy, vae = _ppca_vae(3, 6, 1.0)
    x = toy.sample(5, seed=0)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = ais(vae, x, num_steps=12, num_chains=4, seed=3)
    f = ais(vae, x, num_steps=12, num_chains=4, seed=3, frozen=True)
    assert torch.equal(torch.get_rng_state(), before)
    assert first.mode == "adaptive" and f.mode == "frozen"
    assert f.settings["adapt_seed"] == 3 and f.settings["seed"] == frozen_seed(3) != 3
    assert f.estimate().method.startswith("ais-frozen[")
    # the kernels are the adaptation run's, the draws are new
    assert torch.equal(f.step_size, first.step_size)
    assert torch.equal(f.inv_mass, first.inv_mass)
    assert not torch.equal(f.log_weights, first.log_weights)
    # the same as running the second round by hand with those kernels
    by_hand = ais(vae, x, num_steps=12, num_chains=4, seed=frozen_seed(3),
                  step_sizes=first.step_size, inv_mass=first.inv_mass)
    assert by_hand.mode == "fixed" and torch.equal(by_hand.log_weights, f.log_weights)
    # reproducible
    g = ais(vae, x, num_steps=12, num_chains=4, seed=3, frozen=True)
    assert torch.equal(g.log_weights, f.log_weights)
    assert f.as_dict()["mode"] == "frozen"


def test_frozen_bad_arguments():
    toy, vae = _ppca_vae(2, 4, 1.0)
    x = toy.sample(3)
    with pytest.raises(pyrovae.PyrovaeError, match="frozen"):
        ais(vae, x, num_steps=5, frozen=True, step_sizes=torch.ones(6, 3))
    with pytest.raises(pyrovae.PyrovaeError, match="forward"):
        ais(vae, x, num_steps=5, frozen=True, reverse=True, init_z=torch.zeros(3, 2))
    with pytest.raises(pyrovae.PyrovaeError, match=r"step_sizes: expected shape \(6, 3\)"):
        ais(vae, x, num_steps=5, step_sizes=torch.ones(5, 3))
    with pytest.raises(pyrovae.PyrovaeError, match="inv_mass"):
        ais(vae, x, num_steps=5, inv_mass=torch.ones(2, 2))


def test_frozen_ais_is_unbiased_in_expectation_on_ppca():
    """E[w] = p(x) for fixed kernels: over 64 seeds × 8 points, the mean of the
    estimated ratio p̂(x)/p(x) = mean_c w_c / p(x) is 1 within 3 standard errors.

    At T = 3 and C = 2 the budget is far too small, so log p̂ is clearly low (Jensen;
    the test would not see a wrong weight otherwise) while the mean of p̂ is not.  The
    guide is 1.5× wider than the mean-field optimum: the start then covers the
    posterior, the weights are bounded and the ratio has a finite variance, so its
    standard error means what it says (from the prior or a narrow guide the weights are
    heavy-tailed and the sample mean is low with high probability).  3 s.e. is the
    tolerance: two-sided, 0.3% false alarms for a normal mean, and the seeds are fixed.
    """
    toy, vae = _ppca_vae(5, 10, 1.5)
    x = toy.sample(8, seed=2)
    exact = toy.log_marginal(x)
    err = torch.stack([ais(vae, x, num_steps=3, num_chains=2, seed=s, frozen=True).log_px
                       for s in range(64)]) - exact  # (seeds, points)
    n = err.numel()
    ratio = err.exp()
    r, r_se = float(ratio.mean()), float(ratio.std() / math.sqrt(n))
    assert abs(r - 1) <= 3 * r_se, (r, r_se)
    assert r_se < 0.06  # the test has power: a 10% bias in p̂ would fail it
    # per point: the log of the mean weight over seeds (delta method s.e.) is exact
    per_point = torch.logsumexp(err, 0) - math.log(err.shape[0])
    pp_se = ratio.std(0) / ratio.mean(0) / math.sqrt(err.shape[0])
    assert bool((per_point.abs() <= 4 * pp_se).all()), (per_point, pp_se)
    # a stochastic lower bound: log p̂ never exceeds exact by more than noise, and at
    # this budget it is clearly below
    lo, lo_se = float(err.mean()), float(err.std() / math.sqrt(n))
    assert lo <= 3 * lo_se and lo < -5 * lo_se, (lo, lo_se)


def test_bdmc_frozen_shares_the_frozen_schedule():
    toy, vae = _ppca_vae(3, 6, 1.0)
    r = bdmc(vae, 6, num_steps=20, num_chains=8, frozen=True)
    assert r.mode == "frozen" and r.forward.mode == "frozen" and r.reverse.mode == "fixed"
    assert torch.equal(r.reverse.step_size, r.forward.step_size)
    assert torch.equal(r.reverse.inv_mass, r.forward.inv_mass)
    exact = toy.log_marginal(r.x)
    assert float((r.lower - exact).mean()) < 0.05 and float((r.upper - exact).mean()) > -0.05
    d = r.as_dict()
    assert d["mode"] == "frozen" and d["mean_width_stderr"] > 0


def test_budget_doubles_until_the_bdmc_width_is_under_the_target():
    toy, vae = _ppca_vae(5, 10, 0.3)  # an overconfident guide: AIS from it needs large T
    x = toy.sample(4, seed=2)
    c = certified_ais(vae, x, num_steps=10, target_width=0.5, num_chains=16, bdmc_points=16)
    steps = [h["num_steps"] for h in c.history]
    widths = [h["width"] for h in c.history]
    ses = [h["width_stderr"] for h in c.history]
    upper = [w + 2 * e for w, e in zip(widths, ses, strict=True)]  # confidence_z = 2
    assert steps == [10 * 2**i for i in range(len(steps))] and len(steps) >= 3
    # the width falls as T doubles: never up by more than noise (each width is a mean
    # over 16 simulated points, ± its s.e.), and down overall by far more than noise
    for (w0, e0), (w1, e1) in zip(zip(widths, ses), zip(widths[1:], ses[1:]), strict=False):
        assert w1 < w0 + 2 * math.hypot(e0, e1), (widths, ses)
    assert widths[0] - widths[-1] > 3 * math.hypot(ses[0], ses[-1]), (widths, ses)
    assert widths[0] > 1.0 and all(u > 0.5 for u in upper[:-1]) and upper[-1] <= 0.5
    assert c.met and c.stopped == "target" and c.num_steps == steps[-1]
    assert c.ais.mode == "frozen" and c.bdmc.mode == "frozen"
    assert c.ais.settings["num_steps"] == c.num_steps and c.seconds >= c.search_seconds
    err = c.ais.log_px - toy.log_marginal(x)
    assert abs(float(err.mean())) < 0.5 + 3 * c.mean()[1], err
    line = c.line()
    assert line.startswith(f"certified: AIS (frozen kernels, T={c.num_steps}, C=16)")
    assert "BDMC width" in line and "met" in line
    assert c.as_dict()["line"] == line


def test_budget_stops_at_the_time_limit_or_max_steps_and_says_so():
    toy, vae = _ppca_vae(5, 10, 0.2)
    x = toy.sample(2, seed=2)
    c = certified_ais(vae, x, num_steps=10, target_width=0.01, time_limit_s=1e-3,
                      num_chains=8, bdmc_points=8)
    assert len(c.history) == 1 and c.num_steps == 10
    assert not c.met and c.stopped == "time_limit" and "stopped by time_limit" in c.line()
    c = certified_ais(vae, x, num_steps=10, max_steps=25, target_width=0.01, num_chains=8,
                      bdmc_points=8)
    assert [h["num_steps"] for h in c.history] == [10, 20]
    assert not c.met and c.stopped == "max_steps"


@pytest.mark.parametrize("kw,match", [
    ({"target_width": 0.0}, "target_width"), ({"num_steps": 0}, "num_steps"),
    ({"max_steps": 5}, "max_steps"), ({"time_limit_s": -1.0}, "time_limit_s"),
    ({"bdmc_points": 0}, "bdmc_points"), ({"confidence_z": -1.0}, "confidence_z"),
])
def test_budget_bad_arguments(kw, match):
    toy, vae = _ppca_vae(2, 4, 1.0)
    with pytest.raises(pyrovae.PyrovaeError, match=match):
        certified_ais(vae, toy.sample(2), **({"num_steps": 10} | kw))
