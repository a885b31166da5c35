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

from pyrovae.plots.captions import captions_for
from pyrovae.posterior.amortization import amortization_gap, gap_split, own_family_gap
from pyrovae.posterior.exact import check_identity, elbo, grid_posteriors, iwae
from pyrovae.posterior.psis import psis_per_point
from pyrovae.posterior.target import as_target
from pyrovae.runs.sections import CheckBudget


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
    """Progress per stage of a check on stderr: one plain line when a stage starts
    (off a terminal) and one when it ends (with seconds); inside a stage a
    :class:`~pyrovae.progress.Progress` (done/total, time left) that the stage's loop
    advances, shown on a terminal, and off one only with ``force`` (``--progress``)."""

    def __init__(self, enabled: bool = True, stream=None, force: bool = False) -> None:
        self.enabled, self.force = enabled, force
        self.stream = stream if stream is not None else sys.stderr

    @contextlib.contextmanager
    def __call__(self, name: str, total: int | None = None):
        from pyrovae.progress import Progress

        if not self.enabled:
            yield Progress(total, name, enabled=False)  # counts, shows nothing
            return

        t0 = time.perf_counter()
        bar = Progress(total, f"check: {name}", sink=self.stream, force=self.force,
                       final=False)
        if not getattr(self.stream, "isatty", lambda: False)():
            print(f"check: {name} ...", file=self.stream, flush=True)
        try:
            yield bar
        finally:
            bar.close()
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
    num_samples: int = CheckBudget.samples,
    amortization_steps: int = 500,
    nuts_points: int = 0,
    seed: int = CheckBudget.seed,
    ais_steps: int = CheckBudget.ais_steps,
    ais_chains: int = CheckBudget.ais_chains,
    bdmc_points: int = CheckBudget.bdmc_points,
    sbc_sims: int = CheckBudget.sbc_sims,
    collapse_x: torch.Tensor | None = None,
    progress: bool = False,
    force_progress: bool = False,
    y: torch.Tensor | None = None,
    certified: bool = CheckBudget.certified,
    target_width: float = CheckBudget.target_width,
    max_ais_steps: int = CheckBudget.max_ais_steps,
    ais_time_limit: float | None = CheckBudget.ais_time_limit,
) -> tuple[dict, list | None]:
    """Every check on a trained VAE, for each row of ``x``, at any latent dimension.

    * log p(x): grid quadrature when latent_dim ≤ 2 and one site "z" (there KL(q ‖ p(z|x)) and
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

    ``progress``: a line per stage on stderr, and the progress of each stage's loop
    on a terminal (off one too with ``force_progress``).

    ``y``: a conditional VAE's one context (one row: a label of shape (1,), a vector
    of shape (1, dim)); every check is then of p(z | x, y) and log p(x | y), the
    simulations of BDMC and SBC are drawn given y, and the amortization gap (whose
    local optimisation has no context) is skipped.

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
    if getattr(vae, "label_latent", False):
        if certified:
            raise PyrovaeError("certified check: not available yet for a model with a "
                               "label latent (its AIS runs per class)")
        return check_label_vae(vae, x, num_samples=num_samples, seed=seed,
                               ais_steps=ais_steps, ais_chains=ais_chains,
                               bdmc_points=bdmc_points, sbc_sims=sbc_sims,
                               progress=progress, force_progress=force_progress), None
    stage = Stages(progress, force=force_progress)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    target = as_target(vae, y=y)
    model = vae if y is None else target  # what the checks that take a model are given
    if y is not None:
        amortization_steps = 0  # optimise_local has no context
    vae.eval()
    n = int(x.shape[0])
    out: dict[str, Any] = {"num_points": n, "latent_dim": vae.latent_dim,
                           "guide": vae.spec["guide"]}
    grids = None
    ais_kw = {"num_steps": ais_steps, "num_chains": ais_chains, "seed": seed}
    traced = getattr(vae, "pyro_target", False)  # several latent sites (hierarchical)
    if traced:
        out["model"] = vae.spec["model"]
    if vae.latent_dim <= 2 and not traced:
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
            cert = certified_ais(model, x, target_width=target_width, num_steps=ais_steps,
                                 max_steps=max_ais_steps, time_limit_s=ais_time_limit,
                                 num_chains=ais_chains, bdmc_points=bdmc_points, seed=seed)
        a = cert.ais
        out["certified"] = cert.as_dict()
    else:
        with stage("AIS", total=ais_steps * math.ceil(n / 128)) as tick:
            a = ais(model, x, progress=tick, **ais_kw)
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
            b = bdmc(model, bdmc_points, progress=tick, **ais_kw)
        out["bdmc"] = b.as_dict()
    with stage("PSIS"):
        ps = psis_per_point(target, x, num_samples=num_samples)
    out.update({k: ps[k] for k in ("khat", "category", "ess", "ess_fraction")})
    out["khat_note"] = KHAT_NOTE
    if amortization_steps:
        lp_est = Estimate(torch.as_tensor(out["log_px"]).double(),
                          torch.as_tensor(out["log_px_error"]).double(), out["log_px_method"])
        if traced and not own_family_gap(vae):  # q* a diagonal Gaussian per point (Adam)
            with stage("local guides (Adam)"):
                am = gap_split(vae, x, steps=amortization_steps, num_samples=num_samples,
                               log_px=lp_est)
        else:
            with stage("local guides (L-BFGS)") as tick:
                am = amortization_gap(vae, x, steps=amortization_steps,
                                      num_samples=num_samples, log_px=lp_est, progress=tick)
        out["amortization"] = {k: v for k, v in am.items() if k != "trace"}
    if sbc_sims:
        from pyrovae.posterior.sbc import sbc

        with stage("SBC") as tick:
            out["sbc"] = sbc(model, num_sims=sbc_sims, seed=seed, progress=tick).as_dict()
    from pyrovae.posterior.collapse import collapse_diagnostics

    with stage("collapse"):
        cx = x if collapse_x is None else collapse_x
        out["collapse"] = collapse_diagnostics(model, cx) if cx.shape[0] >= 2 else None
    if nuts_points and vae.latent_dim <= 4:
        from pyrovae.posterior.reference import reference_check

        with stage("NUTS") as tick:
            _, moments = reference_check(target, x, num_samples=400, warmup=300,
                                         num_chains=2, seed=seed, points=nuts_points,
                                         progress=tick)
        out["nuts"] = moments
        if grids is not None:
            out["nuts"]["grid_mean"] = np.stack([g.mean().numpy() for g in grids[:nuts_points]])
            out["nuts"]["grid_sd"] = np.stack(
                [g.cov().diagonal().sqrt().numpy() for g in grids[:nuts_points]]
            )
    out["summary"] = _summary(out)
    out["seconds"] = time.perf_counter() - t0
    return out, grids


def check_label_vae(
    vae,
    x: torch.Tensor,
    *,
    num_samples: int = CheckBudget.samples,
    seed: int = CheckBudget.seed,
    ais_steps: int = CheckBudget.ais_steps,
    ais_chains: int = CheckBudget.ais_chains,
    bdmc_points: int = CheckBudget.bdmc_points,
    sbc_sims: int = CheckBudget.sbc_sims,
    progress: bool = False,
    force_progress: bool = False,
) -> dict:
    """Every check of a model whose class label is a latent (M2), the label summed out
    exactly (:mod:`pyrovae.posterior.labels`), for each row of ``x``:

    * log p(x) = log Σ_y p(y) p(x|y) by AIS over z per class (``ais_steps`` ×
      ``ais_chains`` per class), with the label posterior p̂(y|x) it implies;
    * the unlabelled bound U(x) (``elbo``), IWAE with K = ``num_samples`` draws per
      class, Pareto k̂ and ESS of those stratified weights;
    * gap = log p(x) − U(x), split exactly into ``gap_label`` = KL(q(y|x) ‖ p̂(y|x)) and
      ``gap_code`` (the continuous code's part), and the total variation between
      q(y|x) and p̂(y|x);
    * BDMC on ``bdmc_points`` points simulated from p(z) p(x|y,z), point i from class
      i mod K, certifying the per-class AIS;
    * SBC on ``sbc_sims`` simulations from the model: of the label (randomised PIT of
      the simulated labels under q(y|x), and the top-label calibration against its
      resampled null) and of z (ranks under q(z|x,y) for the simulated class).

    References:
        Kingma et al. (2014), *Semi-supervised learning with deep generative models*;
        Neal (2001), *Annealed importance sampling*; Grosse et al. (2015), *Sandwiching
        the marginal likelihood using bidirectional Monte Carlo*; Talts et al. (2018),
        *Validating Bayesian inference algorithms with simulation-based calibration*.
    """
    from pyrovae.estimators.evaluate import evaluate
    from pyrovae.posterior.bdmc import bdmc
    from pyrovae.posterior.labels import label_ais, label_gap_split, label_pit, label_sbc
    from pyrovae.posterior.target import VAETarget

    stage = Stages(progress, force=force_progress)
    t0 = time.perf_counter()
    vae.eval()
    C = vae.classes
    n = int(x.shape[0])
    out: dict[str, Any] = {"num_points": n, "latent_dim": vae.latent_dim, "classes": C,
                           "guide": vae.spec["guide"], "model": vae.spec["model"]}
    with stage(f"AIS per class ({C} classes)") as tick:
        a = label_ais(vae, x, num_steps=ais_steps, num_chains=ais_chains, seed=seed,
                      progress=tick)
    with stage("ELBO, IWAE, k-hat") as tick:
        g = label_gap_split(vae, x, a, num_samples=num_samples, seed=seed)
        ev = evaluate(vae, x, num_samples=num_samples, seed=seed,
                      progress=tick)["per_example"]
    out["ais"] = {"log_px": a.value, "stderr": a.stderr, "log_px_given_y": a.per_class.T,
                  "stderr_given_y": a.per_class_stderr.T, "method": a.method}
    with torch.no_grad():
        q_label = vae.label_posterior(x).probs
    out.update({
        "log_px": a.value, "log_px_error": a.stderr, "log_px_method": a.method,
        "label_posterior": a.log_class_posterior.exp().T, "q_label": q_label,
        "elbo": g["elbo"], "gap": g["gap"], "gap_label": g["gap_label"],
        "gap_code": g["gap_code"], "label_tv": g["label_tv"],
        "iwae": ev["log_likelihood"], "iwae_k": num_samples, "khat": ev["khat"],
        "ess": ev["ess"], "ess_fraction": [e / (num_samples * C) for e in ev["ess"]],
        "khat_note": KHAT_NOTE,
        "note": "log p(x) = log sum_y p(y) p(x|y), AIS over z for each class; gap = AIS - "
                "U(x) = KL(q(y|x) || p(y|x)) (gap_label) + sum_y q(y|x) [log p(x|y) - "
                "ELBO_z(x, y)] (gap_code)",
    })
    if bdmc_points:
        with stage("BDMC, classes in turn") as tick:
            yy = torch.arange(bdmc_points) % C  # point i simulated from class i mod C
            out["bdmc"] = bdmc(VAETarget(vae, yy), bdmc_points, num_steps=ais_steps,
                               num_chains=ais_chains, seed=seed,
                               chunk_size=bdmc_points, progress=tick).as_dict()
            out["bdmc"]["classes"] = yy
    if sbc_sims:
        with stage("SBC of the label and of z"):
            out["sbc_label"] = label_pit(vae, num_sims=max(20, sbc_sims), seed=seed)
            both = label_sbc(vae, num_sims=max(10, sbc_sims), seed=seed)
            out["calibration"] = both.calibration.as_dict()
            out["sbc"] = both.ranks.as_dict()  # ranks of z under q(z|x,y), pooled
    out["summary"] = _summary(out)
    out["seconds"] = time.perf_counter() - t0
    return out


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
    if "gap_label" in out:  # a label summed out: the gap's two parts and its SBC
        s["mean_gap_label"] = mean("gap_label")
        s["mean_gap_code"] = mean("gap_code")
        s["mean_label_tv"] = mean("label_tv")
    if out.get("sbc_label"):
        s["sbc_label_pit_failed"] = out["sbc_label"]["failed"]
    if out.get("calibration"):
        s["label_calibration_passed"] = out["calibration"]["passed"]
        s["label_ece"] = out["calibration"]["ece"]
    if out.get("collapse"):
        s["active_units"] = out["collapse"]["active_units"]
        s["mutual_information"] = out["collapse"]["mutual_information"]
    return s


def check_toy(
    name: str, *, num_points: int = 6, seed: int = 0, folder: Path | None = None,
    quick: bool = False, progress: bool = False, force_progress: bool = False,
) -> dict:
    """The checks for one toy problem (:data:`pyrovae.toy.TOYS` or ``gaussian_mle``),
    with figures written to ``folder``; ``progress``/``force_progress`` as in
    :func:`check_vae` (the AIS and NUTS stages)."""
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
    if getattr(toy, "discrete_site", None):
        return check_enumerated_toy(toy, num_points=num_points, seed=seed, folder=folder,
                                    quick=quick)
    x = toy.sample(num_points, seed=seed)
    report: dict[str, Any] = {"toy": name, "model": toy.describe()}
    steps = 150 if quick else 1000
    if callable(getattr(toy, "to_linear_vae", None)):  # a linear-Gaussian toy: θ-fixed too
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
    if callable(getattr(toy, "to_linear_vae", None)):  # closed forms through its linear VAE
        from pyrovae.experiments.theta_fixed import ppca_exact

        lp, kl = ppca_exact(vae, x)
        ident["kl_closed_form"] = kl
        ident["log_px_closed_form"] = lp
    report["identity"] = ident
    from pyrovae.posterior.ais import ais

    # from the prior: a per-point guide that is narrower than a curved posterior makes a
    # guide start heavy-tailed (on banana, T = 200 from the guide is 0.1–0.3 nats low)
    stage = Stages(progress, force=force_progress)
    with stage("AIS") as tick:
        a = ais(target, x, start="prior", precondition=False,
                num_steps=100 if quick else 1000, seed=seed, progress=tick)
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

        with stage("NUTS") as tick:
            _, moments = reference_check(target, x, num_samples=400, warmup=300,
                                         num_chains=2, seed=seed, points=3, progress=tick)
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
    report["summary"] = _toy_summary(report)
    report["figures"] = figures
    report["captions"] = captions_for(figures)
    report["seconds"] = time.perf_counter() - t0
    return report


def _toy_summary(report: dict) -> dict:
    """The lines ``pyrovae check TOY`` prints: the identity's gap, KL and residual, the
    θ-fixed result where there is one, and AIS (independent of the identity's route)."""
    ident = report["identity"]
    s: dict[str, Any] = {
        "mean_gap": float(ident["gap"].mean()), "mean_kl": float(ident["kl"].mean()),
        "max_abs_residual": float(ident["residual"].abs().max()),
        "identity_ok": bool(ident["ok"].all()),
    }
    if "theta_fixed" in report:
        s["theta_fixed_final_kl"] = report["theta_fixed"]["final_kl"]
        s["theta_fixed_floor"] = report["theta_fixed"]["floor"]
    a = report["ais"]
    s["ais_log_px_mean"] = float(np.mean(np.asarray(a["log_px"])))
    s["ais_minus_identity_max_abs"] = float(np.max(np.abs(np.asarray(a["minus_identity_log_px"]))))
    return s


def check_enumerated_toy(
    toy, *, num_points: int = 6, seed: int = 0, folder: Path | None = None,
    quick: bool = False,
) -> dict:
    """The checks of a toy with a discrete latent (``toy.discrete_site``, e.g.
    :class:`pyrovae.toy.MixturePPCA`), the class summed out exactly
    (:mod:`pyrovae.posterior.enumerate`), for the exact guide and each deliberately wrong
    one (``toy.guide(variant)``):

    * log p(x) by enumeration + AIS over z per class (started at the ``wide_z`` guide,
      not the posterior) and by enumeration + IWAE, against the closed form;
    * the identity log p(x) = ELBO + KL(q(y, z | x) ‖ p(y, z | x)) per point and guide;
    * Pyro's ``TraceEnum_ELBO`` (``config_enumerate``) against the enumerated ELBO;
    * SBC: calibration of q(y | x) on simulated (y, x) and ranks of q(z | x, y);
    * a reliability diagram of q(y | x) per guide.
    """
    from pyro.infer import TraceEnum_ELBO, config_enumerate

    from pyrovae.plots.classification import reliability_diagram
    from pyrovae.posterior import enumerate as E
    from pyrovae.randomness import seeded
    from pyrovae.toy.mixture import GUIDE_VARIANTS

    t0 = time.perf_counter()
    name = toy.name
    _, _, x = toy.simulate(num_points, seed=seed)
    log_py = toy.log_prior_y()
    exact = toy.log_marginal(x)
    figures: dict[str, str | None] = {}

    def class_targets(guide):
        return [as_target(toy.class_toy(c), guide.class_guide(c))
                for c in range(toy.num_classes)]

    start = toy.guide("wide_z")
    steps, chains = (300, 32) if quick else (600, 64)
    a = E.enumerated_log_marginal(class_targets(start), log_py, x, method="ais",
                                  num_steps=steps, num_chains=chains, seed=seed)
    iw = E.enumerated_log_marginal(class_targets(start), log_py, x, method="iwae",
                                   num_samples=500 if quick else 4000, seed=seed)
    report: dict[str, Any] = {
        "toy": name, "model": toy.describe(),
        "log_px": {
            "closed_form": exact,
            "ais": a.as_dict() | {"minus_closed_form": a.value - exact,
                                  "start": "guide 'wide_z'", "num_steps": steps,
                                  "num_chains": chains},
            "iwae": iw.as_dict() | {"minus_closed_form": iw.value - exact},
            "note": "log p(x) = logsumexp_y [log p(y) + log p(x|y)], each log p(x|y) by "
                    "AIS (or IWAE) over z with the class fixed",
        },
        "guides": {},
    }
    sims, draws = (200, 49) if quick else (500, 99)
    particles = 200 if quick else 2000
    for variant in GUIDE_VARIANTS:
        g = toy.guide(variant)
        ts = class_targets(g)
        lq = g.log_class_probs(x)
        ident = E.check_enumerated_identity(ts, log_py, lq, x,
                                            num_samples=particles, seed=seed)
        ident.pop("log_class_posterior")
        el = E.enumerated_elbo(ts, log_py, lq, x, num_samples=particles, seed=seed)
        with seeded(seed, x):
            loss = TraceEnum_ELBO(max_plate_nesting=1, num_particles=particles,
                                  vectorize_particles=True).loss(
                toy.model, config_enumerate(g), x)
        sbc = E.enumerated_sbc(lambda n: toy.simulate(n, seed=None), g.log_class_probs, ts,
                               num_classes=toy.num_classes, num_sims=sims, num_draws=draws,
                               seed=seed)
        report["guides"][variant] = {
            "identity": ident,
            "traceenum": {"elbo": -loss, "enumerated_elbo": float(el.value.sum()),
                          "stderr": float(el.stderr.pow(2).sum().sqrt()),
                          "note": "summed over the points; with an exact q(z|x,y) both are "
                                  "deterministic and equal"},
            "sbc": sbc.as_dict(),
        }
        figures[f"reliability_{variant}"] = _save(
            reliability_diagram(sbc.calibration.as_dict(),
                                title=f"q(y|x), guide '{variant}' (simulated data)"),
            folder, f"{name}_reliability_{variant}.png")
    guides = report["guides"]
    err = (a.value - exact).abs()
    report["summary"] = {
        "ais_max_abs_error": float(err.max()),
        "ais_within_0.05": bool((err < 0.05).all()),
        "iwae_max_abs_error": float((iw.value - exact).abs().max()),
        "identity_ok": all(bool(g["identity"]["ok"].all()) for g in guides.values()),
        "exact_guide_gap": float(guides["exact"]["identity"]["gap"].abs().max()),
        "traceenum_max_abs_diff": max(_traceenum_diff(g) for g in guides.values()),
        "traceenum_agrees": all(_traceenum_diff(g) <= 5 * math.sqrt(2) * g["traceenum"][
            "stderr"] + 1e-6 for g in guides.values()),
        "sbc_passed": ", ".join(v for v, g in guides.items() if g["sbc"]["passed"]) or "none",
        "sbc_failed": ", ".join(v for v, g in guides.items() if not g["sbc"]["passed"])
        or "none",
    }
    report["figures"] = figures
    report["captions"] = captions_for(figures)
    report["seconds"] = time.perf_counter() - t0
    return report


def _traceenum_diff(guide_report: dict) -> float:
    t = guide_report["traceenum"]
    return abs(t["elbo"] - t["enumerated_elbo"])
