"""ELBO terms: reconstruction − β·KL per example; the minibatch loss scales by N/B;
the stock-family kernel gives the same terms as the distribution objects."""

from __future__ import annotations

import torch

from pyrovae import VAE
from pyrovae.estimators.elbo import elbo_terms, minibatch_loss
from pyrovae.estimators.standard import standard_families, standard_loss


def _setup():
    torch.manual_seed(0)
    vae = VAE(7, 2, encoder=[8])
    x = (torch.rand(9, 7, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    return vae, x


def test_terms_per_example_and_minibatch_scaling():
    vae, x = _setup()
    torch.manual_seed(3)
    t = elbo_terms(vae, x)
    assert t.reconstruction.shape == (9,) and t.kl.shape == (9,) and t.kl_closed_form
    assert torch.allclose(t.elbo(0.5), t.reconstruction - 0.5 * t.kl)
    out = minibatch_loss(t, num_data=90, batch_size=9, kl_weight=0.5)
    assert torch.allclose(out.loss, -(t.reconstruction - 0.5 * t.kl).sum() * 10)
    assert torch.allclose(out.reconstruction, t.reconstruction.sum())


def test_standard_kernel_gives_the_distribution_terms():
    vae, x = _setup()
    assert standard_families(vae)
    for kl in ("auto", "mc"):
        for particles in (1, 3):
            torch.manual_seed(5)
            t = elbo_terms(vae, x, num_particles=particles, kl=kl)
            ref = minibatch_loss(t, num_data=30, batch_size=9, kl_weight=0.3)
            torch.manual_seed(5)
            fast = standard_loss(vae, x, num_data=30, kl_weight=0.3, num_particles=particles,
                                 analytic_kl=kl == "auto")
            for a, b in ((ref.loss, fast.loss), (ref.reconstruction, fast.reconstruction),
                         (ref.kl, fast.kl)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
