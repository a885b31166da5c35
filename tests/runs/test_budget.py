"""The size budget (issue 19): estimated from the spec by the families' own
declarations (``Param(size=...)``), refused above the limits with the estimate."""

from __future__ import annotations

import pytest

from pyrovae.errors import PyrovaeError
from pyrovae.model.vae import VAE
from pyrovae.registry import REGISTRIES
from pyrovae.runs import budget
from pyrovae.runs.spec import normalize_spec

MODEL_KINDS = ("encoder", "prior", "guide", "likelihood", "context")


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_size_parameter_of_a_model_family_declares_its_part(kind):
    """A family's integer lists (layer widths) must say how they count, so the budget
    sees every new family without a list of names."""
    registry = REGISTRIES[kind]
    for name in registry.names():
        for pname, param in registry.get(name).params.items():
            if param.kind == "int_list":
                assert param.size in ("widths", "channels"), f"{kind} {name}.{pname}"


CASES = {
    "mlp": {"latent_dim": 3, "data_dim": 20, "encoder": {"hidden": [16, 8]}},
    "mixture": {"latent_dim": 2, "data_dim": 10, "prior": {"family": "mixture",
                                                          "components": 7}},
    "flow prior": {"latent_dim": 4, "data_dim": 10, "prior": {"family": "flow",
                                                             "num_layers": 3}},
    "conv": {"latent_dim": 2, "event_shape": [1, 8, 8],
             "encoder": {"family": "conv", "channels": [4, 8], "hidden": [16]}},
    "categorical": {"latent_dim": 2, "data_dim": 6,
                    "likelihood": {"family": "categorical", "levels": 5}},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_estimate_bounds_the_real_parameter_count(case):
    spec = normalize_spec(CASES[case])
    est = budget.estimate_size(spec)
    real = sum(p.numel() for p in VAE.from_spec(spec).parameters())
    assert real <= est.parameters <= 8 * real + 200, (real, est)


@pytest.mark.parametrize("raw,needle", [
    ({"latent_dim": 10**9}, "parameters estimated"),
    ({"encoder": {"hidden": [10**8]}}, "parameters estimated"),
    ({"encoder": {"hidden": [16] * 30_000}}, "hidden layers estimated"),
    ({"prior": {"family": "mixture", "components": 10**7}}, "parameters estimated"),
    ({"train": {"batch_size": 10**6}, "encoder": {"hidden": [4096, 4096]}},
     "GiB of activations"),
])
def test_huge_specs_are_refused_with_the_estimate(raw, needle):
    spec = normalize_spec({"data_dim": 784, **raw})
    with pytest.raises(PyrovaeError, match=needle) as err:
        budget.check_size(spec)
    assert "limit" in str(err.value) and "--size-limit" in str(err.value)


def test_the_size_limit_is_raised_by_its_scale():
    spec = normalize_spec({"latent_dim": 2, "data_dim": 10, "encoder": {"hidden": [8] * 300}})
    with pytest.raises(PyrovaeError, match="600 hidden layers estimated"):  # and its mirror
        budget.check_size(spec)
    assert budget.check_size(spec, scale=10).layers == 600
    with pytest.raises(PyrovaeError, match="--size-limit: expected a positive number"):
        budget.check_size(spec, scale=0)
