"""A linear VAE trained with SVI on pPCA data reaches the closed-form maximum
likelihood (within 0.05 nats per point) and its gap reaches the mean-field floor."""

from __future__ import annotations

import torch

import pyrovae
from pyrovae.experiments.theta_fixed import ppca_exact, ppca_floor
from pyrovae.posterior.exact import elbo
from pyrovae.toy import PPCA


def test_linear_vae_reaches_ppca_mle_and_floor():
    torch.manual_seed(0)
    p = PPCA.example(5, 2, correlation=0.8, sigma=0.5)
    x = p.sample(2000, seed=0).float()
    best = PPCA.max_log_likelihood(x.double(), 2)
    vae = pyrovae.VAE(5, 2, encoder=[],
                      likelihood={"family": "gaussian", "sigma": "shared", "sigma_init": 1.0})
    pyrovae.fit(vae, x, epochs=150, batch_size=200, lr=1e-2, seed=0, progress=False,
                eval_every=None)
    pyrovae.fit(vae, x, epochs=50, batch_size=200, lr=2e-3, seed=1, progress=False,
                eval_every=None)
    lp, kl = ppca_exact(vae, x)
    learned = float(lp.mean())
    assert learned <= best + 1e-6  # nothing beats the closed form
    assert best - learned < 0.05, (best, learned)
    # the gap log p(x) − ELBO (Monte Carlo) reaches the floor of the learned θ
    gap = float((lp - elbo(vae, x, num_samples=200).value).mean())
    floor = ppca_floor(vae)
    assert abs(gap - float(kl.mean())) < 0.01
    assert abs(gap - floor) < 0.02, (gap, floor)
