"""AIS cost and accuracy against the number of intermediate distributions.

Trains a VAE on mnist5k (latent 50 by default, a few epochs), then runs
:func:`pyrovae.posterior.ais.ais` on held-out images for several T (the default
budget T = 200 × C = 32 chains among them, and 10× that T), printing per T the mean
AIS estimate, its standard error, the difference to the largest budget and the
seconds, plus the extrapolated seconds for 1,000 images.  The CPU is shared, so run
it on a few images and read the seconds as an extrapolation under the printed load
(``uptime``); the ratio between budgets is what carries over.

    python benchmarks/bench_ais.py --images 20 --latent 50
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import pyrovae
from pyrovae.data.datasets import load_dataset
from pyrovae.posterior.ais import ais
from pyrovae.posterior.exact import elbo, iwae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--latent", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--chains", type=int, default=32)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200, 2000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist5k")
    x_train, x_test = data.x[:4000], data.x[4000:4000 + args.images]
    vae = pyrovae.VAE(data.data_dim, args.latent, encoder=[512, 256])
    t = time.perf_counter()
    pyrovae.fit(vae, x_train, epochs=args.epochs, batch_size=128, lr=1e-3, seed=0,
                progress=False, threads=None)
    vae.eval().to(args.device)
    x_test = x_test.to(args.device)
    print(f"device {args.device}; mnist5k, latent {args.latent}, {args.epochs} epochs in "
          f"{time.perf_counter() - t:.0f} s; load {os.getloadavg()[0]:.1f}; "
          f"{args.images} held-out images, {args.chains} chains, {args.threads} threads")
    el = elbo(vae, x_test, num_samples=1000)
    iw = iwae(vae, x_test, num_samples=1000)
    print(f"ELBO {float(el.value.mean()):.3f}  IWAE(K=1000) {float(iw.value.mean()):.3f}")
    print(f"{'T':>6} {'mean AIS':>10} {'stderr/pt':>9} {'seconds':>8} {'s/1000 img':>10} "
          f"{'accept':>6} {'load':>5}", flush=True)
    rows = []
    for steps in args.steps:
        r = ais(vae, x_test, num_steps=steps, num_chains=args.chains, seed=1)
        rows.append((steps, float(r.log_px.mean())))
        print(f"{steps:>6} {rows[-1][1]:>10.3f} {float(r.stderr.mean()):>9.3f} "
              f"{r.seconds:>8.1f} {r.seconds * 1000 / args.images:>10.0f} "
              f"{float(r.acceptance.mean()):>6.2f} {os.getloadavg()[0]:>5.1f}", flush=True)
    ref_t, ref = rows[-1]
    for steps, m in rows[:-1]:
        print(f"T={steps}: mean AIS − mean AIS at T={ref_t}: {m - ref:+.3f} nats/image")

if __name__ == "__main__":
    main()
