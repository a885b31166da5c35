"""The learning curves of ``bench_mnist.py``: test IWAE against passes and train wall time.

Reads the report ``bench_mnist.py --json`` writes (default ``docs/figures/bench_mnist.json``)
and draws, for every model, its test IWAE (K and images as measured, ± 1 s.e.) after each
stage against the passes over the 60,000 training images (log scale) and against the train
wall time, with Burda et al. (2016)'s published test log p(x) at 3,280 passes as a
dashed line of the same colour (and a star at 3,280 passes) where one is quoted. Nothing
is computed: it draws the JSON, so the figure in the README is the table's own data.

    python benchmarks/plot_bench_mnist.py --json docs/figures/bench_mnist.json \\
        docs/figures/bench_mnist_vae121.json --out docs/figures/bench_mnist_curve.png

Several reports are drawn together; a model in a later one replaces the same model of an
earlier one (a longer run of it).

References:
    Burda, Y., Grosse, R., Salakhutdinov, R. (2016). Importance Weighted
    Autoencoders. ICLR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.plots import save_figure

#: The passes of Burda et al.'s protocol (8 stages of 3^i passes), where their figure is.
BURDA_PASSES = 3280


def curves(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``model -> its curve points`` (those with a test IWAE), in the report's order."""
    models = report.get("models")
    if not isinstance(models, dict):
        raise PyrovaeError("not a bench_mnist report (no 'models')")
    out = {}
    for name, m in models.items():
        points = [p for p in (m.get("curve") or []) if p.get("test_iwae") is not None]
        if points:
            out[name] = points
    return out


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of several: a model in a later report replaces the same model of an
    earlier one; the published figures are all kept."""
    out: dict[str, Any] = {"models": {}, "published": {}}
    for r in reports:
        curves(r)  # a PyrovaeError if it is not a report
        out["models"].update(r["models"])
        out["published"].update(r.get("published") or {})
    return out


def figure(report: dict[str, Any]):
    """The two-panel figure (matplotlib's object API)."""
    from matplotlib.figure import Figure

    data = curves(report)
    published = report.get("published") or {}
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_p, ax_t = fig.subplots(1, 2, sharey=True)
    for i, (name, pts) in enumerate(data.items()):
        color = f"C{i}"
        y = [p["test_iwae"] for p in pts]
        err = [p.get("test_iwae_se") or 0.0 for p in pts]
        k, n = pts[-1].get("iwae_k"), pts[-1].get("points")
        label = f"{name} (IWAE-{k}, {n} images)"
        ax_p.errorbar([p["epochs"] for p in pts], y, yerr=err, marker="o", color=color,
                      label=label, capsize=2)
        ax_t.errorbar([p["wall_s"] / 60 for p in pts], y, yerr=err, marker="o", color=color,
                      capsize=2)
        ref = published.get(name)
        if isinstance(ref, (int, float)):
            for ax in (ax_p, ax_t):
                ax.axhline(ref, color=color, linestyle="--", linewidth=1)
            ax_p.plot([BURDA_PASSES], [ref], marker="*", markersize=10, color=color)
    ax_p.set_xscale("log")
    ax_p.set_xlabel("passes over the 60,000 training images (log scale)")
    ax_t.set_xlabel("train wall time, minutes (shared 2-core CPU)")
    ax_p.set_ylabel("test log p(x) estimate, nats")
    ax_p.legend(fontsize=8, loc="lower right")
    fig.suptitle("MNIST learning curves; dashed: Burda et al. (2016) at 3,280 passes",
                 fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", nargs="+", default=["docs/figures/bench_mnist.json"],
                    help="bench_mnist reports; a later one's model replaces an earlier one's")
    ap.add_argument("--out", default="bench_mnist_curve.png")
    a = ap.parse_args(argv)
    reports = []
    for name in a.json:
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"plot_bench_mnist: {path} not found")
        reports.append(json.loads(path.read_text(encoding="utf-8")))
    report = merged(reports)
    out = Path(a.out)
    save_figure(figure(report), out)
    print(f"wrote {out} ({sum(len(v) for v in curves(report).values())} points)")
    return out


if __name__ == "__main__":
    main()
