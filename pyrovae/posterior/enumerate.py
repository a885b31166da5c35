"""Checks of a model with a discrete latent y (K values), the discrete site summed out
exactly and the continuous sites z checked per class.

A model p(y) p(z | y) p_θ(x | y, z) with a guide q(y | x) q(z | x, y) (the M2 model, a
mixture of pPCAs) is, for each fixed class y, an ordinary model of z with a guide: a
:class:`~pyrovae.posterior.target.Target` ``p(x, z | y)``, ``q(z | x, y)``.  Every check
of this module takes one such target per class (a list, or a callable ``y -> target``)
and the log prior ``log p(y)``; tensors are *class first*: ``(K, N)`` for K classes and N
data points (``log p(y)`` may be ``(K,)``).

* **log p(x)** = logsumexp_y [log p(y) + log p(x | y)], each log p(x | y) estimated by
  AIS over z, IWAE over z, or exactly (:func:`enumerated_log_marginal`; any per-class
  estimator through :func:`enumerate_log_marginal`).  Its standard error is the delta
  method: with r_y = p̂(y | x) the implied class posterior,
  se² = Σ_y r_y² se_y² (independent estimates per class).  A lower bound per class (AIS,
  IWAE) gives a lower bound of log p(x) in expectation.
* **ELBO** with the discrete site summed out exactly,
  ``Σ_y q(y|x) [log p(y) + ELBO_z(x, y) − log q(y|x)]``, ELBO_z(x, y) =
  E_q(z|x,y)[log p(x, z | y) − log q(z | x, y)] (:func:`enumerated_elbo`); this is the
  value Pyro's ``TraceEnum_ELBO`` computes with y enumerated in parallel.
* **KL** of the joint guide to the joint posterior p(y, z | x) = p(y | x) p(z | x, y),
  ``Σ_y q(y|x) [log q(y|x) − log p(y|x) + KL(q(z|x,y) ‖ p(z|x,y))]``
  (:func:`enumerated_kl`), and the identity log p(x) = ELBO + KL checked per point
  (:func:`check_enumerated_identity`).
* **Calibration of q(y | x)** (:func:`class_calibration`): the discrete site has no
  ranks, so SBC's role is played by calibration on simulated (y, x) ~ p: the expected
  calibration error (Guo et al. 2017) against the threshold it would exceed with
  probability α if q(y|x) were calibrated, found by consistency resampling (Bröcker &
  Smith 2007: labels redrawn from the predicted probabilities themselves).  The exact
  posterior p(y | x) is calibrated on data from the model; calibration is necessary,
  not sufficient (the prior p(y), ignoring x, is calibrated too).
* **SBC of q(z | x, y)** (:func:`enumerated_sbc`): with (ỹ, z̃, x̃) ~ p, z̃ is a draw of
  p(z | x̃, ỹ), so its ranks among L draws of q(z | x̃, ỹ) are uniform when the guide is
  exact (Talts et al. 2018), tested with :func:`pyrovae.posterior.sbc.rank_test`.

Any Pyro pair with one discrete site is split into these pieces by :func:`split_pair`
(the site fixed to each value and hidden from the trace: one
:class:`~pyrovae.posterior.target.PyroTarget` per value, log p(y) and log q(y | x) read
from the site's distributions).

The checks that need one real vector per point (:mod:`pyrovae.posterior.ais`,
:mod:`~pyrovae.posterior.sbc`, the grid) refuse a discrete site and point here.

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.
    Neal (2001), *Annealed importance sampling*.
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
    Guo, Pleiss, Sun & Weinberger (2017), *On Calibration of Modern Neural Networks*.
    Bröcker & Smith (2007), *Increasing the reliability of reliability diagrams*.
    Talts, Betancourt, Simpson, Vehtari & Gelman (2018), *Validating Bayesian inference
    algorithms with simulation-based calibration*.
    "The Intuitive VAE" (Break Yang, 2024): log p(x) = ELBO + KL(q ‖ p(z|x)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.classification import (
    as_probs,
    calibration_errors,
    check_bins,
    class_labels,
    expected_calibration_error,
    reliability_table,
)
from pyrovae.posterior.exact import Estimate, elbo, iwae, kl_to_posterior, log_marginal
from pyrovae.posterior.sbc import SBCResult, rank_test
from pyrovae.posterior.target import PyroTarget, Target, as_target
from pyrovae.randomness import seeded

__all__ = [
    "CalibrationResult",
    "EnumeratedEstimate",
    "EnumeratedSBCResult",
    "PairSplit",
    "check_enumerated_identity",
    "class_calibration",
    "combine_classes",
    "elbo_from_classes",
    "enumerate_log_marginal",
    "enumerated_elbo",
    "enumerated_kl",
    "enumerated_log_marginal",
    "enumerated_sbc",
    "expected_calibration_error",
    "split_pair",
]

#: One target per class: a sequence, or a callable ``y -> target`` (``y`` in 0..K−1).
ClassTargets = Sequence[Any] | Callable[[int], Any]


@dataclass
class EnumeratedEstimate:
    """A per-point value with the discrete site summed out, and its per-class parts.

    ``per_class`` (K, N) holds log p(x | y) for a log-marginal, ELBO_z(x, y) for an ELBO.
    """

    value: torch.Tensor  #: (N,)
    stderr: torch.Tensor  #: (N,)
    per_class: torch.Tensor  #: (K, N)
    per_class_stderr: torch.Tensor  #: (K, N)
    log_prior: torch.Tensor  #: (K, N) log p(y)
    method: str = ""

    def estimate(self) -> Estimate:
        """The summed value as an :class:`~pyrovae.posterior.exact.Estimate`."""
        return Estimate(self.value, self.stderr, self.method)

    @property
    def log_class_posterior(self) -> torch.Tensor:
        """The class posterior the per-class estimates of a log-marginal imply, as
        log p̂(y | x) = log p(y) + per_class − value, shape (K, N)."""
        return self.log_prior + self.per_class - torch.logsumexp(
            self.log_prior + self.per_class, 0)

    def as_dict(self) -> dict:
        """The per-point and per-class numbers (for reports)."""
        return {"value": self.value, "stderr": self.stderr, "per_class": self.per_class,
                "per_class_stderr": self.per_class_stderr, "method": self.method}


# ------------------------------------------------------------------ arguments
def _log_prior(log_py: torch.Tensor, num_points: int | None = None) -> torch.Tensor:
    """``log p(y)`` as (K, N) (or (K, 1) when N is unknown), checked to be normalised."""
    lp = torch.as_tensor(log_py, dtype=torch.float64)
    if lp.ndim == 1:
        lp = lp.unsqueeze(-1)
    if lp.ndim != 2 or lp.shape[0] < 2:
        raise PyrovaeError(f"log p(y): expected shape (K,) or (K, N) with K >= 2 classes, got "
                           f"{tuple(lp.shape)}")
    if torch.isnan(lp).any() or (torch.logsumexp(lp, 0) - 0).abs().max() > 1e-6:
        raise PyrovaeError("log p(y): expected log-probabilities over the classes (dim 0) "
                           "that sum to 1")
    if num_points is not None:
        if lp.shape[1] not in (1, num_points):
            raise PyrovaeError(f"log p(y): {lp.shape[1]} columns for {num_points} data points")
        lp = lp.expand(lp.shape[0], num_points)
    return lp


def _log_q(log_qy: torch.Tensor, num_classes: int, num_points: int) -> torch.Tensor:
    lq = torch.as_tensor(log_qy, dtype=torch.float64)
    if lq.shape != (num_classes, num_points):
        raise PyrovaeError(f"log q(y|x): expected shape (K, N) = ({num_classes}, {num_points}) "
                           f"(class first), got {tuple(lq.shape)}")
    if torch.isnan(lq).any() or (torch.logsumexp(lq, 0)).abs().max() > 1e-5:
        raise PyrovaeError("log q(y|x): expected log-probabilities over the classes (dim 0) "
                           "that sum to 1 for every point")
    return lq


def _class_target(class_targets: ClassTargets, y: int) -> Target:
    t = class_targets(y) if callable(class_targets) else class_targets[y]
    return as_target(t)


def _num_classes(class_targets: ClassTargets, log_py: torch.Tensor) -> int:
    k = _log_prior(log_py).shape[0]
    if not callable(class_targets) and len(class_targets) != k:
        raise PyrovaeError(f"{len(class_targets)} class targets for {k} classes of log p(y)")
    return k


def _weighted(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Σ_y q_y v_y over dim 0, with 0 · (anything) = 0 (a class q gives no mass to)."""
    return torch.where(q > 0, q * v, torch.zeros_like(v)).sum(0)


