"""Reference posterior samples by NUTS, exported with the guide's samples to ArviZ.

For small latent dimensions, Pyro's NUTS (Hoffman & Gelman 2014) samples
p_θ(z|x) for a handful of data points with θ fixed (the potential is −log p(x, z)
on the unconstrained value of z, Jacobian included).  Several chains are run one
after another, so ArviZ can compute r-hat and the effective sample size, and the
guide's draws are stored next to them in the same :class:`arviz.InferenceData`
(group ``posterior`` = NUTS, group ``guide`` = q_φ(z|x)).

This is the package's one ArviZ module.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pyro.infer import MCMC, NUTS
from torch.distributions import biject_to

from pyrovae.posterior.target import as_target
from pyrovae.progress import Progress, expect

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def nuts_reference(
    target, x: torch.Tensor, *, num_samples: int = 500, warmup: int = 300,
    num_chains: int = 4, seed: int = 0, init_scale: float = 1.0, init: str = "auto",
    points: int | None = None, progress: Progress | None = None,
) -> np.ndarray:
    """NUTS draws of z for every row of ``x`` (jointly; the rows are independent), or
    for the first ``points`` rows (a per-point guide still sees all of ``x``).

    Chains start from draws of the guide (``init="guide"``; the default when the
    target has one), else from ``init_scale`` × N(0, I) on the unconstrained z
    (``init="prior"``).  Returns an array of shape (chains, draws, N, latent_dim).
    ``progress`` is advanced by each NUTS iteration (warm-up and draws, every chain;
    total ``num_chains · (warmup + num_samples)``); ``None``: silent.
    """
    target = as_target(target)
    transform = biject_to(target.support)
    x_all, x = x, x[:points]
    n, d = x.shape[0], target.latent_dim
    dtype = x.dtype

    def potential(params):
        u = params["u"]
        z = transform(u)
        ladj = transform.log_abs_det_jacobian(u, z)
        if ladj.dim() == u.dim():
            ladj = ladj.sum(-1)
        return -(target.log_joint(x, z) + ladj).sum()

    use_guide = init == "guide" or (init == "auto" and target.has_guide)
    if use_guide:
        torch.manual_seed(seed)
        with torch.no_grad():
            z0, _ = target.sample_guide(x_all, num_chains)
        u0 = transform.inv(z0[:, :n].detach().to(dtype))
    chains = []
    expect(progress, num_chains * (warmup + num_samples))

    def hook(kernel, samples, stage, i):  # Pyro calls it after each iteration
        if progress is not None:
            progress(1)

    for c in range(num_chains):
        g = torch.Generator().manual_seed(seed + c)
        u_init = u0[c] if use_guide else init_scale * torch.randn(n, d, generator=g, dtype=dtype)
        params0 = {"u": u_init}
        torch.manual_seed(seed + 1000 + c)
        mcmc = MCMC(
            NUTS(potential_fn=potential, adapt_step_size=True, adapt_mass_matrix=True),
            num_samples=num_samples, warmup_steps=warmup, initial_params=params0,
            disable_progbar=True, hook_fn=hook,
        )
        mcmc.run()
        u = mcmc.get_samples()["u"].detach()
        chains.append(transform(u).numpy())
    return np.stack(chains)


def guide_samples(
    target, x: torch.Tensor, num_samples: int, points: int | None = None
) -> np.ndarray:
    """Draws of z ~ q_φ(z|x), shape (1, draws, N, latent_dim) (the first ``points``
    rows when given)."""
    target = as_target(target)
    with torch.no_grad():
        z, _ = target.sample_guide(x, num_samples)
    return z[:, :points].detach().double().numpy()[None]


def to_inference_data(nuts: np.ndarray, guide: np.ndarray | None = None):
    """An ``arviz.InferenceData`` with NUTS draws as ``posterior`` and the guide's as
    the ``guide`` group; variable ``z`` with dims (point, latent)."""
    dims = {"z": ["point", "latent"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_dict(posterior={"z": nuts}, dims=dims)
        if guide is not None:
            idata.add_groups(
                {"guide": {"z": guide}}, dims=dims, warn_on_custom_groups=False
            )
    return idata


#: The convergence a NUTS reference must show before anything is compared with it
#: (Vehtari et al. 2021: rank-normalised R̂ below 1.01, bulk ESS above 100).
MAX_RHAT = 1.01
MIN_BULK_ESS = 100.0


def mixing_verdict(max_rhat: float, min_ess: float) -> tuple[bool, str]:
    """Whether a NUTS reference mixed (:data:`MAX_RHAT`, :data:`MIN_BULK_ESS`), and one line
    saying so, naming the figures; comparisons with a reference that did not mix are
    unreliable.

    References:
        Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), *Rank-normalization,
        folding, and localization: an improved R̂ for assessing convergence of MCMC*.
        Bayesian Analysis.
    """
    mixed = bool(max_rhat <= MAX_RHAT and min_ess >= MIN_BULK_ESS)
    figures = f"max R̂ {max_rhat:.3f}, min bulk ESS {min_ess:.0f}"
    if mixed:
        return True, f"NUTS reference mixed ({figures})"
    return False, (f"NUTS reference did NOT mix ({figures}; wanted R̂ ≤ {MAX_RHAT} and ESS ≥ "
                   f"{MIN_BULK_ESS:.0f}): the comparisons with it are unreliable; run more "
                   "warm-up or draws")


def compare_moments(idata) -> dict:
    """Per point and latent coordinate: NUTS mean/sd with r-hat and bulk ESS, the
    guide's mean/sd, and the differences in units of the NUTS sd; ``mixed`` and
    ``mixing`` (:func:`mixing_verdict`) say whether the reference can be trusted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata.posterior)["z"].values
        ess = az.ess(idata.posterior)["z"].values
    post = idata.posterior["z"].values
    p_mean = post.mean(axis=(0, 1))
    p_sd = post.std(axis=(0, 1))
    out = {
        "nuts_mean": p_mean, "nuts_sd": p_sd, "rhat": rhat, "ess_bulk": ess,
        "max_rhat": float(np.nanmax(rhat)), "min_ess": float(np.nanmin(ess)),
    }
    out["mixed"], out["mixing"] = mixing_verdict(out["max_rhat"], out["min_ess"])
    if "guide" in idata.groups():
        g = idata.guide["z"].values
        g_mean, g_sd = g.mean(axis=(0, 1)), g.std(axis=(0, 1))
        out.update({
            "guide_mean": g_mean, "guide_sd": g_sd,
            "mean_diff_in_sd": (g_mean - p_mean) / p_sd,
            "sd_ratio": g_sd / p_sd,
        })
    return out


