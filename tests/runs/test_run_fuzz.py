"""Property-based (hypothesis) attacks on run folders and specs (issue 19).

* Random damage to any byte of any file of a run folder: every command that loads
  the run (here in process: ``evaluate``'s load-verify-evaluate and ``--resume``'s
  verification of the saved state) either gives exactly the undamaged run's result
  or refuses with a PyrovaeError; never a different result, never another exception.
* Random spec shapes and sizes: refused by the size budget before any model is
  built, with the estimate in the message, or small enough to build.

``PYROVAE_FUZZ_EXAMPLES=N`` changes the number of damaged folders (default 2,000).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.runs import budget, pipeline
from pyrovae.runs.spec import normalize_spec

CASES = int(os.environ.get("PYROVAE_FUZZ_EXAMPLES", "2000"))


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _outcome(run: Path) -> list[tuple[str, object]]:
    """Per command that loads the run (``evaluate``; ``--resume``'s verification):
    ``("refused", message)`` or ``("ok", its result)``."""
    def evaluate():
        torch.manual_seed(0)
        return pipeline.evaluate_run(run, num_samples=4)

    def resume():
        state, saved = pipeline._saved_state(run)
        return pio.state_checksum(state), saved

    out = []
    for command in (evaluate, resume):
        try:
            out.append(("ok", command()))
        except PyrovaeError as exc:
            out.append(("refused", str(exc)))
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzzrun")
    np.save(d / "bin.npy", (np.random.default_rng(0).random((12, 4)) > 0.5).astype(np.float32))
    spec = {"latent_dim": 2, "encoder": {"hidden": [3]}, "likelihood": "bernoulli",
            "train": {"epochs": 1, "batch_size": 6}, "eval": {"num_samples": 2},
            "data": {"name": str(d / "bin.npy"), "test_fraction": 0.25}}
    pipeline.train_run(spec, d / "run", progress=False)
    return d / "run"


@pytest.mark.slow
def test_random_damage_to_any_byte_never_gives_a_different_result(tiny_run, tmp_path):
    undamaged = _outcome(tiny_run)
    assert all(kind == "ok" for kind, _ in undamaged), undamaged
    names = _files(tiny_run)
    originals = {n: (tiny_run / n).read_bytes() for n in names}
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    counts = {"same": 0, "refused": 0}

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(names), at=st.floats(0, 1, exclude_max=True),
           how=st.sampled_from(["flip", "byte", "truncate", "insert"]),
           bit=st.integers(0, 7), value=st.integers(0, 255))
    def case(name, at, how, bit, value):
        raw = bytearray(originals[name])
        i = int(at * len(raw))
        if how == "flip":
            raw[i] ^= 1 << bit
        elif how == "byte":
            raw[i] = value
        elif how == "truncate":
            raw = raw[:i]
        else:
            raw[i:i] = bytes([value])
        (run / name).write_bytes(bytes(raw))
        try:
            outcomes = _outcome(run)
        finally:
            (run / name).write_bytes(originals[name])
        for (kind, got), (_, want) in zip(outcomes, undamaged, strict=True):
            if kind == "ok":
                assert got == want, (name, how, i)  # exit 0 only with the same result
                counts["same"] += 1
            else:
                assert "\n" not in got and ".tmp" not in got, got
                counts["refused"] += 1

    case()
    assert sum(counts.values()) >= 2 * min(CASES, 2000) * 0.9, counts
    assert counts["refused"] > 0 and counts["same"] > 0, counts


# ------------------------------------------------------------ random spec sizes
_SIZE = st.one_of(st.integers(1, 64), st.integers(1, 10**6), st.integers(1, 10**10))


@st.composite
def _specs(draw) -> dict:
    spec: dict = {"latent_dim": draw(_SIZE), "data_dim": draw(_SIZE),
                  "encoder": {"hidden": draw(st.lists(_SIZE, max_size=4))
                              * draw(st.sampled_from([1, 1, 100, 30_000]))},
                  "train": {"batch_size": draw(st.integers(1, 10**6))}}
    prior = draw(st.sampled_from(["normal", "mixture", "vamp", "flow"]))
    if prior in ("mixture", "vamp"):
        spec["prior"] = {"family": prior, "components": draw(_SIZE)}
    elif prior == "flow":
        spec["prior"] = {"family": "flow", "num_layers": draw(st.integers(1, 50)),
                         "hidden": draw(st.lists(_SIZE, min_size=1, max_size=3))}
    return spec


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(raw=_specs())
def test_random_spec_sizes_are_refused_before_anything_is_built(raw, monkeypatch):
    try:
        spec = normalize_spec(raw)
    except PyrovaeError:
        return  # refused by validation already
    est = budget.estimate_size(spec)
    try:
        budget.check_size(spec)
    except PyrovaeError as exc:
        assert "estimated" in str(exc) and "limit" in str(exc)
        over = (est.parameters > budget.MAX_PARAMETERS
                or est.activation_bytes > budget.MAX_ACTIVATION_BYTES
                or est.layers > budget.MAX_LAYERS)
        assert over, est
        return
    # accepted: the estimate bounds what is built (parameters counted for real)
    from pyrovae.model.vae import VAE

    if est.parameters <= 2_000_000:
        vae = VAE.from_spec(spec)
        real = sum(p.numel() for p in vae.parameters())
        assert real <= max(2 * est.parameters, 1000), (real, est)
