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

from pyrovae.cli.flags import add_param_flag, add_progress_flag
from pyrovae.errors import PyrovaeError
from pyrovae.runs.sections import CHECK_PARAMS, CheckBudget

REPORT = "report.json"
_METAVARS = {"samples": "S", "seed": "S", "ais_steps": "T", "ais_chains": "C",
             "target_width": "W", "max_ais_steps": "T", "ais_time_limit": "S"}


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
    add_budget_flags(p)
    p.add_argument("--y", metavar="Y",
                   help="a conditional run's context to check: a class label (e.g. 3; the "
                   "points checked are held-out points of that class) or a context vector "
                   "(e.g. 0.5,1.2); default: the first held-out point's")
    add_progress_flag(p)
    p.set_defaults(func=run)
    return p


def add_budget_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option of :class:`~pyrovae.runs.sections.CheckBudget` (``ais_steps``
    is ``--ais-steps``): its type, default and help read off the option's
    :class:`~pyrovae.registry.Param`; a ``bool`` option is a switch."""
    for name, p in CHECK_PARAMS.items():
        shown = "none" if p.default is None else p.default
        add_param_flag(parser, name, p, default=p.default, metavar=_METAVARS.get(name, "N"),
                       help=p.doc if p.kind == "bool" else f"{p.doc} (default {shown})")


def budget_of(args: argparse.Namespace) -> CheckBudget:
    """The flags as a :class:`~pyrovae.runs.sections.CheckBudget`, validated once, each
    error naming its flag (``--ais-steps: expected a positive integer, got 0``)."""
    return CheckBudget.build({name: getattr(args, name) for name in CHECK_PARAMS},
                             lambda name: f"--{name.replace('_', '-')}")


def run(args: argparse.Namespace) -> int:
    from pyrovae.toy import TOYS

    budget = budget_of(args)
    from pyrovae.runs.outputs import check_run_into, check_toy_into

    target = args.target
    if target in TOYS or target == "gaussian_mle":
        if budget.certified:
            raise PyrovaeError("--certified: applies to a run folder; a toy problem's "
                               "check compares with exact answers already")
        if args.out is not None and not args.out.strip():
            raise PyrovaeError("--out: expected a folder name, got an empty string")
        if args.y is not None:
            raise PyrovaeError(f"--y: toy problem {target!r} is unconditional; drop --y")
        out = Path(args.out) if args.out is not None else Path("checks") / target
        report = check_toy_into(target, out, overwrite=args.overwrite, num_points=budget.points,
                                seed=budget.seed, quick=budget.quick, progress=args.progress)
    elif Path(target).is_dir():
        if args.out is not None and not args.out.strip():
            raise PyrovaeError("--out: expected a folder name, got an empty string")
        report, out = check_run_into(target, args.out, budget, overwrite=args.overwrite,
                                     progress=args.progress, y=args.y)
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