def reference_check(
    target, x: torch.Tensor, *, num_samples: int = 500, warmup: int = 300,
    num_chains: int = 4, seed: int = 0, points: int | None = None,
    progress: Progress | None = None,
) -> tuple[object, dict]:
    """NUTS + guide draws for ``x`` (or its first ``points`` rows: a per-point guide
    such as :class:`~pyrovae.posterior.local.LocalGuide` is always called with all
    of ``x``) -> (InferenceData, :func:`compare_moments`); ``progress`` as in
    :func:`nuts_reference`."""
    target = as_target(target)
    nuts = nuts_reference(
        target, x, num_samples=num_samples, warmup=warmup, num_chains=num_chains, seed=seed,
        points=points, progress=progress,
    )
    guide = (guide_samples(target, x, num_samples * num_chains, points)
             if target.has_guide else None)
    idata = to_inference_data(nuts, guide)
    return idata, compare_moments(idata)


def arviz_khat(log_weights: np.ndarray) -> np.ndarray:
    """ArviZ's own PSIS k̂ (``arviz.psislw``) for log-weights of shape (S, N), per column;
    a cross-check of :func:`pyrovae.posterior.psis.khat`."""
    lw = np.ascontiguousarray(np.asarray(log_weights, dtype=float).T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = az.psislw(lw)
    return np.asarray(k)


def sbc_inference_data(ranks: np.ndarray, num_draws: int):
    """SBC ranks (num_sims, d) from :func:`pyrovae.posterior.sbc.sbc` as an
    ``arviz.InferenceData`` (group ``posterior``, variable ``rank``, dims
    (latent,), one chain of num_sims draws; ``attrs["num_draws"]`` = L), e.g. for
    ``arviz.plot_ecdf(r / (L + 1), ...)`` with ArviZ's own bands."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_dict(posterior={"rank": np.asarray(ranks)[None]},
                             dims={"rank": ["latent"]}, attrs={"num_draws": int(num_draws)})
    return idata


def summary(idata):
    """``arviz.summary`` of the NUTS draws (a pandas DataFrame)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(idata, kind="all")
