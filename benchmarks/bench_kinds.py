"""The model kinds' own estimators against stock Pyro SVI on the same model.

For each model kind with its own estimator (``hierarchical``: two stochastic layers, its
``Trace_ELBO`` computed directly; ``m2``: the label summed out, Pyro's
``TraceEnum_ELBO``) and for the plain VAE (its tensor kernel), it trains the same model
from the same initial weights on the same minibatches with ``fit(engine="fast")`` and
``fit(engine="pyro")`` (stock ``SVI``), alternating which goes first between repeats,
and prints per kind the process-CPU and wall seconds per epoch of each engine (medians)
and the median of the paired ratios pyro / fast (> 1: the kind's own estimator is faster).
CPU time is less sensitive than wall time to other load on a shared machine.

Data: mnist5k (5,000 MNIST images thresholded at ½), 784-200-200 tanh MLPs, latent 48
(one layer) or 32 + 16 (two layers), M2 with 10 classes and 500 labels; batch 100,
Adam 1e-3.  No timing is asserted.

Usage::

    python benchmarks/bench_kinds.py              # 3 repeats × 1 epoch
    python benchmarks/bench_kinds.py --quick      # seconds: a smoke test

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders* (the
    two-layer model); Kingma et al. (2014), *Semi-Supervised Learning with Deep Generative
    Models* (M2).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from pyrovae.data import load_dataset, mask_labels
from pyrovae.model.spec import build_model
from pyrovae.runs.spec import normalize_spec
from pyrovae.training.trainer import fit

NETS = {"encoder": {"hidden": [200, 200], "activation": "tanh"}}
KINDS = {
    "vae (one layer, z: 48)": {"model": "vae", "latent_dim": 48},
    "hierarchical (z1: 32, z2: 16)": {"model": {"family": "hierarchical",
                                                "latent_dims": [32, 16]}},
    "m2 (10 classes, z: 48)": {"model": {"family": "m2", "labelled_count": 500},
                               "latent_dim": 48},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="400 rows, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.repeats = 400, 1
    data = load_dataset("mnist5k")
    x = data.x[: args.rows].reshape(-1, 784).float()
    labels = torch.as_tensor(data.y[: args.rows]).long()
    print(f"{args.rows} mnist5k images, batch 100, {args.epochs} epoch(s) x {args.repeats} "
          f"repeat(s), threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'model kind':32s} {'fast CPU s':>11s} {'pyro CPU s':>11s} {'CPU ratio':>10s} "
          f"{'wall ratio':>11s}")
    for name, raw in KINDS.items():
        spec = normalize_spec({**raw, **NETS, "data_dim": 784})
        torch.manual_seed(0)
        base = build_model(spec)
        y = None
        if getattr(base, "label_latent", False):
            y = mask_labels(labels, base.classes, count=min(500, args.rows // 2), seed=0)
        cpu = {"fast": [], "pyro": []}
        wall = {"fast": [], "pyro": []}
        for r in range(args.repeats):
            order = ("fast", "pyro") if r % 2 == 0 else ("pyro", "fast")
            for engine in order:
                model = copy.deepcopy(base)
                c0, t0 = time.process_time(), time.perf_counter()
                fit(model, x, y=y, epochs=args.epochs, batch_size=100, lr=1e-3, seed=r,
                    engine=engine, progress=False, eval_every=0)
                cpu[engine].append((time.process_time() - c0) / args.epochs)
                wall[engine].append((time.perf_counter() - t0) / args.epochs)
        ratio = statistics.median(p / f for p, f in zip(cpu["pyro"], cpu["fast"], strict=True))
        wratio = statistics.median(p / f for p, f in zip(wall["pyro"], wall["fast"],
                                                         strict=True))
        print(f"{name:32s} {statistics.median(cpu['fast']):11.2f} "
              f"{statistics.median(cpu['pyro']):11.2f} {ratio:10.2f} {wratio:11.2f}",
              flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
