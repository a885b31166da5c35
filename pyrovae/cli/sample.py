"""``pyrovae sample RUN``: draw from a trained model's generative process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.runs import folder as runs

#: Most samples one call draws (a grid of more is unreadable; an array that big, slow).
MAX_SAMPLES = 100_000


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="sample from a trained model",
                       description="Draw z ~ p(z) and x from p(x|z); write a .png grid "
                       "(images) or a .npy array.")
    p.add_argument("run_dir", metavar="RUN", help="run folder written by `pyrovae train`")
    p.add_argument("-n", "--num", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", metavar="FILE", help="output .png or .npy (default RUN/samples.png)")
    p.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of E[x|z]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.num <= MAX_SAMPLES:
        raise PyrovaeError(f"--num: expected an integer in [1, {MAX_SAMPLES}], got {args.num}")
    if not 0 <= args.seed < 2**63:
        raise PyrovaeError(f"--seed: expected a non-negative integer below 2**63, got {args.seed}")
    if args.out is not None and not args.out.strip():
        raise PyrovaeError("--out: expected a .png or .npy file name, got an empty string")
    vae, spec, _ = runs.load_run(args.run_dir)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.png"
    if out.suffix.lower() not in (".png", ".npy"):
        raise PyrovaeError(f"--out {out}: expected a .png or .npy file name")
    if out.exists() and not args.overwrite:
        raise PyrovaeError(f"{out} exists; pass --overwrite to replace it")
    torch.manual_seed(args.seed)
    with torch.no_grad():
        x = vae.sample(args.num, mean=not args.draw)
    if not bool(torch.isfinite(x).all()):
        raise PyrovaeError(f"{args.run_dir}: the model's samples hold non-finite values; "
                           "nothing written")
    if out.suffix.lower() == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, x.cpu().numpy())
        pio.atomic_write_bytes(out, buf.getvalue())
    else:
        from pyrovae.data import load_dataset
        from pyrovae.plots import save_figure
        from pyrovae.plots.training import samples

        d = spec["data"]
        shape = load_dataset(d["name"], path=d["path"], transform=d["transform"],
                             header=d.get("header", False)).image_shape
        if shape is None:
            raise PyrovaeError("this run's data are not images; use --out FILE.npy")
        save_figure(samples(x, shape), out)
    print(f"wrote {args.num} samples to {out}")
    return 0
