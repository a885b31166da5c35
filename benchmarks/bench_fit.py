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

A third table (``--tracking``, or ``--tracking-only``) prices experiment tracking:
``fit`` with the tracking a run has on by default (``track: [csv]``: a CSV row per
epoch, appended and flushed) and with CSV + TensorBoard, against ``fit`` with no
tracker, side by side (interleaved, one thread), on mnist5k's MLP and on the default
run's small digits model (the shortest epochs: the worst case for a per-epoch cost).
The target: tracking on by default costs at most 2% of an epoch.  It also times the
per-epoch extras every record now carries (the learning rate read from the optimiser
and the gradient norm), on their own.

Usage::

    python benchmarks/bench_fit.py            # ≈ 5-8 min on 2 CPU cores
    python benchmarks/bench_fit.py --quick    # seconds: a smoke test
    python benchmarks/bench_fit.py --tracking-only   # the tracking table alone
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
            pyrovae.fit(vae, x, epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed,
                        threads=None)  # the count set by the scenario


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


def tracked_fit(vae: pyrovae.VAE, x: torch.Tensor, *, epochs: int, batch_size: int,
                track: tuple[str, ...], folder: str, seed: int) -> None:
    """``fit`` with the named trackers writing into ``folder`` (none: no tracker)."""
    from pyrovae.training.tracking import trackers_for

    callbacks = trackers_for(list(track), folder, "bench")
    pyrovae.fit(vae, x, epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed,
                progress=False, threads=None, callbacks=callbacks)


def measure_tracking(init: pyrovae.VAE, x: torch.Tensor, *, epochs: int, batch_size: int,
                     repeats: int, variants: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """Each variant against no tracking, interleaved (the order rotates each repeat)."""
    import tempfile

    names = ["none", *variants]
    tracks = {"none": (), **variants}
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            vae = copy.deepcopy(init)
            with tempfile.TemporaryDirectory() as folder:
                t0, c0 = time.perf_counter(), time.process_time()
                tracked_fit(vae, x, epochs=epochs, batch_size=batch_size,
                            track=tracks[name], folder=folder, seed=r)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    out: dict[str, Any] = {"none_s_per_epoch": statistics.median(times["none"]) / epochs}
    for name in variants:
        ratios = [a / b for a, b in zip(times[name], times["none"], strict=True)]
        cpu_ratios = [a / b for a, b in zip(cpu[name], cpu["none"], strict=True)]
        out[name] = {"s_per_epoch": statistics.median(times[name]) / epochs,
                     "ratio": statistics.median(ratios),
                     "cpu_ratio": statistics.median(cpu_ratios), "ratios": ratios}
    return out


def record_extras_ms(init: pyrovae.VAE, x: torch.Tensor, batch_size: int
                     ) -> tuple[float, float]:
    """Milliseconds per epoch of the record's extras (lr from the optimiser, grad norm),
    and of one CSV row appended (the default tracker's per-epoch work), timed alone."""
    import tempfile

    from pyrovae.training.tracking import CSVLogger

    vae = copy.deepcopy(init)
    trainer = pyrovae.Trainer(vae, x, epochs=1, batch_size=batch_size, progress=False, threads=None)
    trainer.run()
    t0 = time.perf_counter()
    for _ in range(200):
        trainer._lr_in_force()
        trainer._grad_norm()
    extras = (time.perf_counter() - t0) / 200 * 1e3
    with tempfile.TemporaryDirectory() as folder:
        log = CSVLogger(os.path.join(folder, "h.csv"))
        record = trainer.history.last
        log(trainer, record)  # the first row rewrites the file from the history
        t0 = time.perf_counter()
        for _ in range(200):
            log(trainer, record)
        row = (time.perf_counter() - t0) / 200 * 1e3
        log.close()
    return extras, row


def tracking_table(x_mnist: torch.Tensor, *, quick: bool, repeats: int) -> list[dict[str, Any]]:
    """The tracking table: mnist5k's MLP and the default run's digits model."""
    torch.set_num_threads(1)
    digits = load_dataset("digits")
    xd = (digits.flat / digits.flat.max() > 0.5).float()
    cases = [("mnist5k, 784-400-50", x_mnist,
              pyrovae.VAE(x_mnist.shape[1], 50, encoder=[400]), 2 if quick else 5),
             ("digits, default run's model", xd,
              pyrovae.VAE(xd.shape[1], 2, encoder=[128, 64]), 5 if quick else 50)]
    variants = {"csv (default)": ("csv",), "csv + tensorboard": ("csv", "tensorboard")}
    rows = []
    print("\n## Tracking overhead (1 thread, interleaved; ratio = median of paired "
          "tracked / untracked)\n")
    print("| model | epochs | untracked s/epoch | tracking | s/epoch | ratio, wall | "
          "ratio, CPU | record extras ms/epoch | CSV row ms/epoch |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for name, x, init, epochs in cases:
        measure_tracking(init, x[:256], epochs=1, batch_size=128, repeats=3,
                         variants=variants)  # warm-up: lazy imports, allocator
        m = measure_tracking(init, x, epochs=epochs, batch_size=128, repeats=repeats,
                             variants=variants)
        extras, row = record_extras_ms(init, x, 128)
        for v in variants:
            rows.append({"model": name, "epochs": epochs, "tracking": v,
                         "none_s_per_epoch": m["none_s_per_epoch"], **m[v],
                         "record_extras_ms": extras, "csv_row_ms": row})
            print(f"| {name} | {epochs} | {m['none_s_per_epoch']:.4f} | {v} | "
                  f"{m[v]['s_per_epoch']:.4f} | {m[v]['ratio']:.3f} | {m[v]['cpu_ratio']:.3f} | "
                  f"{extras:.3f} | {row:.3f} |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--tracking", action="store_true", help="add the tracking-overhead table")
    p.add_argument("--tracking-only", action="store_true", help="only the tracking table")
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
    if args.tracking_only:
        print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        rows = tracking_table(x, quick=args.quick, repeats=args.repeats)
        end = os.getloadavg()
        print(f"\nload average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
        out = {"tracking": rows, "load_start": load, "load_end": end}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
        return out
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
    tracking = tracking_table(x, quick=args.quick, repeats=args.repeats) \
        if args.tracking else []
    end = os.getloadavg()
    print(f"\nload average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    out = {"results": results, "tracking": tracking, "load_start": load, "load_end": end}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    assert all(math.isfinite(r["ratio"]) for r in results)
    return out


if __name__ == "__main__":
    main()
