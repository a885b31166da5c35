"""The Gaussian MLE of "The Intuitive VAE": closed form against gradient ascent in Pyro."""

from __future__ import annotations

import numpy as np
import torch

from pyrovae.toy.gaussian import average_log_likelihood, closed_form_mle, fit_mle_pyro


def test_closed_form_is_numpy_mean_and_std():
    x = 3.0 + 2.0 * torch.randn(300, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)
    fit = closed_form_mle(x)
    assert fit.mu == np.mean(x.numpy())
    assert abs(fit.sigma - np.std(x.numpy())) < 1e-12


def test_pyro_optimisation_finds_the_closed_form():
    x = -1.0 + 0.7 * torch.randn(500, generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64)
    closed = closed_form_mle(x)
    fitted = fit_mle_pyro(x, steps=1500, lr=0.1)
    assert abs(fitted.mu - closed.mu) < 1e-3
    assert abs(fitted.sigma - closed.sigma) < 1e-3
    assert fitted.log_likelihood <= closed.log_likelihood + 1e-12
    assert closed.log_likelihood - fitted.log_likelihood < 1e-6
    # the maximum beats nearby values
    for dm, ds in ((0.05, 0), (0, 0.05), (-0.05, -0.05)):
        assert average_log_likelihood(x, closed.mu + dm, closed.sigma + ds) < closed.log_likelihood