# ------------------------------------------------------------------ log p(x)
def combine_classes(
    log_py: torch.Tensor, log_px_given_y: torch.Tensor, stderr: torch.Tensor | None = None,
    *, method: str = "",
) -> EnumeratedEstimate:
    """log p(x) = logsumexp_y [log p(y) + log p(x | y)] from per-class values.

    Args:
        log_py: log p(y), (K,) or (K, N).
        log_px_given_y: log p(x | y) per class and point, (K, N) (exact or estimated).
        stderr: the standard errors of ``log_px_given_y`` (K, N); ``None``: exact (0).
        method: a label for the report.

    Returns:
        :class:`EnumeratedEstimate`; its stderr is the delta method,
        se² = Σ_y p̂(y|x)² se_y².

    References:
        Kingma et al. (2014), *Semi-Supervised Learning with Deep Generative Models*.
    """
    lpx = torch.as_tensor(log_px_given_y, dtype=torch.float64)
    if lpx.ndim != 2:
        raise PyrovaeError(f"log p(x|y): expected shape (K, N), got {tuple(lpx.shape)}")
    lp = _log_prior(log_py, lpx.shape[1])
    if lp.shape[0] != lpx.shape[0]:
        raise PyrovaeError(f"log p(x|y) has {lpx.shape[0]} classes, log p(y) {lp.shape[0]}")
    se = torch.zeros_like(lpx) if stderr is None else torch.as_tensor(
        stderr, dtype=torch.float64).expand_as(lpx)
    joint = lp + lpx
    value = torch.logsumexp(joint, 0)
    r = (joint - value).exp()
    total_se = _weighted(r.pow(2), se.pow(2)).sqrt()
    return EnumeratedEstimate(value, total_se, lpx, se, lp, method)


