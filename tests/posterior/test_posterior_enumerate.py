"""The checks with a discrete latent summed out (pyrovae.posterior.enumerate), against the
closed forms of the mixture of pPCAs."""

from __future__ import annotations

import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.classification import classification_metrics
from pyrovae.posterior import enumerate as E
from pyrovae.posterior.ais import ais
from pyrovae.posterior.exact import Estimate
from pyrovae.posterior.target import PyroTarget, as_target
from pyrovae.toy.mixture import MixturePPCA


@pytest.fixture(scope="module")
def toy() -> MixturePPCA:
    return MixturePPCA.example()


@pytest.fixture(scope="module")
def data(toy):
    return toy.simulate(8, seed=1)


def targets(toy, variant="exact"):
    g = toy.guide(variant)
    return [as_target(toy.class_toy(c), g.class_guide(c)) for c in range(toy.num_classes)], g


def test_exact_classes_give_the_closed_form_and_the_class_posterior(toy, data):
    _, _, x = data
    ts, _ = targets(toy)
    est = E.enumerated_log_marginal(ts, toy.log_prior_y(), x, method="exact")
    assert torch.allclose(est.value, toy.log_marginal(x), atol=1e-10)
    assert torch.allclose(est.log_class_posterior, toy.log_class_posterior(x), atol=1e-10)
    assert float(est.stderr.max()) == 0.0
    # any per-class estimator: a callable returning tensors (exact) or Estimates
    lpy = toy.class_log_likelihoods(x)
    via = E.enumerate_log_marginal(lambda y: lpy[y], toy.log_prior_y())
    assert torch.allclose(via.value, toy.log_marginal(x), atol=1e-10)
    noisy = E.enumerate_log_marginal(
        lambda y: Estimate(lpy[y], torch.full_like(lpy[y], 0.1)), toy.log_prior_y())
    # delta method: se = 0.1 · sqrt(Σ_y p(y|x)²) ∈ [0.1/sqrt(K), 0.1]
    r2 = toy.log_class_posterior(x).exp().pow(2).sum(0)
    assert torch.allclose(noisy.stderr, 0.1 * r2.sqrt(), atol=1e-12)


@pytest.mark.slow
def test_enumeration_plus_ais_is_within_005_nats_of_the_closed_form(toy, data):
    _, _, x = data
    ts, _ = targets(toy, "wide_z")  # AIS from a guide that is not the posterior
    est = E.enumerated_log_marginal(ts, toy.log_prior_y(), x, method="ais", num_steps=600,
                                    num_chains=64, seed=3)
    err = (est.value - toy.log_marginal(x)).abs()
    assert float(err.max()) < 0.05, err
    assert "ais" in est.method


def test_enumeration_plus_iwae_brackets_the_closed_form(toy, data):
    _, _, x = data
    exact = toy.log_marginal(x)
    ts, _ = targets(toy, "wide_z")
    est = E.enumerated_log_marginal(ts, toy.log_prior_y(), x, method="iwae", num_samples=3000)
    assert float(((est.value - exact).abs() - 5 * est.stderr - 0.02).max()) < 0
    small = E.enumerated_log_marginal(ts, toy.log_prior_y(), x, method="iwae", num_samples=2)
    assert float((small.value - exact).mean()) < -0.05  # a lower bound at K = 2


@pytest.mark.parametrize("variant", ["exact", "flat_class", "sharp_class", "wide_z"])
def test_the_identity_closes_with_the_class_summed_out(toy, data, variant):
    _, _, x = data
    ts, g = targets(toy, variant)
    r = E.check_enumerated_identity(ts, toy.log_prior_y(), g.log_class_probs(x), x,
                                    num_samples=4000)
    assert bool(r["ok"].all()), r["residual"]
    assert torch.allclose(r["log_px"], toy.log_marginal(x), atol=1e-10)
    if variant == "exact":
        assert float(r["gap"].abs().max()) < 1e-8 and float(r["kl"].abs().max()) < 1e-8
    else:
        assert float(r["kl"].min()) > 0 and float(r["gap"].mean()) > 0.01
    if variant.endswith("class"):  # the z-part is exact: the whole gap is KL over y
        assert torch.allclose(r["kl"], r["kl_y"], atol=1e-10)
        assert torch.allclose(r["gap"], r["kl_y"], atol=1e-8)


