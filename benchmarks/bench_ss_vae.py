"""M2 on MNIST: pyrovae's ``fit`` against the training loop of Pyro's own
``examples/vae/ss_vae_M2.py``, the same networks, data and labels, side by side.

The Pyro side is that example's ``SSVAE`` rewritten without its data/visdom utilities:
softplus MLPs 784-500-10 (q(y|x)), 794-500-(50, 50) (q(z|x,y)), 60-500-784 (p(x|y,z)),
``config_enumerate(guide, "parallel")`` + ``TraceEnum_ELBO``, a second SVI for the
auxiliary loss (``aux_loss_multiplier`` 46), Adam (lr 4.2e-4, β₁ 0.9), batches of 200,
and its loop: every ``int(N / labels)``-th batch a labelled one, the others unlabelled.
pyrovae's side is ``model: m2`` with the same sizes and settings (mixed minibatches, one
SVI step with the auxiliary term as the model site ``classify``), with the fast engine
(the enumerated estimator) and the pyro engine (stock SVI + ``TraceEnum_ELBO``).  The
networks differ only where the libraries do: pyrovae's guide family gives the scale by
softplus (Pyro's example: exp) and its decoder outputs logits (Pyro's: a clipped sigmoid).

Printed per variant: wall and process-CPU seconds per epoch (each variant runs
``--epochs`` epochs, one variant after the other; pyrovae's epochs are timed by a ``fit``
callback, so one optimiser serves all of them; CPU time is less sensitive to other load
on a shared machine), their ratios to Pyro's loop, the held-out accuracy of
q(y|x) after them, and the machine load.  Data: the classic MNIST file (README set-up), the
first ``--train-size`` of the 60,000 training images binarised at 1/2, ``--labels``
labels balanced over the classes, the 10,000 test images.  No timing is asserted.

Usage::

    python benchmarks/bench_ss_vae.py                       # one epoch each, 60,000 images
    python benchmarks/bench_ss_vae.py --train-size 5000 --epochs 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from torch import nn

from pyrovae.data import load_dataset, mask_labels, train_test_split
from pyrovae.model.m2 import SemiSupervisedVAE
from pyrovae.training.trainer import fit

Z, H, C = 50, 500, 10


class PyroSSVAE(nn.Module):
    """Pyro's examples/vae/ss_vae_M2.py SSVAE (model, guide, model_classify)."""

    def __init__(self, aux: float = 46.0) -> None:
        super().__init__()
        self.aux = aux
        self.encoder_y = nn.Sequential(nn.Linear(784, H), nn.Softplus(), nn.Linear(H, C))
        self.encoder_z = nn.Sequential(nn.Linear(784 + C, H), nn.Softplus(),
                                       nn.Linear(H, 2 * Z))
        self.decoder = nn.Sequential(nn.Linear(Z + C, H), nn.Softplus(), nn.Linear(H, 784))

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        n = xs.size(0)
        with pyro.plate("data", n):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(n, Z), 1.0).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(n, C) / C), obs=ys)
            h = torch.cat([zs, ys.expand(*zs.shape[:-1], C)], -1)
            loc = torch.sigmoid(self.decoder(h)).clamp(1e-7, 1 - 1e-7)
            pyro.sample("x", dist.Bernoulli(loc).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        n = xs.size(0)
        with pyro.plate("data", n):
            if ys is None:
                alpha = torch.softmax(self.encoder_y(xs), -1).clamp(1e-7, 1 - 1e-7)
                ys = pyro.sample("y", dist.OneHotCategorical(alpha))
            batch = torch.broadcast_shapes(ys.shape[:-1], xs.shape[:-1])  # enumerated y
            h = torch.cat([xs.expand(*batch, 784), ys.expand(*batch, C)], -1)
            loc, raw = self.encoder_z(h).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, raw.exp()).to_event(1))

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data", xs.size(0)):
            if ys is not None:
                alpha = torch.softmax(self.encoder_y(xs), -1).clamp(1e-7, 1 - 1e-7)
                with pyro.poutine.scale(scale=self.aux):
                    pyro.sample("y_aux", dist.OneHotCategorical(alpha), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass


def pyro_epoch(m: PyroSSVAE, svis, x, y, lab, batch: int, gen: torch.Generator) -> None:
    """One epoch of the example's loop: labelled batches interleaved every
    int(N / labels) batches, the rest unlabelled."""
    sup = torch.nonzero(lab).squeeze(-1)
    unsup = torch.nonzero(~lab).squeeze(-1)
    sup = sup[torch.randperm(len(sup), generator=gen)]
    unsup = unsup[torch.randperm(len(unsup), generator=gen)]
    sup_b = [sup[i:i + batch] for i in range(0, len(sup), batch)]
    unsup_b = [unsup[i:i + batch] for i in range(0, len(unsup), batch)]
    period = max(1, int(len(x) / len(sup)))
    si = ui = 0
    for i in range(len(sup_b) + len(unsup_b)):
        if (i % period == 1 and si < len(sup_b)) or ui >= len(unsup_b):
            idx = sup_b[si]
            si += 1
            ys = nn.functional.one_hot(y[idx], C).float()
            for s in svis:
                s.step(x[idx], ys)
        else:
            idx = unsup_b[ui]
            ui += 1
            for s in svis:
                s.step(x[idx])


def accuracy(logits_fn, x, y) -> float:
    with torch.no_grad():
        return float((logits_fn(x).argmax(-1) == y).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=60000)
    ap.add_argument("--labels", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pyro-engine", action="store_true",
                    help="leave out pyrovae's pyro-engine variant (stock SVI + TraceEnum_ELBO)")
    args = ap.parse_args()
    # Pyro's example warns on its labelled batches (no site to enumerate): not news here
    warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist", transform="binarize")
    train, test = train_test_split(data, 0.0, seed=0)
    x = train.x[: args.train_size].reshape(-1, 784).float()
    y_true = torch.as_tensor(train.y[: args.train_size]).long()
    y = mask_labels(y_true, C, count=args.labels, seed=args.seed)
    lab = y >= 0
    xt = test.x.reshape(-1, 784).float()
    yt = torch.as_tensor(test.y).long()
    lr = 4.2e-4

    pyro.set_rng_seed(args.seed)
    ref = PyroSSVAE()
    pyro.clear_param_store()
    opt = pyro.optim.Adam({"lr": lr, "betas": (0.9, 0.999)})
    svis = [SVI(ref.model, config_enumerate(ref.guide, "parallel"), opt,
                loss=TraceEnum_ELBO(max_plate_nesting=1)),
            SVI(ref.model_classify, ref.guide_classify, opt, loss=Trace_ELBO())]
    gen = torch.Generator().manual_seed(args.seed)

    def m2(seed):
        torch.manual_seed(seed)
        return SemiSupervisedVAE(784, Z, classes=C, classify_weight=46.0, encoder=[H],
                                 activation="softplus", classifier_hidden=[H],
                                 classifier_activation="softplus")

    ours = {"fast": m2(args.seed), "pyro": m2(args.seed)}
    names = {"fast": "pyrovae fit, engine fast", "pyro": "pyrovae fit, engine pyro"}
    engines = ["fast"] if args.no_pyro_engine else ["fast", "pyro"]
    seconds = {"Pyro's ss_vae_M2 loop": 0.0, **{names[e]: 0.0 for e in engines}}
    cpu = dict.fromkeys(seconds, 0.0)

    def timer(name):
        """A fit callback adding each epoch's wall and CPU seconds to the totals."""
        last = {"cpu": time.process_time()}

        def cb(trainer, record):
            seconds[name] += record["epoch_seconds"]
            now = time.process_time()
            cpu[name] += now - last["cpu"]
            last["cpu"] = now
        return cb, last

    # warm-up outside the timings: imports, the enumeration machinery, first allocations
    warm = PyroSSVAE()
    with pyro.get_param_store().scope():
        SVI(warm.model, config_enumerate(warm.guide, "parallel"), pyro.optim.Adam({"lr": lr}),
            loss=TraceEnum_ELBO(max_plate_nesting=1)).step(x[:args.batch_size])
    for engine in engines:
        fit(m2(args.seed), x[:2 * args.batch_size], y=y[:2 * args.batch_size], epochs=1,
            batch_size=args.batch_size, engine=engine, progress=False, threads=None, eval_every=0)
    for engine in engines:  # one fit per variant: one optimiser for all its epochs
        cb, last = timer(names[engine])
        last["cpu"] = time.process_time()
        fit(ours[engine], x, y=y, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
            seed=args.seed, engine=engine, progress=False, threads=None, eval_every=0,
            callbacks=[cb])
    for _ in range(args.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        pyro_epoch(ref, svis, x, y_true, lab, args.batch_size, gen)
        seconds["Pyro's ss_vae_M2 loop"] += time.perf_counter() - t0
        cpu["Pyro's ss_vae_M2 loop"] += time.process_time() - c0
    accs = {"Pyro's ss_vae_M2 loop": accuracy(ref.encoder_y, xt, yt),
            **{names[e]: accuracy(ours[e].classifier, xt, yt) for e in engines}}
    base = seconds["Pyro's ss_vae_M2 loop"]
    base_cpu = cpu["Pyro's ss_vae_M2 loop"]
    print(f"M2 on MNIST: {len(x)} training images, {int(lab.sum())} labels, batch "
          f"{args.batch_size}, {args.epochs} epoch(s) each, threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'variant':28s} {'s/epoch':>9s} {'ratio':>7s} {'CPU s/epoch':>12s} {'ratio':>7s} "
          f"{'test accuracy':>14s}")
    for name in seconds:
        print(f"{name:28s} {seconds[name] / args.epochs:9.1f} {seconds[name] / base:7.2f} "
              f"{cpu[name] / args.epochs:12.1f} {cpu[name] / base_cpu:7.2f} {accs[name]:14.3f}")


if __name__ == "__main__":
    main()
