"""The whole check report at latent_dim > 2, and every toy's reference check."""

from __future__ import annotations

import json

import pytest
import torch

import pyrovae
from pyrovae.runs.check import Stages, check_toy, check_vae, diagnostic_figures, jsonable


def test_check_vae_latent_4_reports_ais_bdmc_sbc_collapse(binary_data, tmp_path, capsys):
    torch.manual_seed(0)
    vae = pyrovae.VAE(12, 4, encoder=[16], decoder=[16])
    pyrovae.fit(vae, binary_data, epochs=5, batch_size=20, seed=0, progress=False)
    x = binary_data[:3]
    rep, grids = check_vae(vae, x, num_samples=200, amortization_steps=20, ais_steps=20,
                           ais_chains=4, bdmc_points=4, sbc_sims=20, collapse_x=binary_data,
                           progress=True)
    assert grids is None and rep["log_px_method"].startswith("ais")
    assert torch.allclose(torch.as_tensor(rep["gap"]),
                          torch.as_tensor(rep["log_px"]) - torch.as_tensor(rep["elbo"]))
    assert len(rep["bdmc"]["width"]) == 4 and len(rep["sbc"]["failed"]) == 4
    assert rep["collapse"]["latent_dim"] == 4 and "khat_note" in rep
    assert rep["amortization"]["grad_norm"].shape == (3,)
    s = rep["summary"]
    assert {"bdmc_mean_width", "sbc_failed_dims", "active_units", "mean_ais"} <= set(s)
    json.dumps(jsonable(rep))  # the report is JSON-able
    err = capsys.readouterr().err  # stderr is not a TTY here: plain lines per stage
    for stage in ("AIS", "BDMC", "SBC", "collapse", "local guides (L-BFGS)"):
        assert f"check: {stage} done" in err
    figs = diagnostic_figures(rep, tmp_path)
    assert {"bdmc", "sbc", "collapse"} <= set(figs)
    assert all((tmp_path / f"{k}.png").is_file() for k in ("bdmc", "sbc", "collapse"))


def test_stages_silent_when_disabled(capsys):
    with Stages(False)("x", total=3) as tick:
        tick(1)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["banana", "bimodal", "square", "beta_bernoulli",
                                  "gamma_poisson"])
def test_reference_check_with_a_per_point_guide(name):
    """``check TOY`` crashed with 'LocalGuide holds 6 points, got 3': NUTS on the first
    rows must still call a per-point guide with every row."""
    from pyrovae.posterior.local import fit_local_guide
    from pyrovae.posterior.reference import reference_check
    from pyrovae.posterior.target import as_target
    from pyrovae.toy import get_toy

    toy = get_toy(name)
    x = toy.sample(6, seed=0)
    target = as_target(toy, fit_local_guide(toy, x, steps=20))
    _, moments = reference_check(target, x, num_samples=20, warmup=20, num_chains=2,
                                     points=3)
    assert moments["nuts_mean"].shape == moments["guide_mean"].shape == (3, toy.latent_dim)


@pytest.mark.slow
def test_check_banana_default_options(tmp_path):
    rep = check_toy("banana", folder=tmp_path)
    assert "nuts" in rep and len(rep["ais"]["log_px"]) == 6
    diff = torch.as_tensor(rep["ais"]["minus_identity_log_px"]).abs()
    assert bool((diff < 4 * torch.as_tensor(rep["ais"]["stderr"]) + 0.05).all()), diff
