"""``pyrovae sample RUN``: draw from a trained model's generative process.

The writing is :func:`pyrovae.runs.outputs.sample_run` (locked, atomic, the run
verified first); this module only parses and prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.runs.outputs import MAX_SAMPLES, sample_run

__all__ = ["MAX_SAMPLES", "register", "run"]


def register(sub: Any) -> argparse.ArgumentParser:
    """Add the ``sample`` subcommand to the subparsers ``sub``; return its parser."""
    p = sub.add_parser("sample", help="sample from a trained model",
                       description="Draw z ~ p(z) and x from p(x|z) (p(x|z, y) for a "
                       "conditional run, y from --y); write a .png grid (images) or a .npy "
                       "array.")
    p.add_argument("run_dir", metavar="RUN", help="run folder written by `pyrovae train`")
    p.add_argument("-n", "--num", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", metavar="FILE", help="output .png or .npy (default RUN/samples.png)")
    p.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of E[x|z]")
    p.add_argument("--y", metavar="Y",
                   help="a conditional run's context: a class label (e.g. 3) or a context "
                   "vector (e.g. 0.5,1.2); default for a label context: every class, one "
                   "row each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``pyrovae sample`` with the parsed ``args``; return the exit status (0).

    Raises:
        PyrovaeError: an empty ``--out``, or a run folder or output that cannot be used.
    """
    if args.out is not None and not args.out.strip():
        raise PyrovaeError("--out: expected a .png or .npy file name, got an empty string")
    out, drawn = sample_run(args.run_dir, args.out, num=args.num, draw=args.draw,
                            seed=args.seed, overwrite=args.overwrite, y=args.y)
    given = f" given y = {args.y}" if args.y is not None else ""
    print(f"wrote {drawn} samples{given} to {out}")
    return 0