def enumerate_log_marginal(
    estimate_class: Callable[[int], Estimate | torch.Tensor], log_py: torch.Tensor,
    *, method: str = "",
) -> EnumeratedEstimate:
    """log p(x) with the discrete site summed out, from any per-class estimator.

    Args:
        estimate_class: ``y -> log p(x | y)`` per point, (N,), as an
            :class:`~pyrovae.posterior.exact.Estimate` (with its stderr) or a tensor
            (exact); called once for each y in 0..K−1.
        log_py: log p(y), (K,) or (K, N).
        method: a label for the report.

    Returns:
        :func:`combine_classes` of the K estimates.

    References:
        Kingma et al. (2014), *Semi-Supervised Learning with Deep Generative Models*.
    """
    k = _log_prior(log_py).shape[0]
    values, errors, methods = [], [], []
    for y in range(k):
        e = estimate_class(y)
        if isinstance(e, Estimate):
            values.append(e.value.double())
            errors.append(e.stderr.double())
            methods.append(e.method)
        else:
            values.append(torch.as_tensor(e, dtype=torch.float64))
            errors.append(torch.zeros_like(values[-1]))
            methods.append("exact")
    label = method or f"enumerated[{methods[0]}]"
    return combine_classes(log_py, torch.stack(values), torch.stack(errors), method=label)


