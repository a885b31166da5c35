"""A two-stochastic-layer VAE against a one-layer VAE of the same size, both written as
plain Pyro pairs, trained by stock SVI on the same data and checked the same way.

The two-layer model is the one of Burda et al. (2016)::

    z2 ~ N(0, I),  z1 | z2 ~ N(μ(z2), σ(z2)),  x | z1 ~ Bernoulli(f(z1))
    q(z1 | x) q(z2 | z1)                       (bottom-up guide)

with tanh MLPs; the one-layer model has one latent site and its hidden width chosen so
both have (about) the same number of parameters.  The checks see the two latent sites
through :func:`pyrovae.posterior.as_target` (sites found from a trace) and report, on
held-out images: ELBO, IWAE (K samples), AIS ± its standard error with the BDMC width
on data simulated from each model, and the active units per latent site::

    python examples/hierarchical_vs_single.py --epochs 20 --points 100

References:
    Burda, Grosse & Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import pyro
import pyro.distributions as dist
import torch
from _output import output_folder
from torch import nn

from pyrovae.data import load_dataset, train_test_split
from pyrovae.posterior import as_target, elbo, iwae
from pyrovae.posterior.ais import ais
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.collapse import collapse_diagnostics


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


class Gaussian(nn.Module):
    """An MLP giving the location and scale of a diagonal Gaussian."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.net = mlp([*sizes[:-1], 2 * sizes[-1]])

    def forward(self, h):
        loc, raw = self.net(h).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 1e-4


class OneLayer(nn.Module):
    def __init__(self, d: int, hidden: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.enc = Gaussian([d, hidden, hidden, k])
        self.dec = mlp([k, hidden, hidden, d])

    def model(self, x):
        pyro.module("one_dec", self.dec)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.k), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("one_enc", self.enc)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(*self.enc(x)).to_event(1))


class TwoLayer(nn.Module):
    def __init__(self, d: int, h1: int, k1: int, h2: int, k2: int) -> None:
        super().__init__()
        self.k2 = k2
        self.q1, self.q2 = Gaussian([d, h1, h1, k1]), Gaussian([k1, h2, h2, k2])
        self.p1, self.dec = Gaussian([k2, h2, h2, k1]), mlp([k1, h1, h1, d])

    def model(self, x):
        pyro.module("two_p", nn.ModuleList([self.p1, self.dec]))
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(x.shape[0], self.k2), 1.0)
                             .to_event(1))
            z1 = pyro.sample("z1", dist.Normal(*self.p1(z2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z1)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("two_q", nn.ModuleList([self.q1, self.q2]))
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(*self.q1(x)).to_event(1))
            pyro.sample("z2", dist.Normal(*self.q2(z1)).to_event(1))


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def train(m: nn.Module, x: torch.Tensor, epochs: int, batch: int, lr: float, seed: int) -> float:
    pyro.clear_param_store()
    svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.Adam({"lr": lr}),
                         pyro.infer.Trace_ELBO())
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch):
            svi.step(x[idx])
    return time.perf_counter() - t0


def check(m: nn.Module, x: torch.Tensor, k: int, ais_steps: int, bdmc_points: int) -> dict:
    t = as_target(m.model, m.guide, example=x)
    e, w = elbo(t, x, num_samples=k), iwae(t, x, num_samples=k)
    a = ais(t, x, num_steps=ais_steps, num_chains=16, seed=0)
    b = bdmc(t, bdmc_points, num_steps=ais_steps, num_chains=16, seed=1)
    c = collapse_diagnostics(t, x, num_samples=16)
    return {"sites": {n: s.size for n, s in t.sites.items()},
            "elbo": float(e.value.mean()), "iwae": float(w.value.mean()),
            "ais": float(a.log_px.mean()),
            "ais_stderr": float(a.stderr.pow(2).mean().sqrt() / len(x) ** 0.5),
            "bdmc_width": float(b.width.mean()),
            "active_units": c["active_units_per_site"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--points", type=int, default=100, help="held-out images checked")
    ap.add_argument("--iwae-k", type=int, default=1000)
    ap.add_argument("--ais-steps", type=int, default=200)
    ap.add_argument("--bdmc-points", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    folder = output_folder("hierarchical_vs_single", args.out)
    data = load_dataset("mnist5k")
    train_set, test_set = train_test_split(data, test_fraction=0.2, seed=0)
    x, xt = train_set.flat, test_set.flat[: args.points]
    torch.manual_seed(args.seed)
    two = TwoLayer(784, 100, 32, 50, 16)
    hidden = 100  # the one-layer width with the parameter count closest to the two-layer's
    for h in range(60, 400):
        if count(OneLayer(784, h, 48)) >= count(two):
            hidden = h
            break
    torch.manual_seed(args.seed)
    one = OneLayer(784, hidden, 48)
    rows = {}
    for name, m in (("one layer (z: 48)", one), ("two layers (z1: 32, z2: 16)", two)):
        torch.manual_seed(args.seed)
        seconds = train(m, x, args.epochs, 100, 1e-3, args.seed)
        rows[name] = {"parameters": count(m), "train_seconds": seconds,
                      **check(m, xt, args.iwae_k, args.ais_steps, args.bdmc_points)}
        r = rows[name]
        print(f"{name}: {r['parameters']} parameters, ELBO {r['elbo']:.2f}, IWAE "
              f"{r['iwae']:.2f}, AIS {r['ais']:.2f} ± {r['ais_stderr']:.2f} [BDMC width "
              f"{r['bdmc_width']:.2f}], active units {r['active_units']}, "
              f"{r['train_seconds']:.0f} s")
    report = {"settings": vars(args) | {"data": "mnist5k, thresholded at 1/2, split seed 0",
                                         "optimizer": "Adam 1e-3, batch 100, stock SVI"},
              "models": rows}
    (folder / "hierarchical_vs_single.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
