"""pyrovae speed and quality benchmark.

Trains the same 784-400-50 MLP VAE (Bernoulli likelihood, Adam, mnist5k) with

  (a) a hand-written PyTorch loop computing the same Monte Carlo ELBO,
  (b) stock Pyro: ``SVI(vae.model, vae.guide, pyro.optim.Adam, Trace_ELBO())``,
  (c) ``pyrovae.fit`` (engine "fast", the default),

interleaved in one process, from the same initial weights, on the same
minibatches, and prints per-step time, steps/s, examples/s and the ratio to (a)
(medians over repeats of paired ratios), and peak memory (resident-set growth of
a child process running one method alone; on CUDA, ``max_memory_allocated``),
for each batch size and thread count.  Then:

* evaluation: ``pyrovae.estimators.evaluate`` (IWAE, K = 1000, 1,000 examples) against a
  hand-vectorised PyTorch computation of the same estimate, and its peak memory
  for several chunk sizes (``max_elements``) and K;
* grid quadrature for a 2-D latent (``pyrovae.quadrature``, if present) and a
  fully vectorised (grid points × data points) log p(x) for comparison;
* quality: held-out IWAE log-likelihood of pyrovae's default VAE against the
  hand-written PyTorch VAE with the same architecture, epochs and seed, on
  mnist5k and digits.

Usage::

    python benchmarks/bench_train.py                 # full run (≈10-15 min on 2 CPU cores)
    python benchmarks/bench_train.py --quick         # seconds; smoke test
    python benchmarks/bench_train.py --only speed --batch-sizes 128 --threads 1
    python benchmarks/bench_train.py --device cuda   # on a GPU

No timing is asserted anywhere: this prints numbers, it does not judge them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn
from torch.nn import functional as F

import pyrovae
from pyrovae.data import load_dataset, train_test_split

METHODS = ("torch", "pyro", "pyrovae")
LABELS = {
    "torch": "(a) hand-written torch", "pyro": "(b) stock Pyro SVI", "pyrovae": "(c) pyrovae.fit",
}
#: process CPU time of the last run_method call (less sensitive to other load than wall time)
CPU: list[float] = [0.0]
#: setup time of the last pyrovae.fit call (Trainer construction: data checks, engine check)
SETUP: dict[int, list[float]] = {}


# ---------------------------------------------------------------- the networks
class HandVAE(nn.Module):
    """A VAE written by hand in PyTorch: MLP encoder → (μ, softplus(·) + 1e-4), MLP decoder
    → Bernoulli logits; same layer layout as ``pyrovae.VAE`` so weights can be shared."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim

        def mlp(d_in, hs, d_out):
            layers, d = [], d_in
            for h in hs:
                layers += [nn.Linear(d, h), nn.ReLU()]
                d = h
            return nn.Sequential(*layers, nn.Linear(d, d_out))

        self.encoder = mlp(data_dim, hidden, 2 * latent_dim)
        self.decoder = mlp(latent_dim, list(reversed(hidden)), data_dim)

    def loss(self, x: torch.Tensor, num_data: int) -> torch.Tensor:
        """−ELBO (Monte Carlo KL, one draw), scaled to the data set: the Trace_ELBO estimator."""
        loc, raw = self.encoder(x).split(self.latent_dim, -1)
        scale = F.softplus(raw) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + eps * scale
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        log_pz_minus_log_q = (0.5 * (eps**2 - z**2)).sum() + scale.log().sum()
        return -(log_px + log_pz_minus_log_q) * (num_data / x.shape[0])


