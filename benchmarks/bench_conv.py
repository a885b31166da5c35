"""Conv VAE training step: ``pyrovae.fit``'s fast engine against hand-written PyTorch.

Both sides train the same convolutional VAE on mnist5k (binarised, 1×28×28,
batch 128, latent 16): encoder ``Conv2d(1, 32, 4, 2, 1) → ReLU → Conv2d(32, 64, 4,
2, 1) → ReLU → Linear(64·7·7, 2·16)``, decoder ``Linear(16, 64·7·7) → ReLU →
ConvTranspose2d(64, 32, 4, 2, 1) → ReLU → ConvTranspose2d(32, 1, 4, 2, 1)``
(pyrovae: ``encoder: {family: conv, channels: [32, 64]}``), the same initial
weights, the same Trace_ELBO estimator (one reparameterised draw, Monte Carlo KL),
one ``torch.optim.Adam``.

(a) hand-written: the loss written out in PyTorch, ``loss.backward()``, ``opt.step()``.
(b) pyrovae: the engine ``pyrovae.fit`` builds (``make_engine("fast", ...)``), its
    ``step(x, num_data, kl_weight)``: the direct kernel through the VAE's network
    families (shape-checked), Adam over all parameters.

The two are timed interleaved (blocks of steps alternating, several rounds) with 1
and 2 threads; the table gives the median time per step and the ratio (b)/(a),
from wall time and from process CPU time (less sensitive to other load).
The target is a ratio ≤ 1.10.

    python benchmarks/bench_conv.py            # 1 and 2 threads
    python benchmarks/bench_conv.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.training.engines import make_engine
from pyrovae.training.objectives import TraceELBOObjective

LATENT = 16


class HandConvVAE(nn.Module):
    """The conv VAE written by hand (the layers of the ``conv`` family, channels [32, 64])."""

    def __init__(self, latent: int = LATENT) -> None:
        super().__init__()
        self.latent = latent
        self.enc_convs = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
        )
        self.enc_head = nn.Linear(64 * 7 * 7, 2 * latent)
        self.dec_head = nn.Linear(latent, 64 * 7 * 7)
        self.dec_convs = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )

    def copy_from(self, vae: pyrovae.VAE) -> None:
        """Take the pyrovae VAE's initial weights (same layers, same order)."""
        mine = [p for p in self.parameters()]
        theirs = [*vae.encoder.convs.parameters(), *vae.encoder.head.parameters(),
                  *vae.decoder.head.parameters(), *vae.decoder.deconvs.parameters()]
        assert [p.shape for p in mine] == [p.shape for p in theirs]
        with torch.no_grad():
            for a, b in zip(mine, theirs):
                a.copy_(b)

    def loss(self, x: torch.Tensor, num_data: int) -> torch.Tensor:
        loc, raw = self.enc_head(self.enc_convs(x)).split(self.latent, -1)
        scale = F.softplus(raw) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + eps * scale
        logits = self.dec_convs(F.relu(self.dec_head(z)).view(-1, 64, 7, 7))
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        log_pz_minus_log_q = (0.5 * (eps**2 - z**2)).sum() + scale.log().sum()
        return -(log_px + log_pz_minus_log_q) * (num_data / x.shape[0])


def time_block(step, batches) -> tuple[float, float]:
    """(wall, cpu) seconds per step over ``batches``."""
    w0, c0 = time.perf_counter(), time.process_time()
    for xb in batches:
        step(xb)
    return ((time.perf_counter() - w0) / len(batches), (time.process_time() - c0) / len(batches))


def measure(x: torch.Tensor, threads: int, rounds: int, steps: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = pyrovae.VAE((1, 28, 28), LATENT, encoder={"family": "conv", "channels": [32, 64]},
                      likelihood="bernoulli")
    hand = HandConvVAE()
    hand.copy_from(vae)
    engine = make_engine("fast", vae, TraceELBOObjective(), lr=1e-3, sample=x[:8])
    opt = torch.optim.Adam(hand.parameters(), lr=1e-3)
    n = x.shape[0]

    def hand_step(xb):
        loss = hand.loss(xb, n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def pyrovae_step(xb):
        engine.step(xb, n, 1.0)

    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=g)
    blocks = [[x[perm[(i * steps + j) * 128 % (n - 128):][:128]] for j in range(steps)]
              for i in range(rounds)]
    for fn in (hand_step, pyrovae_step):  # warm-up
        time_block(fn, blocks[0][:2])
    res = {"torch": [], "pyrovae": []}
    for i, block in enumerate(blocks):
        order = [("torch", hand_step), ("pyrovae", pyrovae_step)]
        if i % 2:
            order.reverse()
        for name, fn in order:
            res[name].append(time_block(fn, block))
    out = {"threads": threads}
    for name, vals in res.items():
        out[name] = (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals))
    out["ratio_wall"] = out["pyrovae"][0] / out["torch"][0]
    out["ratio_cpu"] = out["pyrovae"][1] / out["torch"][1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 steps, 1 thread")
    args = p.parse_args()
    if args.quick:
        args.threads, args.rounds, args.steps = [1], 2, 2
    x = load_dataset("mnist5k").x  # (5000, 1, 28, 28), binarised
    print(f"conv VAE step, batch 128, mnist5k 1x28x28, latent {LATENT}; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print("| threads | (a) hand-written torch ms/step | (b) pyrovae fast engine ms/step "
          "| ratio (b)/(a) wall | ratio (b)/(a) CPU |")
    print("|---:|---:|---:|---:|---:|")
    for t in args.threads:
        r = measure(x, t, args.rounds, args.steps)
        print(f"| {t} | {1e3 * r['torch'][0]:.1f} | {1e3 * r['pyrovae'][0]:.1f} | "
              f"{r['ratio_wall']:.3f} | {r['ratio_cpu']:.3f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; target: ratio <= 1.10")


if __name__ == "__main__":
    main()
