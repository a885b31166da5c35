"""KL: the closed form where torch registers one, Monte Carlo otherwise, by choice."""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from pyrovae import PyrovaeError
from pyrovae.estimators.kl import closed_form_kl_or_none, kl_term, mc_kl


def _q():
    loc = torch.tensor([[0.5, -1.0], [0.0, 2.0], [1.0, 1.0]])
    return dist.Normal(loc, torch.full_like(loc, 0.7)).to_event(1)


def test_closed_form_where_registered_else_none():
    q, p = _q(), dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    kl = closed_form_kl_or_none(q, p)
    assert kl.shape == (3,)
    assert torch.allclose(kl, kl_divergence(q, p.expand((3,))))
    t = dist.StudentT(3.0, torch.zeros(2), torch.ones(2)).to_event(1)
    assert closed_form_kl_or_none(q, t) is None


def test_kl_term_kinds():
    q, p = _q(), dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    torch.manual_seed(0)
    z = q.sample((20000,))
    exact = kl_divergence(q, p.expand((3,)))
    auto, closed = kl_term(q, p, z, "auto")
    assert closed and torch.equal(auto, exact)
    mc, closed = kl_term(q, p, z, "mc")
    assert not closed and torch.allclose(mc, exact, atol=0.05) and not torch.equal(mc, exact)
    assert torch.allclose(mc, mc_kl(q, p, z))
    t = dist.StudentT(3.0, torch.zeros(2), torch.ones(2)).to_event(1)
    fallback, closed = kl_term(q, t, z, "auto")
    assert not closed and fallback.shape == (3,)
    with pytest.raises(PyrovaeError, match="kl: 'analytic' needs a closed-form"):
        kl_term(q, t, z, "analytic")
    with pytest.raises(PyrovaeError, match="kl: expected one of"):
        kl_term(q, p, z, "exact")
