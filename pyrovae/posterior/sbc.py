"""Simulation-based calibration (SBC) of the amortised guide q_φ(z|x).

Draw z̃ ~ p(z), x̃ ~ p_θ(x|z̃), then L draws z⁽¹⁾..z⁽ᴸ⁾ ~ q_φ(z|x̃).  If q_φ(z|x) were
the exact posterior, z̃ would be one more draw from the same distribution, so the
rank r_d = #{l : z⁽ˡ⁾_d < z̃_d} of each coordinate is uniform on {0, …, L}
(Talts et al. 2018).  A guide that is too narrow gives ∪-shaped rank histograms,
too wide ∩-shaped, biased ones skewed.

Uniformity is judged with the ECDF of the ranks and *simultaneous* confidence bands
(Säilynoja, Bürkner & Vehtari 2022): on the grid zᵢ = i/(L+1) the count of ranks
below i is Binomial(N, zᵢ) under uniformity; the band is the pointwise binomial
interval at level γ, with γ chosen by simulation so that a uniform sample's whole
ECDF stays inside with probability 1 − α.  The test statistic is the smallest
pointwise two-sided tail probability of the observed ECDF; its p-value is the
fraction of simulated uniform ECDFs with a smaller one.  α is family-wise over the
latent dimensions (Bonferroni: α/d per dimension).

Calibration is necessary, not sufficient: the prior itself as a guide is
calibrated.  Read SBC beside the gap log p(x) − ELBO.

References:
    Talts, Betancourt, Simpson, Vehtari & Gelman (2018), *Validating Bayesian
    inference algorithms with simulation-based calibration*.
    Säilynoja, Bürkner & Vehtari (2022), *Graphical test for discrete uniformity
    and its applications in goodness-of-fit evaluation and multiple sample
    comparison*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.target import as_target
from pyrovae.progress import Progress, expect
from pyrovae.randomness import seeded


@dataclass
class SBCResult:
    """Ranks (num_sims, d) in {0..L} and the per-dimension uniformity test."""

    ranks: np.ndarray
    num_draws: int
    grid: np.ndarray  #: (K,) evaluation points zᵢ of the ECDF
    ecdf_diff: np.ndarray  #: (d, K) ECDF(zᵢ) − zᵢ per dimension
    lower: np.ndarray  #: (K,) simultaneous band for ECDF − z
    upper: np.ndarray  #: (K,)
    statistic: np.ndarray  #: (d,) smallest pointwise tail probability
    p_value: np.ndarray  #: (d,)
    alpha: float
    labels: list[str] | None = None  #: (d,) "site[i]" per dimension of the flat latent

    def failed_by_site(self) -> dict[str, list[int]]:
        """The miscalibrated dimensions grouped by latent site: ``{"top": [0, 2], …}``."""
        labels = self.labels or [f"z[{i}]" for i in range(self.ranks.shape[1])]
        out: dict[str, list[int]] = {}
        for label, bad in zip(labels, self.failed.tolist(), strict=True):
            site, _, idx = label.rpartition("[")
            out.setdefault(site, [])
            if bad:
                out[site].append(int(idx.rstrip("]")))
        return out

    @property
    def failed(self) -> np.ndarray:
        """(d,) True where the ECDF leaves the band (miscalibrated dimension)."""
        below = self.ecdf_diff < self.lower - 1e-12
        return (below | (self.ecdf_diff > self.upper + 1e-12)).any(1)

    @property
    def passed(self) -> bool:
        """True when no latent dimension failed its rank-uniformity test."""
        return not bool(self.failed.any())

    def as_dict(self) -> dict:
        """A JSON-able summary of the ranks and the per-dimension tests."""
        return {
            "num_sims": int(self.ranks.shape[0]), "num_draws": self.num_draws,
            "alpha_familywise": self.alpha, "failed": self.failed.tolist(),
            "passed": self.passed, "p_value": self.p_value.tolist(),
            "labels": self.labels, "failed_by_site": self.failed_by_site(),
            "statistic": self.statistic.tolist(), "grid": self.grid.tolist(),
            "ecdf_diff": self.ecdf_diff.tolist(), "band_lower": self.lower.tolist(),
            "band_upper": self.upper.tolist(),
            "rank_histogram": [np.bincount(r, minlength=self.num_draws + 1).tolist()
                               for r in self.ranks.T],
        }


def _min_tail(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """2 · min over the grid of the smaller binomial tail at the observed counts."""
    lo = stats.binom.cdf(counts, n, z)
    hi = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2 * np.minimum(lo, hi)).min(-1)


def uniformity_bands(
    num_sims: int, num_draws: int, *, alpha: float = 0.05, num_grid: int = 50,
    simulations: int = 2000, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous 1 − α bands for the ECDF of ``num_sims`` ranks uniform on
    {0..num_draws} (Säilynoja et al. 2022, simulation method).

    Returns ``(grid, lower, upper, null_statistics)``; ``lower``/``upper`` bound
    ECDF(z) − z on ``grid``, ``null_statistics`` are the simulated statistics.
    """
    k = min(num_draws, num_grid)
    idx = np.unique(np.round(np.linspace(1, num_draws, k)).astype(int))
    z = idx / (num_draws + 1)
    rng = np.random.default_rng(seed)
    sims = rng.integers(0, num_draws + 1, size=(simulations, num_sims))
    counts = (sims[:, :, None] < idx[None, None, :]).sum(1)
    null = _min_tail(counts, num_sims, z)
    gamma = float(np.quantile(null, alpha))
    lo = stats.binom.ppf(gamma / 2, num_sims, z) / num_sims - z
    hi = stats.binom.ppf(1 - gamma / 2, num_sims, z) / num_sims - z
    return z, lo, hi, null


