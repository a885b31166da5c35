"""Posterior-collapse diagnostics against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import torch

import pyrovae
from pyrovae.posterior.collapse import collapse_callback, collapse_diagnostics
from pyrovae.toy import PPCA


def test_strong_beta_has_fewer_active_units_matching_numpy():
    from pyrovae.data.datasets import load_dataset

    x = load_dataset("digits").x[:300]
    counts = []
    for beta in (1.0, 8.0):
        torch.manual_seed(0)  # the same initial network for both β
        vae = pyrovae.VAE(64, 6, encoder=[32], decoder=[32])
        h = pyrovae.fit(vae, x, epochs=40, batch_size=50, lr=5e-3, seed=0, progress=False,
                        kl_weight=beta, callbacks=[collapse_callback(x, every=20)])
        d = collapse_diagnostics(vae, x)
        with torch.no_grad():  # independent: the encoder's means, numpy's variance
            means = vae.encoder(x.flatten(1))[:, :6].numpy().astype(np.float64)
        activity = means.var(0, ddof=1)
        assert np.allclose(d["activity"], activity, rtol=1e-4, atol=1e-7)
        assert d["active_units"] == int((activity > 0.01).sum())
        logged = [r["epoch"] for r in h.records if "collapse" in r]
        assert logged == [20, 40]
        assert h.records[-1]["collapse"]["active_units"] == d["active_units"]
        counts.append(d["active_units"])
        assert 0 <= d["mutual_information"] <= d["mi_max"] + 1e-6
        assert abs(sum(d["kl_per_dim"]) - d["rate"]) < 1e-4
    assert counts[1] < counts[0] <= 6 and counts[0] >= 3, counts


def test_rate_distortion_mi_on_ppca_closed_forms():
    toy = PPCA.example(6, 2, sigma=0.5, orthogonal=True)
    vae = toy.to_linear_vae(optimal_encoder=True)  # q is the exact posterior here
    x = toy.sample(400, seed=1)
    d = collapse_diagnostics(vae, x, num_samples=256, mi_points=400)
    post = toy.posterior(x)
    cov = post.covariance_matrix[0]
    # rate: KL(N(m, S) ‖ N(0, I)) averaged, in closed form
    m = post.mean
    rate = 0.5 * ((m ** 2).sum(-1) + cov.trace() - 2 - torch.logdet(cov)).mean()
    assert math.isclose(d["rate"], float(rate), rel_tol=1e-6)
    # -ELBO = rate + distortion, and ELBO ≤ log p(x) with equality for the exact posterior
    assert abs(d["elbo"] - float(toy.log_marginal(x).mean())) < 0.1
    assert 0 < d["mutual_information"] <= d["rate"] + 0.05
