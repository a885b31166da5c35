"""bench_mnist.py's peer row (pythae's VAE): without pythae the row says "not installed";
with it (``pytest.importorskip``) the model trains on small made data from the ``vae``
row's initial weights, resumes to the uninterrupted weights, is scored like every other
row, and its weights loaded into the pyrovae VAE give pythae's own encoder outputs and
loss.  No timing is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import kl_divergence

from tests.benchmarks.test_bench_mnist import args


def spec_of(bench, data: str, out: Path, epochs: int, *extra: str) -> dict:
    a = bench.parser().parse_args(args(data, out, *extra))
    return bench.model_spec("pythae", a, epochs)


def test_without_pythae_the_row_says_not_installed(bench, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "pythae_version", lambda: None)
    r = bench.main(args(data, tmp_path / "o", "--models", "pythae", "--epochs", "1"))
    assert r["models"]["pythae"] == {"status": "not installed", "published": None}
    assert "pythae  not installed" in capsys.readouterr().out
    assert not (tmp_path / "o" / "pythae").exists()


def test_the_pythae_row_trains_from_the_vae_rows_weights_and_is_scored(bench, data, tmp_path):
    pytest.importorskip("pythae")
    from pyrovae.runs.pipeline import build

    out = tmp_path / "o"
    r = bench.main(args(data, out, "--models", "vae", "pythae", "--stages", "2"))
    st = r["models"]["pythae"]
    assert st["version"] and st["scale_map"] == "exp(s/2)" and st["published"] is None
    assert st["epochs"] == 4 and [p["epochs"] for p in st["curve"]] == [1, 4]
    assert st["curve"][1]["lr"] == pytest.approx(1e-3 * 10 ** (-1 / 7))  # Burda's stage 1
    f = st["final"]
    assert {"iwae", "ais", "iwae_ais", "gaps", "active_units"} <= f.keys()
    assert f["iwae"]["points"] == 10 and len(f["ais"]["per_point"]) == 4
    assert all(math.isfinite(v) for v in (f["iwae"]["test_iwae"], f["ais"]["log_px"],
                                          f["gaps"]["inference_gap"], st["train_wall_s"]))
    # pythae's trained weights are in OUT and differ from the vae row's (another trainer)
    saved = torch.load(out / "pythae" / bench.PYTHAE_WEIGHTS)
    assert {k.split(".")[0] for k in saved} == {"encoder", "decoder"}
    assert f["iwae"]["test_iwae"] != r["models"]["vae"]["final"]["iwae"]["test_iwae"]
    # before any step the weights are the vae row's initial ones (same build, same seed)
    _, model, hist = bench.train_pythae(tmp_path / "zero", spec_of(bench, data, out, 4,
                                                                   "--stages", "2"), 0)
    _, init, _, _ = build(spec_of(bench, data, out, 4, "--stages", "2"))
    assert hist["epoch"] == []
    assert torch.equal(model.encoder.net[0].weight, init.encoder[0].weight)
    assert torch.equal(model.decoder.net[4].bias, init.decoder[4].bias)
    # the report row reads the peer like the others
    assert bench.row("pythae", st).split()[:2] == ["pythae", "4"]
    assert json.loads((out / "pythae.bench.json").read_text())["final"] == f


def test_an_interrupted_pythae_run_resumes_to_the_uninterrupted_weights(bench, data, tmp_path):
    pytest.importorskip("pythae")
    spec = spec_of(bench, data, tmp_path, 3, "--epochs", "3")
    bench.train_pythae(tmp_path / "a", spec, 1)  # stopped after a pass, then resumed
    _, resumed, hist = bench.train_pythae(tmp_path / "a", spec, 3)
    _, whole, _ = bench.train_pythae(tmp_path / "b", spec, 3)
    assert hist["epoch"] == [1, 2, 3]
    a, b = resumed.state_dict(), whole.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first = bench.train_pythae(tmp_path / "c", spec, 1)[1].state_dict()
    assert not torch.equal(first["encoder.net.0.weight"], a["encoder.net.0.weight"])


def test_pythae_weights_in_the_pyrovae_vae_give_pythaes_own_outputs(bench, data, tmp_path):
    pytest.importorskip("pythae")
    spec = spec_of(bench, data, tmp_path, 2, "--epochs", "2")
    built, model, _ = bench.train_pythae(tmp_path / "p", spec, 2)
    vae = bench.pyrovae_of_pythae(model.state_dict(), built)
    x = torch.bernoulli(torch.rand(6, 16, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        enc = model.encoder(x)
        mu, log_var = enc.embedding, enc.log_covariance
        q = vae.encode(x)
        assert torch.allclose(q.mean, mu, atol=1e-6)
        assert torch.allclose(q.stddev, torch.exp(0.5 * log_var), atol=1e-6)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(2))
        z = mu + torch.exp(0.5 * log_var) * eps  # the same draw on both sides
        recon = model.decoder(z)["reconstruction"]
        loss, _, kl = model.loss_function(recon, x, mu, log_var, z)
        ours_kl = kl_divergence(q, vae.prior_dist())
        ours = -(vae.decode(z).log_prob(x) - ours_kl)
    assert float(ours_kl.mean()) == pytest.approx(float(kl), rel=1e-5)
    assert float(ours.mean()) == pytest.approx(float(loss), rel=1e-5)
    assert float(loss) > 0 and float(kl) > 0
