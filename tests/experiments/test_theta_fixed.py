"""The experiment of "The Intuitive VAE": θ fixed, maximise the ELBO over φ; the KL falls
to the floor."""

from __future__ import annotations

import pytest
import torch

from pyrovae.experiments.theta_fixed import ppca_exact, theta_fixed
from pyrovae.toy import PPCA


@pytest.mark.parametrize("kind", ["correlated", "orthogonal"])
def test_theta_fixed_on_ppca_reaches_the_floor(kind):
    p = (PPCA.example(5, 2, correlation=0.8, sigma=0.5) if kind == "correlated"
         else PPCA.example(5, 2, orthogonal=True, sigma=0.5))
    x = p.sample(128, seed=1)
    vae = p.to_linear_vae()
    theta_before = [t.clone() for t in vae.model_parameters()]
    res = theta_fixed(vae, x, steps=1500, lr=0.05, record_every=50, seed=0)
    # θ did not move, so log p(x) is a flat line
    assert all(torch.equal(a, b) for a, b in zip(theta_before, vae.model_parameters(),
                                                 strict=True))
    assert max(res.log_px) - min(res.log_px) == 0.0
    assert res.floor == pytest.approx(p.meanfield_floor(), abs=1e-6)
    if kind == "correlated":
        assert res.floor > 0.2
    else:
        assert abs(res.floor) < 1e-9
    assert res.kl[0] > res.floor + 1.0  # it starts far from the floor
    assert abs(res.final_kl - res.floor) < 0.01
    # the identity at the end, within Monte Carlo error of the ELBO estimate
    assert abs(res.final_residual) < 4 * res.elbo_stderr[-1] + 1e-9
    _, kl = ppca_exact(vae, x)
    assert float(kl.mean()) == pytest.approx(res.final_kl)


def test_init_seed_makes_the_start_independent_of_the_global_rng():
    import torch

    from pyrovae.experiments.theta_fixed import theta_fixed
    from pyrovae.toy import PPCA

    p = PPCA.example(5, 2, correlation=0.8, sigma=0.5)
    x = p.sample(32, seed=1)
    starts = []
    for state in (1, 2):
        torch.manual_seed(state)  # a different random state when the VAE is built
        vae = p.to_linear_vae()
        starts.append(theta_fixed(vae, x, steps=1, record_every=1, init_seed=0).kl[0])
    assert starts[0] == starts[1]
