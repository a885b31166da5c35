"""Is my VAE's log-likelihood real?  ELBO, IWAE, AIS, BDMC, gaps, collapse, SBC on mnist5k.

For each latent dimension (16 and 50 by default) this trains a VAE on mnist5k
briefly, then on held-out images prints one table row:

* ELBO and IWAE (K = 1000), both lower bounds of log p(x);
* AIS (the default budget: 200 intermediate distributions × 32 chains, from the guide)
  with its standard error: a far tighter lower bound;
* the BDMC sandwich width on images simulated from the decoder: how far AIS can be
  off at this budget for this decoder;
* the gap AIS − ELBO split into approximation and amortization gaps (Cremer et al.
  2018, the local guides by L-BFGS);
* active units (Burda et al. 2016) and I_q(x; z);
* SBC of the guide (figure written with ``--out``).

Keep the defaults short: the CPU here is shared.  ``--epochs``, ``--points`` and
``--bdmc-points`` scale it up.

    python examples/is_my_loglik_real.py --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import pyrovae
from pyrovae.data.datasets import load_dataset
from pyrovae.plots.common import save_figure
from pyrovae.runs.check import check_vae, jsonable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent", type=int, nargs="+", default=[16, 50])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--bdmc-points", type=int, default=8)
    ap.add_argument("--sbc-sims", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist5k")
    x_train, x_test = data.x[:4000], data.x[4000:]
    rows = []
    for k in args.latent:
        t0 = time.perf_counter()
        vae = pyrovae.VAE(data.data_dim, k, encoder=[512, 256])
        pyrovae.fit(vae, x_train, epochs=args.epochs, batch_size=128, lr=1e-3, seed=0,
                    progress=False, threads=None)
        rep, _ = check_vae(vae, x_test[:args.points], num_samples=1000, nuts_points=0,
                           bdmc_points=args.bdmc_points, sbc_sims=args.sbc_sims,
                           collapse_x=x_test[:500], progress=True)
        s, a = rep["summary"], rep["amortization"]
        rows.append({
            "latent": k, "elbo": s["mean_elbo"], "iwae_1000": s["mean_iwae"],
            "ais": s["mean_ais"], "ais_stderr": s["mean_ais_stderr"],
            "bdmc_width": s["bdmc_mean_width"],
            "approximation_gap": s["mean_approximation_gap"],
            "amortization_gap": s["mean_amortization_gap"],
            "local_guides_converged": a["converged"],
            "active_units": s["active_units"], "mutual_information": s["mutual_information"],
            "sbc_failed_dims": s["sbc_failed_dims"],
            "seconds": time.perf_counter() - t0, "load": os.getloadavg()[0],
        })
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            from pyrovae.plots import diagnostics as D

            save_figure(D.sbc_figure(rep["sbc"], title=f"SBC, mnist5k latent {k}"),
                        out / f"sbc_mnist5k_latent{k}.png", dpi=80)
            save_figure(D.sandwich_figure(rep["bdmc"]), out / f"bdmc_mnist5k_latent{k}.png",
                        dpi=80)
            (out / f"loglik_real_latent{k}.json").write_text(json.dumps(jsonable(rep)) + "\n")
    print(f"mnist5k, {args.epochs} epochs, {args.points} held-out images (BDMC: "
          f"{args.bdmc_points} simulated), nats per image")
    head = ("latent", "ELBO", "IWAE K=1000", "AIS ± se", "BDMC width", "approx. gap",
            "amort. gap", "active units", "I(x;z)", "SBC failed dims", "s", "load")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['latent']} | {r['elbo']:.2f} | {r['iwae_1000']:.2f} | {r['ais']:.2f} ± "
              f"{r['ais_stderr']:.2f} | {r['bdmc_width']:.2f} | {r['approximation_gap']:.2f} | "
              f"{r['amortization_gap']:.2f} | {r['active_units']}/{r['latent']} | "
              f"{r['mutual_information']:.2f} | {r['sbc_failed_dims']}/{r['latent']} | "
              f"{r['seconds']:.0f} | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
