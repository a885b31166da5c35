"""Training engines: how one SVI step on a minibatch is carried out.

* :class:`FastEngine` (default) evaluates the objective's one estimator directly
  from the VAE's distributions (``Objective.loss_fn`` /
  ``Objective.differentiable_loss``: the same value and gradients as Pyro's ELBO on
  the same draws) and steps one ``torch.optim.Adam`` over all
  parameters: no per-step tracing, param-store look-ups or per-parameter
  optimisers.  Objectives without a direct form fall back to :class:`PyroEngine`.
* :class:`PyroEngine` is stock ``pyro.infer.SVI`` with ``pyro.optim.Adam``.

Both return the step's loss as a 0-d tensor (no host synchronisation per step).

Where the time goes (784-400-50 MLP VAE, Bernoulli likelihood, one CPU thread):
stock SVI + Trace_ELBO spends ≈1.4 ms per step tracing (handler stack,
distribution construction and argument checks, ``pyro.param`` per parameter,
NaN checks) and ≈0.5 ms in ``PyroOptim`` (one Adam per parameter), whatever the
batch size.  The fast engine removes both.  For the stock families
(``diagonal_normal`` guide, ``normal`` prior, ``bernoulli`` likelihood; see
:func:`~pyrovae.estimators.standard.standard_families`) it also skips the
distribution objects altogether and
evaluates the same ELBO terms as tensor expressions
(:func:`pyrovae.estimators.standard.standard_loss`): the same random draw (``eps`` from the global
generator, exactly as ``Normal.rsample`` draws it), the same value and the same
gradients up to float rounding.

Safety: before training, :func:`check_standard_pair` traces ``vae.model`` and
``vae.guide`` once with ``poutine`` and compares the stock Pyro ELBO with the
fast estimator on the same draw.  A subclass that adds sample sites, factors or
scales of its own to the model or guide (which the fast estimator, built from
``encode``/``decode``/``prior_dist``, would not see) is detected and trained
through stock SVI instead, with a warning.

Devices: every tensor the fast engine creates lives on the parameters' device
and nothing is copied to the host per step, so ``fit(..., device="cuda")``
keeps data and updates on the GPU (the CUDA path is written to the same rules
but was not run on the CPU-only machine where this was developed).
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import TYPE_CHECKING, Any

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.elbo import elbo_terms
from pyrovae.training.optim import OptimChoice, make_optimizer, pyro_optimizer, set_lr

if TYPE_CHECKING:
    from pyrovae.model.vae import VAE
    from pyrovae.training.objectives import LossFn, Objective


# ------------------------------------------------------------ safety check
def _sample_sites(trace: Any) -> dict[str, bool]:
    """Non-subsample sample sites of a trace: name -> observed."""
    from pyro.poutine.util import site_is_subsample

    return {
        name: bool(site["is_observed"])
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


def check_standard_pair(
    vae: Any, x: torch.Tensor, loss_fn: LossFn | None = None, *, y: torch.Tensor | None = None,
    kl: str = "mc", rtol: float = 1e-4, stock: pyro.infer.ELBO | None = None,
) -> str | None:
    """``None`` if ``vae.model``/``vae.guide`` are the standard pair the fast engine
    computes from ``encode``/``decode``/``prior_dist``; else a reason (a string).

    Traces the guide and the model (replayed) on ``x`` and checks the sample sites
    are exactly ``z`` (latent) and ``x`` (observed) in the model and ``z`` in the
    guide; then compares the stock Pyro loss of the one-particle ELBO objective with
    KL estimator ``kl`` (``Trace_ELBO`` for ``mc``, else ``TraceMeanField_ELBO``) with
    ``loss_fn`` (default: that objective's direct estimator) on the same draw, with a
    minibatch scale and a KL weight ≠ 1 so that scaling is checked too.  Random
    state, the param store and module buffers are left as they were.
    """
    from pyrovae.training.objectives import TraceELBOObjective

    objective = TraceELBOObjective(num_particles=1, kl=kl)
    if loss_fn is None:
        loss_fn = objective.loss_fn(vae)
    n = x.shape[0]
    num_data, beta = 3 * n, 0.5
    kwargs = {"num_data": num_data, "kl_weight": beta}
    args = (x,) if y is None else (x, y)  # a conditional VAE's context: vae.model(x, y)
    devices = [x.device] if x.device.type == "cuda" else []
    buffers = {k: v.detach().clone() for k, v in vae.named_buffers()}
    try:
        with (
            torch.random.fork_rng(devices=devices),
            pyro.get_param_store().scope(),
            pyro.validation_enabled(False),
            torch.no_grad(),
        ):
            if hasattr(vae, "likelihood"):  # e.g. dynamic binarisation (seeded, forked RNG)
                x = vae.likelihood.prepare_batch(x)
                args = (x, *args[1:])
            guide_tr = poutine.trace(vae.guide).get_trace(*args, **kwargs)
            model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(
                *args, **kwargs
            )
            if stock is not None:  # the model's own Pyro loss: its sites are its own
                pass
            elif _sample_sites(guide_tr) != {"z": False}:
                return f"guide sample sites {sorted(_sample_sites(guide_tr))} (expected ['z'])"
            elif _sample_sites(model_tr) != {"z": False, "x": True}:
                return (
                    f"model sample sites {sorted(_sample_sites(model_tr))} "
                    "(expected latent 'z' and observed 'x')"
                )
            # the same draw for both: replay the generator state (no reseeding)
            cpu_state = torch.get_rng_state()
            cuda_state = torch.cuda.get_rng_state(x.device) if devices else None
            elbo = objective.elbo() if stock is None else stock
            stock_value = float(elbo.differentiable_loss(vae.model, vae.guide, *args, **kwargs)
                                if stock is None else  # TraceEnum_ELBO: loss() under no_grad
                                elbo.loss(vae.model, vae.guide, *args, **kwargs))
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, x.device)
            fast = float(loss_fn(vae, x, y, num_data, beta).loss)
    except Exception as exc:  # any failure means: not the standard pair
        return f"tracing the model/guide failed ({type(exc).__name__}: {exc})"
    finally:
        with torch.no_grad():
            for k, v in vae.named_buffers():
                if k in buffers and v.shape == buffers[k].shape:
                    v.copy_(buffers[k])
    if not (math.isfinite(stock_value) and math.isfinite(fast)):
        return None  # cannot compare (e.g. an untrained net overflowing); trust the structure
    if abs(stock_value - fast) > rtol * max(1.0, abs(stock_value)):
        return (f"the stock Pyro loss is {stock_value:.6g}, the fast estimator {fast:.6g} on "
                "the same draw")
    return None


#: model -> {kl estimator: verdict of check_standard_pair}; the verdict is about the
#: structure of vae.model/guide (sites, scales), which training does not change.
_PAIR_CHECKS: weakref.WeakKeyDictionary[Any, dict[str, str | None]] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------ engines
class FastEngine:
    """The objective's direct estimator + one torch Adam (see module docstring).

    ``step`` returns the minibatch loss (0-d, detached); ``last_terms`` then holds the
    objective's open record of terms (``"reconstruction"``, ``"kl"`` and any it adds),
    each summed over the minibatch (detached, no host sync).
    """

    name = "fast"

    def __init__(
        self,
        vae: VAE,
        objective: Objective,
        lr: float,
        clip_norm: float | None = None,
        loss_fn: LossFn | None = None,
        *,
        optim: OptimChoice | None = None,
    ):
        self.vae, self.objective, self.clip_norm = vae, objective, clip_norm
        fn = loss_fn or objective.loss_fn(vae)
        if fn is None:
            raise PyrovaeError(f"objective {objective.family!r} has no direct estimator: "
                               "train it with the pyro engine (stock SVI)")
        self.loss_fn: LossFn = fn
        self.params = [p for p in vae.parameters() if p.requires_grad]
        o = optim or OptimChoice()
        self.optimizer = make_optimizer(self.params, name=o.name, lr=lr,
                                        weight_decay=o.weight_decay, betas=o.betas)
        self.last_terms: dict[str, torch.Tensor] | None = None
        self.kl_closed_form: bool | None = None

    def set_lr(self, lr: float) -> None:
        """The learning rate from now on (the schedule's value for an epoch)."""
        set_lr([self.optimizer], lr)

    def step(self, x: torch.Tensor, num_data: int, kl_weight: float,
             y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.loss_fn(self.vae, x, y, num_data, kl_weight)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        self.last_terms = dict(out.terms)
        self.kl_closed_form = out.kl_closed_form
        return out.loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


class PyroEngine:
    """Stock ``SVI(vae.model, vae.guide, Adam, objective.elbo())``.

    The param store is cleared first so that it holds this VAE's parameters
    (``pyro.module("vae", vae)`` registers them by name).  SVI does not return the
    ELBO's terms, so after each step ``last_terms`` is computed by one extra forward
    pass (no gradients) on a forked random stream: the training path is unchanged.
    """

    name = "pyro"

    def __init__(self, vae: VAE, objective: Objective, lr: float, clip_norm: float | None = None,
                 elbo: pyro.infer.ELBO | None = None, terms_fn: LossFn | None = None, *,
                 optim: OptimChoice | None = None):
        pyro.clear_param_store()
        o = optim or OptimChoice()
        # per-parameter optimisers, Pyro's own (ClippedAdam when clipping)
        self.optim = pyro_optimizer(name=o.name, lr=lr, weight_decay=o.weight_decay,
                                    clip_norm=clip_norm, betas=o.betas)
        elbo = objective.elbo() if elbo is None else elbo
        self.svi = SVI(vae.model, vae.guide, self.optim, loss=elbo)
        self.vae = vae
        self.terms_fn = terms_fn
        mc = type(elbo) is pyro.infer.Trace_ELBO
        self.kl = "mc" if mc else getattr(objective, "kl", "mc")
        self.last_terms: dict[str, torch.Tensor] | None = None
        self.kl_closed_form: bool | None = None

    def step(self, x: torch.Tensor, num_data: int, kl_weight: float,
             y: torch.Tensor | None = None) -> torch.Tensor:
        args = (x,) if y is None else (x, y)
        loss = torch.tensor(self.svi.step(*args, num_data=num_data, kl_weight=kl_weight))
        devices = [x.device] if x.device.type == "cuda" else []
        if self.terms_fn is not None:  # the model's own record of terms
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                out = self.terms_fn(self.vae, x, y, num_data, kl_weight)
            self.last_terms, self.kl_closed_form = dict(out.terms), out.kl_closed_form
            return loss
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            terms = elbo_terms(self.vae, x, y=y, kl=self.kl)
        self.last_terms = {"reconstruction": terms.reconstruction.sum(), "kl": terms.kl.sum()}
        self.kl_closed_form = terms.kl_closed_form
        return loss

    def set_lr(self, lr: float) -> None:
        """The learning rate from now on: every per-parameter optimiser Pyro made, the
        one it makes for a parameter seen later, and the loaded states still waiting for
        their parameter's first step (Pyro loads a state over the optimiser it makes, its
        learning rate included: a resumed run would otherwise train its first epoch at the
        saved epoch's rate)."""
        if isinstance(self.optim.pt_optim_args, dict):
            self.optim.pt_optim_args = {**self.optim.pt_optim_args, "lr": lr}
        set_lr(self.optim.optim_objs.values(), lr)
        waiting = self.optim._state_waiting_to_be_consumed
        for name, state in list(waiting.items()):
            if isinstance(state, dict) and isinstance(state.get("param_groups"), list):
                waiting[name] = {**state, "param_groups": [{**g, "lr": lr}
                                                           for g in state["param_groups"]]}

    def state_dict(self) -> dict[str, Any]:
        return self.optim.get_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optim.set_state(state)


def _own_engine(
    name: str, vae: Any, objective: Objective, lr: float, clip_norm: float | None,
    sample: torch.Tensor | None, sample_y: torch.Tensor | None, optim: OptimChoice | None,
) -> FastEngine | PyroEngine:
    """The engines of a model kind with its own estimator (``own_loss``,
    :mod:`pyrovae.estimators.kinds`: M2's label summed out, a hierarchical VAE's layers):
    the fast engine runs that estimator, the pyro engine stock SVI with the objective's
    ``kind_elbo`` (the kind's ``stock_elbo()``: ``TraceEnum_ELBO``, ``Trace_ELBO``; or
    ``RenyiELBO`` with vectorised particles); the objective must be one that
    ``trains_kind`` (ELBO objectives; ``renyi_elbo`` where the kind declares
    per-particle weights).
    With ``sample``, the fast estimator is first compared with ``stock_elbo()`` on the
    same draw (Monte Carlo KL), as :func:`check_standard_pair` does for the VAE."""
    from pyrovae.estimators.kinds import kind_estimator
    from pyrovae.training.objectives import TraceELBOObjective, _ELBOObjective

    own = kind_estimator(vae)
    family = vae.spec["model"]["family"]
    if not objective.trains_kind(own):
        raise PyrovaeError(f"objective: {objective.family!r} cannot train {own.what} "
                           f"(model: {family}); use trace_elbo or trace_elbo_mc")
    fn = objective.loss_fn(vae)
    elbo_objective = isinstance(objective, _ELBOObjective)
    if name == "pyro" and elbo_objective and objective.free_bits > 0:
        objective.elbo()  # raises: the pyro engine cannot express free bits
    if name == "pyro":  # the record of terms as the stock ELBO computes them (Monte Carlo KL)
        terms_fn = (TraceELBOObjective(num_particles=objective.num_particles,
                                       kl="mc").loss_fn(vae) if elbo_objective else fn)
        return PyroEngine(vae, objective, lr, clip_norm, elbo=objective.kind_elbo(vae),
                          terms_fn=terms_fn, optim=optim)
    if sample is not None and "mc" not in _PAIR_CHECKS.setdefault(vae, {}):
        check_fn = TraceELBOObjective(num_particles=1, kl="mc").loss_fn(vae)
        _PAIR_CHECKS[vae]["mc"] = check_standard_pair(
            vae, sample, check_fn, y=sample_y, kl="mc", stock=vae.stock_elbo(1))
    reason = _PAIR_CHECKS[vae].get("mc") if sample is not None else None
    if reason is not None:
        stock = type(vae.stock_elbo(1)).__name__
        raise PyrovaeError(f"engine 'fast': the estimator of model: {family} disagrees with "
                           f"Pyro's {stock} ({reason}); train with train.engine: pyro")
    return FastEngine(vae, objective, lr, clip_norm, loss_fn=fn, optim=optim)


def make_engine(
    name: str,
    vae: VAE,
    objective: Objective,
    lr: float,
    clip_norm: float | None = None,
    sample: torch.Tensor | None = None,
    sample_y: torch.Tensor | None = None,
    *,
    optim: OptimChoice | None = None,
) -> FastEngine | PyroEngine:
    """``"fast"`` unless the objective has no direct form, then ``"pyro"``; ``optim``:
    the optimiser both build (:mod:`pyrovae.training.optim`; default Adam).

    With ``sample`` (a few data rows) the objective first checks it can train this
    VAE (:meth:`~pyrovae.training.objectives.Objective.check`) and the fast engine
    checks, by :func:`check_standard_pair`, that ``vae.model``/``vae.guide`` are the
    pair its estimator assumes; if not (e.g. a subclass adds sites) it warns and
    returns the pyro engine.
    """
    if getattr(vae, "own_loss", None) is not None:  # the kind's own estimator (M2, layers)
        return _own_engine(name, vae, objective, lr, clip_norm, sample, sample_y, optim)
    if sample is not None:
        objective.check(vae, sample, sample_y)
    fn = objective.loss_fn(vae) if name == "fast" else None
    if fn is None:
        return PyroEngine(vae, objective, lr, clip_norm, optim=optim)
    if sample is not None:
        kl = getattr(objective, "kl", "mc")
        verdicts = _PAIR_CHECKS.setdefault(vae, {})
        if kl not in verdicts:  # once per model: fit(epochs=1) in a loop pays it once
            verdicts[kl] = check_standard_pair(vae, sample, y=sample_y, kl=kl)
        reason = verdicts[kl]
        if reason is not None:
            # Pyro's TraceMeanField_ELBO needs every guide site in the model: a
            # non-standard pair trains with the Monte Carlo KL of Trace_ELBO
            mc = kl == "auto" and isinstance(objective.elbo(), pyro.infer.TraceMeanField_ELBO)
            elbo = pyro.infer.Trace_ELBO(num_particles=objective.num_particles) if mc else None
            warnings.warn(
                f"engine 'fast': {type(vae).__name__}.model/guide are not the standard "
                f"VAE pair ({reason}); training with stock Pyro SVI (engine 'pyro"
                + ("', Trace_ELBO: Monte Carlo KL" if mc else "'") + ") instead",
                RuntimeWarning,
                stacklevel=3,
            )
            return PyroEngine(vae, objective, lr, clip_norm, elbo=elbo, optim=optim)
    return FastEngine(vae, objective, lr, clip_norm, loss_fn=fn, optim=optim)
