"""What each figure pyrovae writes shows and how to read it: one caption per figure kind,
the one source for the ``captions`` of a check's ``report.json`` and for the docs page
"Reading the figures" (generated from :data:`CAPTIONS` when the site is built)."""

from __future__ import annotations

from pathlib import Path

#: Figure kind (its file's stem, or the end of it after a toy's name) -> caption.
CAPTIONS: dict[str, str] = {
    "learning_curve": (
        "ELBO per example against epoch. The train curve is the running mean over each "
        "epoch's minibatches, taken while the parameters moved (and on freshly binarised "
        "batches where the likelihood binarises), so it can lie below the held-out curve, "
        "computed once at the end of the epoch, without any underfitting. A dashed grey "
        "line gives β where it varies."),
    "reconstructions": (
        "Held-out images (top) and the means of p(x|z) at z ~ q(z|x) (below): what the "
        "code keeps of each image."),
    "samples": (
        "Means of p(x|z) for z drawn from the prior (a conditional model: one row per "
        "class y): what the model generates, not what it reconstructs."),
    "latent_map": (
        "Posterior means E_q[z|x] of held-out points coloured by label. With more than two "
        "latent dimensions the axes are the first two principal components of those means "
        "(the title says so); a mixture prior's components are drawn as 1σ ellipses."),
    "latent_manifold": (
        "Decoded means on a grid of prior quantiles of a 2-d latent (top row: largest z₂): "
        "how the decoder fills the latent space."),
    "posterior": (
        "The exact posterior p(z|x) on a grid (filled) against the guide q(z|x) (lines), one "
        "panel per point, titled with that point's gap log p(x) − ELBO and its k̂."),
    "khat": (
        "Pareto k̂ of the importance weights p(x,z)/q(z|x) per point, with 0.5 (good below) "
        "and 0.7 (unreliable above). k̂ grades importance sampling from the guide (IWAE); "
        "it says nothing about a log p(x) from a grid, a closed form or AIS, so red points "
        "beside tiny gaps (a guide narrower than p(z|x), common on 1-d conjugate toys) are "
        "no contradiction."),
    "gaps": (
        "The inference gap log p(x) − ELBO split into approximation (best guide of the "
        "family, refined per point) and amortization (the encoder's shortfall from it), "
        "Cremer et al. 2018. Each bar's total uses the split's own Monte Carlo estimates, "
        "so it can differ in the last digits from a mean gap printed from other estimates."),
    "bdmc": (
        "Forward AIS (a lower bound) and reverse AIS (an upper bound) of log p(x) on data "
        "simulated from the model, ±2 s.e.; the mean width certifies the AIS budget: a "
        "width near 0 means AIS at that budget is accurate on the real data too."),
    "sbc": (
        "Simulation-based calibration: ECDF of the ranks of the true z among guide draws, "
        "minus the uniform, per latent dimension. A dimension is flagged (red) when its "
        "curve leaves the grey simultaneous band (family-wise over all dimensions); each "
        "panel's p is that dimension's own test, for reference, so a small p inside the "
        "band is not a failure. Fewer than 100 simulations (--quick) is a smoke test."),
    "collapse": (
        "Left: activity Cov_x(E_q[z_d]) per latent dimension (log scale, sorted) and the "
        "0.01 threshold of an active unit. Right: KL(q(z_d|x) ‖ p(z_d)) per dimension in "
        "the same order, with rate, distortion and the mutual information I_q(x; z)."),
    "theta_fixed": (
        "KL(q‖p(z|x)) against optimisation steps with the decoder θ held fixed: how close "
        "the guide family can get; the dashed floor is the family's best, the article's "
        "‘θ fixed’ experiment (The Intuitive VAE)."),
    "mle": "The data, the closed-form maximum-likelihood Gaussian and Pyro's fitted one.",
    "reliability": (
        "Reliability diagram of q(y|x): accuracy against confidence per bin (the diagonal "
        "is perfect calibration); ECE is the bins' weighted mean distance from it."),
    "confusion": "Confusion matrix of q(y|x)'s most probable class against the true label.",
    "style": (
        "One held-out image's style z ~ q(z|x, y) decoded with every label: what the "
        "label controls and what z keeps."),
}


def caption(name: str) -> str | None:
    """The caption of a figure given its kind, file name or path (``"sbc"``,
    ``"banana_khat.png"``, ``"RUN/check/collapse.png"``, ``"reliability_exact"``);
    ``None`` for a figure kind that has none."""
    stem = Path(str(name)).stem
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    for kind in sorted(CAPTIONS, key=len, reverse=True):  # "x_theta_fixed": theta_fixed
        if f"_{stem}_".find(f"_{kind}_") >= 0:  # a toy's prefix, a variant's suffix
            return CAPTIONS[kind]
    return None


def captions_for(figures: dict[str, str | None]) -> dict[str, str]:
    """``{name: caption}`` for the figures a report lists (those written and captioned)."""
    out = {}
    for key, path in figures.items():
        text = caption(key) if path is None else caption(path) or caption(key)
        if path is not None and text is not None:
            out[key] = text
    return out