def enumerated_log_marginal(
    class_targets: ClassTargets, log_py: torch.Tensor, x: torch.Tensor, *,
    method: str = "ais", num_samples: int = 1000, seed: int = 0, **ais_kwargs: Any,
) -> EnumeratedEstimate:
    """log p(x) = logsumexp_y [log p(y) + log p(x | y)] with log p(x | y) per class by
    AIS over z, IWAE over z, or exactly.

    Args:
        class_targets: one target per class, p(x, z | y) with its guide q(z | x, y)
            (anything :func:`~pyrovae.posterior.target.as_target` accepts alone: a
            Target, a VAE), as a sequence or a callable ``y -> target``.
        log_py: log p(y), (K,) or (K, N).
        x: the data, (N, ...).
        method: ``"ais"`` (:func:`pyrovae.posterior.ais.ais`, keyword arguments
            ``ais_kwargs``; seed ``seed + y`` for class y), ``"iwae"``
            (K = ``num_samples`` draws of q(z | x, y) per class) or ``"exact"`` (each
            target's closed form / grid, :func:`pyrovae.posterior.exact.log_marginal`).

    Returns:
        :class:`EnumeratedEstimate`.

    Raises:
        PyrovaeError: an unknown method, or shapes that disagree.

    References:
        Neal (2001), *Annealed importance sampling*; Burda et al. (2016), *Importance
        Weighted Autoencoders*; Kingma et al. (2014).
    """
    _num_classes(class_targets, log_py)
    if method not in ("ais", "iwae", "exact"):
        raise PyrovaeError(f"enumerated log p(x): method must be 'ais', 'iwae' or 'exact', "
                           f"got {method!r}")
    if ais_kwargs and method != "ais":
        raise PyrovaeError(f"enumerated log p(x): {sorted(ais_kwargs)} are AIS settings, "
                           f"not for method {method!r}")

    def one(y: int) -> Estimate:
        t = _class_target(class_targets, y)
        if method == "ais":
            from pyrovae.posterior.ais import ais

            return ais(t, x, seed=seed + y, **ais_kwargs).estimate()
        if method == "iwae":
            with seeded(seed + y, x):
                return iwae(t, x, num_samples=num_samples)
        return log_marginal(t, x, method="auto" if t.exact_log_marginal(x) is None else "exact")

    return enumerate_log_marginal(one, log_py)


# ------------------------------------------------------------------ the ELBO
def elbo_from_classes(
    log_py: torch.Tensor, log_qy: torch.Tensor, elbo_z: torch.Tensor,
    stderr: torch.Tensor | None = None, *, method: str = "",
) -> EnumeratedEstimate:
    """The ELBO with the discrete site summed out, from per-class ELBOs over z:
    Σ_y q(y|x) [log p(y) + ELBO_z(x, y) − log q(y|x)].

    Args:
        log_py: log p(y), (K,) or (K, N).
        log_qy: log q(y | x), (K, N), class first.
        elbo_z: ELBO_z(x, y) = E_q(z|x,y)[log p(x, z | y) − log q(z | x, y)], (K, N).
        stderr: Monte Carlo standard errors of ``elbo_z`` (K, N); ``None``: exact.

    Returns:
        :class:`EnumeratedEstimate` (stderr² = Σ_y q(y|x)² se_y²).

    References:
        Kingma et al. (2014), *Semi-Supervised Learning with Deep Generative Models*, eq. 7.
    """
    ez = torch.as_tensor(elbo_z, dtype=torch.float64)
    if ez.ndim != 2:
        raise PyrovaeError(f"ELBO_z: expected shape (K, N), got {tuple(ez.shape)}")
    lp = _log_prior(log_py, ez.shape[1])
    lq = _log_q(log_qy, *ez.shape)
    se = torch.zeros_like(ez) if stderr is None else torch.as_tensor(
        stderr, dtype=torch.float64).expand_as(ez)
    q = lq.exp()
    value = _weighted(q, lp + ez - lq)
    return EnumeratedEstimate(value, _weighted(q.pow(2), se.pow(2)).sqrt(), ez, se, lp, method)


def enumerated_elbo(
    class_targets: ClassTargets, log_py: torch.Tensor, log_qy: torch.Tensor,
    x: torch.Tensor, *, num_samples: int = 1000, seed: int = 0,
) -> EnumeratedEstimate:
    """Σ_y q(y|x) [log p(y) + ELBO_z(x, y) − log q(y|x)] with ELBO_z by Monte Carlo
    (``num_samples`` draws of q(z | x, y) per class; :func:`pyrovae.posterior.exact.elbo`).

    Args:
        class_targets: one target per class (see :func:`enumerated_log_marginal`).
        log_py: log p(y), (K,) or (K, N).
        log_qy: log q(y | x), (K, N).
        x: the data, (N, ...).

    Returns:
        :class:`EnumeratedEstimate` with ``per_class`` = ELBO_z(x, y).

    References:
        Kingma et al. (2014), eq. 7; Pyro's ``TraceEnum_ELBO`` computes the same sum.
    """
    k = _num_classes(class_targets, log_py)
    vals, errs = [], []
    for y in range(k):
        with seeded(seed + y, x):
            e = elbo(_class_target(class_targets, y), x, num_samples=num_samples)
        vals.append(e.value.double())
        errs.append(e.stderr.double())
    return elbo_from_classes(log_py, log_qy, torch.stack(vals), torch.stack(errs),
                             method=f"enumerated[mc[{num_samples}]]")


