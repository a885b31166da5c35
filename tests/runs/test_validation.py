"""Validated input: every kind of bad input gets one clear PyrovaeError naming the
problem, never an exception from deep inside torch, numpy or Pyro.  The second
half throws random malformed input (hypothesis) at the API entry points."""

from __future__ import annotations

import io
import json
import math
import os
import string
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import (
    VAE,
    PyrovaeError,
    evaluate,
    fit,
    load_dataset,
    load_spec,
    normalize_spec,
)
from pyrovae.runs import pipeline


def _save(path: Path, arr) -> str:
    np.save(path, arr)
    return str(path)


# --------------------------------------------------------------- data files
@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: _save(d / "a.npy", np.zeros(5)), "expected shape (n, d) or (n, h, w)"),
        (lambda d: _save(d / "a.npy", np.zeros(())), "got ()"),  # (n, c, h, w) is valid
        (lambda d: _save(d / "a.npy", np.zeros((0, 4))), "empty data"),
        (lambda d: _save(d / "a.npy", np.zeros((4, 0))), "empty data"),
        (lambda d: _save(d / "a.npy", np.array([["a", "b"]])), "expected numbers, got dtype <U1"),
        (lambda d: _save(d / "a.npy", np.ones((2, 2), complex)), "got dtype complex128"),
        (lambda d: _save(d / "a.npy", np.array([[1.0, np.nan], [np.inf, -np.inf]])),
         "1 NaN and 2 infinite values out of 4"),
        (lambda d: _save(d / "a.npy", np.full((2, 2), 1e300)), "too large for float32"),
        (lambda d: str(d / "missing.npy"), "data file not found"),
        (lambda d: "no_such_set", "unknown data set 'no_such_set'"),
        (lambda d: str(d), "is a folder"),
        (lambda d: (d / "a.txt").write_text("1,2") and str(d / "a.txt"),
         "unsupported data file type"),
        (lambda d: (d / "a.npy").write_bytes(b"garbage") and str(d / "a.npy"),
         "cannot read data"),
        (lambda d: (d / "a.csv").write_text("1,2\nx,y\n") and str(d / "a.csv"),
         "cannot read data"),
        (lambda d: (d / "a.csv").write_text("") or str(d / "a.csv"), "empty data"),
        (lambda d: (np.savez(d / "a.npz", z=np.zeros((2, 2))), str(d / "a.npz"))[1],
         "expected an array named 'x'"),
        (lambda d: (np.savez(d / "a.npz", x=np.zeros((2, 2)), y=np.array(["a", "b"])),
                    str(d / "a.npz"))[1], "expected integer class labels"),
        (lambda d: (np.savez(d / "a.npz", x=np.zeros((2, 2)), y=np.arange(3)),
                    str(d / "a.npz"))[1], "expected 2 labels"),
        (lambda d: _save(d / "a.npy", np.array([{"a": 1}], dtype=object)), "cannot read data"),
    ],
    ids=["1d", "0d", "no-rows", "no-cols", "strings", "complex", "nan-inf", "float32-overflow",
         "missing", "unknown", "folder", "suffix", "garbage-npy", "text-csv", "empty-csv",
         "npz-no-x", "npz-bad-labels", "npz-label-count", "pickled-object"],
)
def test_bad_data_files(tmp_path, make, needle):
    name = make(tmp_path)
    with pytest.raises(PyrovaeError) as err:
        load_dataset(name)
    assert needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_load_dataset_argument_types():
    with pytest.raises(PyrovaeError, match=r"data\.name"):
        load_dataset(None)
    with pytest.raises(PyrovaeError, match=r"data\.transform"):
        load_dataset("digits", transform="log")
    with pytest.raises(PyrovaeError, match=r"data\.path"):
        load_dataset("mnist", path=3)
    with pytest.raises(PyrovaeError, match=r"data\.path: file or folder not found"):
        load_dataset("mnist", path="no/such/mnist.pkl.gz")


# ----------------------------------------------------- support, shape, dtype
def _binary(n=20, d=6):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(0)) > 0.5).float()


