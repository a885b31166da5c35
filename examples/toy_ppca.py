"""Probabilistic PCA: every closed form next to its brute-force counterpart, and a
linear VAE trained with SVI against the closed-form maximum likelihood.

    python examples/toy_ppca.py [--out DIR]

Writes ``ppca_posterior.png`` into ``--out`` (default: a fresh
``runs/examples/toy_ppca-TIME``).
"""

from __future__ import annotations

import argparse
import time

import torch
from _output import output_folder

import pyrovae
from pyrovae.experiments.theta_fixed import ppca_exact, ppca_floor
from pyrovae.plots.posterior import posterior_grid_figure
from pyrovae.posterior.exact import check_identity, elbo, grid_posteriors
from pyrovae.posterior.local import fit_local_guide
from pyrovae.posterior.target import as_target
from pyrovae.toy import PPCA


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for ppca_posterior.png")
    ap.add_argument("--steps", type=int, default=1000, help="steps of each local guide fit")
    ap.add_argument("--epochs", type=int, default=150,
                    help="epochs of the linear VAE (then a third as many at a lower rate)")
    args = ap.parse_args()
    torch.manual_seed(0)
    p = PPCA.example(5, 2, correlation=0.8, sigma=0.5)
    x = p.sample(4, seed=1)
    print(f"pPCA D=5, k=2: mean-field floor ½(Σ log Λii − log|Λ|) = {p.meanfield_floor():.4f}")

    guide = fit_local_guide(p, x, steps=args.steps)  # best diagonal Gaussian per point
    r = check_identity(as_target(p, guide), x, num_samples=4000)
    for i in range(len(x)):
        print(f"  x{i}: log p(x) {r['log_px'][i]:.4f} (exact) = ELBO {r['elbo'][i]:.4f} "
              f"± {r['elbo_stderr'][i]:.4f} + KL {r['kl'][i]:.4f} ({r['kl_method']}); "
              f"residual {r['residual'][i]:+.4f}")
    out = output_folder("toy_ppca", args.out)
    titles = [f"KL {float(k):.3f} (floor {p.meanfield_floor():.3f})" for k in r["kl"]]
    grids = grid_posteriors(as_target(p, guide), x)  # exact posterior and q on a grid
    posterior_grid_figure(grids, titles=titles).savefig(out / "ppca_posterior.png", dpi=80)
    print(f"figure in {out}")

    # a linear VAE (affine encoder and decoder, learned σ) trained by SVI
    data = p.sample(2000, seed=0).float()
    best = PPCA.max_log_likelihood(data.double(), 2)
    vae = pyrovae.VAE(5, 2, encoder=[],
                      likelihood={"family": "gaussian", "sigma": "shared", "sigma_init": 1.0})
    t0 = time.perf_counter()
    pyrovae.fit(vae, data, epochs=args.epochs, batch_size=200, lr=1e-2, seed=0, progress=False,
                eval_every=None)
    pyrovae.fit(vae, data, epochs=max(1, args.epochs // 3), batch_size=200, lr=2e-3, seed=1,
                progress=False, eval_every=None)
    lp, kl = ppca_exact(vae, data)
    gap = float((lp - elbo(vae, data, num_samples=200).value).mean())
    print(f"linear VAE ({time.perf_counter() - t0:.1f}s): exact log p(x) {float(lp.mean()):.4f} "
          f"vs closed-form MLE {best:.4f} (diff {best - float(lp.mean()):.4f} nats/point); "
          f"gap {gap:.4f}, exact KL {float(kl.mean()):.4f}, floor {ppca_floor(vae):.4f}")


if __name__ == "__main__":
    main()
