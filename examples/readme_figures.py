"""Regenerate the README's figures from commands in this repository.

    python examples/readme_figures.py --out docs/figures            # everything (long)
    python examples/readme_figures.py --out docs/figures --only train mixture

Parts: ``train`` (the default ``pyrovae train``: learning curve, reconstructions,
latent manifold, latent map, samples -> ``train_*.png``), ``mixture`` (the
``examples/configs/digits_mixture.yaml`` run's latent map with the prior's components
and its decoded manifold -> ``train_latent_{map,manifold}_mixture.png``), ``theta``
(``theta_fixed.py``), ``toys``
(``toy_*.py``), ``check`` (``check_trained_vae.py``, the longest).  Runs go to
``--runs`` (default: a fresh ``runs/examples/readme_figures-TIME``); only the figures
are copied into ``--out`` (default: that same fresh folder).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from _output import output_folder

HERE = Path(__file__).resolve().parent
PARTS = ("train", "mixture", "theta", "toys", "check")


def _sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _pyrovae(*args: str) -> None:
    _sh(sys.executable, "-c", "import sys; from pyrovae.cli import main; sys.exit(main())", *args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder the figures are copied into")
    ap.add_argument("--runs", default=None, help="folder for the runs (default: fresh)")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = ap.parse_args()
    runs = output_folder("readme_figures", args.runs)
    out = Path(args.out) if args.out else runs
    out.mkdir(parents=True, exist_ok=True)
    if "train" in args.only:
        _pyrovae("train", "--out", str(runs / "default"))
        for png in sorted((runs / "default" / "figures").glob("*.png")):
            shutil.copyfile(png, out / f"train_{png.name}")
    if "mixture" in args.only:
        _pyrovae("train", "--config", str(HERE / "configs" / "digits_mixture.yaml"),
                 "--out", str(runs / "mixture"))
        for name in ("latent_map", "latent_manifold"):
            shutil.copyfile(runs / "mixture" / "figures" / f"{name}.png",
                            out / f"train_{name}_mixture.png")
    if "theta" in args.only:
        _sh(sys.executable, str(HERE / "theta_fixed.py"), "--out", str(out))
    if "toys" in args.only:
        for script in ("toy_gaussian_mle.py", "toy_ppca.py", "toy_conjugate.py",
                       "toy_nonlinear.py"):
            _sh(sys.executable, str(HERE / script), "--out", str(out))
    if "check" in args.only:
        _sh(sys.executable, str(HERE / "check_trained_vae.py"), "--out", str(out))
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
