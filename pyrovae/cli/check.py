"""``pyrovae check``: compare a guide with the exact posterior.

    pyrovae check TOY_NAME [--out DIR]   a toy problem with exact answers (default checks/TOY)
    pyrovae check RUN_DIR [--out DIR]    a trained run (held-out points of its data)
    pyrovae check RUN_DIR --certified    AIS and BDMC with frozen kernels, T doubled until
                                         the BDMC width is under --target-width

Writes ``DIR/report.json`` and PNG figures through
:mod:`pyrovae.runs.outputs` (locked, staged, swapped in when complete); an
existing output is replaced only with ``--overwrite``, and a folder holding
files pyrovae did not write never.  This module only parses and prints.
"""

from __future__ import annotations

import argparse
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
                   help="output folder (default for a run: RUN/check; for a toy: "
                   "checks/TOY in the working directory)")
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
    p.add_argument("--certified", action="store_true",
                   help="run folders: AIS and BDMC in the two-round frozen-kernel mode "
                   "(unbiased weights), T starting at --ais-steps and doubled until the "
                   "BDMC width on simulated data is under --target-width")
    p.add_argument("--target-width", type=float, default=0.2, metavar="W",
                   help="with --certified: the BDMC width to reach, nats (default 0.2)")
    p.add_argument("--max-ais-steps", type=int, default=6400, metavar="T",
                   help="with --certified: the largest T tried (default 6400)")
    p.add_argument("--ais-time-limit", type=float, default=None, metavar="S",
                   help="with --certified: seconds for the budget search (default none)")
    p.add_argument("--collapse-points", type=int, default=500, metavar="N",
                   help="held-out points for the collapse diagnostics (default 500)")
    p.add_argument("--y", metavar="Y",
                   help="a conditional run's context to check: a class label (e.g. 3; the "
                   "points checked are held-out points of that class) or a context vector "
                   "(e.g. 0.5,1.2); default: the first held-out point's")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show the progress of long steps on stderr: a live line on a "
                   "terminal; --progress also off one (a line at most every 10 s); "
                   "--no-progress: none (default: on a terminal only)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pyrovae.toy import TOYS

    if args.points < 1:
        raise PyrovaeError(f"--points: expected a positive integer, got {args.points}")
    from pyrovae.registry import check_seed
    from pyrovae.runs.spec import MAX_NUM_SAMPLES

    if not 100 <= args.samples <= MAX_NUM_SAMPLES:  # the one samples bound (h12)
        raise PyrovaeError(f"--samples: expected an integer in [100, {MAX_NUM_SAMPLES}], "
                           f"got {args.samples if args.samples < 10**30 else 'a huge number'}")
    check_seed(args.seed, "--seed")
    for flag, low in (("ais_steps", 1), ("ais_chains", 1), ("bdmc_points", 0), ("sbc_sims", 0),
                      ("collapse_points", 2)):
        v = getattr(args, flag, low)
        if v < low or (flag == "sbc_sims" and 0 < v < 10):
            raise PyrovaeError(f"--{flag.replace('_', '-')}: expected an integer >= "
                               f"{10 if flag == 'sbc_sims' else low}, got {v}")
    import math

    certified = getattr(args, "certified", False)
    if certified:
        if not (math.isfinite(args.target_width) and args.target_width > 0):
            raise PyrovaeError(f"--target-width: expected a positive number, got "
                               f"{args.target_width}")
        if args.max_ais_steps < args.ais_steps:
            raise PyrovaeError(f"--max-ais-steps: expected an integer >= --ais-steps "
                               f"({args.ais_steps}), got {args.max_ais_steps}")
        if args.ais_time_limit is not None and not (math.isfinite(args.ais_time_limit)
                                                    and args.ais_time_limit > 0):
            raise PyrovaeError(f"--ais-time-limit: expected a positive number of seconds, "
                               f"got {args.ais_time_limit}")
        if args.bdmc_points < 1:
            raise PyrovaeError("--certified: the budget is chosen by BDMC; --bdmc-points "
                               "must be >= 1")
    from pyrovae.runs.outputs import check_run_into, check_toy_into

    target = args.target
    if target in TOYS or target == "gaussian_mle":
        if certified:
            raise PyrovaeError("--certified: applies to a run folder; a toy problem's "
                               "check compares with exact answers already")
        if args.out is not None and not args.out.strip():
            raise PyrovaeError("--out: expected a folder name, got an empty string")
        if args.y is not None:
            raise PyrovaeError(f"--y: toy problem {target!r} is unconditional; drop --y")
        out = Path(args.out) if args.out is not None else Path("checks") / target
        report = check_toy_into(target, out, overwrite=args.overwrite, num_points=args.points,
                                seed=args.seed, quick=args.quick, progress=args.progress)
    elif Path(target).is_dir():
        if args.out is not None and not args.out.strip():
            raise PyrovaeError("--out: expected a folder name, got an empty string")
        report, out = check_run_into(
            target, args.out, overwrite=args.overwrite, points=args.points,
            samples=args.samples, seed=args.seed, quick=args.quick, ais_steps=args.ais_steps,
            ais_chains=args.ais_chains, bdmc_points=args.bdmc_points, sbc_sims=args.sbc_sims,
            collapse_points=args.collapse_points, progress=args.progress, y=args.y,
            certified=certified, target_width=args.target_width,
            max_ais_steps=args.max_ais_steps, ais_time_limit=args.ais_time_limit)
    else:
        import difflib

        names = ["gaussian_mle", *TOYS]
        close = difflib.get_close_matches(target, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PyrovaeError(f"{target!r} is neither a toy problem ({', '.join(names)}) "
                           f"nor a run folder{hint}")
    _print_summary(report, out)
    return 0


def _print_summary(report: dict, out: Path) -> None:
    s = report.get("summary")  # the checks compose it (runs/check.py), the CLI prints it
    if s is None:
        s = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    print(f"pyrovae check: wrote {Path(out) / REPORT}")
    context = report.get("context")
    if isinstance(context, dict):  # a conditional run: every log p(x) is given y
        print(f"  quantity: {context['quantity']}, y {context['chosen']}; each log_px "
              "below is given y")
    nuts = report.get("nuts")
    if isinstance(nuts, dict) and "mixing" in nuts:  # always said, not only in the JSON
        print(f"  {nuts['mixing']}")
    for k, v in s.items():
        if k == "certified":  # a whole line: "certified: AIS (frozen kernels, T=…) …"
            print(f"  {v}")
        elif v is not None:
            print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
