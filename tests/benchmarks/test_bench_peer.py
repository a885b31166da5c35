"""The peer benchmark (bench_pythae.py) and the engine benchmark (bench_engines.py):
quick modes run and print finite numbers, and the shared IWAE estimator agrees with
pyrovae's own.  No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import pyrovae
from pyrovae.data import load_dataset

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peer():
    return _load("bench_pythae")


@pytest.fixture(scope="module")
def engines():
    return _load("bench_engines")


def test_shared_iwae_matches_pyrovae_evaluate(peer):
    """The hand-vectorised IWAE that scores every library agrees with
    ``pyrovae.estimators.evaluate`` on the same pyrovae model, for both scale maps
    (a wrong log-density term would be off by many nats)."""
    x = load_dataset("digits").x[:64].float().flatten(1)
    for scale_map in peer.SCALE_MAPS:
        guide = peer.ScaleMapGuide(peer.LATENT, scale_map)
        torch.manual_seed(0)
        vae = pyrovae.VAE(64, peer.LATENT, encoder=[32], guide=guide)
        pyrovae.fit(vae, x, epochs=3, seed=0, eval_every=0, progress=False)
        vae.eval()
        ours = pyrovae.evaluate(vae, x, num_samples=1000, seed=0)["log_likelihood"]
        encode, decode = peer._scorers(vae.encoder, vae.decoder, scale_map)
        shared = peer.iwae(encode, decode, x, 1000, seed=1).mean().item()
        assert math.isfinite(shared)
        assert abs(shared - ours) < 0.5, (scale_map, shared, ours)


def test_iwae_is_reproducible_and_chunking_free(peer):
    x = load_dataset("digits").x[:16].float().flatten(1)
    torch.manual_seed(0)
    enc, dec = peer.mlp(64, [8], 2 * peer.LATENT), peer.mlp(peer.LATENT, [8], 64)
    encode, decode = peer._scorers(enc, dec, "exp")
    a = peer.iwae(encode, decode, x, 50, seed=3)
    b = peer.iwae(encode, decode, x, 50, seed=3)
    assert torch.equal(a, b)
    c = peer.iwae(encode, decode, x, 50, seed=4)
    assert not torch.equal(a, c)


def test_peer_quick_mode_without_pythae(peer, tmp_path, monkeypatch, capsys):
    """Where pythae is absent the script says so and compares with the hand-written VAE."""
    monkeypatch.setattr(peer, "pythae_available", lambda: None)
    out = tmp_path / "peer.json"
    assert peer.main(["--quick", "--data", "digits", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pythae is not importable" in text
    assert "pyrovae vs torch" in text
    result = json.loads(out.read_text())
    assert result["peer"] == "torch"
    (row,) = result["rows"]
    assert set(row["iwae"]) == {"pyrovae", "pyrovae_mf", "pyrovae_mf_exp", "torch"}
    for method, values in row["iwae"].items():
        assert len(values) == 2 and all(math.isfinite(v) and v < 0 for v in values), method
        assert all(s > 0 for s in row["seconds"][method])
        assert all(c > 0 for c in row["cpu_seconds"][method])
    assert row["summary"]["torch"]["diff"] == 0.0
    assert result["args"]["epochs"] == 1

    # a second run (seeds 2, 3) merges with the first into one four-seed report
    out2 = tmp_path / "peer2.json"
    assert peer.main(["--quick", "--data", "digits", "--seed0", "2", "--methods", "pyrovae",
                      "--json", str(out2)]) == 0
    capsys.readouterr()
    assert peer.main(["--merge", str(out), str(out2)]) == 0
    merged = capsys.readouterr().out
    seed_rows = [line for line in merged.splitlines() if line[:4] in ("| 0 ", "| 3 ")]
    assert len(seed_rows) == 2
    header = next(line for line in merged.splitlines() if line.startswith("| seed |"))
    assert header == "| seed | pyrovae | torch |"  # only the methods every run has


def test_peer_uses_pyrovae_default_objective(peer):
    assert peer.default_objective() in pyrovae.registry.OBJECTIVES


def test_peer_scale_maps_start_at_one_or_softplus():
    """exp and softplus1 give σ = 1 at s = 0; pyrovae's softplus gives log 2 (+1e-4)."""
    peer = _load("bench_pythae")
    zero = torch.zeros(3)
    assert torch.allclose(peer.SCALE_MAPS["exp"](zero), torch.ones(3))
    assert torch.allclose(peer.SCALE_MAPS["softplus1"](zero), torch.ones(3), atol=2e-4)
    assert torch.allclose(peer.SCALE_MAPS["softplus"](zero), torch.full((3,), math.log(2) + 1e-4))


def test_engines_cover_every_family(engines):
    rows = engines.rows_to_run(list(engines.KINDS))
    for kind, registry in engines.KINDS.items():
        assert {f for k, f in rows if k == kind} == set(registry.names()), kind
    assert len(rows) >= 4


def test_engines_quick_mode(engines, tmp_path, capsys):
    out = tmp_path / "engines.json"
    assert engines.main(["--quick", "--kinds", "objective", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| objective | trace_elbo |" in text
    rows = json.loads(out.read_text())["rows"]
    assert {r["family"] for r in rows} == set(pyrovae.registry.OBJECTIVES.names())
    for r in rows:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("fast_ms", "pyro_ms", "ratio"))
    ran = {r["family"]: r["fast_engine_ran"] for r in rows}
    assert ran["trace_elbo"] == "fast"
