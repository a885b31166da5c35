"""Check a VAE written the way Pyro's own tutorial writes it: any Pyro pair, checked.

The model and guide below follow Pyro's ``examples/vae/vae.py`` (sites ``"latent"`` and
``"obs"``, ``pyro.module``, a data plate); nothing in them comes from pyrovae.  They are
trained by stock ``SVI`` + ``Trace_ELBO`` on the binarised digits, and then every check of
pyrovae runs on the pair as written: ELBO, IWAE with PSIS k̂, AIS, BDMC on data simulated
from the model itself, the approximation/amortization gap split, SBC and the collapse
diagnostics per latent dimension::

    python examples/check_pyro_tutorial_vae.py --steps 2000 --points 32

writes ``check.json``, ``sbc.png`` and ``collapse.png`` into a fresh
``runs/examples/check_pyro_tutorial_vae-TIME/`` folder (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json

import pyro
import pyro.distributions as dist
import torch
from _output import output_folder
from torch import nn

from pyrovae.data import load_dataset
from pyrovae.plots.common import save_figure
from pyrovae.plots.diagnostics import collapse_figure, sbc_figure
from pyrovae.posterior import as_target, elbo, gap_split, iwae, psis_per_point
from pyrovae.posterior.ais import ais
from pyrovae.posterior.bdmc import bdmc
from pyrovae.posterior.collapse import collapse_diagnostics
from pyrovae.posterior.sbc import sbc


class Decoder(nn.Module):
    def __init__(self, z_dim: int, hidden: int, d: int) -> None:
        super().__init__()
        self.fc1, self.fc21 = nn.Linear(z_dim, hidden), nn.Linear(hidden, d)

    def forward(self, z):
        return torch.sigmoid(self.fc21(nn.functional.softplus(self.fc1(z))))


class Encoder(nn.Module):
    def __init__(self, z_dim: int, hidden: int, d: int) -> None:
        super().__init__()
        self.d = d
        self.fc1 = nn.Linear(d, hidden)
        self.fc21, self.fc22 = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)

    def forward(self, x):
        h = nn.functional.softplus(self.fc1(x.reshape(-1, self.d)))
        return self.fc21(h), torch.exp(self.fc22(h))


class TutorialVAE(nn.Module):
    def __init__(self, z_dim: int, hidden: int, d: int) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(z_dim, hidden, d), Decoder(z_dim, hidden, d)
        self.z_dim, self.d = z_dim, d

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            pyro.sample("obs", dist.Bernoulli(self.decoder(z), validate_args=False).to_event(1),
                        obs=x.reshape(-1, self.d))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="stock SVI steps (batch 128)")
    ap.add_argument("--latent", type=int, default=4)
    ap.add_argument("--points", type=int, default=32, help="held-out digits checked")
    ap.add_argument("--ais-steps", type=int, default=200)
    ap.add_argument("--sbc-sims", type=int, default=200)
    ap.add_argument("--gap-steps", type=int, default=300)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    folder = output_folder("check_pyro_tutorial_vae", args.out)

    data = load_dataset("digits")
    x = data.flat
    train, test = x[:1400], x[1400:1400 + args.points]
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = TutorialVAE(args.latent, 128, x.shape[1])
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
                         pyro.infer.Trace_ELBO())
    g = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        svi.step(train[torch.randint(0, len(train), (128,), generator=g)])

    target = as_target(vae.model, vae.guide, example=test)
    e = elbo(target, test, num_samples=1000)
    w = iwae(target, test, num_samples=1000)
    k = psis_per_point(target, test, num_samples=1000)
    a = ais(target, test, num_steps=args.ais_steps, num_chains=32, seed=0)
    b = bdmc(target, min(16, args.points), num_steps=args.ais_steps, num_chains=16, seed=1)
    gaps = gap_split(target, test, log_px=a.estimate(), steps=args.gap_steps, num_samples=500)
    s = sbc(target, num_sims=args.sbc_sims, num_draws=19, seed=2)
    c = collapse_diagnostics(target, test, num_samples=32)
    report = {
        "sites": {n: list(si.event_shape) for n, si in target.sites.items()},
        "elbo": float(e.value.mean()), "iwae_1000": float(w.value.mean()),
        "khat_above_0.7": int((k["khat"] > 0.7).sum()),
        "ais": float(a.log_px.mean()), "ais_stderr": float(a.stderr.mean()),
        "bdmc_width": float(b.width.mean()),
        "approximation_gap": float(gaps["approximation_gap"].mean()),
        "amortization_gap": float(gaps["amortization_gap"].mean()),
        "sbc": s.as_dict() | {"failed_by_site": s.failed_by_site()},
        "collapse": c,
    }
    (folder / "check.json").write_text(json.dumps(report, indent=1, default=float))
    save_figure(sbc_figure(s.as_dict(), title="SBC of the tutorial guide"), folder / "sbc.png")
    save_figure(collapse_figure(c, title="Collapse, tutorial VAE"), folder / "collapse.png")
    print(f"sites: {report['sites']}")
    print(f"ELBO {report['elbo']:.2f} <= IWAE(1000) {report['iwae_1000']:.2f} "
          f"<= AIS {report['ais']:.2f} ± {report['ais_stderr']:.2f} "
          f"(BDMC width {report['bdmc_width']:.3f})")
    print(f"gaps: approximation {report['approximation_gap']:.2f}, amortization "
          f"{report['amortization_gap']:.2f}; SBC failed per site {s.failed_by_site()}; "
          f"active units {c['active_units_per_site']}")
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
