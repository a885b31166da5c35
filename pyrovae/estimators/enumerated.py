"""The ELBO and the importance weights of a model whose class label is a discrete
latent, summed out exactly (the M2 kind, :mod:`pyrovae.model.m2`).

Labelled example (x, y)::

    L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) − KL(q(z|x,y) ‖ p(z))

Unlabelled example x, the label enumerated (all K classes in one batched pass)::

    U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x))
         = Σ_y q(y|x) [E_q[log p(x|y,z)] − KL_z(x, y)] − KL(q(y|x) ‖ p(y))

The terms reported: ``reconstruction`` (Σ_y q(y|x) E_q log p(x|y,z) for unlabelled
rows), ``kl`` = ``kl/z`` + ``kl/y`` where ``kl/y`` is KL(q(y|x) ‖ p(y)) for unlabelled
rows and −log p(y) (= KL(δ_y ‖ p(y))) for labelled ones, so reconstruction − kl is the
summed bound; and ``classify``, Σ log q(y|x) over the labelled rows (weighted by α in
the loss).  Drawing z in the order the guide does (labelled rows first, then one draw per
class and unlabelled row), the loss equals Pyro's ``TraceEnum_ELBO`` on the same draws.

Importance weights for log p(x) = log Σ_y p(y) p(x | y): K draws of z per class from
q(z | x, y) (stratified over classes), log w_{y,k} = log C + log p(y) + log p(x, z_{y,k} | y)
− log q(z_{y,k} | x, y); their mean over all C·K weights is an unbiased estimate of p(x),
so the IWAE bound, ESS and k̂ of :mod:`pyrovae.estimators.importance` apply unchanged.

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models* (eqs. 6–9).
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.estimators.elbo import MinibatchLoss, draw
from pyrovae.estimators.kl import kl_term

__all__ = ["LabelTerms", "enumerated_log_weights", "label_minibatch_loss", "label_terms"]


@dataclass(frozen=True)
class LabelTerms:
    """Per-example terms of an M2 minibatch (shape (B,), differentiable)."""

    reconstruction: torch.Tensor
    kl_z: torch.Tensor
    kl_y: torch.Tensor
    classify: torch.Tensor
    labelled: torch.Tensor
    kl_closed_form: bool

    @property
    def kl(self) -> torch.Tensor:
        """kl/z + kl/y per example."""
        return self.kl_z + self.kl_y

    def elbo(self, kl_weight: float = 1.0) -> torch.Tensor:
        """L(x, y) or U(x) per example, with β on the KL of z."""
        return self.reconstruction - kl_weight * self.kl_z - self.kl_y


def label_terms(vae: Any, x: torch.Tensor, y: torch.Tensor | None = None, *,
                num_particles: int = 1, kl: str = "mc") -> LabelTerms:
    """The terms of each row of ``x`` (labels ``y``, −1 = unlabelled; ``None``: all
    unlabelled) with the label enumerated where it is latent; rows keep their order."""
    x = vae.as_event(x)
    n = x.shape[0]
    if y is None:
        y = torch.full((n,), -1, dtype=torch.long, device=x.device)
    y = vae.check_labels(y).to(x.device)
    lab = y >= 0
    zeros = x.new_zeros(n)
    rec, kl_z, kl_y, cls = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
    prior_z, prior_y = vae.prior_dist(), vae.label_prior()
    closed = True
    if bool(lab.any()):
        xl, yl = x[lab], y[lab]
        q = vae.encode(xl, yl)
        z = draw(q, num_particles)
        kz, closed_l = kl_term(q, prior_z, z, kl)
        log_px = vae.decode(z, xl, y=yl).log_prob(xl)
        rec = rec.index_put((lab,), log_px.mean(0) if num_particles > 1 else log_px)
        kl_z = kl_z.index_put((lab,), kz)
        kl_y = kl_y.index_put((lab,), -prior_y.log_prob(yl))
        cls = cls.index_put((lab,), vae.label_posterior(xl).log_prob(yl))
        closed &= closed_l
    if not bool(lab.all()):
        xu = x[~lab]
        qy = vae.label_posterior(xu)
        probs = qy.probs.transpose(0, 1)  # (C, nu)
        classes = torch.arange(vae.classes, device=x.device).unsqueeze(-1)  # (C, 1)
        q = vae.encode_with(xu, classes)  # batch (C, nu)
        z = draw(q, num_particles)
        kz, closed_u = kl_term(q, prior_z, z, kl)  # (C, nu)
        labels = classes.expand(q.batch_shape)
        log_px = vae.decode(z, xu, y=labels).log_prob(xu)
        log_px = log_px.mean(0) if num_particles > 1 else log_px
        rec = rec.index_put((~lab,), (probs * log_px).sum(0))
        kl_z = kl_z.index_put((~lab,), (probs * kz).sum(0))
        kl_y = kl_y.index_put((~lab,), torch.distributions.kl_divergence(
            qy, prior_y.expand(qy.batch_shape)))
        closed &= closed_u
    return LabelTerms(rec, kl_z, kl_y, cls, lab, closed)


def label_minibatch_loss(vae: Any, x: torch.Tensor, y: torch.Tensor | None, num_data: int,
                         kl_weight: float, *, num_particles: int = 1,
                         kl: str = "mc") -> MinibatchLoss:
    """−(N/B) Σ_i [bound_i + α·1{labelled} log q(y_i|x_i)]: the M2 objective of a
    minibatch of B rows out of N (Kingma et al. 2014, eq. 9)."""
    t = label_terms(vae, x, y, num_particles=num_particles, kl=kl)
    objective = t.elbo(kl_weight).sum() + vae.classify_weight * t.classify.sum()
    loss = -objective * (num_data / x.shape[0])
    terms = {"reconstruction": t.reconstruction.detach().sum(), "kl": t.kl.detach().sum(),
             "kl/z": t.kl_z.detach().sum(), "kl/y": t.kl_y.detach().sum(),
             "classify": t.classify.detach().sum()}
    return MinibatchLoss(loss, terms, t.kl_closed_form)


def enumerated_log_weights(vae: Any, x: torch.Tensor, num_samples: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_w, reconstruction, kl)``: importance log-weights ``(C·num_samples, n)`` of
    log p(x) with the label summed out (stratified: ``num_samples`` draws of z per
    class), and the unlabelled bound's terms per example (Monte Carlo over the same
    draws), so that ``reconstruction − kl`` is U(x)."""
    x = vae.as_event(x)
    qy = vae.label_posterior(x)
    prior_z, prior_y = vae.prior_dist(), vae.label_prior()
    C = vae.classes
    classes = torch.arange(C, device=x.device).unsqueeze(-1)
    q = vae.encode_with(x, classes)  # (C, n)
    z = q.sample((num_samples,))  # (S, C, n, d)
    labels = classes.expand(q.batch_shape)
    log_px = vae.decode(z, x, y=labels).log_prob(x)  # (S, C, n)
    ratio = q.log_prob(z) - prior_z.log_prob(z)
    log_py = prior_y.logits.log_softmax(-1).unsqueeze(-1)  # (C, 1)
    lw = math.log(C) + log_py + log_px - ratio  # (S, C, n)
    probs = qy.probs.transpose(0, 1)  # (C, n)
    rec = (probs * log_px.mean(0)).sum(0)
    kl = (probs * ratio.mean(0)).sum(0) + torch.distributions.kl_divergence(
        qy, prior_y.expand(qy.batch_shape))
    return lw.reshape(num_samples * C, -1), rec, kl
