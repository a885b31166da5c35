"""The fast engine against stock Pyro SVI, for every registered family.

For each registered prior, likelihood, guide and objective family (one row each; the
other three at their defaults) it trains the same VAE (pyrovae's default architecture)
from the same initial weights on the same minibatches with ``fit(engine="fast")`` and
``fit(engine="pyro")`` (``Trainer(...).run()``; construction, which includes the fast
engine's one-off model/guide check, is timed apart), interleaved: the two engines
alternate within each repeat and the one that goes first alternates between repeats.
It prints per row the milliseconds per step of each engine (median over repeats) and
the median over repeats of the paired ratio pyro / fast (> 1: the fast engine is faster).

Data: ``load_dataset("digits")`` (1,797 8×8 images) in the first representation the
likelihood accepts among ``unit`` ([0, 1]), ``binarize`` and ``none`` (levels 0..16).
Rows whose objective has no direct form (``tracegraph_elbo``) train through stock SVI
with both settings; the table marks them.

Usage::

    python benchmarks/bench_engines.py                 # 5 repeats × 2 epochs, all families
    python benchmarks/bench_engines.py --repeats 9 --epochs 3
    python benchmarks/bench_engines.py --quick         # seconds; smoke test

References:
    Bingham et al. (2019), *Pyro: Deep Universal Probabilistic Programming*.

No timing is asserted anywhere: this prints numbers, it does not judge them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import warnings
from typing import Any

import torch

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.errors import PyrovaeError
from pyrovae.model import spec as _model_spec  # noqa: F401  (fills the model registries)
from pyrovae.registry import GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS

KINDS = {"prior": PRIORS, "likelihood": LIKELIHOODS, "guide": GUIDES, "objective": OBJECTIVES}
ENGINES = ("fast", "pyro")


def rows_to_run(kinds: list[str]) -> list[tuple[str, str]]:
    """(kind, family) for every registered family of the chosen kinds."""
    from pyrovae.training import objectives  # noqa: F401  (fills OBJECTIVES)

    return [(kind, name) for kind in kinds for name in KINDS[kind].names()]


def data_for(vae: pyrovae.VAE, rows: int) -> torch.Tensor:
    """The digits in the first representation ``vae``'s likelihood accepts."""
    for transform in ("unit", "binarize", "none"):
        x = load_dataset("digits", transform=transform).x[:rows].float().flatten(1)
        try:
            vae.likelihood.check_data(x)
            return x
        except PyrovaeError:
            continue
    raise PyrovaeError(f"likelihood {vae.likelihood.family!r}: no digits representation fits")


def build(kind: str, family: str, seed: int = 0) -> tuple[pyrovae.VAE, str]:
    """The default VAE with ``family`` as its ``kind``; and the objective name."""
    torch.manual_seed(seed)
    model_kw = {kind: family} if kind != "objective" else {}
    vae = pyrovae.VAE(64, **model_kw)
    return vae, family if kind == "objective" else "trace_elbo"


def time_engine(init: pyrovae.VAE, x: torch.Tensor, objective: str, engine: str,
                epochs: int, seed: int) -> tuple[float, str]:
    """Seconds per step of ``Trainer(...).run()`` from ``init``'s weights, and the engine
    that actually ran (the fast engine falls back to stock SVI without a direct form)."""
    vae = copy.deepcopy(init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pyrovae.Trainer(vae, x, epochs=epochs, batch_size=128, lr=1e-3, seed=seed,
                                  objective=objective, engine=engine, eval_every=0,
                                  progress=False, threads=None)
        t0 = time.perf_counter()
        trainer.run()
        sec = time.perf_counter() - t0
    return sec / trainer.step, trainer.engine.name


def measure(kind: str, family: str, args) -> dict[str, Any]:
    init, objective = build(kind, family)
    x = data_for(init, args.rows)
    for engine in ENGINES:  # warm-up: lazy imports, allocator, Pyro's first trace
        time_engine(init, x[:256], objective, engine, 1, 0)
    per: dict[str, list[float]] = {e: [] for e in ENGINES}
    ran: dict[str, str] = {}
    for r in range(args.repeats):
        for engine in (ENGINES if r % 2 == 0 else ENGINES[::-1]):
            sec, ran[engine] = time_engine(init, x, objective, engine, args.epochs, r)
            per[engine].append(sec)
    ratios = [p / f for p, f in zip(per["pyro"], per["fast"])]
    return {
        "kind": kind, "family": family,
        "fast_ms": 1e3 * statistics.median(per["fast"]),
        "pyro_ms": 1e3 * statistics.median(per["pyro"]),
        "ratio": statistics.median(ratios),
        "fast_engine_ran": ran["fast"],
    }


def print_table(rows: list[dict[str, Any]], args) -> None:
    print(f"\n# fast engine vs stock Pyro SVI: ms/step, digits ({args.rows} rows), batch 128, "
          f"{args.epochs} epoch(s) × {args.repeats} repeats, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f} ({os.cpu_count()} cpus)"
          + (" (QUICK: not a measurement)" if args.quick else "") + "\n")
    print("| kind | family | fast ms/step | pyro ms/step | pyro / fast (median) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        note = "" if r["fast_engine_ran"] == "fast" else " (no fast form: both stock SVI)"
        print(f"| {r['kind']} | {r['family']}{note} | {r['fast_ms']:.2f} | {r['pyro_ms']:.2f} "
              f"| {r['ratio']:.2f} |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run (default 2)")
    p.add_argument("--rows", type=int, default=1797, help="digits rows used (default all)")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quick", action="store_true", help="256 rows, 1 epoch, 1 repeat")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.rows = 1, 1, 256
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for kind, family in rows_to_run(args.kinds):
        rows.append(measure(kind, family, args))
        r = rows[-1]
        print(f"  {kind} {family}: fast {r['fast_ms']:.2f} ms, pyro {r['pyro_ms']:.2f} ms",
              file=sys.stderr, flush=True)
    print_table(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load": os.getloadavg(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