@pytest.mark.parametrize("variant", ["exact", "flat_class"])
def test_traceenum_elbo_equals_the_enumerated_elbo_exactly_when_z_is_exact(toy, data, variant):
    # q(z|x,y) = p(z|x,y): ELBO_z = log p(x|y) on every draw, so both are deterministic
    _, _, x = data
    ts, g = targets(toy, variant)
    ours = E.enumerated_elbo(ts, toy.log_prior_y(), g.log_class_probs(x), x, num_samples=10)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(toy.model, config_enumerate(g), x)
    assert abs(-loss - float(ours.value.sum())) < 1e-8
    closed = E.elbo_from_classes(toy.log_prior_y(), g.log_class_probs(x),
                                 toy.class_log_likelihoods(x))
    assert torch.allclose(closed.value, ours.value, atol=1e-10)


def test_traceenum_elbo_equals_the_enumerated_elbo_in_expectation(toy, data):
    _, _, x = data
    ts, g = targets(toy, "wide_z")
    ours = E.enumerated_elbo(ts, toy.log_prior_y(), g.log_class_probs(x), x, num_samples=4000)
    n = 4000
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=n, vectorize_particles=True)
    torch.manual_seed(0)
    theirs = -elbo.loss(toy.model, config_enumerate(g), x)
    se = float(ours.stderr.pow(2).sum().sqrt())  # both have about this standard error
    assert abs(theirs - float(ours.value.sum())) < 5 * 1.5 * se
    # and the closed form: Σ_y q [log p(y) + log p(x|y) − KL_z − log q]
    r = E.check_enumerated_identity(ts, toy.log_prior_y(), g.log_class_probs(x), x,
                                    num_samples=10)
    exact_elbo = float((r["log_px"] - r["kl"]).sum())
    assert abs(theirs - exact_elbo) < 5 * 1.5 * se


@pytest.mark.parametrize("variant,passes", [("exact", True), ("flat_class", False),
                                            ("sharp_class", False)])
@pytest.mark.parametrize("kind", ["top", "classwise"])
def test_class_calibration_passes_for_the_exact_posterior_only(toy, variant, passes, kind):
    y, _, x = toy.simulate(1000, seed=7)
    probs = toy.guide(variant).log_class_probs(x).exp().T
    res = E.class_calibration(probs, y, kind=kind)
    assert res.passed is passes, (res.ece, res.threshold)
    assert 0 < res.threshold < 0.1
    assert res.as_dict()["passed"] is passes


def test_top_label_ece_agrees_with_the_classification_metrics(toy):
    y, _, x = toy.simulate(300, seed=2)
    probs = toy.guide("flat_class").log_class_probs(x).exp().T
    ours = E.expected_calibration_error(probs, y, num_bins=15)
    assert ours == pytest.approx(classification_metrics(probs, y, bins=15)["ece"], abs=1e-12)
    exact = E.expected_calibration_error(toy.log_class_posterior(x).exp().T, y, num_bins=15)
    assert ours > exact + 0.05


def _sbc(toy, variant, **kw):
    ts, g = targets(toy, variant)
    return E.enumerated_sbc(lambda n: toy.simulate(n, seed=None), g.log_class_probs, ts,
                            num_classes=toy.num_classes, num_sims=400, num_draws=49, **kw)


def test_enumerated_sbc_passes_for_the_exact_guide(toy):
    res = _sbc(toy, "exact", seed=1)
    assert res.passed, res.as_dict()["calibration"]
    assert res.ranks.labels == ["z[0]", "z[1]"] and res.ranks.ranks.shape == (400, 2)


def test_enumerated_sbc_fails_a_wrong_class_posterior_or_a_wrong_z(toy):
    flat = _sbc(toy, "flat_class", seed=1)
    assert not flat.passed and not flat.calibration.passed and flat.ranks.passed
    wide = _sbc(toy, "wide_z", seed=1)
    assert not wide.passed and wide.calibration.passed and not wide.ranks.passed


def test_the_enumerated_sbc_is_reproducible_for_a_seed(toy):
    a, b = _sbc(toy, "exact", seed=4), _sbc(toy, "exact", seed=4)
    assert (a.ranks.ranks == b.ranks.ranks).all() and a.calibration.ece == b.calibration.ece


def test_a_pyro_pair_with_a_discrete_site_reports_it_and_points_to_enumeration(toy, data):
    _, _, x = data
    t = PyroTarget(toy.model, toy.guide(), example=x)
    assert t.sites["y"].discrete and t.sites["y"].cardinality == toy.num_classes
    assert not t.sites["z"].discrete and t.sites["z"].event_shape == (2,)
    with pytest.raises(PyrovaeError, match=r"'y' is discrete \(3 values\).*posterior.enumerate"):
        t.sample_guide(x, 2)
    with pytest.raises(PyrovaeError, match="'y' is discrete"):
        ais(t, x, num_steps=2, num_chains=2)
    with pytest.raises(PyrovaeError, match=r"discrete latent site 'y'.*enumerate"):
        as_target(toy, toy.guide())


