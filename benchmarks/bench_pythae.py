"""pyrovae against pythae (and a hand-written PyTorch VAE): held-out IWAE and end-to-end time.

The peer benchmark of issue 14.  For each data set and seed it trains, from the
SAME initial weights, on the same data, with the same optimiser and epochs:

* ``pyrovae``        – ``pyrovae.fit`` with pyrovae's *default* objective (read from
                       ``Trainer``'s signature, so after a change of default this measures
                       the new one) and the default guide (σ = softplus(·) + 1e-4);
* ``pyrovae_mf``     – the same with ``objective="trace_meanfield_elbo"`` (Pyro's
                       ``TraceMeanField_ELBO``: the KL term in closed form);
* ``pyrovae_mf_exp`` – ``trace_meanfield_elbo`` with the encoder's scale map
                       σ = exp(½·log-variance), as pythae and most PyTorch code write it
                       (the scale-map check of issue 14; ``--methods`` also offers ``softplus1``,
                       softplus shifted so that σ = 1 at s = 0, and the default objective
                       with either map);
* ``pythae``         – pythae's ``VAE`` trained by its ``TrainingPipeline`` (only when
                       ``import pythae`` works: it is the optional extra ``pyrovae[peer]``,
                       never a runtime dependency; nothing is installed at run time);
* ``torch``          – a hand-written PyTorch VAE (μ, log σ² heads, σ = exp(½ log σ²),
                       analytic KL, mean loss over the batch): always present.

Identical networks: encoder ``D-400-40`` MLP (ReLU; the 40 outputs are (μ, s) with
s mapped to σ by each library's scale map), decoder ``20-400-D`` MLP giving Bernoulli
logits, prior N(0, I).  Adam, lr 1e-3, batch 128, one torch thread.  Data:
``load_dataset("mnist5k")`` (thresholded at ½, a deterministic binarisation) with the
first 4,000 images for training and the last 1,000 for testing, and
``load_dataset("digits")`` (first 1,437 / last 360).

Every model is scored by ONE shared estimator, :func:`iwae`: a hand-vectorised
importance-weighted bound (Burda et al. 2016) with K = 1000 on the held-out images,
with the same standard-normal draws ε for every model (common random numbers, so
the paired differences carry little Monte Carlo noise).  The script prints per seed
the held-out IWAE and end-to-end training seconds of each method, then per method
the mean, the paired difference against the peer (pythae if present, else the
hand-written VAE) with its standard error over seeds, and the median per-seed ratio of
training seconds to the peer's.  Methods run interleaved (the order rotates with the
seed) so that load drift on a shared machine hits all of them alike.

Usage::

    python benchmarks/bench_pythae.py                       # 5 seeds, 30 epochs, both data sets
    python benchmarks/bench_pythae.py --seeds 10 --epochs 30 --json out.json
    python benchmarks/bench_pythae.py --quick               # seconds; smoke test
    python benchmarks/bench_pythae.py --merge a.json b.json # one report from several runs
                                                            # (or their logs: stopped runs)

To include pythae, run it with an interpreter where ``pip install 'pyrovae[peer]'`` was done
(pythae 0.1.2 installs next to the torch already there; see docs/peer-benchmark.md).

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
    Chadebec, Vincent & Allassonnière (2022), *Pythae: Unifying Generative Autoencoders in
    Python — A Benchmarking Use Case*.

No timing is asserted anywhere: this prints numbers, it does not judge them.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.model.guides import DiagonalNormalGuide
from pyrovae.model.nets import mlp

HIDDEN = 400
LATENT = 20
#: (data set, number of training rows; the rest, from the end, are the test rows)
DATASETS = {"mnist5k": 4000, "digits": 1437}
DATASETS_TOTAL = {"mnist5k": 5000, "digits": 1797}

Encoded = tuple[torch.Tensor, torch.Tensor]  # (loc, scale) of q(z|x)


# ------------------------------------------------------------- shared estimator
@torch.no_grad()
def iwae(
    encode: Callable[[torch.Tensor], Encoded],
    logits: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    num_samples: int = 1000,
    *,
    seed: int = 123,
    max_elements: int = 2**24,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per example, for any Gaussian-encoder,
    Bernoulli-decoder VAE with prior N(0, I):

        L_K(x) = log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x),   z_k = μ(x) + σ(x) ε_k,

    ε_k ~ N(0, I) from a generator seeded with ``seed`` (the same draws for every model
    scored with the same seed and data), K drawn in chunks of at most ``max_elements``
    decoder outputs, combined by a streaming log-sum-exp.

    References:
        Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
    """
    gen = torch.Generator().manual_seed(seed)
    n, D = x.shape
    loc, scale = encode(x)
    d = loc.shape[-1]
    chunk = max(1, min(num_samples, max_elements // (n * max(D, HIDDEN))))
    lse = torch.full((n,), -math.inf)
    log_q_norm = scale.log().sum(-1)
    for s0 in range(0, num_samples, chunk):
        s = min(chunk, num_samples - s0)
        eps = torch.randn((s, n, d), generator=gen)
        z = loc + eps * scale
        out = logits(z)
        log_px = -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")
        # log p(z) − log q(z|x); the (2π)^{-d/2} factors cancel
        log_w = log_px.sum(-1) + 0.5 * (eps**2 - z**2).sum(-1) + log_q_norm
        lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
    return lse - math.log(num_samples)


# ------------------------------------------------------------------ the methods
#: The encoder's scale maps s ↦ σ compared: pyrovae's default, pythae's (s read as
#: log σ²), and softplus shifted so that σ = 1 at s = 0 as with exp (an initialisation check).
SCALE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": lambda s: F.softplus(s) + 1e-4,
    "exp": lambda s: torch.exp(0.5 * s),
    "softplus1": lambda s: F.softplus(s + math.log(math.e - 1)) + 1e-4,
}


class ScaleMapGuide(DiagonalNormalGuide):
    """Diagonal Gaussian q(z|x) = N(μ, diag σ²) with σ = ``SCALE_MAPS[scale_map]``(s)
    for the encoder output (μ, s)."""

    def __init__(self, latent_dim: int, scale_map: str) -> None:
        super().__init__(latent_dim)
        self.scale_map = scale_map

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        loc, s = out.split(self.latent_dim, dim=-1)
        return dist.Normal(loc, SCALE_MAPS[self.scale_map](s)).to_event(1)


def default_objective() -> str:
    """The objective ``pyrovae.fit`` uses when none is given."""
    return inspect.signature(pyrovae.Trainer.__init__).parameters["objective"].default


def init_state(data_dim: int, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Initial encoder and decoder weights for every method (torch's default init)."""
    torch.manual_seed(seed)
    enc, dec = mlp(data_dim, [HIDDEN], 2 * LATENT), mlp(LATENT, [HIDDEN], data_dim)
    return {"encoder": enc.state_dict(), "decoder": dec.state_dict()}


def _scorers(encoder: nn.Module, decoder: nn.Module, scale_map: str):
    def encode(x):
        loc, s = encoder(x).split(LATENT, -1)
        return loc, SCALE_MAPS[scale_map](s)
    return encode, decoder


def train_pyrovae(x, init, seed, epochs, objective: str, scale_map: str):
    guide = "diagonal_normal" if scale_map == "softplus" else ScaleMapGuide(LATENT, scale_map)
    vae = pyrovae.VAE(x.shape[1], LATENT, encoder=[HIDDEN], decoder=[HIDDEN], guide=guide)
    vae.encoder.load_state_dict(init["encoder"])
    vae.decoder.load_state_dict(init["decoder"])
    t0 = time.perf_counter()
    pyrovae.fit(vae, x, epochs=epochs, batch_size=128, lr=1e-3, seed=seed,
                objective=objective, eval_every=0, progress=False, threads=None)
    sec = time.perf_counter() - t0
    vae.eval()
    return sec, _scorers(vae.encoder, vae.decoder, scale_map)


def train_torch(x, init, seed, epochs):
    """The VAE as it is usually written by hand in PyTorch (cf. pytorch/examples)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    enc, dec = mlp(x.shape[1], [HIDDEN], 2 * LATENT), mlp(LATENT, [HIDDEN], x.shape[1])
    enc.load_state_dict(init["encoder"])
    dec.load_state_dict(init["decoder"])
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            xb = x[idx]
            mu, log_var = enc(xb).split(LATENT, -1)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").sum(-1)
            kl = -0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(-1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sec = time.perf_counter() - t0
    return sec, _scorers(enc, dec, "exp")


def pythae_available() -> str | None:
    """pythae's version if it can be imported, else None (nothing is installed)."""
    try:
        from importlib.metadata import version

        import pythae.models
        import pythae.pipelines
        import pythae.trainers  # noqa: F401
        return version("pythae")
    except Exception:
        return None


def pythae_nets(encoder: nn.Module, decoder: nn.Module, latent: int):
    """``encoder`` and ``decoder`` wrapped in pythae's ``BaseEncoder`` / ``BaseDecoder``.

    The encoder's output (μ, s) is read as pythae reads it, s = log σ² (so σ = exp(½·s),
    the ``exp`` scale map); the decoder's output is Bernoulli logits, handed to pythae as
    probabilities (sigmoid), as its ``reconstruction_loss="bce"`` expects.  The wrappers
    hold the given modules (``.net``), so their weights are pythae's.
    """
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = encoder

        def forward(self, inp):
            mu, log_var = self.net(inp.reshape(len(inp), -1)).split(latent, -1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    return Encoder(), Decoder()


def train_pythae(x, init, seed, epochs):
    """pythae's ``VAE`` (Bernoulli: ``reconstruction_loss="bce"``) by its TrainingPipeline,
    with our encoder and decoder wrapped in pythae's BaseEncoder / BaseDecoder."""
    from pythae.models import VAE, VAEConfig
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    t0 = time.perf_counter()
    enc, dec = pythae_nets(mlp(x.shape[1], [HIDDEN], 2 * LATENT), mlp(LATENT, [HIDDEN], x.shape[1]),
                           LATENT)
    enc.net.load_state_dict(init["encoder"])
    dec.net.load_state_dict(init["decoder"])
    config = VAEConfig(input_dim=(x.shape[1],), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(config, encoder=enc, decoder=dec)
    with tempfile.TemporaryDirectory() as out_dir:
        training = BaseTrainerConfig(
            output_dir=out_dir, num_epochs=epochs, learning_rate=1e-3,
            per_device_train_batch_size=128, optimizer_cls="Adam", seed=seed, no_cuda=True,
        )
        pipeline = TrainingPipeline(training_config=training, model=model)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            pipeline(train_data=x)
        best = pipeline.trainer._best_model  # what pythae saves and a user reloads
    sec = time.perf_counter() - t0
    best.eval()
    return sec, _scorers(best.encoder.net, best.decoder.net, "exp")


# ------------------------------------------------------------------ the driver
#: Methods run by default (pythae only where importable), in this order.
DEFAULT_METHODS = ("pyrovae", "pyrovae_mf", "pyrovae_mf_exp", "pythae", "torch")
#: Every method: "pyrovae" (default objective) or "pyrovae_mf" (trace_meanfield_elbo), with
#: an optional "_<scale map>" suffix; "pythae"; "torch".
ALL_METHODS = (
    "pyrovae", "pyrovae_exp", "pyrovae_softplus1",
    "pyrovae_mf", "pyrovae_mf_exp", "pyrovae_mf_softplus1", "pythae", "torch",
)


def methods(args) -> dict[str, Callable]:
    """The chosen methods: name -> train(x, init, seed) -> (seconds, (encode, decode))."""
    out: dict[str, Callable] = {}
    for name in args.methods:
        if name == "pythae":
            if args.pythae:
                out[name] = lambda x, i, s: train_pythae(x, i, s, args.epochs)
        elif name == "torch":
            out[name] = lambda x, i, s: train_torch(x, i, s, args.epochs)
        else:
            parts = name.split("_")[1:]
            obj = "trace_meanfield_elbo" if parts[:1] == ["mf"] else default_objective()
            scale_map = (parts[1:] if parts[:1] == ["mf"] else parts) or ["softplus"]
            out[name] = (lambda o, m: lambda x, i, s: train_pyrovae(x, i, s, args.epochs, o, m))(
                obj, scale_map[0])
    return out


def run_dataset(name: str, args,
                on_seed: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train and score every method on one data set, seed by seed (``on_seed(row)`` after
    each, so an interrupted run keeps the seeds it finished)."""
    data = load_dataset(name).x.float().flatten(1)  # flat rows for the MLPs
    n_train = DATASETS[name]
    if args.quick:
        n_train, data = 256, torch.cat([data[:256], data[-64:]])
    xtr, xte = data[:n_train].contiguous(), data[n_train:].contiguous()
    table = methods(args)
    names = list(table)
    warm = init_state(xtr.shape[1], 0)
    for m in names:  # warm-up: lazy imports, allocator, Pyro's first trace
        table[m](xtr[:256], warm, 0)
    iw: dict[str, list[float]] = {m: [] for m in names}
    sec: dict[str, list[float]] = {m: [] for m in names}
    cpu: dict[str, list[float]] = {m: [] for m in names}
    row = {"data": name, "n_train": len(xtr), "n_test": len(xte), "iwae": iw, "seconds": sec,
           "cpu_seconds": cpu, "seeds": []}
    for r, seed in enumerate(range(args.seed0, args.seed0 + args.seeds)):
        init = init_state(xtr.shape[1], seed)
        order = names[r % len(names):] + names[: r % len(names)]
        for m in order:
            c0 = time.process_time()
            t, (enc, dec) = table[m](xtr, init, seed)
            cpu[m].append(time.process_time() - c0)  # one thread: robust to others' load
            iw[m].append(float(iwae(enc, dec, xte, args.k, seed=1000 + seed).mean()))
            sec[m].append(t)
        print(f"  {name} seed {seed}: " + ", ".join(f"{m} {iw[m][-1]:.2f} ({sec[m][-1]:.1f}s)"
              for m in names), file=sys.stderr, flush=True)
        row["seeds"].append(seed)
        if on_seed is not None:
            on_seed(row)
    return row


def summarise(row: dict[str, Any], peer: str) -> dict[str, dict[str, float]]:
    """Per method: mean IWAE, paired difference to ``peer`` ± its standard error over
    seeds, mean seconds and the median per-seed time ratio to ``peer``."""
    out = {}
    n = len(row["seeds"])
    for m, vals in row["iwae"].items():
        diffs = [a - b for a, b in zip(vals, row["iwae"][peer])]
        ratios = [a / b for a, b in zip(row["seconds"][m], row["seconds"][peer])]
        cpu = row.get("cpu_seconds") or {}
        cpu_ratios = [a / b for a, b in zip(cpu.get(m, []), cpu.get(peer, []))]
        out[m] = {
            "iwae": statistics.mean(vals),
            "diff": statistics.mean(diffs),
            "diff_se": statistics.stdev(diffs) / math.sqrt(n) if n > 1 else float("nan"),
            "wins": sum(d > 0 for d in diffs),
            "seconds": statistics.mean(row["seconds"][m]),
            "time_ratio": statistics.median(ratios),
            "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else float("nan"),
        }
    return out


def print_report(rows: list[dict[str, Any]], args, peer: str, load: str | None = None) -> None:
    load = load or f"{os.getloadavg()[0]:.2f}"
    print(f"\n# pyrovae vs {peer}: held-out IWAE (K = {args.k}) and training seconds\n")
    print(f"{args.epochs} epochs, batch 128, Adam 1e-3, MLP D-{HIDDEN}-{LATENT}, Bernoulli, "
          f"N(0, I) prior, torch threads {args.threads}; pyrovae default objective "
          f"'{default_objective()}'; load {load} "
          f"({os.cpu_count()} cpus); torch {torch.__version__}, python "
          f"{platform.python_version()}" + (" (QUICK: not a measurement)" if args.quick else ""))
    for row in rows:
        names = list(row["iwae"])
        print(f"\n## {row['data']} ({row['n_train']} train / {row['n_test']} test)\n")
        print("| seed | " + " | ".join(names) + " |")
        print("|---:|" + "---:|" * len(names))
        for i, s in enumerate(row["seeds"]):
            cells = [f"{row['iwae'][m][i]:.2f} ({row['seconds'][m][i]:.1f} s)" for m in names]
            print(f"| {s} | " + " | ".join(cells) + " |")
        summ = summarise(row, peer)
        own = summarise(row, names[0])
        print(f"\n| method | mean IWAE | − {peer} (paired, ± se) | better on | − {names[0]} "
              f"(paired, ± se) | mean s | time / {peer} (median) | CPU time / {peer} (median) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for m in names:
            r = summ[m]
            cpu = "-" if math.isnan(r["cpu_ratio"]) else f"{r['cpu_ratio']:.2f}"
            print(f"| {m} | {r['iwae']:.2f} | {r['diff']:+.2f} ± {r['diff_se']:.2f} "
                  f"| {r['wins']}/{len(row['seeds'])} "
                  f"| {own[m]['diff']:+.2f} ± {own[m]['diff_se']:.2f} | {r['seconds']:.1f} "
                  f"| {r['time_ratio']:.2f} | {cpu} |")
        row["summary"] = summ


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    p.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--k", type=int, default=1000, help="IWAE importance samples (default 1000)")
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-pythae", dest="pythae", action="store_false",
                   help="skip pythae even when it is importable")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=ALL_METHODS,
                   help="methods to run (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, K 10, 2 seeds")
    p.add_argument("--json", default=None, help="also write the raw results to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.k = 2, 1, 10
    return args


_SEED_LINE = re.compile(r"^\s+(\S+) seed (\d+): (.*)$")
_METHOD_CELL = re.compile(r"(\S+) (-?[\d.]+) \(([\d.]+)s\)")


def read_log(path: str) -> dict[str, Any]:
    """A run rebuilt from the per-seed lines of its log (stderr), for a run stopped before
    it wrote its JSON; it was run with the default ``--epochs``, ``--k`` and ``--threads``."""
    rows: dict[str, dict[str, Any]] = {}
    with open(path) as f:
        for line in f:
            hit = _SEED_LINE.match(line)
            if not hit:
                continue
            row = rows.setdefault(hit[1], {"data": hit[1], "n_train": DATASETS[hit[1]],
                                           "n_test": None, "iwae": {}, "seconds": {},
                                           "seeds": []})
            row["seeds"].append(int(hit[2]))
            for m, value, sec in _METHOD_CELL.findall(hit[3]):
                row["iwae"].setdefault(m, []).append(float(value))
                row["seconds"].setdefault(m, []).append(float(sec))
    methods_seen = {m for row in rows.values() for m in row["iwae"]}
    return {"args": vars(parse([])), "peer": "pythae" if "pythae" in methods_seen else "torch",
            "load": [float("nan")], "rows": list(rows.values())}


def merge(paths: list[str]) -> int:
    """Print the report of several runs (e.g. seeds 0-4 and 5-9) as one: their ``--json``
    files, or the logs (stderr) of runs stopped early."""
    runs = [json.loads(Path(p).read_text()) if p.endswith(".json") else read_log(p) for p in paths]
    first = runs[0]
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        for row in run["rows"]:
            into = rows.setdefault(row["data"], {**row, "iwae": {}, "seconds": {},
                                                 "cpu_seconds": {}, "seeds": []})
            into["seeds"] += row["seeds"]
            for key in ("iwae", "seconds", "cpu_seconds"):
                for m, values in row.get(key, {}).items():
                    into[key].setdefault(m, []).extend(values)
    methods_all = set.intersection(*(set(r["iwae"]) for run in runs for r in run["rows"]))
    for row in rows.values():
        row["n_test"] = row["n_test"] or DATASETS_TOTAL[row["data"]] - row["n_train"]
    for row in rows.values():
        for key in ("iwae", "seconds", "cpu_seconds"):
            row[key] = {m: v for m, v in row[key].items() if m in methods_all}
        if any(len(v) != len(row["seeds"]) for v in row["cpu_seconds"].values()):
            row["cpu_seconds"] = {}  # some runs (logs) did not record CPU time
    args = argparse.Namespace(**first["args"])
    load = ", ".join(f"{run['load'][0]:.2f}" for run in runs if run["load"][0] == run["load"][0])
    load = (load + " at the ends of the runs") if load else "not recorded (from logs)"
    print_report(list(rows.values()), args, first["peer"], load)
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--merge"]:
        return merge(argv[1:])
    args = parse(argv)
    torch.set_num_threads(args.threads)
    version = pythae_available() if args.pythae else None
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("pythae")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # its trainer logs every epoch
    if args.pythae and version is None:
        print("pythae is not importable here (optional: pip install 'pyrovae[peer]'); "
              "comparing with the hand-written PyTorch VAE only.")
    args.pythae = version is not None
    peer = "pythae" if args.pythae and "pythae" in args.methods else "torch"
    if peer not in args.methods:
        args.methods.append(peer)
    if version:
        print(f"pythae {version} found: comparing with pythae's VAE and the hand-written one.")

    def save(rows: list[dict[str, Any]]) -> None:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "peer": peer, "pythae": version,
                           "load": os.getloadavg(), "rows": rows}, f, indent=1)

    rows: list[dict[str, Any]] = []
    for name in args.data:
        rows.append(run_dataset(name, args, lambda row: save([*rows, row])))
    print_report(rows, args, peer)
    save(rows)  # with the summaries
    return 0


if __name__ == "__main__":
    sys.exit(main())
