"""The spec: property tests (random valid specs round-trip; random invalid ones raise
PyrovaeError naming the key), config files and ``--set`` overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import VAE, PyrovaeError, apply_overrides, load_spec, normalize_spec
from pyrovae.registry import REGISTRIES, Param
from pyrovae.runs.spec import MODEL_KEYS, SECTIONS
from pyrovae.training.objectives import free_bits_families

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ------------------------------------------------------------------ strategies
def valid_value(p: Param, name: str, family: bool = False) -> st.SearchStrategy:
    """Small valid values (small sizes keep the models tiny)."""
    if family and name == "hidden":  # flow layers need at least one hidden layer
        return st.lists(st.integers(1, 8), min_size=1, max_size=2)
    if name == "levels":
        return st.integers(2, 4)
    if name == "alpha":
        return st.floats(-2.0, 0.9)
    strategies = {
        "positive_int": st.integers(1, 3),
        "nonneg_int": st.integers(0, 3),
        "seed": st.integers(0, 3),
        "int": st.integers(-3, 3),
        "float": st.floats(-2.0, 2.0),
        "positive_float": st.floats(0.05, 3.0),
        "nonneg_float": st.floats(0.0, 3.0),
        "unit_float": st.floats(0.0, 1.0),
        "bool": st.booleans(),
        "int_list": st.lists(st.integers(1, 8), max_size=2),
        "unit_pair": st.lists(st.floats(0.0, 0.99), min_size=2, max_size=2),
        "device": st.just("cpu"),
    }
    if p.kind == "choice":
        s = st.sampled_from(p.choices)
    elif p.kind == "str":
        s = st.just(p.default if isinstance(p.default, str) else "cpu")
    else:
        s = strategies[p.kind]
    return st.one_of(st.none(), s) if p.nullable else s


@st.composite
def family_entry(draw, key: str) -> str | dict:
    registry = REGISTRIES[key]
    name = draw(st.sampled_from(registry.names()))
    params = registry.get(name).params
    chosen = draw(st.lists(st.sampled_from(sorted(params)), unique=True)) if params else []
    if not chosen and draw(st.booleans()):
        return name  # the bare-string shorthand
    return {"family": name, **{k: draw(valid_value(params[k], k, True)) for k in chosen}}


@st.composite
def valid_raw_spec(draw) -> dict:
    raw: dict = {"data_dim": draw(st.integers(1, 6)), "latent_dim": draw(st.integers(1, 3))}
    for key in REGISTRIES:
        if draw(st.booleans()) or key in ("prior", "likelihood", "guide"):
            raw[key] = draw(family_entry(key))
    for section in ("encoder", "decoder", "train"):
        if draw(st.booleans()):
            params = SECTIONS[section]
            keys = draw(st.lists(st.sampled_from(sorted(params)), unique=True, max_size=3))
            raw[section] = {k: draw(valid_value(params[k], k)) for k in keys}
    _make_consistent(raw)
    return raw


def _family(raw, key):
    entry = raw.get(key)
    return entry if isinstance(entry, str) or entry is None else entry["family"]


def _make_consistent(raw: dict) -> None:
    """Cross-section rules a random draw may break (each has its own test below)."""
    prior = raw.get("prior")
    if isinstance(prior, dict) and prior.get("flow") == "affine_coupling":
        raw["latent_dim"] = max(raw["latent_dim"], 2)  # coupling splits z in two
    nets = [raw.get(k) for k in ("encoder", "decoder")]
    if "conv" in [n if isinstance(n, str) else (n or {}).get("family") for n in nets]:
        raw["event_shape"] = [1, 4, 4]  # conv networks need image-shaped data
        raw["data_dim"] = 16
        for key in ("encoder", "decoder"):  # a geometry that fits 4x4 (bad ones: own tests)
            if isinstance(raw.get(key), dict) and raw[key].get("family") == "conv":
                raw[key].update(channels=[2], kernel=4, stride=2, padding=1)
    if _family(raw, "model") == "m2":  # m2's label is its context (own tests)
        raw.pop("context", None)
        if isinstance(raw["model"], dict) and raw["model"].get("labelled_fraction") == 0.0:
            raw["model"]["labelled_fraction"] = 0.5
        if isinstance(raw["model"], dict) and raw["model"].get("classes") == 1:
            raw["model"]["classes"] = 2
        if _family(raw, "prior") == "vamp":
            raw["prior"] = "normal"
        raw.pop("objective", None)  # only ELBO objectives sum a label out (own tests)
    if _family(raw, "model") == "hierarchical":  # its own tests: tests/model/test_hierarchical.py
        raw.pop("context", None)  # unconditional
        if _family(raw, "prior") == "vamp":
            raw["prior"] = "normal"  # vamp encodes to z1, the prior is on the top layer
        raw.pop("objective", None)  # only ELBO objectives, Monte Carlo KL
        if isinstance(raw["model"], dict) and "latent_dims" in raw["model"]:
            dims = [*raw["model"]["latent_dims"], 2, 2]
            raw["model"]["latent_dims"] = dims[:max(2, len(raw["model"]["latent_dims"]))]
        if isinstance(prior, dict) and prior.get("flow") == "affine_coupling":
            entry = raw["model"] if isinstance(raw["model"], dict) else {"family": "hierarchical"}
            dims = entry.get("latent_dims", [32, 16])
            entry["latent_dims"] = [*dims[:-1], max(dims[-1], 2)]  # the top layer's prior
            raw["model"] = entry
    if _family(raw, "prior") == "vamp":
        raw.pop("context", None)  # vamp has no context (its own test)
    objective = raw.get("objective")
    if isinstance(objective, dict) and objective.get("free_bits"):
        ok = (
            _family(raw, "prior") in free_bits_families()[0]
            and _family(raw, "guide") in free_bits_families()[1]
            and raw.get("train", {}).get("engine", "fast") == "fast"
        )
        if not ok:
            objective["free_bits"] = 0.0


def structure(vae):
    return {k: tuple(v.shape) for k, v in vae.state_dict().items()}


# ------------------------------------------------------------------ valid specs
@SETTINGS
@given(valid_raw_spec())
def test_random_valid_specs_round_trip(raw):
    spec = normalize_spec(raw)
    assert normalize_spec(spec) == spec  # normalising is idempotent
    assert normalize_spec(yaml.safe_load(yaml.safe_dump(spec))) == spec  # YAML-able
    assert json.loads(json.dumps(spec)) == spec  # JSON-able
    vae = VAE.from_spec(spec)
    assert vae.spec == {k: spec[k] for k in MODEL_KEYS}
    again = VAE.from_spec(vae.spec)
    assert structure(again) == structure(vae)
    assert again.spec == vae.spec
    for key in ("prior", "likelihood", "guide"):
        assert getattr(again, "guide_family" if key == "guide" else key).family == (
            spec[key]["family"]
        )


# ------------------------------------------------------------------ invalid specs
def _bad_values(p: Param) -> st.SearchStrategy:
    numeric_junk = st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2))
    by_kind = {
        "positive_int": st.one_of(st.integers(max_value=0), st.sampled_from([1.5, True, "3"])),
        "nonneg_int": st.one_of(st.integers(max_value=-1), st.sampled_from([2.5, False])),
        "unit_pair": st.sampled_from([[0.9], [0.9, 1.0], [-0.5, 0.5], "0.9", [0.1, 0.2, 0.3]]),
        "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32),
                          st.sampled_from([2.5, False])),
        "int": st.sampled_from([1.5, True, math.nan, "1"]),
        "float": st.sampled_from([math.nan, math.inf, -math.inf, True, "0.5", 10**400]),
        "positive_float": st.one_of(
            st.floats(max_value=0.0), st.sampled_from([math.nan, math.inf, True, 10**400])
        ),
        "nonneg_float": st.one_of(
            st.floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf, False])
        ),
        "unit_float": st.one_of(
            st.floats(min_value=1.0001, allow_infinity=True),
            st.floats(max_value=-1e-9), st.just(math.nan),
        ),
        "bool": st.sampled_from([0, 1, 1.0, "true", "yes", [True]]),
        "str": st.sampled_from([5, "", [], {"a": 1}]),
        "device": st.sampled_from(["gpu", "cuda:", "CPU", "", 0, ["cpu"], "cpu:0:1"]),
        "int_list": st.sampled_from([[0], [-3], ["a"], "64", 64, [1.5], [True], {"a": 1}]),
        "choice": st.one_of(
            st.text(max_size=8).filter(lambda v: v not in p.choices),
            st.sampled_from([3, ["x"], True]),
        ),
    }
    bad = by_kind[p.kind]
    if p.kind not in ("bool", "str", "int_list", "choice", "device"):
        bad = st.one_of(bad, numeric_junk)
    if not p.nullable:
        bad = st.one_of(bad, st.none())
    return bad


@st.composite
def invalid_raw_spec(draw) -> tuple[dict, str]:
    """A valid spec with one mistake; returns (raw, the key path the error must name)."""
    raw = draw(valid_raw_spec())
    kind = draw(st.sampled_from(
        ["top_key", "family_name", "family_param_key", "family_param_value",
         "section_value", "section_key", "section_type", "entry_type", "top_value"]
    ))
    ident = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
    if kind == "top_key":
        key = draw(ident.filter(lambda k: k not in normalize_spec({})))
        raw[key] = draw(st.integers())
        return raw, key
    if kind == "top_value":
        key = draw(st.sampled_from(["data_dim", "latent_dim"]))
        raw[key] = draw(st.one_of(st.integers(max_value=0), st.sampled_from(["2", 2.5, True])))
        return raw, key
    if kind in ("section_value", "section_key", "section_type"):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        params = SECTIONS[section]
        if kind == "section_type":
            raw[section] = draw(st.sampled_from([5, "relu", [64], True]))
            return raw, section
        if kind == "section_key":
            key = draw(ident.filter(lambda k: k not in params))
            raw[section] = {key: 1}
            return raw, f"{section}.{key}"
        key = draw(st.sampled_from(sorted(params)))
        raw[section] = {key: draw(_bad_values(params[key]))}
        return raw, f"{section}.{key}"
    key = draw(st.sampled_from(sorted(REGISTRIES)))
    registry = REGISTRIES[key]
    if kind == "entry_type":
        raw[key] = draw(st.sampled_from([5, 1.5, ["normal"], True, None]))
        if raw[key] is None:
            raw[key] = {"components": 3}  # a mapping without 'family'
            # a network mapping without 'family' is an MLP (the old form): its key is named
            return raw, f"{key}.components" if key in ("encoder", "decoder") else f"{key}.family"
        return raw, key
    if kind == "family_name":
        raw[key] = {"family": draw(st.one_of(
            ident.filter(lambda n: n not in registry), st.sampled_from([3, None, ["normal"]])
        ))}
        return raw, f"{key}.family"
    with_params = [n for n in registry.names() if registry.get(n).params]
    name = draw(st.sampled_from(with_params))
    params = registry.get(name).params
    if kind == "family_param_key":
        bogus = draw(ident.filter(lambda k: k not in params and k != "family"))
        raw[key] = {"family": name, bogus: 1}
        return raw, f"{key}.{bogus}"
    pkey = draw(st.sampled_from(sorted(params)))
    raw[key] = {"family": name, pkey: draw(_bad_values(params[pkey]))}
    return raw, f"{key}.{pkey}"


@SETTINGS
@given(invalid_raw_spec())
def test_random_invalid_specs_raise_pyrovae_error_naming_the_key(case):
    raw, path = case
    with pytest.raises(PyrovaeError) as info:
        VAE.from_spec(normalize_spec(raw))
    assert str(info.value).startswith(path), (str(info.value), path)


def test_specific_messages():
    cases = [
        ({"prior": {"family": "mixture", "components": 0}},
         "prior.components: expected a positive integer, got 0"),
        ({"prior": "gauss"}, "prior.family: unknown prior family 'gauss'; known: flow, laplace, "
         "mixture, normal, normal_learned, student_t, vamp"),
        ({"encoder": {"hidden": [64, 0]}}, "encoder.hidden: expected a list of positive integers"),
        ({"latent_dim": "2"}, "latent_dim: expected a positive integer, got '2'"),
        ({"lattent_dim": 2}, "lattent_dim: unknown spec key"),
        ({"prior": {"components": 3}}, "prior.family: missing; known:"),
        ({"guide": 3}, "guide: expected a family name or a mapping with 'family', got 3"),
    ]
    for raw, message in cases:
        with pytest.raises(PyrovaeError) as info:
            normalize_spec(raw)
        assert str(info.value).startswith(message), str(info.value)


def test_from_spec_requires_data_dim_or_data():
    with pytest.raises(PyrovaeError, match="data_dim: missing"):
        VAE.from_spec({"latent_dim": 2})
    assert VAE.from_spec({"latent_dim": 2}, data_dim=7).data_dim == 7


# ------------------------------------------------------------------ files, overrides
def test_yaml_and_toml_configs_load_to_the_same_spec():
    yml = normalize_spec(load_spec(CONFIGS / "digits_mixture.yaml"))
    tml = normalize_spec(load_spec(CONFIGS / "digits_mixture.toml"))
    assert yml == tml
    assert yml["prior"] == {"family": "mixture", "components": 10, "spread": 1.0,
                            "scale_init": 1.0}
    assert yml["kl_weight"]["family"] == "linear"
    vae = VAE.from_spec(yml, data_dim=64)
    assert vae.prior.components == 10


def test_every_example_config_is_valid(tmp_path):
    files = sorted(CONFIGS.glob("*.yaml")) + sorted(CONFIGS.glob("*.toml"))
    assert files
    for f in files:
        VAE.from_spec(normalize_spec(load_spec(f)), data_dim=64)


def test_yaml_toml_json_files_written_here_agree(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "latent_dim: 3\nprior: {family: student_t, df: 5}\nlikelihood: poisson\n"
    )
    (tmp_path / "a.toml").write_text(
        'latent_dim = 3\nlikelihood = "poisson"\n[prior]\nfamily = "student_t"\ndf = 5\n'
    )
    (tmp_path / "a.json").write_text(
        '{"latent_dim": 3, "prior": {"family": "student_t", "df": 5}, "likelihood": "poisson"}'
    )
    specs = [normalize_spec(load_spec(tmp_path / f"a.{s}")) for s in ("yaml", "toml", "json")]
    assert specs[0] == specs[1] == specs[2]
    assert specs[0]["prior"]["df"] == 5.0


def test_malformed_and_missing_config_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("prior: [unclosed\n")
    with pytest.raises(PyrovaeError, match="is malformed"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "bad.toml").write_text("prior = \n")
    with pytest.raises(PyrovaeError, match="is malformed"):
        load_spec(tmp_path / "bad.toml")
    with pytest.raises(PyrovaeError, match="config file not found"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(PyrovaeError, match="expected a mapping at the top level"):
        load_spec(tmp_path / "list.yaml")


def test_apply_overrides_swaps_a_family_with_one_word():
    raw = load_spec(CONFIGS / "digits_mixture.yaml")
    out = apply_overrides(raw, ["prior.family=mixture", "prior.components=10"])
    assert normalize_spec(out)["prior"]["components"] == 10
    out = apply_overrides({"prior": "normal"}, ["prior.family=mixture", "prior.components=7"])
    assert out["prior"] == {"family": "mixture", "components": 7}
    assert normalize_spec(out)["prior"]["components"] == 7
    out = apply_overrides(raw, ["likelihood=binomial", "likelihood.total_count=16",
                                "data.transform=none", "guide=full_covariance"])
    spec = normalize_spec(out)
    assert spec["likelihood"] == {"family": "binomial", "total_count": 16}
    assert spec["guide"]["family"] == "full_covariance" and spec["data"]["transform"] == "none"
    assert raw["prior"] == {"family": "mixture", "components": 10}  # input untouched
    with pytest.raises(PyrovaeError, match=r"prior\.components: expected a positive integer"):
        normalize_spec(apply_overrides(raw, ["prior.components=0"]))
    # a parameter of a family section absent from the file starts from its default family
    out = apply_overrides({}, ["objective.free_bits=0.5"])
    assert normalize_spec(out)["objective"]["family"] == "trace_elbo"
    with pytest.raises(PyrovaeError, match=r"objective\.free_bits: needs train\.engine: fast"):
        normalize_spec(apply_overrides(out, ["train.engine=pyro"]))
    with pytest.raises(PyrovaeError, match=r"expected KEY\.PATH=VALUE"):
        apply_overrides(raw, ["prior.components"])
