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

``--run RUN`` measures a trained run instead (no exact value: the cost and the certificate
only): the first ``--points`` of a seeded permutation of its test split, binarised once
(seed 0) when the run's likelihood binarises dynamically, as ``bench_mnist.py`` scores;
AIS at the default certified budget of ``pyrovae check --certified`` (its
:class:`~pyrovae.runs.sections.CheckBudget`: C = 32 chains, T doubled from 200 until the
BDMC width on 16 simulated points is under 0.2 nats, at most 6,400), with the seconds
(wall and CPU) per 1,000 test images:

    OMP_NUM_THREADS=1 python benchmarks/bench_certified_ais.py --run runs/mnist/vae \
        --points 20 --threads 1

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
    ap.add_argument("--run", default=None, help="a run folder: its cost at the certified budget")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.run is not None:
        run_cost(args)
        return
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


def run_cost(args: argparse.Namespace) -> None:
    """Certified AIS on a trained run's test images: the budget chosen and its seconds."""
    from pyrovae.data.datasets import binarize_fixed
    from pyrovae.runs import folder as runs
    from pyrovae.runs.pipeline import load_run_data
    from pyrovae.runs.sections import CheckBudget

    b = CheckBudget()  # pyrovae check --certified's defaults
    vae, spec, _ = runs.load_run(args.run, history=False)
    _, train, test = load_run_data(args.run, spec)
    data = test if test is not None else train
    if spec["likelihood"].get("dynamic_binarization"):
        data = binarize_fixed(data, seed=0)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    x = data.x[pick[: args.points]].to(next(vae.parameters()).dtype)
    n = len(x)
    print(f"run {args.run}: {n} test images, certified budget C={b.ais_chains}, T from "
          f"{b.ais_steps} (max {b.max_ais_steps}), BDMC on {b.bdmc_points} points, target "
          f"{b.target_width}; {args.threads} threads, load {os.getloadavg()[0]:.1f}",
          flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    c = certified_ais(vae, x, target_width=b.target_width, num_steps=b.ais_steps,
                      max_steps=b.max_ais_steps, time_limit_s=args.time_limit,
                      num_chains=b.ais_chains, bdmc_points=b.bdmc_points, seed=b.seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for h in c.history:
        print(f"  BDMC (frozen) T={h['num_steps']:>5}: width {h['width']:.3f} ± "
              f"{h['width_stderr']:.3f}  ({h['seconds']:.1f} s)", flush=True)
    final = c.seconds - c.search_seconds
    print(c.line())
    print(f"T={c.num_steps} (stopped: {c.stopped}); log p(x) {float(c.ais.log_px.mean()):.2f} "
          f"on these {n} images; search {c.search_seconds:.0f} s; final AIS {final:.1f} s = "
          f"{final * 1000 / n:.0f} s per 1,000 images (both rounds; the search is a fixed "
          f"cost); total wall {wall:.0f} s, CPU {cpu:.0f} s; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