@pytest.mark.parametrize(
    "likelihood, data, needle",
    [
        ("bernoulli", torch.full((4, 6), 0.5), "outside the support of the 'bernoulli'"),
        ("poisson", -torch.ones(4, 6), "outside the support of the 'poisson'"),
        ("bernoulli", torch.ones(4, 5), "expected shape (n, 6), got (4, 5)"),
        ("bernoulli", torch.ones(4, 6, dtype=torch.complex64), "dtype"),
        ("bernoulli", np.array([["a"] * 6]), "expected numbers"),
        ("bernoulli", torch.zeros(0, 6), "empty data"),
        ("bernoulli", [[0, 1, float("nan"), 0, 1, 0]], "1 NaN"),
        ("bernoulli", torch.zeros(6), "expected shape (n, d)"),
        ("bernoulli", "data.npy", "expected numbers"),
    ],
    ids=["bernoulli-0.5", "poisson-negative", "shape", "complex", "strings", "empty", "nan",
         "1d", "a-string"],
)
def test_fit_and_evaluate_refuse_bad_data(likelihood, data, needle):
    vae = VAE(6, 2, encoder=[4], likelihood=likelihood)
    with pytest.raises(PyrovaeError) as err:
        fit(vae, data, epochs=1, progress=False)
    assert needle in str(err.value)
    with pytest.raises(PyrovaeError) as err:
        evaluate(vae, data, num_samples=2)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"batch_size": True}, "batch"),
        ({"lr": 0}, "lr"), ({"lr": math.nan}, "lr"), ({"seed": -1}, "seed"),
        ({"seed": 2**40}, "seed"), ({"clip_norm": -1}, "clip_norm"),
        ({"eval_every": -2}, "eval_every"), ({"engine": "turbo"}, "engine"),
        ({"device": "cuda:9"}, "device"), ({"device": "bogus"}, "device"),
        ({"device": 3.5}, "device"), ({"callbacks": [1]}, "callbacks"),
        ({"callbacks": 5}, "callbacks"), ({"objective": "nope"}, "objective"),
        ({"kl_weight": {"family": "linear", "warmup_epochs": -1}}, "kl_weight"),
        ({"kl_weight": math.inf}, "kl_weight"),
        ({"test_data": torch.ones(3, 2)}, "test_data: expected shape (n, 6)"),
    ],
)
def test_fit_arguments(kwargs, needle):
    vae = VAE(6, 2, encoder=[4])
    with pytest.raises(PyrovaeError, match=None) as err:
        fit(vae, _binary(), progress=False, **{"epochs": 1, **kwargs})
    assert needle in str(err.value), str(err.value)


def test_fit_has_an_explicit_signature_so_a_misspelt_argument_is_a_type_error():
    with pytest.raises(TypeError, match="learning_rate"):
        fit(VAE(6, 2, encoder=[4]), _binary(), epochs=1, learning_rate=0.1)


def test_fit_refuses_something_that_is_not_a_vae():
    with pytest.raises(PyrovaeError, match="expected a pyrovae VAE"):
        fit(torch.nn.Linear(2, 2), _binary(), epochs=1)


@pytest.mark.parametrize(
    "kwargs", [{"num_samples": 0}, {"num_samples": "a"}, {"num_samples": None},
               {"num_samples": 2.5}, {"num_samples": math.nan}, {"seed": 2**70},
               {"seed": -1}, {"max_elements": 0}, {"max_elements": "x"}],
)
def test_evaluate_arguments(kwargs):
    with pytest.raises(PyrovaeError):
        evaluate(VAE(6, 2, encoder=[4]), _binary(), **kwargs)


