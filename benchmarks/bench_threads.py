"""Seconds per epoch of ``fit(..., threads=k)`` against a hand-written PyTorch loop under
``torch.set_num_threads(k)``, for k = 1 and 2, side by side in one process.

The model: the mnist5k VAE 784-200-200-50 (MLP encoder and decoder, Bernoulli
likelihood, diagonal Gaussian guide, closed-form KL, Adam lr 1e-3, batch 128) on the
5,000 binarised images of mnist5k.  The hand loop trains a copy of the same networks
with the same estimator.  Repeats are interleaved (fit then hand, hand then fit, ...;
both thread counts in each repeat) so that a change of load hits both alike.

``--data mnist --batch-size 20`` times Burda et al.'s protocol instead (as
``benchmarks/bench_mnist.py`` trains it): the 60,000 full-MNIST training images in
[0, 1], binarised afresh every step (the hand loop draws ``torch.bernoulli`` of each
batch, as the ``dynamic_binarization`` likelihood does), tanh networks; ``--train-points N``
times the first N images and scales the seconds to a full epoch.

Printed: the median seconds per epoch of each, the median of the paired ratios
fit / hand, and the load average at start and end (``os.getloadavg``).  On a busy
machine (load above the number of cores), 2 intra-op threads can be slower than 1:
each op waits for its slowest thread.  No timing is asserted anywhere.

Usage::

    python benchmarks/bench_threads.py             # ≈ 2-4 min on 2 CPU cores
    python benchmarks/bench_threads.py --quick     # seconds: a smoke test
    python benchmarks/bench_threads.py --data mnist --batch-size 20 --train-points 12000 \
        --epochs 1 --repeats 3                     # Burda et al.'s setting
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Any

import torch
from torch.nn import functional as F

import pyrovae
from pyrovae.data import load_dataset


def hand_epochs(vae: pyrovae.VAE, x: torch.Tensor, *, epochs: int, batch_size: int,
                seed: int, binarize: bool = False) -> None:
    """The same VAE trained by a hand-written loop (one Adam, closed-form KL); with
    ``binarize`` each batch is a fresh Bernoulli draw of its grey levels."""
    encoder, decoder, latent = vae.encoder, vae.decoder, vae.latent_dim
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        sums = torch.zeros(2)
        for i in range(0, n, batch_size):
            xb = x[perm[i:i + batch_size]]
            if binarize:
                xb = torch.bernoulli(xb)
            loc, raw = encoder(xb).split(latent, -1)
            scale = F.softplus(raw) + 1e-4
            z = loc + torch.randn_like(loc) * scale
            rec = -F.binary_cross_entropy_with_logits(decoder(z), xb, reduction="sum")
            kl = 0.5 * (scale.square() + loc.square() - 1 - 2 * scale.log()).sum()
            loss = -(rec - kl) * (n / xb.shape[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums = sums + torch.stack((rec.detach(), kl.detach()))
        sums.tolist()  # the epoch's one read, as fit logs it


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--data", choices=["mnist5k", "mnist"], default="mnist5k",
                   help="mnist: full MNIST, dynamically binarised, tanh (Burda et al.)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-points", type=int, default=None,
                   help="time the first N images; seconds scaled to a full epoch")
    args = p.parse_args(argv)
    dynamic = args.data == "mnist"
    if dynamic:
        from pyrovae.data import train_test_split

        x = train_test_split(load_dataset("mnist", transform="unit"))[0].flat
    else:
        x = (load_dataset("mnist5k").flat > 0.5).float()
    full = x.shape[0]
    if args.train_points is not None:
        x = x[: args.train_points]
    if args.quick:
        x, args.repeats, args.epochs = x[:512], 2, 1
    scale = full / x.shape[0]  # seconds per epoch of the whole training set
    batch = args.batch_size
    torch.manual_seed(0)
    init = pyrovae.VAE(x.shape[1], 50, encoder=[200, 200],
                       activation="tanh" if dynamic else "relu",
                       likelihood={"family": "bernoulli", "dynamic_binarization": True}
                       if dynamic else "bernoulli")
    default_threads = torch.get_num_threads()
    load = os.getloadavg()
    print(f"# fit(threads=k) vs a hand-written loop, {args.data} {x.shape[0]} × {x.shape[1]}"
          f"{' (dynamically binarised, tanh)' if dynamic else ''}, 784-200-200-50, batch "
          f"{batch}, {args.epochs} epochs, {args.repeats} interleaved repeats; seconds per "
          f"epoch of {full} images")
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} (default {default_threads} "
          f"threads); load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    pyrovae.fit(copy.deepcopy(init), x[:256], epochs=1, progress=False)  # warm-up
    hand_epochs(copy.deepcopy(init), x[:256], epochs=1, batch_size=batch, seed=0,
                binarize=dynamic)
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(args.repeats):
        for k in args.threads:
            order = ("fit", "hand") if r % 2 == 0 else ("hand", "fit")
            for name in order:
                vae = copy.deepcopy(init)
                t0 = time.perf_counter()
                if name == "fit":
                    pyrovae.fit(vae, x, epochs=args.epochs, batch_size=batch, lr=1e-3, seed=r,
                                threads=k, progress=False)
                else:
                    before = torch.get_num_threads()
                    torch.set_num_threads(k)
                    try:
                        hand_epochs(vae, x, epochs=args.epochs, batch_size=batch, seed=r,
                                    binarize=dynamic)
                    finally:
                        torch.set_num_threads(before)
                times.setdefault((name, k), []).append(
                    (time.perf_counter() - t0) / args.epochs * scale)
    end = os.getloadavg()
    rows = []
    print("| threads | fit s/epoch | hand s/epoch | fit / hand |")
    print("|--:|--:|--:|--:|")
    for k in args.threads:
        f, h = times[("fit", k)], times[("hand", k)]
        ratio = statistics.median(a / b for a, b in zip(f, h, strict=True))
        row = {"threads": k, "fit_s_per_epoch": statistics.median(f),
               "hand_s_per_epoch": statistics.median(h), "ratio": ratio}
        rows.append(row)
        print(f"| {k} | {row['fit_s_per_epoch']:.3f} | {row['hand_s_per_epoch']:.3f} | "
              f"{ratio:.3f} |")
    print(f"\nload average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    out = {"rows": rows, "load_start": load, "load_end": end, "cpus": os.cpu_count(),
           "data": args.data, "batch_size": batch, "timed_points": x.shape[0],
           "epoch_points": full}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
