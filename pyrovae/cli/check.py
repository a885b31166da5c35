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
    p.add_argument("--ais-steps", type=int, default=200, metavar="T",
                   help="AIS intermediate distributions (default 200)")
    p.add_argument("--ais-chains", type=int, default=32, metavar="C",
                   help="AIS chains per data point (default 32)")
    p.add_argument("--bdmc-points", type=int, default=16, metavar="N",
                   help="simulated points for the BDMC sandwich, 0 to skip (default 16)")
    p.add_argument("--sbc-sims", type=int, default=200, metavar="N",
                   help="simulations for SBC of the guide, 0 to skip (default 200)")
    p.add_argument("--collapse-points", type=int, default=500, metavar="N",
                   help="held-out points for the collapse diagnostics (default 500)")
    p.set_defaults(func=run)
    return p


def _prepare(out: Path, overwrite: bool) -> Path:
    """Validate ``out`` and return a fresh staging folder beside it: the check writes
    there, and :func:`_swap` replaces ``out`` only once everything is written, so a
    failed or interrupted re-check leaves the previous report as it was."""
    if out.exists() and not out.is_dir():
        raise PyrovaeError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PyrovaeError(f"output folder {out} exists; pass --overwrite to replace it")
        if not (out / REPORT).is_file():
            raise PyrovaeError(
                f"output folder {out} is not empty and holds no {REPORT}; refusing to clear it"
            )
    staging = out.with_name(f".{out.name}.check-tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _swap(staging: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.check-old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    if old.exists():
        shutil.rmtree(old)


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
    for flag, low in (("ais_steps", 1), ("ais_chains", 1), ("bdmc_points", 0), ("sbc_sims", 0),
                      ("collapse_points", 2)):
        v = getattr(args, flag, low)
        if v < low or (flag == "sbc_sims" and 0 < v < 10):
            raise PyrovaeError(f"--{flag.replace('_', '-')}: expected an integer >= "
                               f"{10 if flag == 'sbc_sims' else low}, got {v}")
    target = args.target
    if target in TOYS or target == "gaussian_mle":
        if not args.out:
            raise PyrovaeError("--out DIR is required when checking a toy problem")
        out = Path(args.out)
        staging = _prepare(out, args.overwrite)
        report = check_toy(target, num_points=args.points, seed=args.seed, folder=staging,
                           quick=args.quick)
    elif Path(target).is_dir():
        out = Path(args.out) if args.out else Path(target) / "check"
        report, staging = _check_run(Path(target), out, args)
    else:
        known = ", ".join(["gaussian_mle", *TOYS])
        raise PyrovaeError(f"{target!r} is neither a toy problem ({known}) nor a run folder")
    from pyrovae.io import atomic_write_text

    report = _relocate(report, staging, out)
    atomic_write_text(staging / REPORT, json.dumps(jsonable(report), indent=1) + "\n")
    _swap(staging, out)
    _print_summary(report, out)
    return 0


def _check_run(run_dir: Path, out_path: Path, args: argparse.Namespace) -> dict:
    import torch

    from pyrovae.plots import posterior as P
    from pyrovae.runs.check import _save, check_vae, diagnostic_figures
    from pyrovae.runs.folder import load_run
    from pyrovae.runs.pipeline import load_data

    vae, spec, _ = load_run(run_dir)  # raises PyrovaeError for a non-run folder
    out = _prepare(out_path, args.overwrite)  # the staging folder
    _, train, test = load_data(spec)
    data = test if test is not None else train
    dtype = next(vae.parameters()).dtype
    x = data.x[: args.points].to(dtype)
    report, grids = check_vae(
        vae, x, num_samples=args.samples, amortization_steps=100 if args.quick else 500,
        nuts_points=0 if args.quick else min(3, len(x)), seed=args.seed,
        ais_steps=min(args.ais_steps, 50) if args.quick else args.ais_steps,
        ais_chains=args.ais_chains, bdmc_points=args.bdmc_points,
        sbc_sims=min(args.sbc_sims, 50) if args.quick and args.sbc_sims else args.sbc_sims,
        collapse_x=data.x[: args.collapse_points].to(dtype), progress=True,
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
    figures.update(diagnostic_figures(report, out))
    report["figures"] = figures
    return report, out


def _relocate(report: dict, staging: Path, out: Path) -> dict:
    """Figure paths in the report point into ``out`` (where the swap puts them)."""
    figs = report.get("figures")
    if isinstance(figs, dict):
        report["figures"] = {k: None if v is None else str(out / Path(v).name)
                             for k, v in figs.items()}
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
