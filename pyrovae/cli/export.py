"""``pyrovae export RUN``: the run's weights as ``model.safetensors`` plus its spec.

The writing is :func:`pyrovae.runs.export.export_run` (locked, staged, the run
verified first); this module only parses and prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.runs.export import export_run


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="write a run's weights as model.safetensors plus its spec",
        description="Write the run's network weights (safetensors: nothing pickled) and its "
        "spec to a folder that pyrovae.load_vae / VAE.from_pretrained read back.")
    p.add_argument("run_dir", metavar="RUN", help="run folder written by `pyrovae train`")
    p.add_argument("--which", choices=("last", "best"), default="last",
                   help="the final weights (last, default) or the best held-out epoch's (best)")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN/export)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous export")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.out is not None and not args.out.strip():
        raise PyrovaeError("--out: expected a folder name, got an empty string")
    out = export_run(args.run_dir, args.out, which=args.which, overwrite=args.overwrite)
    print(f"wrote the {args.which} weights of {args.run_dir} to {out} "
          "(model.safetensors, spec.yaml); load with pyrovae.load_vae")
    return 0
