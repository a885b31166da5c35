"""KL(q ‖ p) between a guide and a prior: in closed form where one is registered,
else by Monte Carlo on the guide's draws.

The one place in pyrovae that decides "closed form or Monte Carlo": training
objectives, the DDP shard loss, :func:`~pyrovae.estimators.evaluate.evaluate` and the
free-bits term all call :func:`closed_form_kl_or_none` / :func:`kl_term`.

Per data point i, with draws z_{s,i} ~ q(z|x_i), s = 1..S::

    closed form:  KL_i = KL(q(z|x_i) ‖ p(z))                 (torch.distributions.kl)
    Monte Carlo:  KL_i ≈ (1/S) Σ_s [log q(z_{s,i}|x_i) − log p(z_{s,i})]

The Monte Carlo term is Pyro's ``Trace_ELBO`` KL part; the closed form where
registered, Monte Carlo otherwise, is Pyro's ``TraceMeanField_ELBO``.

References:
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes* (the analytic KL of
    Gaussians, their eq. 10).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.distributions import Distribution, kl_divergence

from pyrovae.errors import PyrovaeError

#: How the KL term is computed: ``auto`` closed form where registered else Monte Carlo,
#: ``analytic`` closed form or an error, ``mc`` always Monte Carlo.
KLKind = Literal["auto", "analytic", "mc"]
KL_KINDS: tuple[str, ...] = ("auto", "analytic", "mc")


def closed_form_kl_or_none(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """KL(q ‖ p) per batch element of ``q`` where torch registers a closed form, else ``None``.

    ``p`` (e.g. the prior, batch shape ()) is expanded to ``q``'s batch shape first.
    """
    try:
        if p.batch_shape != q.batch_shape:
            p = p.expand(q.batch_shape)
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


def mc_kl(q: Distribution, p: Distribution, z: torch.Tensor) -> torch.Tensor:
    """Monte Carlo KL per batch element: mean over the leading sample dimensions of
    log q(z) − log p(z) (``z`` of shape (*sample, *batch, *event))."""
    ratio = q.log_prob(z) - p.log_prob(z)
    extra = ratio.dim() - len(q.batch_shape)
    return ratio.mean(tuple(range(extra))) if extra > 0 else ratio


def kl_term(
    q: Distribution, p: Distribution, z: torch.Tensor, kind: str = "auto"
) -> tuple[torch.Tensor, bool]:
    """``(KL per batch element, closed_form)`` for the estimator ``kind`` (see :data:`KLKind`).

    ``z`` are the draws from ``q`` the Monte Carlo estimate uses (ignored when the
    closed form is used).  ``analytic`` without a registered closed form raises
    :class:`~pyrovae.errors.PyrovaeError`.
    """
    if kind not in KL_KINDS:
        raise PyrovaeError(f"kl: expected one of {', '.join(KL_KINDS)}, got {kind!r}")
    if kind != "mc":
        kl = closed_form_kl_or_none(q, p)
        if kl is not None:
            return kl, True
        if kind == "analytic":
            raise PyrovaeError(
                f"kl: 'analytic' needs a closed-form KL({type(q).__name__} ‖ "
                f"{type(p).__name__}); none is registered (use kl: auto or mc)"
            )
    return mc_kl(q, p, z), False