def test_bad_input_is_refused_in_one_line(toy, data):
    _, _, x = data
    ts, g = targets(toy)
    lq = g.log_class_probs(x)
    bad = [
        lambda: E.combine_classes(torch.zeros(3), torch.zeros(3, 8)),  # not normalised
        lambda: E.combine_classes(toy.log_prior_y(), torch.zeros(2, 8)),
        lambda: E.enumerated_log_marginal(ts, toy.log_prior_y(), x, method="grid"),
        lambda: E.enumerated_log_marginal(ts[:2], toy.log_prior_y(), x, method="exact"),
        lambda: E.enumerated_log_marginal(ts, toy.log_prior_y(), x, method="iwae",
                                          num_steps=3),
        lambda: E.enumerated_elbo(ts, toy.log_prior_y(), lq.T, x),
        lambda: E.enumerated_elbo(ts, toy.log_prior_y(), lq + 1, x),
        lambda: E.class_calibration(lq.exp(), torch.zeros(3)),  # (K, N) given for (N, K)
        lambda: E.class_calibration(lq.exp().T, torch.full((8,), 3)),
        lambda: E.class_calibration(lq.exp().T, torch.zeros(8, dtype=torch.long), alpha=2.0),
        lambda: E.expected_calibration_error(lq.exp().T, torch.zeros(8, dtype=torch.long),
                                             kind="pooled"),
        lambda: E.enumerated_sbc(lambda n: toy.simulate(n), g.log_class_probs, ts,
                                 num_classes=3, num_sims=5),
    ]
    for f in bad:
        with pytest.raises(PyrovaeError) as e:
            f()
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------
# any Pyro pair with a discrete site: split into one PyroTarget per value


def test_split_pair_reads_the_class_prior_and_guide_and_sums_exactly(toy, data):
    _, _, x = data
    g = toy.guide()
    sp = E.split_pair(toy.model, g, x)
    assert sp.site == "y" and sp.num_classes == 3 and sp.values.tolist() == [0, 1, 2]
    assert torch.allclose(sp.log_prior, toy.log_prior_y().unsqueeze(-1).expand(3, 8))
    assert torch.allclose(sp.log_guide, g.log_class_probs(x), atol=1e-12)
    assert torch.allclose(sp.log_guide_fn(x[:3]), g.log_class_probs(x[:3]), atol=1e-12)
    assert list(sp.targets[0].sites) == ["z"]  # the class is fixed, not a latent
    # exact q(z|x,y): every importance weight is p(x|y), the sum is the closed form
    est = E.enumerated_log_marginal(sp.targets, sp.log_prior, x, method="iwae",
                                    num_samples=20)
    assert torch.allclose(est.value, toy.log_marginal(x), atol=1e-10)
    ours = E.enumerated_elbo(sp.targets, sp.log_prior, sp.log_guide, x, num_samples=5)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(toy.model, config_enumerate(g), x)
    assert abs(-loss - float(ours.value.sum())) < 1e-8


def test_split_pair_simulates_for_sbc_and_tells_a_wrong_z(toy):
    _, _, x = toy.simulate(4, seed=0)
    for variant, ranks_pass in (("exact", True), ("wide_z", False)):
        sp = E.split_pair(toy.model, toy.guide(variant), x)
        y, z, xs = sp.simulate(5)
        assert y.shape == (5,) and z.shape == (5, 2) and xs.shape == (5, 4)
        res = E.enumerated_sbc(sp.simulate, sp.log_guide_fn, sp.targets, num_classes=3,
                               num_sims=300, num_draws=49, seed=2)
        assert res.calibration.passed and res.ranks.passed is ranks_pass


def test_split_pair_closes_the_identity_on_the_grid(toy):
    _, _, x = toy.simulate(2, seed=0)
    g = toy.guide("flat_class")
    sp = E.split_pair(toy.model, g, x)
    r = E.check_enumerated_identity(sp.targets, sp.log_prior, sp.log_guide, x,
                                    num_samples=500)
    assert bool(r["ok"].all())
    assert torch.allclose(r["log_px"], toy.log_marginal(x), atol=1e-6)
    lq = g.log_class_probs(x)
    assert torch.allclose(r["kl"], (lq.exp() * (lq - toy.log_class_posterior(x))).sum(0),
                          atol=1e-6)


def test_split_pair_refuses_a_pair_without_one_discrete_site(toy, data):
    _, _, x = data
    ppca = toy.class_toy(0)
    with pytest.raises(PyrovaeError, match="exactly one discrete latent site"):
        E.split_pair(ppca.model, None, x)
    with pytest.raises(PyrovaeError, match="'z' is not a discrete latent site"):
        E.split_pair(toy.model, toy.guide(), x, site="z")
