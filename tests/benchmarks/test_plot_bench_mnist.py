"""plot_bench_mnist.py draws the report's own curves: every point with a test IWAE, the
published figure where one is quoted, refused when the file is not a bench_mnist report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pyrovae.errors import PyrovaeError

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ROOT = BENCH.parent


@pytest.fixture(scope="module")
def plot():
    spec = importlib.util.spec_from_file_location("_plot_bench_mnist",
                                                  BENCH / "plot_bench_mnist.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _report():
    point = {"epochs": 1, "wall_s": 10.0, "test_iwae": -120.0, "test_iwae_se": 1.0,
             "iwae_k": 50, "points": 20}
    return {"published": {"vae": -86.76, "other": None},
            "models": {"vae": {"curve": [point, {**point, "epochs": 4, "wall_s": 40.0,
                                                 "test_iwae": -100.0}]},
                       "other": {"curve": [{**point, "test_iwae": None}]},
                       "pending": {}}}


def test_curves_keep_the_points_with_an_iwae(plot):
    c = plot.curves(_report())
    assert list(c) == ["vae"] and [p["epochs"] for p in c["vae"]] == [1, 4]
    with pytest.raises(PyrovaeError, match="not a bench_mnist report"):
        plot.curves({"rows": []})


def test_figure_draws_each_curve_and_the_published_line(plot, tmp_path):
    fig = plot.figure(_report())
    ax_p, ax_t = fig.axes[:2]
    (line,) = [ln for ln in ax_p.get_lines() if ln.get_marker() == "o"]
    assert list(line.get_ydata()) == [-120.0, -100.0]
    assert any(list(ln.get_ydata()) == [-86.76, -86.76] for ln in ax_t.get_lines())
    assert any(list(ln.get_xdata()) == [plot.BURDA_PASSES] for ln in ax_p.get_lines())
    out = plot.main(["--json", str(_write(tmp_path)), "--out", str(tmp_path / "c.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_later_report_replaces_a_model(plot):
    longer = {"models": {"vae": {"curve": [{"epochs": 121, "wall_s": 1.0, "test_iwae": -90.0,
                                            "iwae_k": 50, "points": 20}]}},
              "published": {"vae": -86.76}}
    m = plot.merged([_report(), longer])
    assert [p["epochs"] for p in plot.curves(m)["vae"]] == [121]
    assert m["published"] == {"vae": -86.76, "other": None}
    with pytest.raises(PyrovaeError, match="not a bench_mnist report"):
        plot.merged([_report(), {"x": 1}])


def test_the_committed_figure_comes_from_the_committed_report(plot):
    report = json.loads((ROOT / "docs/figures/bench_mnist.json").read_text(encoding="utf-8"))
    assert plot.curves(report)  # the README's figure has data to draw
    assert (ROOT / "docs/figures/bench_mnist_curve.png").is_file()


def test_the_readme_quotes_the_longer_vae_run():
    """The README's 121-pass sentence is the committed report's numbers."""
    r = json.loads((ROOT / "docs/figures/bench_mnist_vae121.json").read_text(encoding="utf-8"))
    v = r["models"]["vae"]
    f = v["final"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert v["epochs"] == f["epochs"] == 121
    for value in (f["iwae"]["test_elbo"], f["iwae"]["test_iwae"], f["iwae_ais"]["test_iwae"],
                  f["ais"]["log_px"], f["gaps"]["approximation_gap"],
                  f["gaps"]["amortization_gap"], v["curve"][-1]["test_iwae"]):
        assert f"{value:.2f}".replace("-", "−") in readme, value
    assert f"[BDMC width {f['ais']['width']:.2f}, T = {f['ais']['num_steps']}]" in readme


def _write(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_report()), encoding="utf-8")
    return path
