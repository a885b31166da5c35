"""The ELBO and the importance weights of a VAE with several stochastic layers (the
``hierarchical`` kind, :mod:`pyrovae.model.hierarchical`).

With the bottom-up guide q(z_1 | x) ∏_l q(z_{l+1} | z_l) and the model
p(z_L) ∏_l p(z_l | z_{l+1}) p(x | z_1), one draw (z_1, …, z_L) ~ q per particle gives

    reconstruction   R(x)      = log p(x | z_1)
    KL of site l     KL_l(x)   = log q(z_l | z_{l−1} or x) − log p(z_l | z_{l+1})
                                 (z_{L+1} absent: log p(z_L), the top prior)
    ELBO_β(x)        = R(x) − β Σ_l KL_l(x)

each averaged over the particles.  The KL terms are Monte Carlo (per site, since
q(z_{l+1} | z_l) and p(z_l | z_{l+1}) are conditional on other sites' draws they have no
closed form); their sum is a Monte Carlo estimate of KL(q(z | x) ‖ p(z)) over all sites.
The minibatch loss −(N/B) Σ_i ELBO_β(x_i) draws z_1, then z_2, … in the order the guide
does, so it equals Pyro's ``Trace_ELBO`` on the same draws (value and gradients;
``tests/model/test_hierarchical.py``).  The record of terms: ``reconstruction``,
``kl`` (the sum) and ``kl/z1`` … ``kl/zL``.  β (the KL weight) scales every site's term;
free bits (λ > 0, fast engine only) floor every dimension of every site
(:func:`layer_shard_loss`).

Importance weights of log p(x) draw (z_1, …, z_L) jointly from the guide:
log w = log p(x, z_1, …, z_L) − log q(z_1, …, z_L | x); their mean is an unbiased
estimate of p(x), so the IWAE bound, ESS and k̂ of :mod:`pyrovae.estimators.importance`
apply unchanged.  The same weights, reparameterised (:func:`layer_particle_weights`),
train the kind with the Rényi bound (``renyi_elbo``; α = 0 is Burda et al.'s two-layer
IWAE): per example L_α = 1/(1−α) · log (1/K) Σ_k exp((1−α) log w_k).

References:
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders* (§5, the
    two-stochastic-layer model and its bounds).
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*.
    Kingma et al. (2016), *Improved Variational Inference with Inverse Autoregressive
    Flow* (free bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.elbo import MinibatchLoss, draw, log_likelihood

__all__ = ["LayerTerms", "layer_log_weights", "layer_minibatch_loss", "layer_particle_weights",
           "layer_shard_loss"]


@dataclass(frozen=True)
class LayerTerms:
    """Per-example terms of a hierarchical minibatch (shape (B,), differentiable):
    ``reconstruction`` and ``kl`` per site name (``{"z1": …, "z2": …}``)."""

    reconstruction: torch.Tensor
    kl_sites: dict[str, torch.Tensor]

    @property
    def kl(self) -> torch.Tensor:
        """Σ_l KL_l per example."""
        return sum(self.kl_sites.values())  # type: ignore[return-value]

    def elbo(self, kl_weight: float = 1.0) -> torch.Tensor:
        """R − β Σ_l KL_l per example."""
        return self.reconstruction - kl_weight * self.kl


def _draws(vae: Any, x: torch.Tensor, sample: Any, q1: Any = None,
           rows: slice | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """One pass down the guide and up the model: ``log p(x | z_1)`` (shape
    ``(*particles, n)``) and, per site, ``(q, p, z)``: its guide and model distributions
    and its draw; ``sample(q)`` draws z_1 from ``q1`` (default the encoder's
    q(z_1 | x)), the upper sites are reparameterised.

    ``rows``: ``q1`` covers a larger batch (data-parallel training: the whole global
    minibatch, so that every row gets the single-process draws at every layer) and
    ``x`` is its rows ``rows``; the sites stay over the whole batch (the caller keeps
    these rows of their terms) and ``log p(x | z_1)`` is of these rows."""
    names = vae.site_names
    q = vae.encode(x) if q1 is None else q1
    z = sample(q)
    zs, qs = [z], [q]
    for layer in range(1, len(names)):
        q = vae.layer_guide(layer, zs[-1])
        zs.append(q.rsample() if q.has_rsample else q.sample())
        qs.append(q)
    ps = [vae.layer_prior(layer, zs[layer]) for layer in range(1, len(names))]
    ps.append(vae.prior_dist())
    z1 = zs[0] if rows is None else zs[0][..., rows, :]
    return log_likelihood(vae, z1, x), {name: (qs[i], ps[i], zs[i])
                                        for i, name in enumerate(names)}


def _kept(t: torch.Tensor, rows: slice | None, event: int = 0) -> torch.Tensor:
    """The rows ``rows`` of a per-example tensor (batch dimension −1, or −2 with one
    event dimension)."""
    if rows is None:
        return t
    return t[..., rows, :] if event else t[..., rows]


def _per_dim_log_prob(d: Any, z: torch.Tensor, what: str) -> torch.Tensor:
    """log-density per latent dimension of a factorised distribution (free bits)."""
    if isinstance(d, torch.distributions.Independent) and d.reinterpreted_batch_ndims == 1 \
            and not isinstance(d.base_dist, (torch.distributions.Independent,
                                              torch.distributions.TransformedDistribution)):
        return d.base_dist.log_prob(z)
    raise PyrovaeError(f"objective.free_bits: needs {what} that factorises over latent "
                       f"dimensions, got {type(d).__name__}")


def layer_shard_loss(vae: Any, q1: Any, x: torch.Tensor, y: torch.Tensor | None,
                     rows: slice | None, num_data: int, batch_size: int, kl_weight: float,
                     total: Any, *, num_particles: int = 1, kl: str = "mc",
                     free_bits: float = 0.0) -> MinibatchLoss:
    """The share of the rows ``rows`` of a global minibatch of ``batch_size`` rows in its
    loss −(N/B) Σ_i ELBO_β(x_i) (data-parallel training; see
    :meth:`pyrovae.training.objectives.Objective.shard_loss`): ``q1`` is q(z_1 | x) over
    the whole minibatch, ``x`` its rows ``rows``.  With ``rows = None``, ``q1 =
    None`` and ``batch_size = len(x)`` it is :func:`layer_minibatch_loss`.

    ``free_bits`` λ > 0: the KL part is N·β·Σ_l Σ_j max(λ, KL_{l,j}), KL_{l,j} the
    minibatch-mean Monte Carlo KL of dimension j of site l (Kingma et al. 2016, one
    group per dimension of every layer; summed over the ranks by ``total`` before the
    floor): a dimension under λ nats gets no gradient from its KL, so the upper layers
    are not pushed onto their prior.  Needs a guide and a top prior that factorise over
    dimensions (the layers between are diagonal Gaussians)."""
    if y is not None:
        raise PyrovaeError("y: model: hierarchical is unconditional (no context); pass no y")
    if kl == "analytic":
        raise PyrovaeError("objective.kl: 'analytic' is not available for model: hierarchical "
                           "(its KL terms are conditional on other sites: Monte Carlo; use "
                           "auto or mc)")
    x = vae.as_event(x)
    log_px, sites = _draws(vae, x, lambda q: draw(q, num_particles), q1, rows)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return t.mean(0) if num_particles > 1 else t

    rec = mean(log_px)
    kl_sites: dict[str, torch.Tensor] = {}
    if free_bits > 0:
        shares = []
        for name, (q, p, z) in sites.items():
            per_dim = _kept(_per_dim_log_prob(q, z, "a guide q(z1|x)")
                            - _per_dim_log_prob(p, z, "a top prior p(zL)"), rows, event=1)
            kl_sites[name] = mean(per_dim.sum(-1))
            draws = per_dim.shape[0] if num_particles > 1 else 1
            shares.append(per_dim.reshape(-1, per_dim.shape[-1]).sum(0) / (draws * batch_size))
        share = torch.cat(shares)
        above = total(share.detach().clone()) > free_bits  # the batch mean KL_{l,j} > λ
        floored = torch.where(above, share, free_bits * x.shape[0] / batch_size).sum()
        loss = -(rec.sum() * (num_data / batch_size) - kl_weight * floored * num_data)
        t = LayerTerms(rec, kl_sites)
    else:
        for name, (q, p, z) in sites.items():
            kl_sites[name] = mean(_kept(q.log_prob(z) - p.log_prob(z), rows))
        t = LayerTerms(rec, kl_sites)
        loss = -t.elbo(kl_weight).sum() * (num_data / batch_size)
    terms = {"reconstruction": t.reconstruction.detach().sum(), "kl": t.kl.detach().sum()}
    terms.update({f"kl/{name}": v.detach().sum() for name, v in t.kl_sites.items()})
    return MinibatchLoss(loss, terms, False)


def layer_minibatch_loss(vae: Any, x: torch.Tensor, y: torch.Tensor | None, num_data: int,
                         kl_weight: float, *, num_particles: int = 1, kl: str = "mc",
                         free_bits: float = 0.0) -> MinibatchLoss:
    """−(N/B) Σ_i ELBO_β(x_i): the loss of a minibatch of B rows out of N; equal to
    Pyro's ``Trace_ELBO`` on the same draws.  The KL terms are Monte Carlo whatever
    ``kl`` says (``"analytic"`` is refused: the conditional sites have no closed form).
    ``free_bits`` λ > 0: the KL part is N·β·Σ_l Σ_j max(λ, KL_{l,j})
    (:func:`layer_shard_loss`; the recorded terms stay the plain Monte Carlo KLs)."""
    return layer_shard_loss(vae, None, x, y, None, num_data, len(x), kl_weight,
                            lambda t: t, num_particles=num_particles, kl=kl,
                            free_bits=free_bits)


def _joint_weights(vae: Any, x: torch.Tensor, sample: Any, q1: Any = None,
                   rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x | z_1), Σ_l [log q(z_l | ·) − log p(z_l | ·)])`` per draw, shape
    ``(S, n)``: the two parts of log w = log p(x, z_1, …, z_L) − log q(z_1, …, z_L | x),
    with z_1 drawn by ``sample(q)`` (``(S,)`` draws) from ``q1`` (default the
    encoder's) and the upper sites after it (``rows``: as in :func:`_draws`)."""
    log_px, sites = _draws(vae, vae.as_event(x), sample, q1, rows)
    ratio = sum(_kept(q.log_prob(z) - p.log_prob(z), rows) for q, p, z in sites.values())
    return log_px, ratio  # type: ignore[return-value]


