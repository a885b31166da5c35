"""Every check on a Pyro pair written by a user, not built by pyrovae: latent sites of
any names and number, found from a trace (issue "Any Pyro model, any latent structure")."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.posterior import as_target, elbo, gap_split, iwae, ravel, unravel
from pyrovae.posterior.ais import ais
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.sbc import sbc

F64 = torch.float64


class TwoLayerGaussian:
    """top ~ N(0, I); bottom | top ~ N(A top + b, D1); pixels | bottom ~ N(W bottom + c, D0),
    written as a plain Pyro model/guide pair; log p(x) and p(top, bottom | x) in closed form."""

    def __init__(self, k_bottom: int, k_top: int, d: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)

        def r(*s):
            return torch.randn(*s, generator=g, dtype=F64)

        self.kb, self.kt, self.d = k_bottom, k_top, d
        self.A, self.b = r(k_bottom, k_top) / math.sqrt(k_top), 0.5 * r(k_bottom)
        self.D1 = 0.3 + torch.rand(k_bottom, generator=g, dtype=F64)
        self.W, self.c = r(d, k_bottom) / math.sqrt(k_bottom), 0.5 * r(d)
        self.D0 = 0.2 + 0.3 * torch.rand(d, generator=g, dtype=F64)
        # the joint Gaussian of u = [top, bottom] and x
        cov_b = self.A @ self.A.T + torch.diag(self.D1)
        self.mu_u = torch.cat([torch.zeros(k_top, dtype=F64), self.b])
        self.mu_x = self.W @ self.b + self.c
        s_uu = torch.zeros(k_top + k_bottom, k_top + k_bottom, dtype=F64)
        s_uu[:k_top, :k_top] = torch.eye(k_top, dtype=F64)
        s_uu[:k_top, k_top:] = self.A.T
        s_uu[k_top:, :k_top] = self.A
        s_uu[k_top:, k_top:] = cov_b
        self.s_xx = self.W @ cov_b @ self.W.T + torch.diag(self.D0)
        self.s_ux = torch.cat([self.A.T @ self.W.T, cov_b @ self.W.T])
        gain = self.s_ux @ torch.linalg.inv(self.s_xx)
        self.gain = gain
        self.post_cov = s_uu - gain @ self.s_ux.T

    def model(self, x):
        with pyro.plate("points", x.shape[0]):
            top = pyro.sample("top", dist.Normal(torch.zeros(self.kt, dtype=F64), 1.0).to_event(1))
            bottom = pyro.sample(
                "bottom", dist.Normal(top @ self.A.T + self.b, self.D1.sqrt()).to_event(1))
            pyro.sample("pixels", dist.Normal(bottom @ self.W.T + self.c,
                                              self.D0.sqrt()).to_event(1), obs=x)

    def guide(self, x, widen: float = 1.0):
        m = self.mu_u + (x - self.mu_x) @ self.gain.T
        s = widen * self.post_cov.diagonal().sqrt()
        with pyro.plate("points", x.shape[0]):
            pyro.sample("top", dist.Normal(m[:, : self.kt], s[: self.kt]).to_event(1))
            pyro.sample("bottom", dist.Normal(m[:, self.kt:], s[self.kt:]).to_event(1))

    def log_marginal(self, x):
        return dist.MultivariateNormal(self.mu_x, self.s_xx).log_prob(x)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(n, self.d, generator=g, dtype=F64)
        return self.mu_x + eps @ torch.linalg.cholesky(self.s_xx).T


def test_sites_are_found_from_a_trace_in_order():
    p = TwoLayerGaussian(5, 3, 12)
    x = p.sample(4, seed=1)
    t = as_target(p.model, p.guide, example=x)
    assert list(t.sites) == ["top", "bottom"]
    assert [s.event_shape for s in t.sites.values()] == [(3,), (5,)]
    assert t.latent_dim == 8
    assert t.dimension_labels()[:4] == ["top[0]", "top[1]", "top[2]", "bottom[0]"]
    z, lq = t.sample_guide(x, 7)
    assert z.shape == (7, 4, 8) and lq.shape == (7, 4)
    # ravel / unravel are inverse, and the guide's log-density agrees with itself
    parts = unravel(z, t.sites)
    assert parts["bottom"].shape == (7, 4, 5)
    assert torch.equal(ravel(parts, t.sites), z)
    assert torch.allclose(t.guide_log_prob(x, z), lq)


@pytest.mark.parametrize("sizes", [(5, 3), (20, 10)])
def test_two_latent_sites_against_the_closed_form(sizes):
    kb, kt = sizes
    p = TwoLayerGaussian(kb, kt, 2 * kb + 2, seed=kb)
    x = p.sample(12, seed=2)
    exact = p.log_marginal(x)
    t = as_target(p.model, lambda x: p.guide(x, widen=1.2), example=x)
    torch.manual_seed(0)
    e = elbo(t, x, num_samples=2000)
    w = iwae(t, x, num_samples=2000)
    assert bool((w.value <= exact + 4 * w.stderr + 1e-6).all()), (w.value, exact)
    assert bool((e.value <= w.value + 4 * e.stderr).all())
    r = ais(t, x, num_steps=300, num_chains=64, seed=0)
    err = r.log_px.double() - exact
    # the convention of the pPCA AIS tests: the mean error per point within 0.05 nats,
    # each point within its Monte Carlo error
    assert abs(float(err.mean())) < 0.05, (err, r.stderr)
    assert bool((err.abs() < 4 * r.stderr + 0.05).all()), (err, r.stderr)


def test_a_guide_that_misses_a_site_is_refused():
    p = TwoLayerGaussian(5, 3, 12)
    x = p.sample(3, seed=1)

    def partial(x):
        with pyro.plate("points", x.shape[0]):
            pyro.sample("top", dist.Normal(torch.zeros(3, dtype=F64), 1.0).to_event(1))

    t = as_target(p.model, partial, example=x)
    with pytest.raises(PyrovaeError, match=r"missing \['bottom'\]"):
        t.sample_guide(x, 2)


def test_a_global_latent_is_refused_with_a_clear_error():
    def model(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(0.0, scale), obs=x)

    with pytest.raises(PyrovaeError, match=r"'scale'.*one value per data point"):
        as_target(model, None, example=torch.zeros(4))


def test_a_discrete_site_is_refused_by_the_vector_checks():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(torch.ones(3) / 3))
            pyro.sample("obs", dist.Normal(c.float(), 1.0), obs=x)

    t = as_target(model, None, example=torch.zeros(4))
    assert t.sites["c"].discrete and t.sites["c"].cardinality == 3
    with pytest.raises(PyrovaeError, match="'c' is discrete"):
        ais(t, torch.zeros(4), start="prior", num_steps=3, num_chains=2)


# --------------------------------------------------------------------------------------
# Pyro's tutorial VAE, written as Pyro's examples/vae/vae.py writes it

class Encoder(nn.Module):
    def __init__(self, z_dim: int, hidden: int, d: int) -> None:
        super().__init__()
        self.d = d
        self.fc1, self.fc21, self.fc22 = nn.Linear(d, hidden), nn.Linear(hidden, z_dim), \
            nn.Linear(hidden, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x.reshape(-1, self.d)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, z_dim: int, hidden: int, d: int) -> None:
        super().__init__()
        self.fc1, self.fc21 = nn.Linear(z_dim, hidden), nn.Linear(hidden, d)
        self.softplus, self.sigmoid = nn.Softplus(), nn.Sigmoid()

    def forward(self, z):
        return self.sigmoid(self.fc21(self.softplus(self.fc1(z))))


class TutorialVAE(nn.Module):
    def __init__(self, z_dim: int = 3, hidden: int = 64, d: int = 64) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(z_dim, hidden, d), Decoder(z_dim, hidden, d)
        self.z_dim, self.d = z_dim, d

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                        obs=x.reshape(-1, self.d))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


@pytest.fixture(scope="module")
def tutorial_vae():
    from pyrovae.data.datasets import load_dataset

    x = (load_dataset("digits").flat[:400] > 0.5).float()
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = TutorialVAE()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}),
                         pyro.infer.Trace_ELBO())
    for _ in range(150):
        svi.step(x)
    return vae, x


def test_pyros_tutorial_vae_is_checked_end_to_end(tutorial_vae):
    vae, data = tutorial_vae
    x = data[:6]
    t = as_target(vae.model, vae.guide, example=x)
    assert list(t.sites) == ["latent"] and t.latent_dim == 3
    torch.manual_seed(1)
    e = elbo(t, x, num_samples=1000)
    w = iwae(t, x, num_samples=1000)
    r = ais(t, x, num_steps=200, num_chains=16, seed=0)
    # ELBO <= IWAE <= AIS within noise (means over the points)
    assert float(e.value.mean()) <= float(w.value.mean()) + 0.05
    se = float((w.stderr**2 + r.stderr.double() ** 2).sum().sqrt()) / len(x)
    assert float(w.value.mean()) <= float(r.log_px.mean()) + 4 * se + 0.05
    # BDMC on data simulated from the user's own model (poutine.uncondition)
    b = bdmc(t, 12, num_steps=100, num_chains=16)
    assert b.lower.shape == (12,)
    # the bounds in order (in expectation: the mean over the simulated points)
    assert float((b.lower - b.upper).mean()) < 0.05, (b.lower, b.upper)
    # the gap split at the best per-point Gaussian, around the AIS log p(x)
    g = gap_split(t, x, log_px=r.estimate(), steps=150, num_samples=500)
    total = g["approximation_gap"] + g["amortization_gap"]
    assert torch.allclose(total, g["inference_gap"].to(total.dtype))
    assert float(g["inference_gap"].mean()) > 0
    # SBC of the guide on the user's model: ranks per latent dimension
    s = sbc(t, num_sims=40, num_draws=9, seed=0)
    assert s.ranks.shape == (40, 3) and s.ranks.max() <= 9
    assert s.labels == ["latent[0]", "latent[1]", "latent[2]"]
    assert set(s.failed_by_site()) == {"latent"}


def test_simulate_draws_from_the_users_model(tutorial_vae):
    vae, data = tutorial_vae
    t = as_target(vae.model, vae.guide, example=data[:2])
    torch.manual_seed(0)
    z, x = t.simulate(5)
    assert z.shape == (5, 3) and x.shape == (5, 64)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(PyrovaeError, match="example"):
        as_target(vae.model, vae.guide).simulate(3)


def test_collapse_diagnostics_per_site_on_a_users_pair():
    from pyrovae.posterior.collapse import collapse_diagnostics

    p = TwoLayerGaussian(5, 3, 12, seed=3)
    x = p.sample(64, seed=7)
    t = as_target(p.model, p.guide, example=x)
    torch.manual_seed(0)
    c = collapse_diagnostics(t, x, num_samples=32)
    assert c["latent_dim"] == 8 and set(c["active_units_per_site"]) == {"top", "bottom"}
    assert sum(c["active_units_per_site"].values()) == c["active_units"]
    # the KL split per site sums to the rate (the same draws)
    assert sum(c["kl_per_site"].values()) == pytest.approx(c["rate"], rel=1e-6)
    assert c["kl_per_site"]["top"] > 0 and c["kl_per_site"]["bottom"] > 0
    assert 0 < c["mutual_information"] <= c["mi_max"] + 1e-6
    assert c["dimension_labels"][0] == "top[0]"
    # the rate plus distortion is the negative ELBO, against the ELBO estimator
    e = elbo(t, x, num_samples=2000)
    assert -c["rate"] - c["distortion"] == pytest.approx(float(e.value.mean()), abs=0.3)


def test_sbc_passes_for_the_exact_posterior_and_fails_per_site_for_a_wrong_one():
    p = TwoLayerGaussian(2, 1, 4, seed=4)

    def exact_guide(x):  # the exact joint posterior, factorised top then bottom | top
        m = p.mu_u + (x - p.mu_x) @ p.gain.T
        c = p.post_cov
        with pyro.plate("points", x.shape[0]):
            top = pyro.sample("top", dist.Normal(m[:, :1], c[0, 0].sqrt()).to_event(1))
            k = c[1:, :1] / c[0, 0]
            cond = c[1:, 1:] - k @ c[:1, 1:]
            loc = m[:, 1:] + (top - m[:, :1]) @ k.T
            pyro.sample("bottom", dist.MultivariateNormal(loc, cond))

    x0 = p.sample(2, seed=0)
    good = sbc(as_target(p.model, exact_guide, example=x0), num_sims=300, num_draws=19,
               seed=1)
    assert good.passed, good.p_value

    def wrong_guide(x):  # the top site's posterior scale halved
        m = p.mu_u + (x - p.mu_x) @ p.gain.T
        s = p.post_cov.diagonal().sqrt()
        with pyro.plate("points", x.shape[0]):
            pyro.sample("top", dist.Normal(m[:, :1], 0.3 * s[:1]).to_event(1))
            pyro.sample("bottom", dist.Normal(m[:, 1:], s[1:]).to_event(1))

    bad = sbc(as_target(p.model, wrong_guide, example=x0), num_sims=300, num_draws=19, seed=1)
    # only the top site fails: the bottom's marginals are exact (its ranks are per dimension)
    assert bad.failed_by_site() == {"top": [0], "bottom": []}
