"""AIS start choice on a curved posterior: guide vs prior on the banana toy.

Per-point AIS minus the grid's log p(x) (6 points, per-point diagonal Gaussian
guides fitted by :func:`pyrovae.posterior.local.fit_local_guide`) for a few budgets.

    python benchmarks/bench_ais_start.py
"""

from __future__ import annotations

import os

import torch

from pyrovae.posterior.ais import ais
from pyrovae.posterior.exact import log_marginal
from pyrovae.posterior.local import fit_local_guide
from pyrovae.posterior.target import as_target
from pyrovae.toy import get_toy


def main() -> None:
    torch.set_num_threads(1)
    toy = get_toy("banana")
    torch.manual_seed(0)
    x = toy.sample(6, seed=0)
    target = as_target(toy, fit_local_guide(toy, x, steps=1000))
    ref = log_marginal(target, x, method="grid").value
    print(f"banana, 6 points; load {os.getloadavg()[0]:.1f}")
    for kw in (dict(), dict(precondition=False), dict(num_steps=1000),
               dict(start="prior", num_steps=1000, precondition=False)):
        r = ais(target, x, **kw)
        print(kw or "default", "AIS - grid:", (r.log_px - ref).numpy().round(3),
              "stderr:", r.stderr.numpy().round(3), f"{r.seconds:.1f} s")


if __name__ == "__main__":
    main()
