"""The first section of *The Intuitive VAE*: maximum likelihood for one Gaussian, two ways.

The closed form μ̂ = mean(x), σ̂ = std(x) (ddof = 0) next to the same fit found by
gradient ascent on the log-likelihood written as a Pyro model.

    python examples/toy_gaussian_mle.py [--out DIR]

Writes ``gaussian_mle.png`` into ``--out`` (default: a fresh
``runs/examples/toy_gaussian_mle-TIME``).
"""

from __future__ import annotations

import argparse

import torch
from _output import output_folder

from pyrovae.plots.posterior import gaussian_mle_figure
from pyrovae.toy.gaussian import closed_form_mle, fit_mle_pyro


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for gaussian_mle.png")
    args = ap.parse_args()
    x = 2.0 + 1.5 * torch.randn(500, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)
    closed = closed_form_mle(x)
    fitted = fit_mle_pyro(x, steps=3000, lr=0.05)
    print(f"closed form : mu = {closed.mu:.6f}  sigma = {closed.sigma:.6f}  "
          f"avg log-lik = {closed.log_likelihood:.8f}")
    print(f"Pyro + Adam : mu = {fitted.mu:.6f}  sigma = {fitted.sigma:.6f}  "
          f"avg log-lik = {fitted.log_likelihood:.8f}  ({fitted.steps} steps)")
    out = output_folder("toy_gaussian_mle", args.out)
    gaussian_mle_figure(x, closed, fitted).savefig(out / "gaussian_mle.png", dpi=80)
    print(f"figure in {out}")


if __name__ == "__main__":
    main()