@torch.no_grad()
def hand_iwae(encoder, decoder, latent_dim, x, K, max_elements=2**24, seed=0):
    """Hand-vectorised IWAE log p(x) per example: all examples at once, K in chunks of
    the same element budget as ``pyrovae.estimators.evaluate`` (s × n × D ≤ max_elements)."""
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    n, D = x.shape
    loc, raw = encoder(x).split(latent_dim, -1)
    scale = F.softplus(raw) + 1e-4
    s_chunk = max(1, min(K, max_elements // (n * max(D, decoder[0].out_features))))
    lse = torch.full((n,), -math.inf)
    log_scale = scale.log().sum(-1)
    for s0 in range(0, K, s_chunk):
        s = min(s_chunk, K - s0)
        eps = torch.randn(s, n, latent_dim)
        z = loc + eps * scale
        logits = decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_w = log_px + 0.5 * (eps**2 - z**2).sum(-1) + log_scale
        lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
    torch.set_rng_state(gen_state)
    return lse - math.log(K)


# ------------------------------------------------------------------- helpers
def batches(num: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(num, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, num, batch_size)]


def make_vae(hidden: list[int], latent: int, data_dim: int, seed: int) -> pyrovae.VAE:
    torch.manual_seed(seed)
    return pyrovae.VAE(data_dim, latent, encoder=hidden, likelihood="bernoulli")


def run_method(method: str, init: pyrovae.VAE, x: torch.Tensor, batch_size: int, epochs: int,
               seed: int, device: torch.device) -> tuple[float, int]:
    """Train ``epochs`` epochs with one method from ``init``'s weights; (seconds, steps)."""
    N = x.shape[0]
    steps = epochs * math.ceil(N / batch_size)
    vae = copy.deepcopy(init).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if method == "pyrovae":  # pyrovae.fit(...) is Trainer(...).run(); setup timed apart
        t0 = time.perf_counter()
        trainer = pyrovae.Trainer(vae, x, epochs=epochs, batch_size=batch_size, lr=1e-3,
                                  objective="trace_elbo_mc",  # the MC ELBO of (a) and (b)
                                  seed=seed, eval_every=None, progress=False, threads=None,
                                  device=device)
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        trainer.run()
        sync()
        SETUP.setdefault(batch_size, []).append(t1 - t0)
        CPU[0] = time.process_time() - c1
        return time.perf_counter() - t1, steps
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if method == "torch":
        hand = HandVAE(x.shape[1], init.latent_dim, [m.out_features for m in init.encoder
                                                     if isinstance(m, nn.Linear)][:-1]).to(device)
        hand.encoder.load_state_dict(vae.encoder.state_dict())
        hand.decoder.load_state_dict(vae.decoder.state_dict())
        opt = torch.optim.Adam(hand.parameters(), lr=1e-3)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(epochs):
            for idx in batches(N, batch_size, gen):
                loss = hand.loss(x[idx.to(device)], N)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        sync()
        CPU[0] = time.process_time() - c0
        return time.perf_counter() - t0, steps
    # stock Pyro, as its tutorials write it
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for idx in batches(N, batch_size, gen):
            svi.step(x[idx.to(device)], num_data=N)
    sync()
    CPU[0] = time.process_time() - c0
    return time.perf_counter() - t0, steps


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux: clear_refs 5) and return the current RSS, MiB.

    Without /proc (not Linux) falls back to ``ru_maxrss``, which cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mib("VmRSS") or 0.0
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss() -> float:
    """Peak RSS since :func:`reset_peak_rss`, MiB."""
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fmt_mib(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.0f}"


# ------------------------------------------------------------------- speed
def speed(args, x: torch.Tensor, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    init_cache: dict[int, pyrovae.VAE] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for B in args.batch_sizes:
            init = init_cache.setdefault(0, make_vae(args.hidden, args.latent, x.shape[1], 0))
            for m in METHODS:  # warm-up (allocator, lazy imports, Pyro's first trace)
                run_method(m, init, x[: 4 * B], B, 1, 0, device)
            times = {m: [] for m in METHODS}
            cpu = {m: [] for m in METHODS}
            steps = {}
            for r in range(args.repeats):
                order = METHODS[r % 3:] + METHODS[: r % 3]  # rotate to spread load drift
                for m in order:
                    sec, n = run_method(m, init, x, B, args.epochs_per_repeat, r, device)
                    times[m].append(sec / n)
                    cpu[m].append(CPU[0] / n)
                    steps[m] = n
            print(f"  speed: threads {threads}, batch {B} done", file=sys.stderr, flush=True)
            base = times["torch"]
            for m in METHODS:
                per_step = statistics.median(times[m])
                ratios = [t / b for t, b in zip(times[m], base)]
                rows.append({
                    "threads": threads, "batch": B, "method": m,
                    "ms_per_step": 1e3 * per_step, "ms_per_step_min": 1e3 * min(times[m]),
                    "steps_per_s": 1.0 / per_step, "examples_per_s": B / per_step,
                    "ratio": statistics.median(ratios),
                    "ratio_of_mins": min(times[m]) / min(base),
                    "cpu_ratio": statistics.median(
                        c / b for c, b in zip(cpu[m], cpu["torch"])),
                    "ratio_min": min(ratios), "ratio_max": max(ratios),
                    "steps": steps[m], "repeats": args.repeats,
                })
    return rows


def memory_child(args) -> None:
    """One method alone in this process: print the resident-set growth of training."""
    device = torch.device(args.device)
    torch.set_num_threads(1)
    x = load_dataset("mnist5k").flat
    if args.quick:
        x = x[: args.quick_rows]
    x = x.to(device)
    init = make_vae(args.hidden, args.latent, x.shape[1], 0)
    before = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    run_method(args.memory_child, init, x, args.batch_sizes[0], 1, 0, device)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" \
        else peak_rss() - before
    print(json.dumps({"peak_mib": peak}))


def child_json(extra: list[str]) -> dict[str, Any] | None:
    cmd = [sys.executable, os.path.abspath(__file__), *extra]
    # a fixed mmap threshold: glibc then returns freed large blocks to the system at once,
    # so the peak RSS reflects live tensors rather than the allocator's dynamic threshold
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    for line in reversed(res.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    print(f"  (child failed: {res.stderr.strip().splitlines()[-1:]})")
    return None


def memory(args, rows: list[dict[str, Any]]) -> None:
    common = ["--device", args.device, "--hidden", *map(str, args.hidden),
              "--latent", str(args.latent)] + (["--quick"] if args.quick else [])
    for B in args.batch_sizes:
        for m in METHODS:
            res = child_json([*common, "--memory-child", m, "--batch-sizes", str(B)])
            for row in rows:
                if row["batch"] == B and row["method"] == m:
                    row["peak_mib"] = None if res is None else res["peak_mib"]


def print_speed(rows: list[dict[str, Any]], device_name: str) -> None:
    print(f"\n## Training speed ({device_name}; {rows[0]['repeats']} interleaved repeats of "
          "one fit call each)\n")
    print("ms/step, steps/s, examples/s: medians; × (a): median of the per-repeat ratios "
          "[min-max], the ratio of the fastest repeats, and the median ratio of process CPU "
          "time (less sensitive to other load on the machine); peak MiB: peak resident-set "
          "growth while a fresh process trains one epoch with that method alone (1 thread; "
          "CUDA: max_memory_allocated)\n")
    print("| threads | batch | method                  | ms/step | steps/s | examples/s "
          "| × (a) median [min-max] | × (a) fastest | × (a) CPU | peak MiB |")
    print("|--------:|------:|:------------------------|--------:|--------:|-----------:"
          "|:-----------------------|--------------:|----------:|---------:|")
    for r in rows:
        print(f"| {r['threads']:>7} | {r['batch']:>5} | {LABELS[r['method']]:<23} "
              f"| {r['ms_per_step']:7.2f} | {r['steps_per_s']:7.1f} | {r['examples_per_s']:10.0f} "
              f"| {r['ratio']:.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]{'':<9}"
              f"| {r['ratio_of_mins']:13.2f} | {r['cpu_ratio']:9.2f} "
              f"| {fmt_mib(r.get('peak_mib')):>8} |")
    for b, ts in sorted(SETUP.items()):
        print(f"\npyrovae.fit setup at batch {b} (Trainer construction, once per call: data "
              f"support check, engine check, optimiser), not counted above: median "
              f"{1e3 * statistics.median(ts):.0f} ms", end="")
    print()


# -------------------------------------------------------------- evaluation
def eval_memory_child(args) -> None:
    torch.set_num_threads(1)
    vae = make_vae(args.hidden, args.latent, 784, 0)
    x = load_dataset("mnist5k").flat[: args.eval_n]
    before = reset_peak_rss()
    pyrovae.evaluate(vae, x, num_samples=args.eval_k, max_elements=args.max_elements)
    print(json.dumps({"peak_mib": peak_rss() - before}))


def evaluation(args, x_test: torch.Tensor, trained: pyrovae.VAE) -> dict[str, Any]:
    K, n = args.eval_k, args.eval_n
    x = x_test[:n]
    out: dict[str, Any] = {"K": K, "n": n, "threads": torch.get_num_threads()}
    t_lib, t_hand = [], []
    for _ in range(args.eval_repeats):
        t0 = time.perf_counter()
        res = pyrovae.evaluate(trained, x, num_samples=K, seed=0)
        t_lib.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ll_hand = hand_iwae(trained.encoder, trained.decoder, trained.latent_dim, x, K, seed=1)
        t_hand.append(time.perf_counter() - t0)
    out.update(
        pyrovae_s=statistics.median(t_lib), hand_s=statistics.median(t_hand),
        ratio=statistics.median(a / b for a, b in zip(t_lib, t_hand)),
        ll_pyrovae=res["log_likelihood"], ll_pyrovae_se=res["log_likelihood_se"],
        ll_hand=float(ll_hand.mean()), ll_hand_se=float(ll_hand.std() / math.sqrt(n)),
        diff=float(res["log_likelihood"] - ll_hand.mean()),
        diff_se=float(np.std(res["per_example"]["log_likelihood"] - ll_hand.double().numpy())
                      / math.sqrt(n)),
    )
    # analytic size of the largest chunk tensor (logits of s samples × n examples × D)
    width = max(784, *(m.out_features for m in trained.modules() if isinstance(m, nn.Linear)))
    per_draw = max(1, args.max_elements // width)
    chunk_n = max(1, min(n, per_draw))
    chunk_s = max(1, min(K, per_draw // chunk_n))
    out["chunk"] = {"examples": chunk_n, "samples": chunk_s,
                    "tensor_mib": chunk_s * chunk_n * width * 4 / 2**20}
    mem = []
    if not args.quick:
        for max_el in (2**22, 2**24):
            for k in (max(1, K // 10), max(1, 2 * K // 5), K):  # peak must not grow with K
                res = child_json(["--eval-memory-child", "--eval-k", str(k), "--eval-n", str(n),
                                  "--max-elements", str(max_el), "--hidden",
                                  *map(str, args.hidden), "--latent", str(args.latent)])
                mem.append({"max_elements": max_el, "K": k,
                            "chunk_tensor_mib": max_el * 4 / 2**20,
                            "peak_mib": None if res is None else res["peak_mib"]})
    out["memory"] = mem
    return out


def print_eval(e: dict[str, Any]) -> None:
    print(f"\n## Evaluation: IWAE log p(x), K = {e['K']}, {e['n']} examples "
          f"({e['threads']} threads)\n")
    print("| implementation                 | seconds | × hand | log p(x) (nats) |")
    print("|:-------------------------------|--------:|-------:|:----------------|")
    print(f"| pyrovae.estimators.evaluate               | {e['pyrovae_s']:7.2f} "
          f"| {e['ratio']:6.2f} "
          f"| {e['ll_pyrovae']:.2f} ± {e['ll_pyrovae_se']:.2f} |")
    print(f"| hand-vectorised torch          | {e['hand_s']:7.2f} |   1.00 "
          f"| {e['ll_hand']:.2f} ± {e['ll_hand_se']:.2f} |")
    print(f"\ndifference {e['diff']:+.3f} ± {e['diff_se']:.3f} nats (paired, independent draws); "
          f"chunk: {e['chunk']['samples']} samples × {e['chunk']['examples']} examples, largest "
          f"chunk tensor {e['chunk']['tensor_mib']:.0f} MiB")
    if e["memory"]:
        print("\n| max_elements | K    | chunk tensor MiB | peak RSS growth MiB |")
        print("|-------------:|-----:|-----------------:|--------------------:|")
        for m in e["memory"]:
            print(f"| {m['max_elements']:>12} | {m['K']:>4} | {m['chunk_tensor_mib']:16.0f} "
                  f"| {fmt_mib(m['peak_mib']):>19} |")


# ------------------------------------------------------------------- grid
def grid_bench(args) -> dict[str, Any] | None:
    """2-D latent on digits: pyrovae.quadrature per data point (adaptive), and one fully
    vectorised fixed-grid log p(x) over grid points × data points."""
    try:
        from pyrovae.posterior import grid as G
    except ImportError:
        return None
    data = load_dataset("digits")
    vae = make_vae([128, 64], 2, 64, 0)
    pyrovae.fit(vae, data.flat, epochs=args.grid_epochs, seed=0, eval_every=None, progress=False,
                threads=None)
    n = args.grid_n
    x = data.flat[:n]
    out: dict[str, Any] = {"n": n}
    # (1) the library's grid_posterior, one data point at a time (vectorised over the grid)
    if hasattr(G, "grid_posterior"):
        prior = vae.prior_dist()

        def log_joint_for(xi):
            def lj(z):
                z = z.to(torch.float32)
                return vae.decode(z).log_prob(xi) + prior.log_prob(z)
            return lj

        t0 = time.perf_counter()
        with torch.no_grad():
            gp = [G.grid_posterior(log_joint_for(x[i]), 2) for i in range(n)]
        out["library_s_per_point"] = (time.perf_counter() - t0) / n
        out["library_points"] = int(np.median([math.prod(g.shape) for g in gp]))
        out["library_log_px"] = float(np.mean([g.log_marginal for g in gp]))
        out["library_error_bound"] = float(np.max([g.error_bound for g in gp]))
    # (2) vectorised over grid points and data points: decode every grid point once,
    # then log p(x_i|z_g) for all (i, g) as one matrix product (Bernoulli logits)
    m = args.grid_size
    ax = torch.linspace(-7, 7, m, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = vae.decoder(zz.float()).double()                       # (G, D)
        log_px = x.double() @ logits.T - F.softplus(logits).sum(-1)      # (n, G)
        log_pz = vae.prior_dist().log_prob(zz.float()).double()          # (G,)
        cell = float((ax[1] - ax[0]) ** 2)
        lpx_all = torch.logsumexp(log_px + log_pz, -1) + math.log(cell)
    out["vectorised_s_per_point"] = (time.perf_counter() - t0) / n
    out["vectorised_points"] = m * m
    out["vectorised_log_px"] = float(lpx_all.mean())
    iw = pyrovae.evaluate(vae, x, num_samples=1000, seed=0)
    out["iwae_log_px"] = iw["log_likelihood"]
    return out


def print_grid(g: dict[str, Any] | None) -> None:
    print("\n## Grid quadrature, 2-D latent (digits, per data point)\n")
    if g is None:
        print("pyrovae.quadrature not available")
        return
    print("| method                                      | ms/point | grid points "
          "| mean log p(x) |")
    print("|:--------------------------------------------|---------:|------------:|--------------:|")
    if "library_s_per_point" in g:
        print(f"| posterior.grid.grid_posterior (adaptive)    | "
              f"{1e3 * g['library_s_per_point']:8.2f} | {g['library_points']:>11} "
              f"| {g['library_log_px']:13.3f} |")
    print(f"| fixed grid, vectorised (grid × data points) | "
          f"{1e3 * g['vectorised_s_per_point']:8.2f} | {g['vectorised_points']:>11} "
          f"| {g['vectorised_log_px']:13.3f} |")
    print(f"| IWAE K=1000 (a lower bound)                 |        - |           - "
          f"| {g['iwae_log_px']:13.3f} |")


# ---------------------------------------------------------------- quality
def _train_hand(xtr, latent, hidden, epochs, seed, same_draws):
    """The hand-written VAE, initialised like pyrovae's (same seed, same layer order), on
    the same minibatches; ``same_draws`` reseeds the global generator after the
    initialisation as ``fit`` does, so ε are the same draws as pyrovae's."""
    torch.manual_seed(seed)
    h = HandVAE(xtr.shape[1], latent, hidden)
    if same_draws:
        torch.manual_seed(seed)
    opt = torch.optim.Adam(h.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in batches(len(xtr), 128, gen):
            loss = h.loss(xtr[idx], len(xtr))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return h


def quality(args) -> list[dict[str, Any]]:
    """Held-out IWAE of pyrovae.fit vs the hand-written loop, per seed.

    ``hand`` draws its own ε (independent Monte Carlo noise: the comparison "within
    noise"); ``hand_same`` uses the same draws as pyrovae, which isolates implementation
    differences from Monte Carlo noise.  The same IWAE code (and draws) scores all three.
    """
    rows = []
    for name in ("mnist5k", "digits"):
        data = load_dataset(name)
        if args.quick:
            data = data.subset(torch.arange(min(len(data), args.quick_rows)))
        train, test = train_test_split(data, 0.2, seed=0)
        xtr, xte = train.flat, test.flat
        epochs = args.quality_epochs
        per = {"pyrovae": [], "hand": [], "hand_same": []}
        for seed in range(args.quality_seeds):
            torch.manual_seed(seed)
            vae = pyrovae.VAE(xtr.shape[1])  # the default architecture
            hidden = [m.out_features for m in vae.encoder if isinstance(m, nn.Linear)][:-1]
            pyrovae.fit(vae, xtr, epochs=epochs, batch_size=128, lr=1e-3, seed=seed,
                        objective="trace_elbo_mc",  # the hand loops' Monte Carlo ELBO
                        eval_every=None, progress=False, threads=None)
            models = {
                "pyrovae": vae,
                "hand": _train_hand(xtr, vae.latent_dim, hidden, epochs, seed, False),
                "hand_same": _train_hand(xtr, vae.latent_dim, hidden, epochs, seed, True),
            }
            for key, m in models.items():
                ll = hand_iwae(m.encoder, m.decoder, m.latent_dim, xte, args.quality_k, seed=123)
                per[key].append(float(ll.mean()))
        n = args.quality_seeds
        row = {"data": name, "n_train": len(xtr), "n_test": len(xte), "epochs": epochs,
               "seeds": n, "K": args.quality_k, "per_seed": per}
        for key, vals in per.items():
            row[key] = statistics.mean(vals)
            row[key + "_sd"] = statistics.stdev(vals) if n > 1 else float("nan")
        for key in ("hand", "hand_same"):
            diffs = [a - b for a, b in zip(per["pyrovae"], per[key])]
            row["diff_" + key] = statistics.mean(diffs)
            row["diff_" + key + "_se"] = (statistics.stdev(diffs) / math.sqrt(n)
                                          if n > 1 else float("nan"))
        rows.append(row)
    return rows


def print_quality(rows: list[dict[str, Any]]) -> None:
    print("\n## Quality: held-out IWAE log p(x) (nats/example, K = "
          f"{rows[0]['K']}), default VAE (latent 2, MLP 128-64, Bernoulli), batch 128, "
          "Adam 1e-3\n")
    print("mean (sd) over seeds; difference = pyrovae − hand, mean ± standard error over "
          "seeds. 'hand' draws its own ε; 'hand, same ε' the same draws as pyrovae.\n")
    print("| data    | train/test | epochs | seeds | pyrovae.fit    | hand torch     "
          "| hand, same ε   | pyrovae − hand | pyrovae − hand, same ε |")
    print("|:--------|:-----------|-------:|------:|:---------------|:---------------"
          "|:---------------|:---------------|:-----------------------|")
    for r in rows:
        cells = [f"{r[k]:.2f} ({r[k + '_sd']:.2f})" for k in ("pyrovae", "hand", "hand_same")]
        diffs = [f"{r['diff_' + k]:+.2f} ± {r['diff_' + k + '_se']:.2f}"
                 for k in ("hand", "hand_same")]
        print(f"| {r['data']:<7} | {r['n_train']}/{r['n_test']} | {r['epochs']:>6} "
              f"| {r['seeds']:>5} | {cells[0]:<14} | {cells[1]:<14} | {cells[2]:<14} "
              f"| {diffs[0]:<14} | {diffs[1]:<22} |")
    for r in rows:
        print(f"\n{r['data']} per seed: " + "; ".join(
            f"{k} " + " ".join(f"{v:.2f}" for v in vals) for k, vals in r["per_seed"].items()))


# -------------------------------------------------------------------- main
def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: runs in seconds (smoke test)")
    p.add_argument("--only", nargs="+", choices=("speed", "memory", "eval", "grid", "quality"),
                   help="run only these sections")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs-per-repeat", type=int, default=3)
    p.add_argument("--hidden", type=int, nargs="+", default=[400])
    p.add_argument("--latent", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--max-elements", type=int, default=2**24)
    p.add_argument("--grid-n", type=int, default=20)
    p.add_argument("--grid-size", type=int, default=321)
    p.add_argument("--grid-epochs", type=int, default=20)
    p.add_argument("--quality-epochs", type=int, default=20)
    p.add_argument("--quality-seeds", type=int, default=3)
    p.add_argument("--quality-k", type=int, default=1000)
    p.add_argument("--quick-rows", type=int, default=256)
    p.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    p.add_argument("--memory-child", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--eval-memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes = args.batch_sizes if argv and "--batch-sizes" in argv else [32, 128]
        args.threads = args.threads if argv and "--threads" in argv else [1]
        args.repeats = 1
        args.eval_k, args.eval_n, args.eval_repeats = 8, 64, 1
        args.grid_n, args.grid_size, args.grid_epochs = 2, 41, 1
        args.quality_epochs, args.quality_seeds, args.quality_k = 1, 2, 8
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.memory_child:
        memory_child(args)
        return 0
    if args.eval_memory_child:
        eval_memory_child(args)
        return 0
    sections = set(args.only or ("speed", "memory", "eval", "grid", "quality"))
    if args.quick and not args.only:
        sections.discard("memory")  # child processes: seconds each
    device = torch.device(args.device)
    cpu = f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"# pyrovae benchmark: {device_name}; torch {torch.__version__}, "
          f"pyro {pyro.__version__}, python {platform.python_version()}")
    quick = f" (quick: first {args.quick_rows} rows)" if args.quick else ""
    print(f"# model 784-{'-'.join(map(str, args.hidden))}-{args.latent} MLP VAE, Bernoulli, "
          f"Adam lr 1e-3, mnist5k{quick}")
    results: dict[str, Any] = {"device": device_name, "args": vars(args)}
    t_start = time.perf_counter()
    full = load_dataset("mnist5k")
    x = full.flat[: args.quick_rows] if args.quick else full.flat
    if "speed" in sections:
        rows = speed(args, x.to(device), device)
        if "memory" in sections:
            memory(args, rows)
        print_speed(rows, device_name)
        results["speed"] = rows
    if "eval" in sections:
        torch.set_num_threads(max(args.threads))
        train, test = train_test_split(full, 0.2, seed=0)
        vae = make_vae(args.hidden, args.latent, 784, 0)
        xtr = train.flat[: args.quick_rows] if args.quick else train.flat
        pyrovae.fit(vae, xtr, epochs=1 if args.quick else 5, seed=0, eval_every=None,
                    progress=False, threads=None)
        e = evaluation(args, test.flat, vae)
        print_eval(e)
        results["eval"] = e
    if "grid" in sections:
        g = grid_bench(args)
        print_grid(g)
        results["grid"] = g
    if "quality" in sections:
        torch.set_num_threads(max(args.threads))
        q = quality(args)
        print_quality(q)
        results["quality"] = q
    print(f"\n# total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