def layer_particle_weights(vae: Any, x: torch.Tensor, num_particles: int, *,
                           guide: Any = None, rows: slice | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x | z_1), log q(z | x) − log p(z))``, each ``(K, n)``, from K
    reparameterised draws of the guide (differentiable): the importance log-weights of
    :func:`layer_log_weights`, log w_k = log p(x | z_1^k) − (log q − log p)(z^k), with
    gradients, for the Rényi/IWAE objectives (Burda et al. 2016, §5).  The draws come in
    the order of Pyro's vectorised particles (all K of z_1, then all K of z_2, …), so the
    bound equals ``RenyiELBO(vectorize_particles=True)`` on the same draws.

    ``guide``: a q(z_1) per row (batch ``(n,)``) drawn from in place of the encoder's
    q(z_1 | x), the upper layers' q(z_{l+1} | z_l) kept (the per-point q* of the
    amortization gap, :func:`pyrovae.posterior.amortization.amortization_gap`), or over
    a whole global minibatch of which ``x`` is the rows ``rows`` (data-parallel
    training: the weights of these rows, drawn as one process draws them)."""
    return _joint_weights(vae, x, lambda q: q.rsample((num_particles,)), guide, rows)


def layer_log_weights(vae: Any, x: torch.Tensor, num_samples: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_w, reconstruction, kl)``: importance log-weights ``(num_samples, n)`` of
    log p(x) with (z_1, …, z_L) drawn jointly from the guide, and the ELBO's terms per
    example (Monte Carlo over the same draws), so that ``reconstruction − kl`` is the
    ELBO estimate."""
    log_px, ratio = _joint_weights(vae, x, lambda q: q.sample((num_samples,)))
    return log_px - ratio, log_px.mean(0), ratio.mean(0)