# --------------------------------------------------------------- config files
@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("s.yaml", "train: {epochs: [", "is malformed"),
        ("s.toml", "train = [", "is malformed"),
        ("s.json", '{"a": ', "is malformed"),
        ("s.yaml", "- 1\n- 2\n", "expected a mapping at the top level"),
        ("s.ini", "[a]", "expected .yaml, .yml, .toml or .json"),
        ("s.yaml", "latent_dim: 2\nlatnet: 3\n", None),
    ],
)
def test_bad_config_files(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    if needle is None:  # well-formed file, misspelt key: caught by normalize_spec
        with pytest.raises(PyrovaeError, match="latnet: unknown spec key"):
            normalize_spec(load_spec(path))
        return
    with pytest.raises(PyrovaeError) as err:
        load_spec(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(PyrovaeError, match="config file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_sizes_too_large_to_build_are_refused():
    for spec in ({"data_dim": 4, "latent_dim": 2**62},
                 {"data_dim": 4, "encoder": {"hidden": [2**62]}}):
        with pytest.raises(PyrovaeError, match=r"expected an integer up to|cannot build"):
            VAE.from_spec(normalize_spec(spec))


# =================================================== property-based tests
# PYROVAE_FUZZ_EXAMPLES=2000 searches longer (and randomly); the default is quick and fixed.
_EXAMPLES = int(os.environ.get("PYROVAE_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 60, deadline=None, derandomize=not _EXAMPLES,
                    suppress_health_check=list(HealthCheck))

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.integers(2**62, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.ascii_letters + "_.-", max_size=12),
    st.sampled_from(["normal", "mixture", "bernoulli", "gaussian", "trace_elbo", "linear",
                     "relu", "fast", "pyro", "digits", "binarize", "cpu", "family"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(
                                ["family", "hidden", "activation", "components", "epochs",
                                 "lr", "seed", "name", "value", "scale", "sigma", "x"]),
                                inner, max_size=3)),
    max_leaves=8,
)
_spec_keys = st.sampled_from(
    ["data_dim", "latent_dim", "encoder", "decoder", "prior", "likelihood", "guide",
     "objective", "kl_weight", "train", "data", "eval", "bogus"]
)
_specs = st.one_of(st.dictionaries(_spec_keys, _values, max_size=5), _values)


@SETTINGS
@given(raw=_specs)
def test_normalize_spec_and_from_spec_only_raise_pyrovae_errors(raw):
    try:
        spec = normalize_spec(raw)
    except PyrovaeError:
        return
    if spec["data_dim"] is None:
        spec = spec.replace({"data_dim": 5})
    # keep what is built small: huge sizes must be refused, not allocated
    sizes = [spec["data_dim"], spec["latent_dim"], *spec["encoder"]["hidden"],
             *spec["decoder"]["hidden"]]
    if any(64 < s < 2**62 for s in sizes):
        return
    try:
        VAE.from_spec(spec)
    except PyrovaeError:
        pass


_arrays = st.one_of(
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                      min_size=0, max_size=6), min_size=0, max_size=5),
    st.lists(st.floats(), max_size=5),
    st.builds(lambda shape, fill: np.full(shape, fill),
              st.lists(st.integers(0, 4), min_size=0, max_size=4),
              st.one_of(st.floats(), st.integers(-3, 3), st.booleans(), st.just("a"))),
    st.builds(lambda n, d, v: torch.full((n, d), v),
              st.integers(0, 5), st.integers(0, 7), st.floats(-2, 2)),
    st.text(max_size=5), st.none(), st.integers(), st.dictionaries(st.text(max_size=2),
                                                                   st.integers()),
)
_fit_kwargs = st.dictionaries(
    st.sampled_from(["epochs", "batch_size", "lr", "seed", "clip_norm", "eval_every",
                     "kl_weight", "objective", "engine", "device", "test_data"]),
    _scalars, max_size=3,
)


@pytest.fixture(scope="module")
def small_vae():
    return VAE(6, 2, encoder=[4])


_valid_data = st.builds(
    lambda n, seed: (torch.rand(n, 6, generator=torch.Generator().manual_seed(seed)) > 0.5).float(),
    st.integers(1, 9), st.integers(0, 9),
)


@SETTINGS
@given(data=st.one_of(_arrays, _valid_data), kwargs=_fit_kwargs)
def test_fit_only_raises_pyrovae_errors(small_vae, data, kwargs):
    kwargs = {"epochs": 1, "progress": False, **kwargs}
    if isinstance(kwargs.get("epochs"), int) and kwargs["epochs"] > 2:
        kwargs["epochs"] = 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(small_vae, data, **kwargs)
    except PyrovaeError:
        pass


@SETTINGS
@given(data=_arrays, k=st.one_of(st.integers(-2, 4), st.floats(), st.text(max_size=2),
                                 st.none()),
       seed=st.one_of(st.integers(-5, 5), st.integers(2**63, 2**70), st.floats()))
def test_evaluate_only_raises_pyrovae_errors(small_vae, data, k, seed):
    try:
        evaluate(small_vae, data, num_samples=k, seed=seed)
    except PyrovaeError:
        pass


_file_bytes = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda b: b"\x93NUMPY" + b, st.binary(max_size=120)),
    st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=120)),
    st.builds(lambda t: t.encode(), st.text(alphabet="0123456789.,-e \nnaNinf", max_size=80)),
)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@SETTINGS
@given(suffix=st.sampled_from([".npy", ".npz", ".csv", ".txt", ""]),
       content=st.one_of(
           _file_bytes,
           _arrays.filter(lambda a: isinstance(a, np.ndarray) and a.dtype != object).map(_npy),
           st.builds(lambda b, cut: b[:cut], _arrays.filter(
               lambda a: isinstance(a, np.ndarray) and a.dtype != object).map(_npy),
                     st.integers(0, 200)),
       ),
       transform=st.sampled_from([None, "binarize", "unit", "none"]))
def test_load_dataset_on_random_files_only_raises_pyrovae_errors(
    tmp_path_factory, suffix, content, transform
):
    path = tmp_path_factory.mktemp("rand") / f"data{suffix}"
    path.write_bytes(content)
    try:
        ds = load_dataset(str(path), transform=transform)
    except PyrovaeError:
        return
    assert ds.x.dtype == torch.float32 and ds.x.ndim >= 2 and len(ds) > 0
    assert torch.isfinite(ds.x).all()


@SETTINGS
@given(raw=st.dictionaries(_spec_keys, _values, max_size=3))
def test_build_only_raises_pyrovae_errors(tmp_path_factory, raw):
    """``pipeline.build`` (spec -> data -> VAE) on a small data file."""
    folder = tmp_path_factory.mktemp("build")
    x = (np.random.default_rng(0).random((12, 5)) > 0.5).astype(np.float32)
    raw = dict(raw)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    raw["data"] = {**data, "name": _save(folder / "x.npy", x)}
    try:
        spec = normalize_spec(raw)
    except PyrovaeError:
        return
    sizes = [spec["latent_dim"], *spec["encoder"]["hidden"], *spec["decoder"]["hidden"]]
    if any(64 < s < 2**62 for s in sizes):
        return
    try:
        pipeline.build(raw)
    except PyrovaeError:
        pass


def test_json_spec_round_trip_of_errors_is_one_line(tmp_path):
    """Every message above is one line: the CLI prints it as is."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"prior": {"family": "mixture", "components": 0}}))
    with pytest.raises(PyrovaeError) as err:
        normalize_spec(load_spec(path))
    assert str(err.value) == "prior.components: expected a positive integer, got 0"
