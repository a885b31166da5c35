"""Certified AIS on pPCA at latent 50 with a poor guide: error against the exact log p(x).

pPCA has log p(x) in closed form, so the error of every AIS estimate is known.  The
guide has the mean-field optimal means and ``--scale`` times the optimal standard
deviations (0.3: overconfident, the common failure of a trained VAE's encoder; or
``--guide untrained``: the linear VAE's random initial encoder).  Printed:

* the default budget (adaptive AIS, T = 200, C = 32): its error and BDMC width;
* :func:`pyrovae.posterior.certified.certified_ais` (frozen kernels, T doubled from
  ``--start-steps`` until the BDMC width is under ``--target-width`` with confidence):
  the T per round with its width, the T chosen, why it stopped, its error against
  exact, and the seconds (search, final AIS, per 1,000 points at the chosen budget).

The CPU is shared: read the seconds beside the printed load.

    python benchmarks/bench_certified_ais.py --points 32

Measured (``--points 16 --time-limit 600``, CPU, 2 threads, load 0.8–2.0): the default
T = 200 is 2.32 ± 0.45 nats/point low (BDMC width 5.97); the search went T = 200, 400,
800, 1600, 3200 (widths 4.98, 2.37, 0.27, 0.33, 0.00 ± 0.08) in 162 s and stopped at
the target; at T = 3200 frozen AIS is 0.08 ± 0.08 nats/point from exact (max 0.64),
3,571 s per 1,000 points (both rounds) against 114 s at the default budget.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from pyrovae.model.guides import MIN_SCALE
from pyrovae.posterior.ais import ais
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.certified import certified_ais
from pyrovae.toy import PPCA


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--latent", type=int, default=50)
    ap.add_argument("--data-dim", type=int, default=80)
    ap.add_argument("--guide", choices=["narrow", "untrained"], default="narrow")
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--chains", type=int, default=32)
    ap.add_argument("--bdmc-points", type=int, default=16)
    ap.add_argument("--target-width", type=float, default=0.2)
    ap.add_argument("--start-steps", type=int, default=200)
    ap.add_argument("--max-steps", type=int, default=6400)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    k = args.latent
    toy = PPCA.example(data_dim=args.data_dim, latent_dim=k, sigma=0.5, seed=1,
                       correlation=0.3)
    vae = toy.to_linear_vae(optimal_encoder=args.guide == "narrow")
    if args.guide == "narrow":
        with torch.no_grad():
            s = args.scale * toy.posterior_precision.diagonal().rsqrt() - MIN_SCALE
            vae.encoder[0].bias[k:] = s + torch.log(-torch.expm1(-s))
    x = toy.sample(args.points, seed=2)
    exact = toy.log_marginal(x)
    n = args.points
    print(f"pPCA D={args.data_dim} k={k}, guide {args.guide}"
          f"{f' (x{args.scale} the optimal sd)' if args.guide == 'narrow' else ''}; "
          f"{n} points, C={args.chains}, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)

    a = ais(vae, x, num_steps=200, num_chains=args.chains, seed=1)
    b = bdmc(vae, args.bdmc_points, num_steps=200, num_chains=args.chains, seed=1)
    err = a.log_px - exact
    print(f"default (adaptive, T=200): AIS − exact {float(err.mean()):+.3f} ± "
          f"{float(err.std() / math.sqrt(n)):.3f} nats/point, BDMC width "
          f"{float(b.width.mean()):.3f} ± {b.mean_width_stderr():.3f}; {a.seconds:.1f} s "
          f"({a.seconds * 1000 / n:.0f} s per 1,000 points)", flush=True)

    t = time.perf_counter()
    c = certified_ais(vae, x, target_width=args.target_width, num_steps=args.start_steps,
                      max_steps=args.max_steps, time_limit_s=args.time_limit,
                      num_chains=args.chains, bdmc_points=args.bdmc_points, seed=1)
    total = time.perf_counter() - t
    for h in c.history:
        print(f"  BDMC (frozen) T={h['num_steps']:>5}: width {h['width']:.3f} ± "
              f"{h['width_stderr']:.3f}  ({h['seconds']:.1f} s)", flush=True)
    err = c.ais.log_px - exact
    final = c.seconds - c.search_seconds
    print(c.line())
    print(f"certified: T={c.num_steps} (stopped: {c.stopped}), AIS − exact "
          f"{float(err.mean()):+.3f} ± {float(err.std() / math.sqrt(n)):.3f} nats/point "
          f"(max |err| {float(err.abs().max()):.3f}); search {c.search_seconds:.0f} s, "
          f"final AIS {final:.1f} s = {final * 1000 / n:.0f} s per 1,000 points "
          f"(both rounds), total {total:.0f} s; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
