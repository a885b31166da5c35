"""Registries: one class plus one registration adds a family; declared params match
the constructors; parameter validation names the key."""

from __future__ import annotations

import inspect
import math
from typing import ClassVar

import pyro.distributions as dist
import pytest
import torch

from pyrovae import PRIORS, VAE, Param, PyrovaeError, normalize_spec
from pyrovae.model.priors import Prior
from pyrovae.registry import REGISTRIES, Registry, validate_section
from pyrovae.runs.families import list_families

CONTEXT = {"prior": {"latent_dim"}, "likelihood": {"event_shape"}, "guide": {"latent_dim"},
           "objective": set(), "kl_weight": set(), "context": set(),
           **{net: {"role", "event_shape", "latent_dim", "out_features", "context_dim"}
              for net in ("encoder", "decoder")},
           # a model kind is built with the VAE's own arguments, plus its params
           "model": {"data_dim", "latent_dim", "encoder", "decoder", "activation",
                     "decoder_activation", "prior", "likelihood", "guide", "context"}}
#: the sizes each kind is built with (networks: image-shaped data, so conv builds too)
SIZES = {"encoder": {"role": "encoder", "event_shape": (1, 8, 8), "latent_dim": 2,
                     "out_features": 4, "context_dim": 0},
         "decoder": {"role": "decoder", "event_shape": (1, 8, 8), "latent_dim": 2,
                     "out_features": 64, "context_dim": 3},
         "model": {"data_dim": 6}}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_declared_params_are_the_constructor_arguments(kind):
    registry = REGISTRIES[kind]
    for name in registry.names():
        cls = registry.get(name)
        sig = inspect.signature(cls.__init__)
        args = {k for k in sig.parameters if k != "self"} - CONTEXT[kind]
        assert args == set(cls.params), (kind, name)
        for key, p in cls.params.items():  # defaults agree with the signature
            default = sig.parameters[key].default
            default = list(default) if isinstance(default, tuple) else default
            assert default == p.default, (kind, name, key)
            assert p.doc, (kind, name, key)
        assert inspect.getdoc(cls), (kind, name)
        assert cls.family == name
        # every family builds with its defaults
        context = SIZES.get(kind) or {k: 3 for k in CONTEXT[kind]}
        registry.build(name, kind, **context)


def test_one_class_plus_one_registration_adds_a_family():
    @PRIORS.register("test_uniform_box")
    class UniformBoxPrior(Prior):
        """p(z) = ∏_d Uniform(z_d; −a, a)."""

        params: ClassVar[dict[str, Param]] = {
            "half_width": Param("positive_float", 3.0, doc="a"),
        }

        def __init__(self, latent_dim: int, half_width: float = 3.0) -> None:
            super().__init__(latent_dim)
            self.register_buffer("a", torch.full((latent_dim,), half_width))

        def forward(self):
            return dist.Uniform(-self.a, self.a).to_event(1)

    try:
        assert "test_uniform_box" in list_families("prior")["prior"]
        spec = normalize_spec({"prior": {"family": "test_uniform_box", "half_width": 2}})
        assert spec["prior"] == {"family": "test_uniform_box", "half_width": 2.0}
        vae = VAE.from_spec(spec, data_dim=4)
        z = torch.zeros(5, 2)
        assert torch.allclose(vae.prior_dist().log_prob(z), torch.full((5,), -2 * math.log(4.0)))
        with pytest.raises(PyrovaeError, match=r"prior\.half_width: expected a positive number"):
            normalize_spec({"prior": {"family": "test_uniform_box", "half_width": -2}})
        with pytest.raises(PyrovaeError, match="already registered"):
            PRIORS.register("test_uniform_box")(type("Other", (Prior,), {"params": {}}))
    finally:
        PRIORS._classes.pop("test_uniform_box", None)
    assert "test_uniform_box" not in PRIORS


def test_a_family_must_declare_params():
    reg = Registry("thing")
    with pytest.raises(PyrovaeError, match="must declare"):
        reg.register("x")(type("NoParams", (), {}))


def test_unknown_family_names_the_known_ones():
    with pytest.raises(PyrovaeError) as info:
        PRIORS.get("wishart", "prior")
    assert str(info.value) == (
        "prior.family: unknown prior family 'wishart'; known: " + ", ".join(PRIORS.names())
    )


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("positive_int", [1, 7, 3.0], [0, -1, 1.5, True, "2", None, 1e300 + 0.5, -(10**400)]),
        ("nonneg_int", [0, 4], [-1, 0.5, False]),
        ("float", [-1.5, 0, 2], [math.nan, math.inf, "1", True, 10**400]),
        ("positive_float", [0.1, 5], [0, -0.1, math.inf, 10**400]),
        ("nonneg_float", [0, 0.5], [-1e-9, math.nan]),
        ("unit_float", [0, 0.5, 1], [1.01, -0.01]),
        ("bool", [True, False], [0, 1, "true"]),
        ("int_list", [[], [3, 4]], [[0], "12", [1.5], 5, [True]]),
        ("str", ["cpu"], ["", 3]),
    ],
)
def test_param_kinds_accept_and_refuse(kind, good, bad):
    p = Param(kind, None, doc="x")
    for v in good:
        p.validate(v, "sec.key")
    for v in bad:
        with pytest.raises(PyrovaeError, match=r"^sec\.key: expected"):
            p.validate(v, "sec.key")


def test_choice_param_is_type_strict_and_nullable_allows_none():
    p = Param("choice", "a", choices=("a", "b"), nullable=True)
    assert p.validate(None, "k") is None and p.validate("b", "k") == "b"
    with pytest.raises(PyrovaeError, match=r"k: expected one of 'a', 'b' or null, got 'c'"):
        p.validate("c", "k")
    with pytest.raises(ValueError):
        Param("choice", "a")
    with pytest.raises(ValueError):
        Param("complex", 1)


def test_validate_section_fills_defaults_and_names_unknown_and_missing_keys():
    params = {"n": Param("positive_int", doc="required"), "m": Param("float", 0.5)}
    assert validate_section(params, {"n": 2}, "s") == {"n": 2, "m": 0.5}
    with pytest.raises(PyrovaeError, match=r"^s\.n: missing required parameter"):
        validate_section(params, {}, "s")
    with pytest.raises(PyrovaeError, match=r"^s\.q: unknown parameter; known parameters: m, n"):
        validate_section(params, {"n": 1, "q": 1}, "s")
