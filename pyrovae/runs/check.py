"""Whole reports: every check on a trained VAE or a toy problem, as JSON plus figures.

Used by ``pyrovae check`` and the examples.  Each report is a plain dict of
numbers and lists (see :func:`jsonable`); figures are written as PNG files when a
folder is given.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.posterior.amortization import amortization_gap
from pyrovae.posterior.exact import check_identity, elbo, grid_posteriors, iwae
from pyrovae.posterior.psis import psis_per_point
from pyrovae.posterior.target import as_target


def jsonable(obj: Any) -> Any:
    """Tensors and arrays to lists, non-finite floats to strings, recursively."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().double().numpy()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def _save(fig, folder: Path | None, name: str) -> str | None:
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fig.savefig(path, dpi=90)
    return str(path)


def check_vae(
    vae,
    x: torch.Tensor,
    *,
    num_samples: int = 2000,
    amortization_steps: int = 500,
    nuts_points: int = 0,
    seed: int = 0,
) -> tuple[dict, list | None]:
    """Identity, gap, k̂, ESS and amortization/approximation gaps for each row of ``x``.

    Returns ``(report, grids)``; grids (exact posterior and guide on a grid) only
    when latent_dim ≤ 2.  ``nuts_points > 0`` adds a NUTS reference for the first
    rows, with r-hat, ESS and moments against the guide.
    """
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    target = as_target(vae)
    vae.eval()
    out: dict[str, Any] = {"num_points": int(x.shape[0]), "latent_dim": vae.latent_dim,
                           "guide": vae.spec["guide"]}
    grids = None
    if vae.latent_dim <= 2:
        grids = grid_posteriors(target, x, with_guide=True)
        ident = check_identity(target, x, num_samples=num_samples, grids=grids)
        out.update({k: v for k, v in ident.items() if k != "grids"})
        out["grid"] = [g.summary() | {"q_mass": g.q_mass(), "kl_p_q": g.kl_p_q()} for g in grids]
    else:
        el = elbo(target, x, num_samples=num_samples)
        lp = iwae(target, x, num_samples=num_samples)
        out.update({
            "log_px": lp.value, "log_px_method": lp.method, "log_px_error": lp.stderr,
            "elbo": el.value, "elbo_stderr": el.stderr, "gap": lp.value - el.value,
            "note": "latent_dim > 2: log p(x) by IWAE (a lower bound), so the gap is a "
                    "lower bound on KL(q ‖ p(z|x)); no independent KL",
        })
    ps = psis_per_point(target, x, num_samples=num_samples)
    out.update({k: ps[k] for k in ("khat", "category", "ess", "ess_fraction")})
    if amortization_steps:
        lp_est = None
        if "log_px_method" in out and out["log_px_method"] == "grid":
            from pyrovae.posterior.exact import Estimate

            lp_est = Estimate(out["log_px"], out["log_px_error"], "grid")
        am = amortization_gap(vae, x, steps=amortization_steps, num_samples=num_samples,
                              log_px=lp_est)
        out["amortization"] = {k: v for k, v in am.items() if k != "trace"}
    if nuts_points and vae.latent_dim <= 4:
        from pyrovae.posterior.reference import reference_check

        _, moments = reference_check(target, x, num_samples=400, warmup=300,
                                     num_chains=2, seed=seed, points=nuts_points)
        out["nuts"] = moments
        if grids is not None:
            out["nuts"]["grid_mean"] = np.stack([g.mean().numpy() for g in grids[:nuts_points]])
            out["nuts"]["grid_sd"] = np.stack(
                [g.cov().diagonal().sqrt().numpy() for g in grids[:nuts_points]]
            )
    out["summary"] = _summary(out)
    out["seconds"] = time.perf_counter() - t0
    return out, grids


def _summary(out: dict) -> dict:
    def mean(key, src=out):
        v = src.get(key)
        return None if v is None else float(torch.as_tensor(v, dtype=torch.float64).mean())

    s = {
        "mean_log_px": mean("log_px"), "mean_elbo": mean("elbo"), "mean_gap": mean("gap"),
        "mean_kl": mean("kl"), "max_abs_residual": None,
        "identity_ok": None, "mean_khat": mean("khat"),
        "max_khat": float(torch.as_tensor(out["khat"]).max()),
        "mean_ess_fraction": mean("ess_fraction"),
    }
    if "residual" in out:
        s["max_abs_residual"] = float(torch.as_tensor(out["residual"]).abs().max())
        s["identity_ok"] = bool(torch.as_tensor(out["ok"]).all())
    if "amortization" in out:
        a = out["amortization"]
        s["mean_approximation_gap"] = mean("approximation_gap", a)
        s["mean_amortization_gap"] = mean("amortization_gap", a)
    return s


