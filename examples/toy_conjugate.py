"""Beta–Bernoulli and Gamma–Poisson: non-Gaussian posteriors, a Gaussian guide on
the unconstrained latent, the identity checked by quadrature.

    python examples/toy_conjugate.py [--out DIR]

Writes ``{beta_bernoulli,gamma_poisson}_posterior.png`` into ``--out`` (default: a
fresh ``runs/examples/toy_conjugate-TIME``).
"""

from __future__ import annotations

import argparse

import torch
from _output import output_folder

from pyrovae.plots.posterior import posterior_1d_figure
from pyrovae.posterior.exact import check_identity
from pyrovae.posterior.local import fit_local_guide
from pyrovae.posterior.psis import psis_per_point
from pyrovae.posterior.target import as_target
from pyrovae.toy import BetaBernoulli, GammaPoisson


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the figures (default: fresh)")
    ap.add_argument("--steps", type=int, default=1000, help="steps of each local guide fit")
    ap.add_argument("--num-samples", type=int, default=4000, help="Monte Carlo draws per point")
    args = ap.parse_args()
    out = output_folder("toy_conjugate", args.out)
    torch.manual_seed(0)
    for toy in (BetaBernoulli(0.5, 0.5, data_dim=5), GammaPoisson(1.0, 1.0, data_dim=3)):
        x = toy.sample(4, seed=2)
        guide = fit_local_guide(toy, x, steps=args.steps)
        target = as_target(toy, guide)
        r = check_identity(target, x, num_samples=args.num_samples)
        k = psis_per_point(target, x, num_samples=args.num_samples)["khat"]
        print(f"{toy.name} {toy.describe()}")
        for i in range(len(x)):
            print(f"  x{i} = {x[i].tolist()}: log p(x) {r['log_px'][i]:.4f} (closed form) "
                  f"ELBO {r['elbo'][i]:.4f} KL {r['kl'][i]:.4f} (grid) "
                  f"residual {r['residual'][i]:+.4f} k̂ {k[i]:.2f}")
        titles = [f"KL {float(v):.3f}, $\\hat{{k}}$ {float(kk):.2f}"
                  for v, kk in zip(r["kl"], k, strict=True)]
        posterior_1d_figure(r["grids"], titles=titles).savefig(
            out / f"{toy.name}_posterior.png", dpi=80)
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
