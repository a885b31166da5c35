"""The experiment of *The Intuitive VAE*: keep θ fixed, maximise the ELBO over φ only.

log p_θ(x) = ELBO ↑ + KL(q_φ(z|x) ‖ p_θ(z|x)) ↓ — with the decoder frozen at the true
θ of a pPCA, log p(x) is a flat line and the exact KL falls to the floor of the
mean-field family: ½(Σ log Λii − log|Λ|) > 0 when the posterior is correlated,
0 when the columns of W are orthogonal.

    python examples/theta_fixed.py [--out DIR] [--steps 1500]

Writes ``theta_fixed_ppca_{correlated,orthogonal}.png`` into ``--out`` (default: a
fresh ``runs/examples/theta_fixed-TIME``).
"""

from __future__ import annotations

import argparse

from _output import output_folder

from pyrovae.experiments.theta_fixed import theta_fixed
from pyrovae.plots.posterior import theta_fixed_figure
from pyrovae.toy import PPCA


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the figures (default: fresh)")
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    out = output_folder("theta_fixed", args.out)
    for name, p in (("correlated", PPCA.example(5, 2, correlation=0.8, sigma=0.5)),
                    ("orthogonal", PPCA.example(5, 2, orthogonal=True, sigma=0.5))):
        x = p.sample(256, seed=1)
        vae = p.to_linear_vae()  # decoder = the true θ, encoder random
        res = theta_fixed(vae, x, steps=args.steps, lr=0.05, record_every=25, init_seed=0)
        print(f"{name}: log p(x) {res.log_px[-1]:.4f} (flat: "
              f"{max(res.log_px) - min(res.log_px):.1e}); KL {res.kl[0]:.3f} -> "
              f"{res.final_kl:.5f}, floor {res.floor:.5f}, KL − floor "
              f"{res.final_kl_above_floor:.1e}; final ELBO {res.elbo[-1]:.4f}; "
              f"log p(x) − ELBO − KL {res.final_residual:+.4f} "
              f"(±{res.elbo_stderr[-1]:.4f}); {res.seconds:.1f}s")
        theta_fixed_figure(res, title=f"pPCA ({name} W), θ fixed").savefig(
            out / f"theta_fixed_ppca_{name}.png", dpi=80)
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
