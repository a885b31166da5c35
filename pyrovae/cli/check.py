"""``pyrovae check``: compare a guide with the exact posterior.

    pyrovae check TOY_NAME --out DIR     a toy problem with exact answers
    pyrovae check RUN_DIR [--out DIR]    a trained run (held-out points of its data)

Writes ``DIR/report.json`` and PNG figures; an existing, non-empty ``DIR`` is
refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from pyrovae.errors import PyrovaeError

REPORT = "report.json"


def register(sub: Any) -> argparse.ArgumentParser:
    from pyrovae.toy import TOYS

    names = ", ".join(["gaussian_mle", *TOYS])
    p = sub.add_parser(
        "check",
        help="check a guide against the exact posterior (toy problem or run folder)",
        description="Check q(z|x) against p(z|x): log p(x) = ELBO + KL(q‖p(z|x)) per point, "
        "the gap, PSIS k̂ and ESS, amortization vs approximation gap, a NUTS reference. "
        f"TARGET is a toy problem ({names}) or a run folder.",
    )
    p.add_argument("target", metavar="TARGET", help="toy problem name or run folder")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default for a run: RUN/check; required for a toy)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--points", type=int, default=6, metavar="N",
                   help="number of (held-out) data points to check (default 6)")
    p.add_argument("--samples", type=int, default=2000, metavar="S",
                   help="Monte Carlo / importance samples per point (default 2000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    p.add_argument("--quick", action="store_true",
                   help="fewer optimisation steps and samples, no NUTS (a smoke test)")
    p.set_defaults(func=run)
    return p


def _prepare(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise PyrovaeError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PyrovaeError(f"output folder {out} exists; pass --overwrite to replace it")
        if not (out / REPORT).is_file():
            raise PyrovaeError(
                f"output folder {out} is not empty and holds no {REPORT}; refusing to clear it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(args: argparse.Namespace) -> int:
    from pyrovae.runs.check import check_toy, jsonable
    from pyrovae.toy import TOYS

    if args.points < 1:
        raise PyrovaeError(f"--points: expected a positive integer, got {args.points}")
    from pyrovae.runs.spec import MAX_NUM_SAMPLES, MAX_SEED

    if not 100 <= args.samples <= MAX_NUM_SAMPLES:  # the one samples bound (h12)
        raise PyrovaeError(f"--samples: expected an integer in [100, {MAX_NUM_SAMPLES}], "
                           f"got {args.samples if args.samples < 10**30 else 'a huge number'}")
    if not 0 <= args.seed <= MAX_SEED:
        raise PyrovaeError(f"--seed: expected an integer in [0, {MAX_SEED}], got "
                           f"{args.seed if abs(args.seed) < 10**30 else 'a huge number'}")
    target = args.target
    if target in TOYS or target == "gaussian_mle":
        if not args.out:
            raise PyrovaeError("--out DIR is required when checking a toy problem")
        out = _prepare(Path(args.out), args.overwrite)
        report = check_toy(target, num_points=args.points, seed=args.seed, folder=out,
                           quick=args.quick)
    elif Path(target).is_dir():
        out_path = Path(args.out) if args.out else Path(target) / "check"
        report = _check_run(Path(target), out_path, args)
        out = out_path
    else:
        known = ", ".join(["gaussian_mle", *TOYS])
        raise PyrovaeError(f"{target!r} is neither a toy problem ({known}) nor a run folder")
    (out / REPORT).write_text(json.dumps(jsonable(report), indent=1) + "\n", encoding="utf-8")
    _print_summary(report, out)
    return 0


def _check_run(run_dir: Path, out_path: Path, args: argparse.Namespace) -> dict:
    import torch

    from pyrovae.plots import posterior as P
    from pyrovae.runs.check import _save, check_vae
    from pyrovae.runs.folder import load_run
    from pyrovae.runs.pipeline import load_data

    vae, spec, _ = load_run(run_dir)  # raises PyrovaeError for a non-run folder
    out = _prepare(out_path, args.overwrite)
    _, train, test = load_data(spec)
    data = test if test is not None else train
    x = data.x[: args.points].to(next(vae.parameters()).dtype)
    report, grids = check_vae(
        vae, x, num_samples=args.samples, amortization_steps=100 if args.quick else 500,
        nuts_points=0 if args.quick else min(3, len(x)), seed=args.seed,
    )
    report = {"run": str(run_dir), "data": spec["data"], "split": "test" if test else "train",
              **report}
    figures: dict[str, str | None] = {}
    if grids is not None and vae.latent_dim == 2:
        titles = [f"gap {float(g):.2f}, $\\hat{{k}}$ {float(k):.2f}"
                  for g, k in zip(report["gap"], report["khat"], strict=True)]
        images = None
        if data.image_shape is not None:
            images = [xi.reshape(data.image_shape).numpy() for xi in x.float()]
        fig = P.posterior_grid_figure(grids, images=images, titles=titles)
        figures["posterior"] = _save(fig, out, "posterior.png")
    figures["khat"] = _save(P.khat_figure(torch.as_tensor(report["khat"])), out, "khat.png")
    if "amortization" in report:
        figures["gaps"] = _save(P.gaps_figure({vae.spec["guide"]["family"]:
                                               report["amortization"]}), out, "gaps.png")
    report["figures"] = figures
    return report


def _print_summary(report: dict, out: Path) -> None:
    s = report.get("summary")
    if s is None and "identity" in report:
        ident = report["identity"]
        s = {
            "mean_gap": float(ident["gap"].mean()), "mean_kl": float(ident["kl"].mean()),
            "max_abs_residual": float(ident["residual"].abs().max()),
            "identity_ok": bool(ident["ok"].all()),
        }
        if "theta_fixed" in report:
            tf = report["theta_fixed"]
            s["theta_fixed_final_kl"] = tf["final_kl"]
            s["theta_fixed_floor"] = tf["floor"]
    if s is None:
        s = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    print(f"pyrovae check: wrote {out / REPORT}")
    for k, v in s.items():
        if v is not None:
            print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
