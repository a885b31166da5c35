"""End-to-end ``pyrovae.fit`` against a hand-written PyTorch loop, logging included.

Both train the same networks (the VAE's own 784-400-50 MLP encoder and decoder,
copied), Bernoulli likelihood, Adam (lr 1e-3), the same estimator (``fit``'s
default: reconstruction by one reparameterised draw, the Gaussian KL in closed
form), batch 128, on mnist5k (5,000 binarised images).  The hand loop logs what
``fit`` logs by default: the running mean of the epoch's ELBO, reconstruction and
KL (accumulated as tensors, read once per epoch).  ``fit`` runs with its defaults
(progress lines on stderr, captured here; no held-out data).

Two scenarios, for 1 and 2 threads, repeated and interleaved (A B B A ...):

* one call of 10 epochs: ``fit(vae, x, epochs=10)`` vs ``hand(epochs=10)``;
* ten calls of one epoch: ``for _ in range(10): fit(vae, x, epochs=1)`` vs the
  hand loop called ten times (each call builds its optimiser, as ``fit`` does).

Printed: median seconds of each and the median of the paired ratios fit / hand, of
wall time and of process CPU time (less sensitive to other load on a shared machine)
(targets: ≤ 1.05 for one call, ≤ 1.10 for ten calls), with the machine load.
No timing is asserted anywhere.

Usage::

    python benchmarks/bench_fit.py            # ≈ 5-8 min on 2 CPU cores
    python benchmarks/bench_fit.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import platform
import statistics
import time
from typing import Any

import torch
from torch.nn import functional as F

import pyrovae
from pyrovae.data import load_dataset


def hand_train(encoder: torch.nn.Module, decoder: torch.nn.Module, latent: int,
               x: torch.Tensor, *, epochs: int, batch_size: int, seed: int) -> list[float]:
    """A hand-written VAE loop (closed-form KL) logging the running-mean ELBO per epoch."""
    params = [*encoder.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = x.shape[0]
    log = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        sums = torch.zeros(2)
        for i in range(0, n, batch_size):
            xb = x[perm[i:i + batch_size]]
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
        rec_m, kl_m = (sums / n).tolist()
        log.append(rec_m - kl_m)
    return log


def fit_calls(vae: pyrovae.VAE, x: torch.Tensor, *, calls: int, epochs: int,
              batch_size: int, seed: int) -> None:
    with contextlib.redirect_stderr(io.StringIO()):  # the default progress lines
        for _ in range(calls):
            pyrovae.fit(vae, x, epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed)


def hand_calls(vae: pyrovae.VAE, x: torch.Tensor, *, calls: int, epochs: int,
               batch_size: int, seed: int) -> None:
    for _ in range(calls):
        hand_train(vae.encoder, vae.decoder, vae.latent_dim, x, epochs=epochs,
                   batch_size=batch_size, seed=seed)


def measure(init: pyrovae.VAE, x: torch.Tensor, *, calls: int, epochs: int, batch_size: int,
            repeats: int) -> dict[str, Any]:
    """Interleaved repeats (fit first on even repeats, hand first on odd ones)."""
    times: dict[str, list[float]] = {"fit": [], "hand": []}
    cpu: dict[str, list[float]] = {"fit": [], "hand": []}
    runners = {"fit": fit_calls, "hand": hand_calls}
    for r in range(repeats):
        order = ("fit", "hand") if r % 2 == 0 else ("hand", "fit")
        for name in order:
            vae = copy.deepcopy(init)
            t0, c0 = time.perf_counter(), time.process_time()
            runners[name](vae, x, calls=calls, epochs=epochs, batch_size=batch_size, seed=r)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    ratios = [f / h for f, h in zip(times["fit"], times["hand"], strict=True)]
    cpu_ratios = [f / h for f, h in zip(cpu["fit"], cpu["hand"], strict=True)]
    return {"fit_s": statistics.median(times["fit"]), "hand_s": statistics.median(times["hand"]),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    ds = load_dataset("mnist5k")  # flat rows below: the MLPs take 784-vectors
    flat = ds.flat
    x = (flat > 0.5).float() if flat.max() > 1 or not ((flat == 0) | (flat == 1)).all() \
        else flat.float()
    hidden, latent, batch = [400], 50, 128
    if args.quick:
        x, args.repeats, args.threads = x[:256], 2, [1]
    scenarios = [("one call of 10 epochs", 1, 10), ("ten calls of 1 epoch", 10, 1)]
    if args.quick:
        scenarios = [("one call of 2 epochs", 1, 2), ("two calls of 1 epoch", 2, 1)]
    torch.manual_seed(0)
    init = pyrovae.VAE(x.shape[1], latent, encoder=hidden, likelihood="bernoulli")
    load = os.getloadavg()
    results = []
    print(f"# fit vs a hand-written loop ({x.shape[0]} × {x.shape[1]}, 784-400-50 MLP, "
          f"batch {batch}, {args.repeats} interleaved repeats)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    for runner in (fit_calls, hand_calls):  # warm-up: lazy imports, allocator
        runner(copy.deepcopy(init), x[:256], calls=1, epochs=1, batch_size=batch, seed=0)
    print("| threads | scenario | fit (s) | hand loop (s) | fit / hand, wall (median of pairs) "
          "| fit / hand, CPU time |")
    print("|---:|---|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, calls, epochs in scenarios:
            m = measure(init, x, calls=calls, epochs=epochs, batch_size=batch,
                        repeats=args.repeats)
            m.update(threads=threads, scenario=name)
            results.append(m)
            print(f"| {threads} | {name} | {m['fit_s']:.2f} | {m['hand_s']:.2f} | "
                  f"{m['ratio']:.3f} | {m['cpu_ratio']:.3f} |", flush=True)
    end = os.getloadavg()
    print(f"\nload average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    out = {"results": results, "load_start": load, "load_end": end}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    assert all(math.isfinite(r["ratio"]) for r in results)
    return out


if __name__ == "__main__":
    main()
