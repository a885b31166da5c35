"""``pyrovae check``: toy problems and run folders, JSON report and figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pyrovae.cli import main


def test_check_toy_writes_report_and_figures(tmp_path, capsys):
    out = tmp_path / "banana"
    assert main(["check", "banana", "--out", str(out), "--quick", "--points", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["toy"] == "banana"
    ident = report["identity"]
    assert len(ident["gap"]) == 3 and all(ident["ok"])
    assert ident["kl_method"] == "grid" and ident["log_px_method"] == "grid"
    assert all(e < 1e-3 for e in ident["log_px_error"])
    assert len(report["psis"]["khat"]) == 3
    for name in ("banana_posterior.png", "banana_khat.png"):
        assert (out / name).stat().st_size > 1000
    # every figure the report lists carries its caption (the one source in plots.captions)
    from pyrovae.plots.captions import caption

    assert set(report["captions"]) == {k for k, v in report["figures"].items() if v}
    assert all(report["captions"][k] == caption(report["figures"][k])
               for k in report["captions"])
    assert {"khat", "posterior"} <= set(report["captions"])  # each figure's caption
    assert "IWAE" in report["captions"]["khat"] and "grid" in report["captions"]["posterior"]
    printed = capsys.readouterr().out
    assert "identity_ok: True" in printed
    # the AIS result of report.json is in the printed summary too
    mean_ais = sum(report["ais"]["log_px"]) / 3
    assert f"ais_log_px_mean: {mean_ais:.4f}" in printed
    assert report["summary"]["ais_log_px_mean"] == pytest.approx(mean_ais)


def test_check_hierarchical_toy_two_sites_theta_fixed_to_the_floor(tmp_path):
    out = tmp_path / "hier"
    assert main(["check", "hierarchical", "--out", str(out), "--quick", "--points", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["k1"] == 1 and report["model"]["k2"] == 1
    tf = report["theta_fixed"]
    assert tf["floor"] == pytest.approx(report["model"]["meanfield_floor"])
    assert tf["kl"][-1] < tf["kl"][0] and tf["final_kl_above_floor"] < 0.05
    assert all(report["identity"]["ok"])
    assert (out / "hierarchical_theta_fixed.png").is_file()


@pytest.mark.slow
def test_check_mixture_sums_the_class_out_and_tells_the_wrong_guides(tmp_path, capsys):
    out = tmp_path / "mix"
    assert main(["check", "mixture", "--out", str(out), "--quick", "--points", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["num_classes"] == 3
    lp = report["log_px"]
    assert all(abs(d) < 0.05 for d in lp["ais"]["minus_closed_form"])
    assert len(lp["ais"]["per_class"]) == 3 and len(lp["ais"]["per_class"][0]) == 3
    guides = report["guides"]
    assert set(guides) == {"exact", "flat_class", "sharp_class", "wide_z"}
    assert all(all(g["identity"]["ok"]) for g in guides.values())
    assert max(abs(v) for v in guides["exact"]["identity"]["gap"]) < 1e-8
    exact_te = guides["exact"]["traceenum"]
    assert exact_te["elbo"] == pytest.approx(exact_te["enumerated_elbo"], abs=1e-8)
    assert exact_te["elbo"] == pytest.approx(sum(lp["closed_form"]), abs=1e-8)
    assert guides["exact"]["sbc"]["passed"]
    assert not guides["flat_class"]["sbc"]["calibration"]["passed"]
    assert not guides["wide_z"]["sbc"]["ranks"]["passed"]
    assert (out / "mixture_reliability_flat_class.png").stat().st_size > 1000
    # every figure the report lists carries its caption (the one source in plots.captions)
    from pyrovae.plots.captions import caption

    assert set(report["captions"]) == {k for k, v in report["figures"].items() if v}
    assert all(report["captions"][k] == caption(report["figures"][k])
               for k in report["captions"])
    printed = capsys.readouterr().out
    assert "identity_ok: True" in printed and "sbc_passed: exact" in printed


def test_check_ppca_reports_theta_fixed_and_closed_forms(tmp_path):
    out = tmp_path / "ppca"
    assert main(["check", "ppca", "--out", str(out), "--quick", "--points", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    tf = report["theta_fixed"]
    assert tf["floor"] > 0.2 and tf["kl"][-1] < tf["kl"][0]
    ident = report["identity"]
    for a, b in zip(ident["log_px"], ident["log_px_closed_form"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    for a, b in zip(ident["kl"], ident["kl_closed_form"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert (out / "ppca_theta_fixed.png").is_file()


def test_refuses_existing_output_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["check", "gaussian_mle", "--out", str(out), "--quick"]) == 0
    capsys.readouterr()
    assert main(["check", "gaussian_mle", "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and err.count("\n") == 1
    assert main(["check", "gaussian_mle", "--out", str(out), "--quick", "--overwrite"]) == 0
    # a non-empty folder that is not a check output is never cleared
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert main(["check", "gaussian_mle", "--out", str(other), "--overwrite"]) == 2
    assert (other / "keep.txt").is_file()


def test_check_toy_without_out_writes_checks_toy_in_the_working_directory(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "banana", "--quick", "--points", "2"]) == 0
    report = json.loads((tmp_path / "checks" / "banana" / "report.json").read_text())
    assert report["toy"] == "banana"
    assert "checks/banana" in capsys.readouterr().out


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["check", "no_such_toy", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "neither a toy problem" in err and err.count("\n") == 1
    assert main(["check", "ppcaa", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'ppca'?" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert main(["check", "ppca", "--out", " "]) == 2
    assert "--out: expected a folder name" in capsys.readouterr().err
    assert main(["check", str(tmp_path)]) == 2  # a folder that is not a run
    assert "not a pyrovae run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_check_run_folder(tmp_path):
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-c", "import sys; from pyrovae.cli import main; sys.exit(main())",
         "train", "--epochs", "3", "--out", str(run), "--quiet"],
        check=True, capture_output=True, timeout=300,
    )
    assert main(["check", str(run), "--quick", "--points", "2", "--samples", "500"]) == 0
    report = json.loads((run / "check" / "report.json").read_text())
    assert report["split"] == "test" and report["latent_dim"] == 2
    assert len(report["gap"]) == 2 and all(report["ok"])
    assert "amortization" in report
    assert (run / "check" / "posterior.png").is_file()


def test_budget_flags_are_validated(tmp_path, capsys):
    for flag, value in (("--ais-steps", "0"), ("--ais-chains", "0"), ("--sbc-sims", "5"),
                        ("--bdmc-points", "-1"), ("--collapse-points", "1")):
        assert main(["check", "ppca", "--out", str(tmp_path / "x"), flag, value]) == 2
        err = capsys.readouterr().err
        assert flag in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_overwrite_swaps_at_the_end_and_keeps_the_old_report_on_failure(tmp_path, monkeypatch):
    import pyrovae.runs.check as rc

    out = tmp_path / "g"
    assert main(["check", "gaussian_mle", "--out", str(out), "--quick"]) == 0
    before = (out / "report.json").read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(rc, "check_toy", boom)
    with pytest.raises(RuntimeError):
        main(["check", "gaussian_mle", "--out", str(out), "--quick", "--overwrite"])
    assert (out / "report.json").read_text() == before  # the old report survives
    monkeypatch.undo()
    assert main(["check", "gaussian_mle", "--out", str(out), "--quick", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no staging left behind
    report = json.loads((out / "report.json").read_text())
    assert all(str(out) in v for v in report["figures"].values() if v)


def test_check_certified_on_a_tiny_run(tmp_path, tiny_run, capsys):
    """``--certified``: AIS and BDMC with frozen kernels at a T the BDMC width chose; the
    report and the printed summary carry the certificate line."""
    tiny_run(tmp_path)
    run = tmp_path / "run"
    assert main(["check", str(run), "--certified", "--quick", "--points", "2",
                 "--samples", "100", "--ais-steps", "4", "--ais-chains", "4",
                 "--bdmc-points", "4", "--target-width", "0.5", "--max-ais-steps", "16",
                 "--sbc-sims", "0", "--collapse-points", "2"]) == 0
    report = json.loads((run / "check" / "report.json").read_text())
    cert = report["certified"]
    steps = [h["num_steps"] for h in cert["history"]]
    assert steps[0] == 4 and steps == [4 * 2**i for i in range(len(steps))]
    assert cert["num_steps"] == steps[-1] <= 16 and cert["mode"] == "frozen"
    assert cert["stopped"] in ("target", "max_steps")
    assert cert["met"] == (cert["width"] + 2 * cert["width_stderr"] <= 0.5)
    assert report["ais"]["mode"] == "frozen" and report["bdmc"]["mode"] == "frozen"
    assert report["ais"]["settings"]["num_steps"] == cert["num_steps"]
    assert len(report["bdmc"]["width"]) == 4
    assert cert["line"].startswith(f"certified: AIS (frozen kernels, T={cert['num_steps']}")
    assert "BDMC width" in cert["line"] and report["summary"]["certified"] == cert["line"]
    assert f"\n  {cert['line']}\n" in capsys.readouterr().out


def test_certified_flags_are_validated(tmp_path, tiny_run, capsys):
    tiny_run(tmp_path)
    run = str(tmp_path / "run")
    for extra, message in ((["--target-width", "0"], "--target-width"),
                           (["--target-width", "nan"], "--target-width"),
                           (["--max-ais-steps", "10"], "--max-ais-steps"),
                           (["--ais-time-limit", "0"], "--ais-time-limit"),
                           (["--bdmc-points", "0"], "--bdmc-points")):
        assert main(["check", run, "--certified", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["check", "ppca", "--certified", "--out", str(tmp_path / "x")]) == 2
    assert "applies to a run folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "run" / "check").exists()


@pytest.mark.parametrize("rhat, ess, mixed", [(1.005, 400.0, True), (1.07, 18.0, False),
                                              (1.005, 50.0, False)])
def test_a_nuts_reference_that_did_not_mix_is_said_in_the_printed_summary(
        tmp_path, capsys, rhat, ess, mixed):
    """R̂ 1.07 and ESS 18 (seen on `square`) were in the JSON only; now one printed line says
    the reference did not mix and that comparisons with it are unreliable."""
    from pyrovae.cli.check import _print_summary
    from pyrovae.posterior.reference import mixing_verdict

    ok, line = mixing_verdict(rhat, ess)
    assert ok is mixed
    _print_summary({"summary": {"mean_gap": 0.1}, "nuts": {"mixed": ok, "mixing": line}},
                   tmp_path)
    printed = capsys.readouterr().out
    assert line in printed
    assert ("did NOT mix" in printed and "unreliable" in printed) is (not mixed)
