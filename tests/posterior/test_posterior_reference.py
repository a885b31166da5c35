"""NUTS reference samples, exported with the guide's to ArviZ, moments compared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.posterior.local import LocalGuide
from pyrovae.posterior.reference import reference_check, summary
from pyrovae.posterior.target import as_target
from pyrovae.toy import PPCA


@pytest.mark.slow
def test_nuts_matches_exact_posterior_and_flags_a_bad_guide():
    torch.manual_seed(0)
    p = PPCA.example(5, 2, correlation=0.8, sigma=0.5)
    x = p.sample(2, seed=1)
    post = p.posterior(x)
    guide = LocalGuide(2, 2, loc=post.mean + 1.0, scale=torch.full((2, 2), 0.3))
    idata, m = reference_check(as_target(p, guide), x, num_samples=400, warmup=300,
                               num_chains=2)
    assert set(idata.groups()) >= {"posterior", "guide"}
    assert idata.posterior["z"].shape == (2, 400, 2, 2)
    assert m["max_rhat"] < 1.05 and m["min_ess"] > 100
    exact_mean, exact_sd = post.mean.numpy(), post.stddev.numpy()
    se = exact_sd / np.sqrt(m["ess_bulk"])
    assert np.all(np.abs(m["nuts_mean"] - exact_mean) < 5 * se)
    assert np.all(np.abs(m["nuts_sd"] / exact_sd - 1) < 0.15)
    # the guide was shifted by +1 and narrowed: the comparison shows it
    assert np.all(m["mean_diff_in_sd"] > 1.0)
    assert np.all(m["sd_ratio"] < 0.7)
    assert {"r_hat", "ess_bulk"} <= set(summary(idata).columns)