def enumerated_kl(log_qy: torch.Tensor, log_post_y: torch.Tensor,
                  kl_z: torch.Tensor) -> torch.Tensor:
    """KL(q(y, z | x) ‖ p(y, z | x)) per point, the chain rule of KL:
    Σ_y q(y|x) [log q(y|x) − log p(y|x) + KL(q(z|x,y) ‖ p(z|x,y))].

    Args:
        log_qy: log q(y | x), (K, N).
        log_post_y: log p(y | x), (K, N).
        kl_z: KL(q(z | x, y) ‖ p(z | x, y)) per class, (K, N).

    Returns:
        (N,) float64.

    References:
        Cover & Thomas (2006), *Elements of Information Theory*, thm. 2.5.3 (chain rule).
    """
    kz = torch.as_tensor(kl_z, dtype=torch.float64)
    lq = _log_q(log_qy, *kz.shape)
    lpost = torch.as_tensor(log_post_y, dtype=torch.float64).expand_as(kz)
    return _weighted(lq.exp(), lq - lpost + kz)


def check_enumerated_identity(
    class_targets: ClassTargets, log_py: torch.Tensor, log_qy: torch.Tensor,
    x: torch.Tensor, *, num_samples: int = 2000, sigmas: float = 4.0, seed: int = 0,
) -> dict:
    """log p(x) = ELBO + KL(q(y, z | x) ‖ p(y, z | x)) per point, every term on its own.

    log p(x | y) per class exactly (each target's closed form, or its grid when z has
    ≤ 2 dimensions); KL(q(z|x,y) ‖ p(z|x,y)) per class in closed form or on the grid
    (:func:`pyrovae.posterior.exact.kl_to_posterior`); log p(y | x) from them; the ELBO by
    Monte Carlo (:func:`enumerated_elbo`).  ``ok`` is True where abs(residual) ≤ ``sigmas``
    × the ELBO's standard error plus the quadrature error bounds (plus 1e-6).

    Returns:
        a dict of per-point tensors: ``log_px``, ``elbo``, ``elbo_stderr``, ``kl``,
        ``kl_y`` (the class part Σ q log q/p(y|x)), ``gap``, ``residual``, ``allowed``,
        ``ok``, and ``log_class_posterior`` (K, N).

    Raises:
        PyrovaeError: when a class has neither a closed form nor a grid.

    References:
        "The Intuitive VAE" (Break Yang, 2024); Kingma et al. (2014).
    """
    k = _num_classes(class_targets, log_py)
    lpx, lpx_err, kz, kz_err = [], [], [], []
    for y in range(k):
        t = _class_target(class_targets, y)
        exact = t.exact_log_marginal(x)
        lm = log_marginal(t, x, method="exact" if exact is not None else "grid")
        kl = kl_to_posterior(t, x)
        if kl is None:
            raise PyrovaeError(f"class {y}: KL(q(z|x,y) ‖ p(z|x,y)) is unavailable (no "
                               "Gaussian posterior, latent_dim > 2)")
        lpx.append(lm.value)
        lpx_err.append(lm.stderr)
        kz.append(kl.value)
        kz_err.append(kl.stderr)
    lp = combine_classes(log_py, torch.stack(lpx), torch.stack(lpx_err), method="exact")
    post = lp.log_class_posterior
    kz_t = torch.stack(kz)
    kl = enumerated_kl(log_qy, post, kz_t)
    lq = _log_q(log_qy, k, x.shape[0])
    kl_y = _weighted(lq.exp(), lq - post)
    el = enumerated_elbo(class_targets, log_py, log_qy, x, num_samples=num_samples, seed=seed)
    kl_err = _weighted(lq.exp(), torch.stack(kz_err))
    resid = lp.value - el.value - kl
    allow = sigmas * el.stderr + lp.stderr + kl_err + 1e-6
    return {"log_px": lp.value, "log_px_error": lp.stderr, "elbo": el.value,
            "elbo_stderr": el.stderr, "kl": kl, "kl_y": kl_y, "kl_error": kl_err,
            "gap": lp.value - el.value, "residual": resid, "allowed": allow,
            "ok": resid.abs() <= allow, "log_class_posterior": post}