def sbc(
    model,
    *,
    guide=None,
    num_sims: int = 200,
    num_draws: int = 99,
    alpha: float = 0.05,
    seed: int = 0,
    chunk_size: int = 256,
    progress: Progress | None = None,
) -> SBCResult:
    """Simulation-based calibration of the guide of ``model`` (see the module text).

    Args:
        model: a :class:`pyrovae.VAE`, or a toy/Pyro model with ``guide``.
        num_sims: N simulated pairs (z̃, x̃).
        num_draws: L guide draws per simulated x̃ (ranks in {0..L}).
        alpha: family-wise level over the latent dimensions.
        seed: the random seed (the global stream is restored afterwards).
        chunk_size: simulations drawn together.
        progress: advanced by the replications of each chunk (total ``num_sims``);
            ``None``: silent.

    Returns:
        :class:`SBCResult`; ``failed[d]`` says whether dimension d is miscalibrated.

    References:
        Talts et al. (2018), *Validating Bayesian inference algorithms with
        simulation-based calibration*; Säilynoja, Bürkner & Vehtari (2022),
        *Graphical test for discrete uniformity*.
    """
    if num_sims < 10 or num_draws < 1:
        raise PyrovaeError(f"sbc: need num_sims >= 10 and num_draws >= 1, got {num_sims}, "
                           f"{num_draws}")
    if not 0 < alpha < 1:
        raise PyrovaeError(f"sbc alpha: expected a number in (0, 1), got {alpha}")
    target = as_target(model, guide)
    ranks = []
    expect(progress, num_sims)
    with seeded(seed, target), torch.no_grad():
        for lo in range(0, num_sims, chunk_size):
            z, x = target.simulate(min(chunk_size, num_sims - lo))
            zq, _ = target.sample_guide(x, num_draws)
            ranks.append((zq < z).sum(0))
            if progress is not None:
                progress(z.shape[0])
    r = torch.cat(ranks).cpu().numpy().astype(int)
    return rank_test(r, num_draws, alpha=alpha, seed=seed, labels=target.dimension_labels())


def rank_test(
    ranks: np.ndarray, num_draws: int, *, alpha: float = 0.05, seed: int = 0,
    labels: list[str] | None = None,
) -> SBCResult:
    """The uniformity test of SBC on given ranks ``(num_sims, d)`` in {0..num_draws}:
    per dimension, the ECDF of the ranks against simultaneous 1 − α/d bands
    (Säilynoja et al. 2022), α family-wise over the d dimensions (Bonferroni).

    Used by :func:`sbc` and by the checks that compute ranks their own way (the
    continuous site of a model with a discrete latent, :mod:`pyrovae.posterior.enumerate`).

    References:
        Talts et al. (2018), *Validating Bayesian inference algorithms with
        simulation-based calibration*; Säilynoja, Bürkner & Vehtari (2022),
        *Graphical test for discrete uniformity*.
    """
    r = np.asarray(ranks).astype(int)
    if r.ndim != 2 or r.shape[0] < 10:
        raise PyrovaeError(f"sbc ranks: expected (num_sims >= 10, d), got shape {r.shape}")
    if r.min() < 0 or r.max() > num_draws:
        raise PyrovaeError(f"sbc ranks: expected values in 0..{num_draws}")
    num_sims, d = r.shape
    grid, lo_band, hi_band, null = uniformity_bands(num_sims, num_draws, alpha=alpha / d,
                                                    seed=seed)
    idx = np.round(grid * (num_draws + 1)).astype(int)
    counts = (r.T[:, :, None] < idx[None, None, :]).sum(1)  # (d, K)
    stat = _min_tail(counts, num_sims, grid)
    p = (null[None, :] <= stat[:, None]).mean(1)
    return SBCResult(
        ranks=r, num_draws=num_draws, grid=grid, ecdf_diff=counts / num_sims - grid,
        lower=lo_band, upper=hi_band, statistic=stat, p_value=p, alpha=alpha,
        labels=labels,
    )