def check_toy(
    name: str, *, num_points: int = 6, seed: int = 0, folder: Path | None = None,
    quick: bool = False,
) -> dict:
    """The checks for one toy problem (:data:`pyrovae.toy.TOYS` or ``gaussian_mle``),
    with figures written to ``folder``."""
    from pyrovae.plots import posterior as P

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    figures: dict[str, str | None] = {}
    if name == "gaussian_mle":
        from pyrovae.toy.gaussian import closed_form_mle, fit_mle_pyro

        x = 2.0 + 1.5 * torch.randn(500, dtype=torch.float64)
        closed = closed_form_mle(x)
        fitted = fit_mle_pyro(x, steps=300 if quick else 3000)
        figures["mle"] = _save(P.gaussian_mle_figure(x, closed, fitted), folder, "gaussian_mle.png")
        return {
            "toy": name, "closed_form": closed.as_dict(), "pyro": fitted.as_dict(),
            "abs_diff_mu": abs(closed.mu - fitted.mu),
            "abs_diff_sigma": abs(closed.sigma - fitted.sigma),
            "figures": figures, "seconds": time.perf_counter() - t0,
        }

    from pyrovae.posterior.local import fit_local_guide
    from pyrovae.toy import get_toy

    toy = get_toy(name)
    x = toy.sample(num_points, seed=seed)
    report: dict[str, Any] = {"toy": name, "model": toy.describe()}
    steps = 150 if quick else 1000
    if name.startswith("ppca"):
        from pyrovae.experiments.theta_fixed import theta_fixed

        vae = toy.to_linear_vae()
        xs = toy.sample(256, seed=seed + 1)
        res = theta_fixed(vae, xs, steps=steps, lr=0.05)
        report["theta_fixed"] = res.as_dict()
        figures["theta_fixed"] = _save(P.theta_fixed_figure(res), folder, f"{name}_theta_fixed.png")
        target = as_target(vae)
        x = x.to(torch.float64)
        vae.double()
    else:
        guide = fit_local_guide(toy, x, steps=steps)
        target = as_target(toy, guide)
        report["guide"] = "local diagonal Gaussian on the unconstrained z, fitted per point"
    ident = check_identity(target, x, num_samples=500 if quick else 4000)
    grids = ident.pop("grids")
    if name.startswith("ppca"):  # closed forms through the PPCA the VAE encodes
        from pyrovae.experiments.theta_fixed import ppca_exact

        lp, kl = ppca_exact(vae, x)
        ident["kl_closed_form"] = kl
        ident["log_px_closed_form"] = lp
    report["identity"] = ident
    ps = psis_per_point(target, x, num_samples=500 if quick else 4000)
    report["psis"] = {k: ps[k] for k in ("khat", "category", "ess", "ess_fraction")}
    if not quick:
        from pyrovae.posterior.reference import reference_check

        _, moments = reference_check(target, x, num_samples=400, warmup=300, num_chains=2,
                                     seed=seed, points=3)
        report["nuts"] = moments
    if grids is None and toy.latent_dim <= 2:
        grids = grid_posteriors(target, x)
    if grids is not None:
        titles = [
            f"gap {float(g):.3f}, $\\hat{{k}}$ {float(k):.2f}"
            for g, k in zip(ident["gap"], ps["khat"], strict=True)
        ]
        fig = (P.posterior_grid_figure(grids, titles=titles) if toy.latent_dim == 2
               else P.posterior_1d_figure(grids, titles=titles))
        figures["posterior"] = _save(fig, folder, f"{name}_posterior.png")
        report["grid"] = [g.summary() for g in grids]
    figures["khat"] = _save(P.khat_figure(ps["khat"], title=rf"PSIS $\hat{{k}}$ ({name})"), folder,
                            f"{name}_khat.png")
    report["figures"] = figures
    report["seconds"] = time.perf_counter() - t0
    return report