# ------------------------------------------------------------------ calibration
@dataclass
class CalibrationResult:
    """Calibration of q(y | x) on labelled points: ECE against its null distribution."""

    ece: float
    threshold: float  #: the (1 − α) quantile of the ECE of a calibrated q, same probs
    p_value: float  #: fraction of the null ECEs at least as large as the observed one
    alpha: float
    num_bins: int
    kind: str
    num_points: int
    accuracy: float
    #: one row per bin (count, confidence, accuracy)
    reliability: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the ECE is at most the threshold (no evidence of miscalibration at α)."""
        return self.ece <= self.threshold

    def as_dict(self) -> dict:
        """A JSON-able summary."""
        return {"ece": self.ece, "threshold": self.threshold, "p_value": self.p_value,
                "alpha": self.alpha, "passed": self.passed, "num_bins": self.num_bins,
                "kind": self.kind, "num_points": self.num_points, "accuracy": self.accuracy,
                "reliability": self.reliability,
                "threshold_note": "the (1 - alpha) quantile of the ECE when the labels are "
                                  "redrawn from the predicted probabilities (consistency "
                                  "resampling): a calibrated q(y|x) exceeds it with "
                                  "probability alpha"}


def class_calibration(
    probs: Any, labels: Any, *, num_bins: int = 10, kind: str = "top", alpha: float = 0.01,
    num_resamples: int = 1000, seed: int = 0,
) -> CalibrationResult:
    """Is q(y | x) calibrated on points with known labels (simulated from the model, or
    held out)?  The ECE (:func:`expected_calibration_error`) and a pass/fail against a
    stated threshold: the (1 − ``alpha``) quantile of the ECE a *calibrated* predictor
    with the same probabilities would show, by consistency resampling (labels redrawn
    ỹ_i ~ Categorical(p_i), ``num_resamples`` times).  ECE is biased upwards at finite N;
    the resampled null carries the same bias, so the test holds its level at any N.

    Args:
        probs: q(y | x) per point, (N, K) (classification layout: point first).
        labels: the true classes (N,).
        num_bins: equal-width confidence bins.
        kind: ``"top"`` (confidence of the predicted class) or ``"classwise"``.
        alpha: the test's level.

    Returns:
        :class:`CalibrationResult` (``passed``, ``ece``, ``threshold``, ``p_value``,
        the reliability table).

    References:
        Guo et al. (2017), *On Calibration of Modern Neural Networks*; Bröcker & Smith
        (2007), *Increasing the reliability of reliability diagrams*.
    """
    p = as_probs(probs)
    y = class_labels(labels, p.shape)
    check_bins(num_bins, kind)
    if not 0 < alpha < 1:
        raise PyrovaeError(f"calibration alpha: expected a number in (0, 1), got {alpha}")
    if num_resamples < 10:
        raise PyrovaeError(f"calibration num_resamples: expected >= 10, got {num_resamples}")
    ece = float(calibration_errors(p, y.unsqueeze(0), num_bins, kind)[0])
    with seeded(seed):
        fake = torch.multinomial(p, num_resamples, replacement=True).T  # (R, N)
    null = calibration_errors(p, fake, num_bins, kind)
    threshold = float(torch.quantile(null, 1 - alpha))
    p_value = float((null >= ece - 1e-12).double().mean())
    accuracy, table = reliability_table(p, y, num_bins)
    return CalibrationResult(ece, threshold, p_value, alpha, num_bins, kind, p.shape[0],
                             accuracy, table)


# ------------------------------------------------------------------ SBC
@dataclass
class EnumeratedSBCResult:
    """SBC of a guide q(y | x) q(z | x, y): calibration for y, ranks for z."""

    calibration: CalibrationResult
    ranks: SBCResult

    @property
    def passed(self) -> bool:
        """Both the discrete site (calibration) and the continuous one (ranks) pass."""
        return self.calibration.passed and self.ranks.passed

    def as_dict(self) -> dict:
        """A JSON-able summary of both parts."""
        return {"passed": self.passed, "calibration": self.calibration.as_dict(),
                "ranks": self.ranks.as_dict()}


def enumerated_sbc(
    simulate: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    log_qy: Callable[[torch.Tensor], torch.Tensor],
    class_targets: ClassTargets,
    *, num_classes: int, num_sims: int = 500, num_draws: int = 99, alpha: float = 0.05,
    calibration_alpha: float = 0.01, num_bins: int = 10, kind: str = "top", seed: int = 0,
) -> EnumeratedSBCResult:
    """Simulation-based calibration of a guide q(y | x) q(z | x, y).

    (ỹ, z̃, x̃) ~ p (``simulate(n)`` returns labels (n,), z (n, d) and x (n, ...)); the
    discrete site: :func:`class_calibration` of q(y | x̃) (``log_qy(x)`` returns (K, N),
    class first) against ỹ; the continuous site: the rank of z̃ among ``num_draws``
    draws of q(z | x̃, ỹ) (the class-ỹ target's guide), uniform when q(z | x, y) is the
    exact p(z | x, y), tested by :func:`pyrovae.posterior.sbc.rank_test` at family-wise
    level ``alpha``.

    Returns:
        :class:`EnumeratedSBCResult`; ``passed`` when both parts pass.

    References:
        Talts et al. (2018), *Validating Bayesian inference algorithms with
        simulation-based calibration*; Guo et al. (2017); Bröcker & Smith (2007).
    """
    if num_sims < 10 or num_draws < 1:
        raise PyrovaeError(f"enumerated sbc: need num_sims >= 10 and num_draws >= 1, got "
                           f"{num_sims}, {num_draws}")
    with seeded(seed), torch.no_grad():
        y, z, x = simulate(num_sims)
        y = torch.as_tensor(y).long()
        if y.shape != (num_sims,) or (y < 0).any() or (y >= num_classes).any():
            raise PyrovaeError(f"simulate: expected {num_sims} labels in 0..{num_classes - 1}")
        lq = torch.as_tensor(log_qy(x), dtype=torch.float64)
        _log_q(lq, num_classes, num_sims)
        ranks = torch.zeros(z.shape, dtype=torch.long)
        labels = None
        for c in range(num_classes):
            m = y == c
            if not bool(m.any()):
                continue
            t = _class_target(class_targets, c)
            zq, _ = t.sample_guide(x[m], num_draws)
            ranks[m] = (zq < z[m]).sum(0).cpu()
            labels = labels or t.dimension_labels()
    cal = class_calibration(lq.exp().T, y, num_bins=num_bins, kind=kind,
                            alpha=calibration_alpha, seed=seed)
    return EnumeratedSBCResult(cal, rank_test(ranks.numpy(), num_draws, alpha=alpha, seed=seed,
                                              labels=labels))


# ------------------------------------------------------------------ any Pyro pair
@dataclass
class PairSplit:
    """A Pyro model/guide pair with one discrete latent site, split into one target per
    value of the site (:func:`split_pair`); ``targets[k]``, ``log_prior`` and
    ``log_guide`` plug into every function of this module."""

    site: str
    values: torch.Tensor  #: (K,) the site's values, in the order of the classes
    targets: list[PyroTarget]  #: p(x, z | y = values[k]) with guide q(z | x, y = values[k])
    log_prior: torch.Tensor  #: (K, N) log p(y = values[k]) per point
    log_guide: torch.Tensor | None  #: (K, N) log q(y = values[k] | x), or None (no guide)
    model: Callable | None = field(repr=False, default=None)
    guide: Callable | None = field(repr=False, default=None)
    kwargs: dict = field(repr=False, default_factory=dict)

    @property
    def num_classes(self) -> int:
        """K, the number of values of the discrete site."""
        return int(self.values.shape[0])

    def simulate(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` joint draws from the model (``poutine.uncondition``): the class index
        (n,), the continuous sites raveled (n, d) and x, shaped like the ``x`` the pair
        was split on (what :func:`enumerated_sbc` takes as ``simulate``)."""
        from pyro import poutine

        t0 = self.targets[0]
        x0 = t0._example
        template = x0[:1].expand(n, *x0.shape[1:]).clone()
        tr = poutine.trace(poutine.uncondition(self.model)).get_trace(template, **self.kwargs)
        v = tr.nodes[self.site]["value"].reshape(n)
        y = (v.unsqueeze(-1) == self.values.to(v)).double().argmax(-1)
        obs = t0._observed
        if len(obs) != 1:
            raise PyrovaeError(f"simulating needs exactly one observed site, the model has "
                               f"{obs}")
        x = tr.nodes[obs[0]]["value"].reshape(n, *x0.shape[1:]).to(x0.dtype)
        return y, t0._ravel_trace(tr, 1, n)[0], x

    def log_guide_fn(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y | x) for new data ``x``, (K, N) (what :func:`enumerated_sbc` takes as
        ``log_qy``)."""
        if self.guide is None:
            raise PyrovaeError("this pair has no guide: q(y|x) is unknown")
        return _site_log_probs(self.guide, x, self.site, self.values, self.kwargs)


def _site_log_probs(fn: Callable, x: torch.Tensor, site: str, values: torch.Tensor,
                    kwargs: Mapping[str, Any]) -> torch.Tensor:
    """log fn's site ``site`` at every value, (K, N), from one trace of ``fn(x)``."""
    from pyro import poutine

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        tr = poutine.trace(fn).get_trace(x, **kwargs)
    if site not in tr.nodes:
        raise PyrovaeError(f"the guide has no site {site!r} (q(y|x) is needed)")
    d = tr.nodes[site]["fn"]
    n = x.shape[0]
    v = values.reshape(-1, *([1] * len(d.batch_shape))).to(
        tr.nodes[site]["value"].dtype)
    lp = d.log_prob(v)
    return lp.reshape(len(values), -1, n).sum(1).double()


def split_pair(model: Callable, guide: Callable | None, x: torch.Tensor, *,
               site: str | None = None,
               model_kwargs: Mapping[str, Any] | None = None) -> PairSplit:
    """Split any Pyro ``model(x)`` / ``guide(x)`` pair with one discrete latent site into
    one :class:`~pyrovae.posterior.target.PyroTarget` per value of the site.

    For each value v of y the model and the guide are run with y = v fixed and hidden from
    the trace (``poutine.condition`` inside ``poutine.block``), so the target scores
    p(x, z | y = v) = p(z | y) p(x | y, z) and its guide q(z | x, y = v); log p(y) and
    log q(y | x) are read from one trace of each.  The discrete site is found from a trace
    of the model (:attr:`~pyrovae.posterior.target.PyroTarget.sites`) unless ``site``
    names it; its values come from the distribution's ``enumerate_support``.

    Args:
        model, guide: the Pyro pair, called ``model(x, **model_kwargs)``.
        x: the data the pair is split on (the log-probabilities are per row of it).
        site: the discrete site's name (default: the model's only discrete site).

    Returns:
        :class:`PairSplit`.

    Raises:
        PyrovaeError: no discrete site, several, or one without a finite support.

    References:
        Obermeyer et al. (2019), *Tensor Variable Elimination for Plated Factor Graphs*
        (what ``TraceEnum_ELBO`` sums; this split sums the same terms one class at a time).
    """
    from pyro import poutine

    kwargs = dict(model_kwargs or {})
    whole = PyroTarget(model, guide, example=x, model_kwargs=kwargs)
    discrete = [s for s in whole.sites.values() if s.discrete]
    if site is None:
        if len(discrete) != 1:
            raise PyrovaeError(f"split_pair: expected exactly one discrete latent site, the "
                               f"model has {[s.name for s in discrete]}; name it with site=")
        site = discrete[0].name
    elif site not in whole.sites or not whole.sites[site].discrete:
        raise PyrovaeError(f"split_pair: {site!r} is not a discrete latent site of the model "
                           f"(its latent sites: {list(whole.sites)})")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        tr = poutine.trace(model).get_trace(x, **kwargs)
    fn = tr.nodes[site]["fn"]
    try:
        values = fn.enumerate_support(expand=False).reshape(-1)
    except (NotImplementedError, RuntimeError):
        raise PyrovaeError(f"split_pair: site {site!r} has no enumerable support") from None

    def fixed(fn: Callable, v: torch.Tensor) -> Callable:
        def run(xx, *args, **kw):  # the value repeated for every row of the data given
            m = xx.shape[0] if xx is not None else int(kw.get("batch_size", 1))
            data = {site: v.expand(m)}
            return poutine.block(poutine.condition(fn, data=data), hide=[site])(xx, *args, **kw)
        return run

    targets = [PyroTarget(fixed(model, v), None if guide is None else fixed(guide, v),
                          example=x, model_kwargs=kwargs) for v in values]
    log_prior = _site_log_probs(model, x, site, values, kwargs)
    log_guide = None if guide is None else _site_log_probs(guide, x, site, values, kwargs)
    return PairSplit(site, values, targets, log_prior, log_guide, model, guide, kwargs)
