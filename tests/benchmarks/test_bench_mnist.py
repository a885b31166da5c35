"""bench_mnist.py (Burda et al.'s protocol) on small made data: an interrupted run resumed
equals an uninterrupted one, a finished run computes nothing again, the JSON report's
schema, and bad input refused in one line.  No timing is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.runs import folder as runs
from pyrovae.training.trainer import Trainer


def args(data: str, out: Path, *extra: str) -> list[str]:
    return ["--data", data, "--out", str(out), "--test-points", "10", "--iwae-k", "60",
            "--curve-points", "5", "--curve-k", "20", "--ais-points", "4", "--ais-steps", "4",
            "--ais-max-steps", "8", "--ais-chains", "2", "--bdmc-points", "2",
            "--gap-points", "2", "--gap-steps", "2", "--gap-particles", "8",
            "--gap-samples", "20", *extra]


def params(folder: Path) -> dict[str, torch.Tensor]:
    vae, _, _ = runs.load_run(folder, history=False)
    return {k: v.clone() for k, v in vae.state_dict().items()}


def numbers(report: dict, model: str) -> dict:
    """The report's results of ``model`` without the times and loads."""
    st = report["models"][model]
    curve = [{k: v for k, v in p.items() if k not in ("wall_s", "cpu_s", "load")}
             for p in st["curve"]]
    f = st["final"]
    return {"curve": curve, "iwae": {k: v for k, v in f["iwae"].items() if k != "seconds"},
            "ais": f["ais"]["per_point"], "gaps": f["gaps"]["approximation_gap"],
            "au": f["active_units"]}


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(bench, data, tmp_path,
                                                                monkeypatch):
    # stages 2 = epochs 1 and 4 (Burda's 1 + 3): interrupted in epoch 3, inside stage 1
    whole = bench.main(args(data, tmp_path / "a", "--models", "vae", "--stages", "2"))
    calls = {"n": 0}
    real = Trainer._train_epoch

    def dies_in_the_third_epoch(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_the_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        bench.main(args(data, tmp_path / "b", "--models", "vae", "--stages", "2"))
    kept = json.loads((tmp_path / "b" / "vae.bench.json").read_text())
    assert [p["epochs"] for p in kept["curve"]] == [1] and kept["final"] == {}
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    resumed = bench.main(args(data, tmp_path / "b", "--models", "vae", "--stages", "2"))
    a, b = params(tmp_path / "a" / "vae"), params(tmp_path / "b" / "vae")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert numbers(resumed, "vae") == numbers(whole, "vae")
    assert [p["epochs"] for p in resumed["models"]["vae"]["curve"]] == [1, 4]
    assert [p["stage"] for p in resumed["models"]["vae"]["curve"]] == [0, 1]
    assert resumed["models"]["vae"]["curve"][1]["lr"] == pytest.approx(1e-3 * 10 ** (-1 / 7))


def test_a_finished_run_computes_nothing_again(bench, data, tmp_path, monkeypatch):
    first = bench.main(args(data, tmp_path / "o", "--models", "vae", "--epochs", "1"))

    def no(*a, **k):
        raise AssertionError("computed again")

    for name in ("evaluate", "certified_ais", "amortization_gap", "collapse_diagnostics",
                 "train_run", "resume_run"):
        monkeypatch.setattr(bench, name, no)
    again = bench.main(args(data, tmp_path / "o", "--models", "vae", "--epochs", "1"))
    assert numbers(again, "vae") == numbers(first, "vae")
    # a report written before the final numbers recorded their epochs: read back as well
    state = tmp_path / "o" / "vae.bench.json"
    older = json.loads(state.read_text())
    del older["final"]["epochs"]
    state.write_text(json.dumps(older))
    again = bench.main(args(data, tmp_path / "o", "--models", "vae", "--epochs", "1"))
    assert numbers(again, "vae") == numbers(first, "vae")


def test_more_stages_train_on_and_score_the_new_end(bench, data, tmp_path, monkeypatch):
    """Raising --stages resumes the run from its last stage and scores the final numbers
    again at the new end (the earlier end's numbers are not kept as the final ones)."""
    out = tmp_path / "o"
    two = bench.main(args(data, out, "--models", "vae", "--stages", "1"))
    assert two["models"]["vae"]["final"]["epochs"] == 1
    three = bench.main(args(data, out, "--models", "vae", "--stages", "2"))
    st = three["models"]["vae"]
    assert st["epochs"] == 4 and st["final"]["epochs"] == 4
    assert [p["epochs"] for p in st["curve"]] == [1, 4]
    assert st["final"]["iwae"] != two["models"]["vae"]["final"]["iwae"]
    whole = bench.main(args(data, tmp_path / "w", "--models", "vae", "--stages", "2"))
    assert numbers(three, "vae") == numbers(whole, "vae")


def test_the_report_schema(bench, data, tmp_path):
    out = tmp_path / "o"
    r = bench.main(args(data, out, "--models", "vae", "hiwae5", "--epochs", "2",
                        "--json", str(tmp_path / "r.json")))
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(
        (out / "bench_mnist.json").read_text())
    assert r["bench"] == "bench_mnist" and r["command"][0] == "benchmarks/bench_mnist.py"
    assert {"settings", "machine", "published", "load_at_end"} <= r.keys()
    assert r["published"]["vae"] == -86.76 and r["published"]["hvae"] == -85.33
    assert r["published"]["hiwae50"] == -82.90 and r["published"]["hiwae5"] is None
    assert set(r["models"]) == {"vae", "hiwae5"}
    for name, st in r["models"].items():
        assert st["published"] == bench.PUBLISHED[name] and st["epochs"] == 2
        assert [p["epochs"] for p in st["curve"]] == [1, 2]
        for p in st["curve"]:
            assert {"wall_s", "cpu_s", "load", "test_elbo", "test_iwae", "test_iwae_se",
                    "iwae_k", "points"} <= p.keys()
        f = st["final"]
        assert {"test_elbo", "test_iwae", "khat_share", "iwae_k", "points"} <= f["iwae"].keys()
        assert f["iwae"]["iwae_k"] == 60 and f["iwae"]["points"] == 10
        assert {"log_px", "stderr", "width", "width_stderr", "num_steps", "met", "stopped",
                "history", "seconds_per_1000"} <= f["ais"].keys()
        assert f["ais"]["mode"] == "frozen" and len(f["ais"]["per_point"]) == 4
        assert {"approximation_gap", "amortization_gap", "inference_gap", "converged",
                "max_grad_norm", "local_family"} <= f["gaps"].keys()
        # AIS beside IWAE on the same images (a subset's mean is not the 1,000's)
        ia = f["iwae_ais"]
        assert ia["points"] == len(f["ais"]["per_point"])
        assert ia["ais_minus_iwae"] == pytest.approx(f["ais"]["log_px"] - ia["test_iwae"])
        assert f["gaps"]["approximation_gap"] + f["gaps"]["amortization_gap"] == \
            pytest.approx(f["gaps"]["inference_gap"])
        assert f["active_units"]["total"] == sum(f["active_units"]["per_site"].values())
        flat = [f["iwae"]["test_iwae"], f["ais"]["log_px"], f["gaps"]["inference_gap"],
                st["train_wall_s"], st["train_cpu_s"]]
        assert all(math.isfinite(v) for v in flat)
    assert set(r["models"]["hiwae5"]["final"]["active_units"]["per_site"]) == {"z1", "z2"}
    assert r["models"]["hiwae5"]["final"]["gaps"]["local_family"].startswith("q(z1|x)")
    spec = runs.load_run(out / "hiwae5", history=False)[1]  # the two-layer IWAE, k = 5
    assert spec["objective"] == {"family": "renyi_elbo", "alpha": 0.0, "num_particles": 5}
    assert spec["model"]["family"] == "hierarchical"
    assert runs.folder_kind(out / "vae") == "run"  # a pipeline run folder: pyrovae reads it


def test_bad_input_is_refused_in_one_line(bench, data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(PyrovaeError, match="did not make"):
        bench.main(args(data, mine))
    assert (mine / "notes.txt").read_text() == "mine"
    (tmp_path / "r.json").write_text('{"mine": 1}')
    with pytest.raises(PyrovaeError, match="not a bench_mnist report"):
        bench.write_json(tmp_path / "r.json", {"bench": "bench_mnist"})
    assert (tmp_path / "r.json").read_text() == '{"mine": 1}'
    for bad in (["--stages", "x"], ["--stages", "nope=2"], ["--stages", "iwae50=2"],
                ["--test-points", "0"]):
        with pytest.raises(PyrovaeError) as e:
            bench.main(args(data, tmp_path / "o", "--models", "vae", *bad))
        assert "\n" not in str(e.value)
