"""Annealed importance sampling (AIS) for log p_θ(x) at any latent dimension.

For one data point x, AIS moves a population of chains through a sequence of
unnormalised densities between a normalised start π₀(z) and the joint
p_θ(x, z) = p(z) p_θ(x|z), whose normaliser is p_θ(x)::

    f_β(z) = π₀(z)^(1−β) · p_θ(x, z)^β,      0 = β₀ < β₁ < … < β_T = 1.

Each chain starts at z₀ ~ π₀ and accumulates the log-weight

    log w = Σₜ (βₜ − βₜ₋₁) [log p_θ(x, zₜ₋₁) − log π₀(zₜ₋₁)],

moving zₜ₋₁ → zₜ with a Markov kernel that leaves f_βₜ invariant (here:
Hamiltonian Monte Carlo with a few leapfrog steps).  Then E[w] = p_θ(x) exactly
(Neal 2001), so ``log mean(w)`` over chains is a stochastic *lower* bound of
log p_θ(x) (Jensen) that becomes exact as T grows.  The start π₀ is the prior p(z)
(``start="prior"``, the classic choice of Wu et al. 2017) or the amortised guide
q_φ(z|x) (``start="guide"``: far fewer intermediate distributions for the same
accuracy when q is close to p(z|x); when q is much narrower than a curved posterior
the weights are heavy-tailed and the prior with more distributions is safer, which
BDMC on simulated data reveals).

Details:

* schedules β (:data:`SCHEDULES`): ``sigmoid`` (Wu et al. 2017: βₜ ∝ σ(δ(2t/T − 1)),
  rescaled to [0, 1], δ = 4), ``geometric`` (log-spaced from 1e-4) and ``linear``;
* HMC step sizes are adapted *per data point and per intermediate distribution*
  toward ``target_accept`` from the acceptance rate averaged over the chains (as in
  Wu et al. 2017); a few warm-up transitions at β₀ (which leave π₀ invariant) set
  the first step size.  Adapting from the chains' own history is the standard
  practice, but it makes the kernels depend on the run they weight, so E[w] = p_θ(x)
  no longer holds exactly; :func:`ais` with ``step_sizes=`` given runs with fixed
  kernels (BDMC's reverse chains do, see :mod:`pyrovae.posterior.bdmc`);
* ``frozen=True`` is the *two-round* mode for certified numbers: a first run adapts
  the step sizes (and records the diagonal mass matrix), then a fresh run with a new
  seed derived from ``seed`` (:func:`frozen_seed`) anneals with those kernels frozen.
  Conditionally on the first run every kernel is fixed in advance and leaves its f_βₜ
  invariant, so the second run's weights satisfy E[w] = p_θ(x) exactly (Neal 2001) and
  ``log mean(w)`` is a stochastic lower bound in the strict sense; the result's
  ``mode`` says ``"frozen"`` (``"adaptive"``: one adapting run; ``"fixed"``: the
  caller's ``step_sizes``);
* constrained latents (a toy's support) are sampled in the unconstrained space
  u = T⁻¹(z), with log|det ∂z/∂u| added to both π₀ and the joint;
* all chains × data points move at once (a chunk of ``chunk_size`` points at a
  time, so memory is bounded), and a run is reproducible for a ``seed``: the
  random stream is forked, seeded, and the caller's global stream is untouched;
* per point it returns the estimate, its Monte Carlo standard error across chains
  (delta method on the mean weight), the effective sample size (Σw)²/Σw² of the
  final weights and the mean HMC acceptance rate.

References:
    Neal (2001), *Annealed importance sampling*.
    Wu, Burda, Salakhutdinov & Grosse (2017), *On the quantitative analysis of
    decoder-based generative models*.
    Grosse, Ghahramani & Adams (2015), *Sandwiching the marginal likelihood using
    bidirectional Monte Carlo*.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.distributions import biject_to, constraints

from pyrovae.errors import PyrovaeError
from pyrovae.posterior.exact import Estimate, as_mvn, iwae_from_log_weights
from pyrovae.posterior.psis import ess
from pyrovae.posterior.target import Target, as_target
from pyrovae.progress import expect
from pyrovae.randomness import seeded


def _sigmoid_schedule(num_steps: int, delta: float = 4.0) -> torch.Tensor:
    s = torch.sigmoid(delta * (2 * torch.arange(num_steps + 1, dtype=torch.float64)
                               / num_steps - 1))
    return (s - s[0]) / (s[-1] - s[0])


def _geometric_schedule(num_steps: int) -> torch.Tensor:
    b = torch.logspace(-4, 0, num_steps, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), b])


def _linear_schedule(num_steps: int) -> torch.Tensor:
    return torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)


#: Annealing schedules: name -> (T -> β₀..β_T, increasing from 0 to 1).
SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "sigmoid": _sigmoid_schedule,
    "geometric": _geometric_schedule,
    "linear": _linear_schedule,
}


def schedule(name: str, num_steps: int) -> torch.Tensor:
    """β₀ = 0 < … < β_T = 1 for ``num_steps`` = T intermediate distributions."""
    if name not in SCHEDULES:
        raise PyrovaeError(f"ais schedule: expected one of {sorted(SCHEDULES)}, got {name!r}")
    if num_steps < 1:
        raise PyrovaeError(f"ais num_steps: expected a positive integer, got {num_steps}")
    return SCHEDULES[name](num_steps)


@dataclass
class AISResult:
    """Per-point AIS output (N data points, C chains, T intermediate distributions)."""

    log_px: torch.Tensor  #: (N,) log mean_c w_c
    stderr: torch.Tensor  #: (N,) Monte Carlo standard error across chains
    ess: torch.Tensor  #: (N,) (Σw)²/Σw² of the final weights, in [1, C]
    acceptance: torch.Tensor  #: (N,) mean HMC acceptance rate
    acceptance_per_step: torch.Tensor  #: (T,) mean over chains and points
    step_size: torch.Tensor  #: (T + 1, N) HMC step size used at each β
    log_weights: torch.Tensor  #: (C, N)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    final_z: torch.Tensor | None = None  #: (C, N, d), when asked for
    #: how the kernels were set, one of "adaptive" (adapted during this run), "fixed" (the
    #: caller's step sizes) or "frozen" (two rounds, adapted in a first run, frozen here)
    mode: str = "adaptive"
    inv_mass: torch.Tensor | None = None  #: (N, d) diagonal inverse mass, when preconditioned

    def estimate(self) -> Estimate:
        """log p(x) and its standard error as an :class:`~pyrovae.posterior.exact.Estimate`."""
        s = self.settings
        name = "ais" if self.mode == "adaptive" else f"ais-{self.mode}"
        return Estimate(self.log_px, self.stderr,
                        f"{name}[{s.get('start')},T={s.get('num_steps')},C={s.get('num_chains')}]")

    def as_dict(self) -> dict:
        """The per-point results and settings as a dict (for reports)."""
        return {
            "log_px": self.log_px, "stderr": self.stderr, "ess": self.ess,
            "acceptance": self.acceptance, "settings": self.settings,
            "seconds": self.seconds, "mode": self.mode,
        }


def frozen_seed(seed: int) -> int:
    """The seed of the second (frozen-kernel) run of ``ais(..., frozen=True, seed=seed)``:
    a deterministic function of ``seed`` (31 bits of SHA-256 of a tagged string),
    unrelated to ``seed + k`` for small k, so the second run's random stream shares
    nothing with the adaptation run's nor with BDMC's ``seed + 1``, ``seed + 2``."""
    digest = hashlib.sha256(f"pyrovae-ais-frozen:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


class _Annealer:
    """The density pieces in the unconstrained space for one chunk of data."""

    def __init__(self, target: Target, x: torch.Tensor, start: str, precondition: bool,
                 inv_mass: torch.Tensor | None = None) -> None:
        self.target, self.x, self.start = target, x, start
        self.transform = biject_to(target.support)
        self.inv_mass = None  # diagonal inverse mass matrix (n, d): the guide's variances
        if inv_mass is not None:  # given (a frozen kernel): used as it is
            self.inv_mass = inv_mass.to(x.device)
        elif precondition and target.has_guide and target.support == constraints.real_vector:
            with torch.no_grad():
                q = target.guide_dist(x)
                q = as_mvn(q) if q is not None else None
            if q is not None:
                self.inv_mass = q.covariance_matrix.diagonal(dim1=-2, dim2=-1).detach()
            else:  # a guide known only by its draws (any Pyro guide): their variances
                devices = [x.device] if x.device.type == "cuda" else []
                try:  # on a forked stream: the chains draw what they drew before
                    with torch.random.fork_rng(devices=devices), torch.no_grad():
                        draws, _ = target.sample_guide(x, 64)
                    self.inv_mass = draws.detach().var(0).clamp_min(1e-8)
                except PyrovaeError:  # a guide without the latent sites: no preconditioning
                    self.inv_mass = None
        if start == "guide":
            if not target.has_guide:
                raise PyrovaeError("ais start='guide' needs a guide; none was given")
            with torch.no_grad():  # q's parameters are constants here: no encoder graph
                q = target.guide_dist(x)
            self._lp0 = (q.log_prob if q is not None
                         else (lambda z: target.guide_log_prob(x, z)))
        elif start == "prior":
            with torch.no_grad():
                p = target.prior_dist()
            self._lp0 = p.log_prob if p is not None else (lambda z: target.prior_log_prob(x, z))
        else:
            raise PyrovaeError(f"ais start: expected 'prior' or 'guide', got {start!r}")

    def sample_start(self, num_chains: int) -> torch.Tensor:
        with torch.no_grad():
            if self.start == "guide":
                z, _ = self.target.sample_guide(self.x, num_chains)
            else:
                z = self.target.sample_prior(self.x, num_chains)
            return self.transform.inv(z.detach())

    def parts(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π₀, log p(x, ·)) at u, both including log|det ∂z/∂u|; (C, n)."""
        z = self.transform(u)
        ladj = self.transform.log_abs_det_jacobian(u, z)
        if ladj.shape == u.shape:
            ladj = ladj.sum(-1)
        return self._lp0(z) + ladj, self.target.log_joint(self.x, z) + ladj

    def evaluate(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(log π₀, log p(x, ·), their gradients) at u: the state of a chain, from
        which f_β and ∇f_β follow for every β without another pass."""
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            lp0, lj = self.parts(u)
            (gj,) = torch.autograd.grad(lj.sum(), u, retain_graph=True)
            (g0,) = torch.autograd.grad(lp0.sum(), u) if lp0.requires_grad else (
                torch.zeros_like(u),)
        return u.detach(), lp0.detach(), lj.detach(), g0, gj


def _f(state, beta: float):
    _, lp0, lj, g0, gj = state
    return lp0 + beta * (lj - lp0), g0 + beta * (gj - g0)


def _hmc(an: _Annealer, state, beta: float, eps: torch.Tensor, leapfrog: int):
    """One HMC transition leaving f_β invariant; ``eps`` (n,) per data point."""
    u = state[0]
    f, grad = _f(state, beta)
    e = eps.to(u).unsqueeze(-1)
    m = torch.ones_like(u) if an.inv_mass is None else an.inv_mass.expand_as(u)
    p0 = torch.randn_like(u) / m.sqrt()  # p ~ N(0, M), M = diag(1 / m)
    p = p0 + 0.5 * e * grad
    new = state
    for i in range(leapfrog):
        new = an.evaluate(new[0] + e * m * p)
        _, gn = _f(new, beta)
        p = p + (e if i < leapfrog - 1 else 0.5 * e) * gn
    fn, _ = _f(new, beta)
    log_accept = (fn - f) - 0.5 * ((m * p.pow(2)).sum(-1) - (m * p0.pow(2)).sum(-1))
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)
    accept = torch.rand_like(log_accept).log() < log_accept
    out = tuple(
        torch.where(accept.unsqueeze(-1) if a.dim() == u.dim() else accept, b, a)
        for a, b in zip(state, new, strict=True)
    )
    return out, log_accept.clamp(max=0).exp()


def _run_chunk(an: _Annealer, u, betas, eps, fixed_eps, leapfrog, target_accept, warmup,
               adapt_rate, progress):
    """Anneal along ``betas`` (increasing: forward; decreasing: reverse)."""
    n = u.shape[-2]
    state = an.evaluate(u)
    log_eps = eps.log()
    used = torch.empty(len(betas), n, dtype=torch.float64)
    acc_steps = torch.zeros(max(len(betas) - 2, 1), dtype=torch.float64)
    acc_points = torch.zeros(n, dtype=torch.float64)

    def step(k, state, adapt):
        nonlocal log_eps
        eps_k = fixed_eps[k] if fixed_eps is not None else log_eps.exp()
        used[k] = eps_k
        state, acc = _hmc(an, state, float(betas[k]), eps_k, leapfrog)
        rate = acc.double().mean(0).cpu()
        if adapt and fixed_eps is None:
            log_eps = (log_eps + adapt_rate * (rate - target_accept)).clamp(-12, 1)
        return state, rate

    for _ in range(warmup):
        state, _r = step(0, state, True)
    used[0] = log_eps.exp() if fixed_eps is None else fixed_eps[0]
    logw = torch.zeros(u.shape[:-1], dtype=torch.float64, device=u.device)
    for k in range(1, len(betas)):
        logw = logw + float(betas[k] - betas[k - 1]) * (state[2] - state[1]).double()
        if k < len(betas) - 1:  # no transition after the last β: it would not change w
            state, rate = step(k, state, True)
            acc_steps[k - 1] = rate.mean()
            acc_points += rate
        if progress is not None:
            progress(1)
    used[-1] = used[-2]
    acc_points /= max(len(betas) - 2, 1)
    return logw.cpu(), state[0], used, acc_steps, acc_points


def ais(
    model,
    x: torch.Tensor,
    *,
    guide=None,
    num_steps: int = 200,
    num_chains: int = 32,
    start: str = "guide",
    schedule_name: str = "sigmoid",
    leapfrog_steps: int = 5,
    step_size: float | None = None,
    precondition: bool = True,
    target_accept: float = 0.65,
    adapt_rate: float = 0.5,
    warmup: int = 10,
    chunk_size: int = 128,
    seed: int = 0,
    init_z: torch.Tensor | None = None,
    reverse: bool = False,
    step_sizes: torch.Tensor | None = None,
    inv_mass: torch.Tensor | None = None,
    frozen: bool = False,
    keep_z: bool = False,
    progress: Callable[[int], None] | None = None,
) -> AISResult:
    """log p_θ(x) per row of ``x`` by annealed importance sampling (see the module text).

    Args:
        model: a :class:`pyrovae.VAE`, a toy problem (with ``guide``), a Pyro model
            (with ``guide``) or a :class:`~pyrovae.posterior.target.Target`.
        num_steps: T, the number of intermediate distributions.
        num_chains: C independent chains per data point.
        start: ``"guide"`` (π₀ = q_φ(z|x)) or ``"prior"`` (π₀ = p(z)).
        schedule_name: a key of :data:`SCHEDULES`.
        leapfrog_steps, step_size, target_accept, adapt_rate, warmup: HMC settings
            (``step_size`` is the initial one, adapted per point as
            log ε ← log ε + adapt_rate·(acceptance − target_accept)).
        precondition: use the guide's variances as the diagonal inverse mass matrix
            of HMC when the guide is a Gaussian on an unconstrained z (step sizes
            are then relative to the guide's scale).
        chunk_size: data points annealed together (memory ∝ chunk_size × C).
        seed: the run's random seed (the global stream is restored afterwards).
        init_z: (N, d) or (C, N, d) starting states instead of draws from π₀ (the
            exact draws of BDMC's reverse chains).
        reverse: anneal from β = 1 back to 0: the returned ``log_px`` is then
            −log mean(w_rev), a stochastic *upper* bound when ``init_z`` are exact
            posterior draws (Grosse et al. 2015).
        step_sizes: (T + 1, N) fixed HMC step size per β (no adaptation).
        inv_mass: (N, d) fixed diagonal inverse mass matrix (instead of the guide's
            variances); with ``step_sizes``, the kernels of an earlier run.
        frozen: the two-round mode: adapt in a first run (seed ``seed``), then return a
            fresh run (seed :func:`frozen_seed` (``seed``)) with that run's step sizes and
            mass matrix frozen, whose weights are unbiased, E[w] = p_θ(x).  Costs two
            runs; ``seconds`` counts both, ``settings["adapt_seed"]`` names the first.
        keep_z: also return the final states (C, N, d).
        progress: called with 1 after each intermediate distribution of each chunk
            (of both rounds when ``frozen``; a :class:`~pyrovae.progress.Progress` is
            told its total, T · chunks, twice that when ``frozen``).

    Returns:
        :class:`AISResult` (``mode`` "adaptive", "fixed" or "frozen").

    References:
        Neal (2001), *Annealed importance sampling*.
        Wu et al. (2017), *On the quantitative analysis of decoder-based generative models*.
    """
    target = as_target(model, guide)
    if frozen:
        if step_sizes is not None or inv_mass is not None:
            raise PyrovaeError("ais frozen=True adapts its own kernels; do not pass "
                               "step_sizes or inv_mass")
        if reverse:
            raise PyrovaeError("ais frozen=True is a forward mode; a reverse run takes the "
                               "forward run's step_sizes and inv_mass")
        common = {"num_steps": num_steps, "num_chains": num_chains, "start": start,
                  "schedule_name": schedule_name, "leapfrog_steps": leapfrog_steps,
                  "precondition": precondition, "target_accept": target_accept,
                  "chunk_size": chunk_size, "init_z": init_z, "progress": progress}
        expect(progress, 2 * num_steps * -(-x.shape[0] // chunk_size))  # both rounds
        first = ais(target, x, step_size=step_size, adapt_rate=adapt_rate, warmup=warmup,
                    seed=seed, **common)
        common["precondition"] = first.inv_mass is not None  # the same kernels, exactly
        second = ais(target, x, seed=frozen_seed(seed), step_sizes=first.step_size,
                     inv_mass=first.inv_mass, keep_z=keep_z, **common)
        second.mode = "frozen"
        second.seconds += first.seconds
        second.settings |= {"adapt_seed": seed, "mode": "frozen",
                            "adapt_acceptance": float(first.acceptance.mean())}
        return second
    if num_chains < 1 or leapfrog_steps < 1 or chunk_size < 1:
        raise PyrovaeError("ais: num_chains, leapfrog_steps and chunk_size must be positive")
    if not 0 < target_accept < 1:
        raise PyrovaeError(f"ais target_accept: expected a number in (0, 1), got {target_accept}")
    betas = schedule(schedule_name, num_steps)
    n_all = x.shape[0]
    if step_sizes is not None and tuple(step_sizes.shape) != (num_steps + 1, n_all):
        raise PyrovaeError(f"ais step_sizes: expected shape ({num_steps + 1}, {n_all}) "
                           f"(T + 1, N), got {tuple(step_sizes.shape)}")
    if inv_mass is not None and (inv_mass.dim() != 2 or inv_mass.shape[0] != n_all):
        raise PyrovaeError(f"ais inv_mass: expected shape ({n_all}, d), got "
                           f"{tuple(inv_mass.shape)}")
    if reverse:
        betas = betas.flip(0)
        if init_z is None:
            raise PyrovaeError("ais reverse=True needs init_z (exact posterior draws)")
    t0 = time.perf_counter()
    expect(progress, num_steps * -(-n_all // chunk_size))
    outs, masses = [], []
    with seeded(seed, x, target):
        for lo in range(0, n_all, chunk_size):
            hi = min(lo + chunk_size, n_all)
            an = _Annealer(target, x[lo:hi], start, precondition,
                           None if inv_mass is None else inv_mass[lo:hi])
            masses.append(an.inv_mass)
            if init_z is None:
                u = an.sample_start(num_chains)
            else:
                z0 = init_z[..., lo:hi, :]
                z0 = z0.expand(num_chains, *z0.shape[-2:]) if z0.dim() == 2 else z0
                u = an.transform.inv(z0.detach().clone())
            eps0 = torch.full((hi - lo,), float(step_size or (
                0.5 if an.inv_mass is not None else 0.05)), dtype=torch.float64)
            fixed = None
            if step_sizes is not None:
                fixed = step_sizes[:, lo:hi]
                fixed = fixed.flip(0) if reverse else fixed
            outs.append(_run_chunk(an, u, betas, eps0, fixed, leapfrog_steps, target_accept,
                                   0 if fixed is not None else warmup, adapt_rate, progress))
    logw = torch.cat([o[0] for o in outs], -1)
    used = torch.cat([o[2] for o in outs], -1)
    if reverse:
        used = used.flip(0)
    est = iwae_from_log_weights(logw)
    value = -est.value if reverse else est.value
    acc_steps = torch.stack([o[3] for o in outs]).mean(0)
    settings = {"num_steps": num_steps, "num_chains": num_chains, "start": start,
                "schedule": schedule_name, "leapfrog_steps": leapfrog_steps,
                "target_accept": target_accept, "seed": seed, "reverse": reverse,
                "mode": "adaptive" if step_sizes is None else "fixed"}
    return AISResult(
        log_px=value, stderr=est.stderr, ess=ess(logw, 0),
        acceptance=torch.cat([o[4] for o in outs]), acceptance_per_step=acc_steps,
        step_size=used, log_weights=logw, settings=settings,
        seconds=time.perf_counter() - t0,
        final_z=torch.cat([an.transform(o[1]) for o in outs], -2) if keep_z else None,
        mode=settings["mode"],
        inv_mass=(torch.cat([m.detach().cpu() for m in masses], 0)
                  if masses and all(m is not None for m in masses) else None),
    )
