"""A two-stochastic-layer VAE against a one-layer VAE of the same size, both built by the
library (model kinds ``hierarchical`` and ``vae``), trained by ``fit`` on the same data with
the same seed and budget, and checked the same way.

The two-layer model is the one of Burda et al. (2016), model kind ``hierarchical``::

    z2 ~ N(0, I),  z1 | z2 ~ N(μ(z2), σ(z2)),  x | z1 ~ Bernoulli(f(z1))
    q(z1 | x) q(z2 | z1)                       (bottom-up guide)

with tanh MLPs; the one-layer model has one latent site and its hidden width chosen so
both have (about) the same number of parameters.  Both train with the fast engine and
Pyro's ``Trace_ELBO`` estimator (Monte Carlo KL: the hierarchical kind's KL terms are
conditional; ``objective: trace_elbo_mc`` for both).  The checks see the two latent sites
through :func:`pyrovae.posterior.as_target` (the hierarchical VAE's Pyro pair, sites found
from a trace) and report, on held-out images: ELBO, IWAE (K samples), AIS ± its standard
error with the BDMC width on data simulated from each model, and the active units per
latent site::

    python examples/hierarchical_vs_single.py --epochs 20 --points 100

The same two-layer model from a spec: ``pyrovae train --set model.family=hierarchical
--set model.latent_dims=[32,16] ...``.

References:
    Burda, Grosse & Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
"""

from __future__ import annotations

import argparse
import json

import torch
from _output import output_folder
from torch import nn

from pyrovae import VAE, fit
from pyrovae.data import load_dataset, train_test_split
from pyrovae.model.hierarchical import HierarchicalVAE
from pyrovae.posterior import as_target, elbo, iwae
from pyrovae.posterior.ais import ais
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.collapse import collapse_diagnostics


def one_layer(hidden: int, k: int) -> VAE:
    return VAE(784, k, encoder=[hidden, hidden], activation="tanh")


def two_layer(h1: int, k1: int, h2: int, k2: int) -> HierarchicalVAE:
    return HierarchicalVAE(784, [k1, k2], encoder=[h1, h1], activation="tanh",
                           layer_hidden=[h2, h2], layer_activation="tanh")


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def check(m: VAE, x: torch.Tensor, k: int, ais_steps: int, bdmc_points: int) -> dict:
    m.eval()
    t = as_target(m)
    with torch.no_grad():
        e, w = elbo(t, x, num_samples=k), iwae(t, x, num_samples=k)
    a = ais(t, x, num_steps=ais_steps, num_chains=16, seed=0)
    b = bdmc(t, bdmc_points, num_steps=ais_steps, num_chains=16, seed=1)
    c = collapse_diagnostics(t, x, num_samples=16)
    return {"sites": {n: s.size for n, s in t.sites.items()},
            "elbo": float(e.value.mean()), "iwae": float(w.value.mean()),
            "ais": float(a.log_px.mean()),
            "ais_stderr": float(a.stderr.pow(2).mean().sqrt() / len(x) ** 0.5),
            "bdmc_width": float(b.width.mean()),
            "active_units": c.get("active_units_per_site") or {"z": c["active_units"]}}


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
    two = two_layer(100, 32, 50, 16)
    hidden = 100  # the one-layer width with the parameter count closest to the two-layer's
    for h in range(60, 400):
        if count(one_layer(h, 48)) >= count(two):
            hidden = h
            break
    torch.manual_seed(args.seed)
    one = one_layer(hidden, 48)
    rows = {}
    for name, m in (("one layer (z: 48)", one), ("two layers (z1: 32, z2: 16)", two)):
        h = fit(m, x, epochs=args.epochs, batch_size=100, lr=1e-3, seed=args.seed,
                objective="trace_elbo_mc", progress=False)
        rows[name] = {"parameters": count(m), "train_seconds": float(sum(h["epoch_seconds"])),
                      **check(m, xt, args.iwae_k, args.ais_steps, args.bdmc_points)}
        r = rows[name]
        print(f"{name}: {r['parameters']} parameters, ELBO {r['elbo']:.2f}, IWAE "
              f"{r['iwae']:.2f}, AIS {r['ais']:.2f} ± {r['ais_stderr']:.2f} [BDMC width "
              f"{r['bdmc_width']:.2f}], active units {r['active_units']}, "
              f"{r['train_seconds']:.1f} s training")
    report = {"settings": vars(args) | {"data": "mnist5k, thresholded at 1/2, split seed 0",
                                         "optimizer": "Adam 1e-3, batch 100, fit (fast engine, "
                                                      "Trace_ELBO's estimator)"},
              "models": rows}
    (folder / "hierarchical_vs_single.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
