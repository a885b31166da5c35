"""Whole reports: every check on a trained VAE or a toy problem, as JSON plus figures.

Used by ``pyrovae check`` and the examples.  Each report is a plain dict of
numbers and lists (see :func:`jsonable`); figures are written as PNG files when a
folder is given.
"""

from __future__ import annotations

import contextlib
import math
import sys
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
    from pyrovae.plots.common import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    return str(save_figure(fig, folder / name, dpi=90))


class Stages:
    """Progress per stage of a check on stderr: a tqdm bar when stderr is a terminal,
    else one plain line when a stage starts and one when it ends (with seconds)."""

    def __init__(self, enabled: bool = True, stream=None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr

    @contextlib.contextmanager
    def __call__(self, name: str, total: int | None = None):
        if not self.enabled:
            yield lambda k=1: None
            return
        t0 = time.perf_counter()
        if total and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            with tqdm(total=total, desc=f"check: {name}", file=self.stream, leave=False) as bar:
                yield bar.update
        else:
            print(f"check: {name} ...", file=self.stream, flush=True)
            yield lambda k=1: None
        print(f"check: {name} done ({time.perf_counter() - t0:.1f} s)", file=self.stream,
              flush=True)


#: What k̂ means in a report (written beside it).
KHAT_NOTE = (
    "PSIS k-hat is the estimated tail shape of the importance weights p(x,z)/q(z|x) for "
    "z ~ q from S draws (Vehtari et al. 2024). Above min(1 - 1/log10 S, 0.7) an importance-"
    "sampling or IWAE estimate from this guide may be far off and its standard error too "
    "small. It says nothing about log p(x) when that comes from the grid, the closed form or "
    "AIS (their errors are reported separately): a guide much narrower than p(z|x) in some "
    "direction (common with 1-d conjugate toys) shows k-hat > 1 while the grid curves match."
)


def check_vae(
    vae,
    x: torch.Tensor,
    *,
    num_samples: int = 2000,
    amortization_steps: int = 500,
    nuts_points: int = 0,
    seed: int = 0,
    ais_steps: int = 200,
    ais_chains: int = 32,
    bdmc_points: int = 16,
    sbc_sims: int = 200,
    collapse_x: torch.Tensor | None = None,
    progress: bool = False,
    certified: bool = False,
    target_width: float = 0.2,
    max_ais_steps: int = 6400,
    ais_time_limit: float | None = None,
) -> tuple[dict, list | None]:
    """Every check on a trained VAE, for each row of ``x``, at any latent dimension.

    * log p(x): grid quadrature when latent_dim ≤ 2 (there KL(q ‖ p(z|x)) and
      log p(x) come from the same quadrature of log p(x, z), so the identity closes
      by construction), cross-checked by AIS, the independent route; otherwise AIS
      (``ais_steps`` intermediate distributions × ``ais_chains`` chains, started at
      the guide) with its standard error, and IWAE (K = ``num_samples``) beside it;
    * gap = log p(x) − ELBO and its split into approximation and amortization gaps
      (Cremer et al. 2018) with standard errors (``amortization_steps`` = L-BFGS
      iterations per round; 0 skips);
    * BDMC on ``bdmc_points`` simulated points: the sandwich width certifies AIS at
      this budget for this decoder (0 skips);
    * ``certified=True``: AIS and BDMC in the two-round, frozen-kernel mode (unbiased
      weights, E[w] = p(x)), at a budget chosen by
      :func:`~pyrovae.posterior.certified.certified_ais`: T starts at ``ais_steps``
      and doubles until the BDMC width on ``bdmc_points`` simulated points is under
      ``target_width`` with confidence, or T reaches ``max_ais_steps``, or the search
      would pass ``ais_time_limit`` seconds; ``report["certified"]["line"]`` reads
      "certified: AIS (frozen kernels, T=…) mean ± s.e., BDMC width …";
    * PSIS k̂ and ESS of the guide's weights, explained in ``khat_note``;
    * SBC of the guide on ``sbc_sims`` simulations (0 skips);
    * collapse diagnostics on ``collapse_x`` (default ``x``);
    * ``nuts_points > 0``: a NUTS reference for the first rows (latent_dim ≤ 4).

    Returns ``(report, grids)``; grids only when latent_dim ≤ 2.

    References:
        Neal (2001), *Annealed importance sampling*; Grosse et al. (2015),
        *Sandwiching the marginal likelihood using bidirectional Monte Carlo*;
        Cremer et al. (2018), *Inference suboptimality in variational autoencoders*;
        Talts et al. (2018), *Validating Bayesian inference algorithms with
        simulation-based calibration*; Burda et al. (2016), *Importance weighted
        autoencoders*.
    """
    from pyrovae.errors import PyrovaeError
    from pyrovae.posterior.ais import ais
    from pyrovae.posterior.exact import Estimate

    if certified and bdmc_points < 1:
        raise PyrovaeError("certified check: the budget is chosen by BDMC; it needs "
                           f"bdmc_points >= 1, got {bdmc_points}")
    stage = Stages(progress)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    target = as_target(vae)
    vae.eval()
    n = int(x.shape[0])
    out: dict[str, Any] = {"num_points": n, "latent_dim": vae.latent_dim,
                           "guide": vae.spec["guide"]}
    grids = None
    ais_kw = {"num_steps": ais_steps, "num_chains": ais_chains, "seed": seed}
    if vae.latent_dim <= 2:
        with stage("grid"):
            grids = grid_posteriors(target, x, with_guide=True)
            ident = check_identity(target, x, num_samples=num_samples, grids=grids)
        out.update({k: v for k, v in ident.items() if k != "grids"})
        out["grid"] = [g.summary() | {"q_mass": g.q_mass(), "kl_p_q": g.kl_p_q()} for g in grids]
        out["note"] = ("latent_dim <= 2: log p(x) and KL(q || p(z|x)) by the same grid "
                       "quadrature, so the identity closes by construction; AIS "
                       "('ais') is the independent check of log p(x)")
    cert = None
    if certified:
        from pyrovae.posterior.certified import certified_ais

        with stage(f"certified AIS (T from {ais_steps} doubled to a BDMC width under "
                   f"{target_width:g})"):
            cert = certified_ais(vae, x, target_width=target_width, num_steps=ais_steps,
                                 max_steps=max_ais_steps, time_limit_s=ais_time_limit,
                                 num_chains=ais_chains, bdmc_points=bdmc_points, seed=seed)
        a = cert.ais
        out["certified"] = cert.as_dict()
    else:
        with stage("AIS", total=ais_steps * math.ceil(n / 128)) as tick:
            a = ais(vae, x, progress=tick, **ais_kw)
    out["ais"] = a.as_dict() | {"acceptance_per_step_mean": float(a.acceptance_per_step.mean())}
    if grids is not None:
        diff = a.log_px - out["log_px"]
        out["ais"]["minus_grid"] = diff
        out["ais"]["agrees_with_grid"] = bool(
            (diff.abs() <= 4 * a.stderr + torch.as_tensor(out["log_px_error"]) + 0.01).all())
    else:
        with stage("ELBO and IWAE"):
            el = elbo(target, x, num_samples=num_samples)
            iw = iwae(target, x, num_samples=num_samples)
        out.update({
            "log_px": a.log_px, "log_px_method": a.estimate().method,
            "log_px_error": a.stderr,
            "elbo": el.value, "elbo_stderr": el.stderr,
            "gap": a.log_px - el.value, "gap_stderr": (a.stderr**2 + el.stderr**2).sqrt(),
            "iwae": iw.value, "iwae_stderr": iw.stderr, "iwae_k": num_samples,
            "note": "latent_dim > 2: log p(x) by AIS (a stochastic lower bound, tight when "
                    "the BDMC sandwich is narrow); gap = AIS - ELBO estimates "
                    "KL(q || p(z|x)); IWAE shown beside it",
        })
    if cert is not None:
        out["bdmc"] = cert.bdmc.as_dict()
    elif bdmc_points:
        from pyrovae.posterior.bdmc import bdmc

        with stage("BDMC", total=2 * ais_steps * math.ceil(bdmc_points / 128)) as tick:
            b = bdmc(vae, bdmc_points, progress=tick, **ais_kw)
        out["bdmc"] = b.as_dict()
    with stage("PSIS"):
        ps = psis_per_point(target, x, num_samples=num_samples)
    out.update({k: ps[k] for k in ("khat", "category", "ess", "ess_fraction")})
    out["khat_note"] = KHAT_NOTE
    if amortization_steps:
        lp_est = Estimate(torch.as_tensor(out["log_px"]).double(),
                          torch.as_tensor(out["log_px_error"]).double(), out["log_px_method"])
        with stage("local guides (L-BFGS)"):
            am = amortization_gap(vae, x, steps=amortization_steps, num_samples=num_samples,
                                  log_px=lp_est)
        out["amortization"] = {k: v for k, v in am.items() if k != "trace"}
    if sbc_sims:
        from pyrovae.posterior.sbc import sbc

        with stage("SBC"):
            out["sbc"] = sbc(vae, num_sims=sbc_sims, seed=seed).as_dict()
    from pyrovae.posterior.collapse import collapse_diagnostics

    with stage("collapse"):
        cx = x if collapse_x is None else collapse_x
        out["collapse"] = collapse_diagnostics(vae, cx) if cx.shape[0] >= 2 else None
    if nuts_points and vae.latent_dim <= 4:
        from pyrovae.posterior.reference import reference_check

        with stage("NUTS"):
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


def diagnostic_figures(report: dict, folder: Path | None, prefix: str = "") -> dict:
    """The sandwich, SBC and collapse figures of a :func:`check_vae` report."""
    from pyrovae.plots import diagnostics as D

    figs: dict[str, str | None] = {}
    if report.get("bdmc"):
        figs["bdmc"] = _save(D.sandwich_figure(report["bdmc"]), folder, f"{prefix}bdmc.png")
    if report.get("sbc"):
        figs["sbc"] = _save(D.sbc_figure(report["sbc"]), folder, f"{prefix}sbc.png")
    if report.get("collapse"):
        figs["collapse"] = _save(D.collapse_figure(report["collapse"]), folder,
                                 f"{prefix}collapse.png")
    return figs


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
        s["local_guides_converged"] = a.get("converged")
    if "ais" in out:
        s["mean_ais"] = mean("log_px", out["ais"])
        s["mean_ais_stderr"] = mean("stderr", out["ais"])
    if "iwae" in out:
        s["mean_iwae"] = mean("iwae")
    if out.get("bdmc"):
        s["bdmc_mean_width"] = out["bdmc"]["mean_width"]
    if out.get("certified"):
        s["certified"] = out["certified"]["line"]
    if out.get("sbc"):
        s["sbc_failed_dims"] = int(sum(out["sbc"]["failed"]))
    if out.get("collapse"):
        s["active_units"] = out["collapse"]["active_units"]
        s["mutual_information"] = out["collapse"]["mutual_information"]
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
        res = theta_fixed(vae, xs, steps=steps, lr=0.05, init_seed=seed)
        report["theta_fixed"] = res.as_dict()
        figures["theta_fixed"] = _save(P.theta_fixed_figure(res), folder, f"{name}_theta_fixed.png")
        target = as_target(vae)
        x = x.to(torch.float64)
        vae.double()
    else:
        if toy.exact_posterior and hasattr(toy, "meanfield_floor"):  # e.g. two layers
            from pyrovae.experiments.theta_fixed import theta_fixed_local

            res = theta_fixed_local(toy, toy.sample(256, seed=seed + 1), steps=steps,
                                    lr=0.2 if quick else 0.05, seed=seed)
            report["theta_fixed"] = res.as_dict()
            figures["theta_fixed"] = _save(P.theta_fixed_figure(res), folder,
                                           f"{name}_theta_fixed.png")
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
    from pyrovae.posterior.ais import ais

    # from the prior: a per-point guide that is narrower than a curved posterior makes a
    # guide start heavy-tailed (on banana, T = 200 from the guide is 0.1–0.3 nats low)
    a = ais(target, x, start="prior", precondition=False, num_steps=100 if quick else 1000,
            seed=seed)
    report["ais"] = a.as_dict() | {
        "minus_identity_log_px": a.log_px - ident["log_px"],
        "note": f"AIS from the prior is the route to log p(x) independent of the "
                f"{ident['log_px_method']} one (on a grid the identity closes by construction)",
    }
    ps = psis_per_point(target, x, num_samples=500 if quick else 4000)
    report["psis"] = {k: ps[k] for k in ("khat", "category", "ess", "ess_fraction")}
    report["psis"]["note"] = KHAT_NOTE
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
