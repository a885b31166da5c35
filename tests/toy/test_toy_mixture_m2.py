"""The M2 model set to the mixture of pPCAs (shared loadings, uniform p(y)): its enumerated
bound, TraceEnum_ELBO, AIS over classes, gap split and label calibration against the
closed form."""

from __future__ import annotations

import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.enumerated import enumerated_log_weights, label_terms
from pyrovae.estimators.importance import iwae_bound
from pyrovae.posterior import enumerate as E
from pyrovae.posterior.labels import label_ais, label_gap_split, label_sbc
from pyrovae.posterior.target import VAETarget
from pyrovae.toy import MixturePPCA


@pytest.fixture(scope="module")
def toy() -> MixturePPCA:
    return MixturePPCA.example(shared_loadings=True, uniform=True)


@pytest.fixture(scope="module")
def x(toy) -> torch.Tensor:
    return toy.simulate(6, seed=1)[2]


def test_the_m2_networks_are_the_closed_forms(toy, x):
    m2 = toy.to_m2()
    y, z, _ = toy.simulate(6, seed=1)
    with torch.no_grad():
        assert torch.allclose(m2.label_posterior(x).logits.log_softmax(-1).T,
                              toy.log_class_posterior(x), atol=1e-10)
        for c in range(toy.num_classes):
            q, p = m2.encode(x, torch.full((6,), c)), toy.conditional_posterior(x, c)
            assert torch.allclose(q.mean, p.mean, atol=1e-10)
            assert torch.allclose(q.covariance_matrix, p.covariance_matrix, atol=1e-10)
        assert torch.allclose(m2.decode(z, x, y=y).log_prob(x),
                              toy.class_likelihood(y, z).log_prob(x), atol=1e-6)


def test_the_enumerated_bound_and_traceenum_are_log_px_for_the_exact_guide(toy, x):
    m2 = toy.to_m2()
    exact = toy.log_marginal(x)
    with torch.no_grad():
        t = label_terms(m2, x, None, num_particles=4, kl="auto")
        assert torch.allclose(t.elbo().double(), exact, atol=1e-6)
        loss = m2.stock_elbo().loss(m2.model, m2.guide, x)
    assert -loss == pytest.approx(float(exact.sum()), abs=1e-5)
    # a tempered classifier: the bound drops by exactly KL(q(y|x) ‖ p(y|x))
    flat = toy.to_m2(temperature=3.0)
    with torch.no_grad():
        u = label_terms(flat, x, None, num_particles=4, kl="auto").elbo().double()
    lq = toy.guide("flat_class").log_class_probs(x)
    kl_y = (lq.exp() * (lq - toy.log_class_posterior(x))).sum(0)
    assert torch.allclose(exact - u, kl_y, atol=1e-6)
    assert float(kl_y.min()) > 0


def test_label_ais_iwae_and_the_generic_enumeration_match_the_closed_form(toy, x):
    m2 = toy.to_m2()
    exact = toy.log_marginal(x)
    a = label_ais(m2, x, num_steps=20, num_chains=8)
    assert torch.allclose(a.value, exact, atol=1e-5)
    assert torch.allclose(a.log_class_posterior, toy.log_class_posterior(x), atol=1e-5)
    with torch.no_grad():
        lw, _, _ = enumerated_log_weights(m2, x, 50)
    assert torch.allclose(iwae_bound(lw.double(), 0).value, exact, atol=1e-5)
    targets = [VAETarget(m2, torch.full((6,), c)) for c in range(toy.num_classes)]
    est = E.enumerated_log_marginal(targets, m2.label_prior().logits.log_softmax(-1), x,
                                    method="iwae", num_samples=50)
    assert torch.allclose(est.value, exact, atol=1e-5)


def test_the_gap_split_puts_a_tempered_classifier_in_the_label_part(toy, x):
    flat = toy.to_m2(temperature=3.0)
    a = label_ais(flat, x, num_steps=20, num_chains=8)
    split = label_gap_split(flat, x, a, num_samples=20)
    lq = toy.guide("flat_class").log_class_probs(x)
    kl_y = (lq.exp() * (lq - toy.log_class_posterior(x))).sum(0)
    assert torch.allclose(split["gap_label"], kl_y, atol=1e-5)
    assert float(split["gap_code"].abs().max()) < 1e-5


@pytest.mark.parametrize("temperature,passes", [(1.0, True), (3.0, False), (1 / 3, False)])
def test_label_sbc_fails_a_tempered_class_posterior(toy, temperature, passes):
    res = label_sbc(toy.to_m2(temperature=temperature), num_sims=1000, num_draws=49, seed=0)
    assert res.calibration.passed is passes, res.calibration.as_dict()
    assert res.ranks.passed  # q(z|x,y) is exact in every case
    assert res.passed is passes


def test_to_m2_refuses_what_m2_cannot_express():
    with pytest.raises(PyrovaeError, match="shared loadings"):
        MixturePPCA.example(uniform=True).to_m2()
    with pytest.raises(PyrovaeError, match="uniform"):
        MixturePPCA.example(shared_loadings=True).to_m2()
    with pytest.raises(PyrovaeError, match="temperature"):
        MixturePPCA.example(shared_loadings=True, uniform=True).to_m2(temperature=0.0)
