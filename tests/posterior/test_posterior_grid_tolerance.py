"""Grid quadrature says whether its tolerance was met, and where z = T(u) is unresolved."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import biject_to, constraints

import pyrovae
from pyrovae.quadrature import grid_posterior, unresolved_mask


def _narrow(z):  # N(0, 0.001²): far too narrow for a capped 1-D grid over ±7
    return torch.distributions.Normal(0.0, 1e-3).log_prob(z[..., 0])


def test_unmet_tolerance_warns_raises_or_is_flagged():
    with pytest.warns(UserWarning, match="exceeds tol"):
        g = grid_posterior(_narrow, 1, points=11, max_points=21, zoom=False, tol=1e-6)
    assert not g.tol_met and g.summary()["tol_met"] is False
    with pytest.raises(pyrovae.PyrovaeError, match="exceeds tol"):
        grid_posterior(_narrow, 1, points=11, max_points=21, zoom=False, tol=1e-6,
                       on_unmet="raise")
    ok = grid_posterior(lambda z: torch.distributions.Normal(0.0, 1.0).log_prob(z[..., 0]), 1)
    assert ok.tol_met and abs(ok.log_marginal) < 1e-6
    with pytest.raises(pyrovae.PyrovaeError, match="on_unmet"):
        grid_posterior(_narrow, 1, on_unmet="maybe")


def test_saturated_sigmoid_points_are_marked_not_trusted():
    t = biject_to(constraints.independent(constraints.unit_interval, 1))
    axes = [torch.linspace(-60, 60, 121, dtype=torch.float64)]
    bad = unresolved_mask(axes, t)
    u = axes[0]
    assert bool(bad[u.abs() < 25].logical_not().all())  # resolved in float64 below ~27
    assert bool(bad[u > 40].all())  # sigmoid(u) rounds to 1: log(1 - z) is meaningless
    assert not math.isnan(float(bad.sum()))
